package wakepattern

import (
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

type bpfScratchCase struct {
	name     string
	patterns []Pattern
	opt      BPFOptions
}

// bpfScratchCases are pattern sets and options covering every block the
// compiler emits; the kernel test attaches each of them for real.
func bpfScratchCases() []bpfScratchCase {
	local4 := netip.MustParseAddrPort("198.18.0.2:40000")
	remote4 := netip.MustParseAddrPort("198.18.0.1:443")
	local6 := netip.MustParseAddrPort("[2001:2::2]:40000")
	remote6 := netip.MustParseAddrPort("[2001:2::1]:443")
	conn4 := Pattern{ID: 1, Kind: KindTCPConn, Conn: TCPConn{Local: local4, Remote: remote4}}
	conn6 := Pattern{ID: 2, Kind: KindTCPConn, Conn: TCPConn{Local: local6, Remote: remote6, VLAN: 7}}
	syn := Pattern{ID: 3, Kind: KindTCPSYN, SYN: TCPSYN{Local: netip.AddrPortFrom(netip.IPv4Unspecified(), 22)}}
	bitmap := Pattern{ID: 4, Kind: KindBitmap, Bitmap: Bitmap{Offset: 12, Bytes: []byte{0x08, 0x06, 0, 1}, Mask: []byte{0x0f}}}
	magic := Pattern{ID: 5, Kind: KindMagic, Magic: Magic{MAC: [6]byte{2, 0, 0, 0, 0, 2}}}
	arp := []netip.Addr{local4.Addr()}
	ns := []netip.Addr{local6.Addr()}
	all := []Pattern{conn4, conn6, syn, bitmap, magic}
	return []bpfScratchCase{
		{"arp only", nil, BPFOptions{AcceptARPFor: arp}},
		{"ns only", nil, BPFOptions{AcceptNSFor: ns}},
		{"conn4 + arp", []Pattern{conn4}, BPFOptions{AcceptARPFor: arp}},
		{"conn6 + ns", []Pattern{conn6}, BPFOptions{AcceptNSFor: ns}},
		{"conn4 + arp + ns, stripped vlan", []Pattern{conn4}, BPFOptions{AcceptARPFor: arp, AcceptNSFor: ns, KernelStripsVLAN: true}},
		{"every kind", all, BPFOptions{}},
		{"every kind + arp + ns", all, BPFOptions{AcceptARPFor: arp, AcceptNSFor: ns}},
		{"every kind + arp + ns, stripped vlan", all, BPFOptions{AcceptARPFor: arp, AcceptNSFor: ns, KernelStripsVLAN: true}},
		{"syn + bitmap", []Pattern{syn, bitmap}, BPFOptions{KernelStripsVLAN: true}},
	}
}

// TestBPFUnsafeScratch checks the emulation of the kernel's scratch-memory
// check on hand-made programs.
func TestBPFUnsafeScratch(t *testing.T) {
	tests := []struct {
		name string
		prog []bpf.Instruction
		want uint16
	}{
		{"store then load", []bpf.Instruction{
			bpf.LoadConstant{Dst: bpf.RegA, Val: 1}, bpf.StoreScratch{Src: bpf.RegA, N: 3},
			bpf.LoadScratch{Dst: bpf.RegX, N: 3}, bpf.RetA{},
		}, 0},
		{"load never stored", []bpf.Instruction{bpf.LoadScratch{Dst: bpf.RegA, N: 5}, bpf.RetA{}}, 1 << 5},
		{"stored on one branch only", []bpf.Instruction{
			bpf.LoadAbsolute{Off: 12, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipFalse: 1},
			bpf.StoreScratch{Src: bpf.RegA, N: 9},
			bpf.LoadScratch{Dst: bpf.RegA, N: 9}, bpf.RetA{},
		}, 1 << 9},
		{"stored on both branches", []bpf.Instruction{
			bpf.LoadAbsolute{Off: 12, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipFalse: 2},
			bpf.StoreScratch{Src: bpf.RegA, N: 9},
			bpf.Jump{Skip: 1},
			bpf.StoreScratch{Src: bpf.RegX, N: 9},
			bpf.LoadScratch{Dst: bpf.RegA, N: 9}, bpf.RetA{},
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := bpf.Assemble(tt.prog)
			if err != nil {
				t.Fatal(err)
			}
			if got := bpfUnsafeScratch(raw); got != tt.want {
				t.Errorf("bpfUnsafeScratch = %#04x, want %#04x", got, tt.want)
			}
		})
	}
}

// TestBPFScratchInitialised: every program the compiler returns passes
// the kernel's scratch check, and zeroing cells changes no verdict.
func TestBPFScratchInitialised(t *testing.T) {
	for _, c := range bpfScratchCases() {
		t.Run(c.name, func(t *testing.T) {
			raw, err := CompileBPFRaw(c.patterns, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			if u := bpfUnsafeScratch(raw); u != 0 {
				t.Errorf("cells %#04x loaded before any store", u)
			}
		})
	}
}
