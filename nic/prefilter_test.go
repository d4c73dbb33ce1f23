package nic

import (
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// TestPrefilterNeighbours: the D3 kernel filter lets through the
// neighbour-offload frames for the host's addresses and no others.
func TestPrefilterNeighbours(t *testing.T) {
	conn := wp.TCPConn{Local: netip.MustParseAddrPort("198.18.0.2:40000"), Remote: netip.MustParseAddrPort("198.18.0.1:443")}
	pats := []wp.Pattern{{ID: slotPatternID | 1, Priority: 255, Kind: wp.KindTCPConn, Conn: conn}}
	for _, v6 := range []bool{false, true} {
		d := &Device{caps: Capabilities{MaxFrame: 2000}, addrs: hostAddrs{mac: testHostMAC, v4: []netip.Addr{testHost4, netip.MustParseAddr("198.18.0.3")}}}
		if v6 {
			d.addrs.v6 = []netip.Addr{testHost6}
		}
		raw, info, err := d.prefilter(pats)
		if err != nil {
			t.Fatal(err)
		}
		if info.Level != wp.BPFExact || info.Instructions != len(raw) {
			t.Errorf("info %+v for %d instructions, want level exact", info, len(raw))
		}
		ins, ok := bpf.Disassemble(raw)
		if !ok {
			t.Fatal("prefilter does not disassemble")
		}
		vm, err := bpf.NewVM(ins)
		if err != nil {
			t.Fatal(err)
		}
		solicited := netip.MustParseAddr("ff02::1:ff00:2")
		tests := []struct {
			name  string
			frame []byte
			want  bool
		}{
			{"ARP for the host", arpFrame(t, wp.ARPOpRequest, testPeerMAC, testPeer4, testHost4, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0), true},
			{"ARP for the second address", arpFrame(t, wp.ARPOpRequest, testPeerMAC, testPeer4, netip.MustParseAddr("198.18.0.3"), [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0), true},
			{"ARP for another host", arpFrame(t, wp.ARPOpRequest, testPeerMAC, testPeer4, netip.MustParseAddr("198.18.0.9"), [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0), false},
			{"NS", nsFrame(t, testPeer6, solicited, testHost6, 255, 0, 0), v6},
			{"NS for another target", nsFrame(t, testPeer6, solicited, netip.MustParseAddr("2001:2::99"), 255, 0, 0), false},
		}
		for _, tt := range tests {
			n, err := vm.Run(tt.frame)
			if err != nil {
				t.Fatal(err)
			}
			if got := n > 0; got != tt.want {
				t.Errorf("v6 %v, %s: accepted %v (ret %d), want %v", v6, tt.name, got, n, tt.want)
			}
		}
	}
}
