package nic

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	wp "github.com/standbynic/standbynic/wakepattern"
)

var (
	testHostMAC = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	testPeerMAC = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	testHost4   = netip.MustParseAddr("198.18.0.2")
	testPeer4   = netip.MustParseAddr("198.18.0.1")
	testHost6   = netip.MustParseAddr("2001:db8::2")
	testPeer6   = netip.MustParseAddr("2001:db8::1")
)

func testHostAddrs() *hostAddrs {
	return &hostAddrs{mac: testHostMAC, v4: []netip.Addr{testHost4}, v6: []netip.Addr{testHost6}}
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ethLayers(src, dst [6]byte, et layers.EthernetType, vlan uint16) []gopacket.SerializableLayer {
	if vlan == 0 {
		return []gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: et}}
	}
	return []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: vlan, Type: et},
	}
}

func arpFrame(t testing.TB, op uint16, srcMAC [6]byte, srcIP, dstIP netip.Addr, dstMAC [6]byte, vlan uint16) []byte {
	s, d := srcIP.As4(), dstIP.As4()
	ls := ethLayers(srcMAC, dstMAC, layers.EthernetTypeARP, vlan)
	var tha [6]byte
	if op == wp.ARPOpReply {
		tha = dstMAC
	}
	ls = append(ls, &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: op, SourceHwAddress: srcMAC[:], SourceProtAddress: s[:], DstHwAddress: tha[:], DstProtAddress: d[:]})
	b := serialize(t, ls...)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}

func TestARPReply(t *testing.T) {
	h := testHostAddrs()
	for _, vlan := range []uint16{0, 42} {
		req := arpFrame(t, wp.ARPOpRequest, testPeerMAC, testPeer4, testHost4, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, vlan)
		var f wp.Frame
		f.Decode(req, wp.DecodeOptions{})
		if !h.isARPRequestFor(&f) {
			t.Fatalf("vlan %d: request for the host not recognised", vlan)
		}
		dst := make([]byte, 128)
		n := h.arpReply(dst, &f)
		want := arpFrame(t, wp.ARPOpReply, testHostMAC, testHost4, testPeer4, testPeerMAC, vlan)
		if !bytes.Equal(dst[:n], want) {
			t.Errorf("vlan %d: reply\n got %x\nwant %x", vlan, dst[:n], want)
		}
	}
	var f wp.Frame
	f.Decode(arpFrame(t, wp.ARPOpRequest, testPeerMAC, testPeer4, netip.MustParseAddr("198.18.0.9"), [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0), wp.DecodeOptions{})
	if h.isARPRequestFor(&f) {
		t.Error("request for another address recognised as for the host")
	}
	f.Decode(arpFrame(t, wp.ARPOpReply, testPeerMAC, testPeer4, testHost4, testHostMAC, 0), wp.DecodeOptions{})
	if h.isARPRequestFor(&f) {
		t.Error("an ARP reply recognised as a request")
	}
}

func nsFrame(t testing.TB, src, dst, target netip.Addr, hop uint8, code uint8, vlan uint16) []byte {
	ipv6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: hop, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, code)}
	icmp.SetNetworkLayerForChecksum(ipv6)
	var opts layers.ICMPv6Options
	if !src.IsUnspecified() {
		opts = append(opts, layers.ICMPv6Option{Type: layers.ICMPv6OptSourceAddress, Data: testPeerMAC[:]})
	}
	ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: target.AsSlice(), Options: opts}
	ls := append(ethLayers(testPeerMAC, [6]byte{0x33, 0x33, 0xff, 0, 0, 2}, layers.EthernetTypeIPv6, vlan), ipv6, icmp, ns)
	return serialize(t, ls...)
}

