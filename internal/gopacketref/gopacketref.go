// Package gopacketref is what a gopacket user writes to find the TCP
// connection a frame belongs to: decode the frame, then look its 4-tuple
// up in a Go map. It is the baseline of the classification benchmarks
// (wakepattern's testing.B and the bench harness), written once so that
// both measure the same code.
package gopacketref

import (
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Key is the map key: a TCP segment's addresses and ports.
type Key struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

// NewPacketKey decodes frame with gopacket.NewPacket (default options,
// every layer) and returns its key; false when it holds no TCP segment.
func NewPacketKey(frame []byte) (Key, bool) {
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	var k Key
	if l := pkt.Layer(layers.LayerTypeIPv4); l != nil {
		ip := l.(*layers.IPv4)
		k.Src, _ = netip.AddrFromSlice(ip.SrcIP)
		k.Dst, _ = netip.AddrFromSlice(ip.DstIP)
	} else if l := pkt.Layer(layers.LayerTypeIPv6); l != nil {
		ip := l.(*layers.IPv6)
		k.Src, _ = netip.AddrFromSlice(ip.SrcIP)
		k.Dst, _ = netip.AddrFromSlice(ip.DstIP)
	}
	l := pkt.Layer(layers.LayerTypeTCP)
	if l == nil {
		return Key{}, false
	}
	tcp := l.(*layers.TCP)
	k.SrcPort, k.DstPort = uint16(tcp.SrcPort), uint16(tcp.DstPort)
	return k, true
}

// Parser is gopacket's DecodingLayerParser over Ethernet, 802.1Q, IPv4,
// IPv6 and TCP, with its layers preallocated, as its documentation
// recommends for speed. It is not safe for concurrent use.
type Parser struct {
	eth     layers.Ethernet
	dot1q   layers.Dot1Q
	ip4     layers.IPv4
	ip6     layers.IPv6
	tcp     layers.TCP
	payload gopacket.Payload
	parser  *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
}

// NewParser returns a Parser.
func NewParser() *Parser {
	p := &Parser{decoded: make([]gopacket.LayerType, 0, 8)}
	p.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &p.eth, &p.dot1q, &p.ip4, &p.ip6, &p.tcp, &p.payload)
	p.parser.IgnoreUnsupported = true
	return p
}

// Key decodes frame into k; false when it holds no TCP segment.
func (p *Parser) Key(frame []byte, k *Key) (bool, error) {
	if err := p.parser.DecodeLayers(frame, &p.decoded); err != nil {
		return false, err
	}
	isTCP := false
	for _, lt := range p.decoded {
		switch lt {
		case layers.LayerTypeIPv4:
			k.Src = netip.AddrFrom4([4]byte(p.ip4.SrcIP))
			k.Dst = netip.AddrFrom4([4]byte(p.ip4.DstIP))
		case layers.LayerTypeIPv6:
			k.Src = netip.AddrFrom16([16]byte(p.ip6.SrcIP))
			k.Dst = netip.AddrFrom16([16]byte(p.ip6.DstIP))
		case layers.LayerTypeTCP:
			k.SrcPort, k.DstPort = uint16(p.tcp.SrcPort), uint16(p.tcp.DstPort)
			isTCP = true
		}
	}
	return isTCP, nil
}
