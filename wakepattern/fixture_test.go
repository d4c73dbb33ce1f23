package wakepattern

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Test frames, built with gopacket. Helpers are prefixed fx to keep them
// apart from other test files of the package.

var (
	fxMACHost = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
	fxMACPeer = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	fxIP4Host = netip.MustParseAddr("198.18.0.2")
	fxIP4Peer = netip.MustParseAddr("198.18.0.1")
	fxIP6Host = netip.MustParseAddr("2001:db8::2")
	fxIP6Peer = netip.MustParseAddr("2001:db8::1")
)

// fxSerialize serializes ls with lengths and checksums computed.
func fxSerialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// fxSeg describes a TCP segment to build.
type fxSeg struct {
	src, dst  netip.AddrPort
	vlans     []uint16 // outermost first; the outer one is 802.1ad when two
	seq, ack  uint32
	flags     uint8
	window    uint16
	opts      []layers.TCPOption
	payload   []byte
	ext       []byte // raw IPv6 extension headers; ext[0] is their first next-header value
	ipOptions []layers.IPv4Option
	pad       int // pad the frame with zeros to at least this length
	fragMF    bool
	fragOff   uint16 // IPv4 fragment offset in 8-byte units
	tos, ttl  uint8
}

func fxTCPLayer(s fxSeg) *layers.TCP {
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(s.src.Port()),
		DstPort: layers.TCPPort(s.dst.Port()),
		Seq:     s.seq,
		Ack:     s.ack,
		Window:  s.window,
		FIN:     s.flags&TCPFlagFIN != 0,
		SYN:     s.flags&TCPFlagSYN != 0,
		RST:     s.flags&TCPFlagRST != 0,
		PSH:     s.flags&TCPFlagPSH != 0,
		ACK:     s.flags&TCPFlagACK != 0,
		URG:     s.flags&TCPFlagURG != 0,
		ECE:     s.flags&TCPFlagECE != 0,
		CWR:     s.flags&TCPFlagCWR != 0,
		Options: s.opts,
	}
	return tcp
}

// fxL2 returns the Ethernet and VLAN layers for a frame of EtherType et.
func fxL2(vlans []uint16, et layers.EthernetType, src, dst net.HardwareAddr) []gopacket.SerializableLayer {
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: et}
	ls := []gopacket.SerializableLayer{eth}
	for i, id := range vlans {
		if i == 0 {
			eth.EthernetType = layers.EthernetTypeDot1Q
			if len(vlans) > 1 {
				eth.EthernetType = layers.EthernetTypeQinQ
			}
		}
		inner := et
		if i < len(vlans)-1 {
			inner = layers.EthernetTypeDot1Q
		}
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: id, Type: inner})
	}
	return ls
}

// fxTCP builds an Ethernet frame carrying the segment s (IPv4 or IPv6 by
// the family of s.src).
func fxTCP(t testing.TB, s fxSeg) []byte {
	t.Helper()
	if s.window == 0 {
		s.window = 502
	}
	if s.ttl == 0 {
		s.ttl = 64
	}
	tcp := fxTCPLayer(s)
	var ls []gopacket.SerializableLayer
	if s.src.Addr().Is4() {
		ip := &layers.IPv4{
			Version: 4, TTL: s.ttl, TOS: s.tos, Protocol: layers.IPProtocolTCP,
			SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice(),
			Options: s.ipOptions, FragOffset: s.fragOff, Id: 0x1234,
		}
		if s.fragMF {
			ip.Flags = layers.IPv4MoreFragments
		}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		ls = append(fxL2(s.vlans, layers.EthernetTypeIPv4, fxMACPeer, fxMACHost), ip)
	} else {
		ip := &layers.IPv6{
			Version: 6, HopLimit: s.ttl, TrafficClass: s.tos, NextHeader: layers.IPProtocolTCP,
			SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice(),
		}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		ls = append(fxL2(s.vlans, layers.EthernetTypeIPv6, fxMACPeer, fxMACHost), ip)
		if len(s.ext) > 0 {
			ip.NextHeader = layers.IPProtocol(s.ext[0])
			ls = append(ls, gopacket.Payload(s.ext[1:]))
		}
	}
	ls = append(ls, tcp)
	if len(s.payload) > 0 {
		ls = append(ls, gopacket.Payload(s.payload))
	}
	b := fxSerialize(t, ls...)
	for len(b) < s.pad {
		b = append(b, 0)
	}
	return b
}