func naFrame(t testing.TB, dstMAC [6]byte, dst netip.Addr, flags uint8, vlan uint16) []byte {
	ipv6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255, SrcIP: testHost6.AsSlice(), DstIP: dst.AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)}
	icmp.SetNetworkLayerForChecksum(ipv6)
	na := &layers.ICMPv6NeighborAdvertisement{Flags: flags, TargetAddress: testHost6.AsSlice(),
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: testHostMAC[:]}}}
	ls := append(ethLayers(testHostMAC, dstMAC, layers.EthernetTypeIPv6, vlan), ipv6, icmp, na)
	return serialize(t, ls...)
}

func TestNSReply(t *testing.T) {
	h := testHostAddrs()
	solicited := netip.MustParseAddr("ff02::1:ff00:2")
	for _, vlan := range []uint16{0, 7} {
		var f wp.Frame
		f.Decode(nsFrame(t, testPeer6, solicited, testHost6, 255, 0, vlan), wp.DecodeOptions{})
		if got := h.checkNS(&f); got != nsValid {
			t.Fatalf("vlan %d: checkNS = %d, want valid", vlan, got)
		}
		dst := make([]byte, 256)
		n := h.naReply(dst, &f)
		want := naFrame(t, testPeerMAC, testPeer6, 0x60, vlan) // S and O
		if !bytes.Equal(dst[:n], want) {
			t.Errorf("vlan %d: NA\n got %x\nwant %x", vlan, dst[:n], want)
		}
		p := gopacket.NewPacket(dst[:n], layers.LayerTypeEthernet, gopacket.Default)
		na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
		if na == nil || !na.Solicited() || !na.Override() || na.Router() {
			t.Errorf("vlan %d: NA flags wrong: %+v", vlan, na)
		}
	}
	// DAD: the NA goes to all-nodes with only the override flag.
	var f wp.Frame
	f.Decode(nsFrame(t, netip.IPv6Unspecified(), solicited, testHost6, 255, 0, 0), wp.DecodeOptions{})
	if got := h.checkNS(&f); got != nsValid {
		t.Fatalf("DAD: checkNS = %d, want valid", got)
	}
	dst := make([]byte, 256)
	n := h.naReply(dst, &f)
	if want := naFrame(t, allNodesMAC, allNodes, 0x20, 0); !bytes.Equal(dst[:n], want) {
		t.Errorf("DAD NA\n got %x\nwant %x", dst[:n], want)
	}

	tests := []struct {
		name  string
		frame []byte
		want  nsStatus
	}{
		{"hop limit 64", nsFrame(t, testPeer6, solicited, testHost6, 64, 0, 0), nsInvalid},
		{"code 1", nsFrame(t, testPeer6, solicited, testHost6, 255, 1, 0), nsInvalid},
		{"other target", nsFrame(t, testPeer6, solicited, testPeer6, 255, 0, 0), nsNotForUs},
		{"DAD to unicast", nsFrame(t, netip.IPv6Unspecified(), testHost6, testHost6, 255, 0, 0), nsInvalid},
		{"bad checksum", func() []byte {
			b := nsFrame(t, testPeer6, solicited, testHost6, 255, 0, 0)
			b[14+40+2] ^= 0xff
			return b
		}(), nsBadChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f wp.Frame
			f.Decode(tt.frame, wp.DecodeOptions{})
			if got := h.checkNS(&f); got != tt.want {
				t.Errorf("checkNS = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestNeighRepliesAllocateNothing(t *testing.T) {
	h := testHostAddrs()
	var fa, fn wp.Frame
	fa.Decode(arpFrame(t, wp.ARPOpRequest, testPeerMAC, testPeer4, testHost4, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0), wp.DecodeOptions{})
	fn.Decode(nsFrame(t, testPeer6, netip.MustParseAddr("ff02::1:ff00:2"), testHost6, 255, 0, 0), wp.DecodeOptions{})
	dst := make([]byte, 256)
	if n := testing.AllocsPerRun(100, func() {
		if h.isARPRequestFor(&fa) {
			h.arpReply(dst, &fa)
		}
		if h.checkNS(&fn) == nsValid {
			h.naReply(dst, &fn)
		}
	}); n != 0 {
		t.Errorf("ARP/NS replies: %v allocations per run, want 0", n)
	}
}
