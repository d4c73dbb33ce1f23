package gopacketref

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func frame(t *testing.T, v6 bool, tcp bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	var ip gopacket.NetworkLayer
	proto := layers.IPProtocolTCP
	if !tcp {
		proto = layers.IPProtocolUDP
	}
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	} else {
		ip = &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.IP{198, 18, 0, 1}, DstIP: net.IP{198, 18, 0, 2}}
	}
	var l4 gopacket.SerializableLayer
	if tcp {
		t4 := &layers.TCP{SrcPort: 443, DstPort: 40000, ACK: true, Window: 1000}
		t4.SetNetworkLayerForChecksum(ip)
		l4 = t4
	} else {
		u := &layers.UDP{SrcPort: 53, DstPort: 40000}
		u.SetNetworkLayerForChecksum(ip)
		l4 = u
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip.(gopacket.SerializableLayer), l4); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestKeys: both decoders find the same key in IPv4 and IPv6 segments,
// and no key where there is no TCP.
func TestKeys(t *testing.T) {
	p := NewParser()
	for _, v6 := range []bool{false, true} {
		want := Key{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 443, DstPort: 40000}
		if v6 {
			want.Src, want.Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
		}
		f := frame(t, v6, true)
		if k, ok := NewPacketKey(f); !ok || k != want {
			t.Errorf("v6 %v: NewPacketKey = %+v, %v; want %+v", v6, k, ok, want)
		}
		var k Key
		if ok, err := p.Key(f, &k); err != nil || !ok || k != want {
			t.Errorf("v6 %v: Parser.Key = %+v, %v, %v; want %+v", v6, k, ok, err, want)
		}
		u := frame(t, v6, false)
		if _, ok := NewPacketKey(u); ok {
			t.Errorf("v6 %v: NewPacketKey found TCP in a UDP datagram", v6)
		}
		if ok, _ := p.Key(u, &k); ok {
			t.Errorf("v6 %v: Parser.Key found TCP in a UDP datagram", v6)
		}
	}
}