// fxExt builds one IPv6 extension header of type proto (hop-by-hop,
// routing, destination options: padded with PadN to 8·(extLen+1) bytes;
// fragment: offset in bytes and M flag).
func fxExt(proto, next uint8, extLen int, fragOff uint16, more bool) []byte {
	switch proto {
	case ProtoFragment:
		h := make([]byte, 8)
		h[0] = next
		v := fragOff &^ 7
		if more {
			v |= 1
		}
		binary.BigEndian.PutUint16(h[2:], v)
		binary.BigEndian.PutUint32(h[4:], 0xabcdef01)
		return h
	case ProtoAH:
		n := (extLen + 2) * 4
		h := make([]byte, n)
		h[0], h[1] = next, byte(extLen)
		return h
	case ProtoRouting:
		n := (extLen + 1) * 8
		h := make([]byte, n)
		h[0], h[1] = next, byte(extLen)
		h[2] = 4 // segment routing type; segments left 0
		return h
	default:
		n := (extLen + 1) * 8
		h := make([]byte, n)
		h[0], h[1] = next, byte(extLen)
		h[2], h[3] = 1, byte(n-4) // PadN over the rest
		return h
	}
}

// fxChain concatenates extension headers and prefixes the first header's
// type, the form fxSeg.ext expects.
func fxChain(first uint8, hs ...[]byte) []byte {
	out := []byte{first}
	for _, h := range hs {
		out = append(out, h...)
	}
	return out
}

// fxSYNOpts are the options of a Linux SYN: MSS, SACK-permitted,
// timestamps, NOP, window scale.
func fxSYNOpts(tsval, tsecr uint32) []layers.TCPOption {
	ts := make([]byte, 8)
	binary.BigEndian.PutUint32(ts, tsval)
	binary.BigEndian.PutUint32(ts[4:], tsecr)
	return []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
	}
}

// fxTSOpts are the options of an established Linux segment: NOP, NOP,
// timestamps.
func fxTSOpts(tsval, tsecr uint32) []layers.TCPOption {
	ts := make([]byte, 8)
	binary.BigEndian.PutUint32(ts, tsval)
	binary.BigEndian.PutUint32(ts[4:], tsecr)
	return []layers.TCPOption{
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts},
	}
}

// fxARP builds an ARP request from the peer for target.
func fxARP(t testing.TB, vlans []uint16, target netip.Addr) []byte {
	t.Helper()
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: fxMACPeer, SourceProtAddress: fxIP4Peer.AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: target.AsSlice(),
	}
	ls := append(fxL2(vlans, layers.EthernetTypeARP, fxMACPeer, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), arp)
	b := fxSerialize(t, ls...)
	for len(b) < EthernetMinFrame {
		b = append(b, 0)
	}
	return b
}

// fxNS builds an IPv6 neighbour solicitation from the peer for target.
func fxNS(t testing.TB, target netip.Addr) []byte {
	t.Helper()
	sn := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 0x01, 12: 0xff, 13: target.As16()[13], 14: target.As16()[14], 15: target.As16()[15]})
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6,
		SrcIP: fxIP6Peer.AsSlice(), DstIP: sn.AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: target.AsSlice(),
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: fxMACPeer}}}
	ls := append(fxL2(nil, layers.EthernetTypeIPv6, fxMACPeer, net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 2}), ip, icmp, ns)
	return fxSerialize(t, ls...)
}

// fxUDP builds an IPv4 UDP datagram.
func fxUDP(t testing.TB, src, dst netip.AddrPort, payload []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	ls := append(fxL2(nil, layers.EthernetTypeIPv4, fxMACPeer, fxMACHost), ip, udp, gopacket.Payload(payload))
	return fxSerialize(t, ls...)
}

// fxRefitIPv4 recomputes the IPv4 header checksum of frame b after a test
// edited the header at l3.
func fxRefitIPv4(b []byte, l3 int) {
	h := b[l3:]
	hl := int(h[0]&0x0f) * 4
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], Checksum(h[:hl], 0))
}
