package nic

import (
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// The kernel prefilter attached to the wire port in D3 is the wake-pattern
// program (wakepattern.CompileBPF) behind a short prefix that lets the
// neighbour-offload frames through: ARP requests for the host's IPv4
// addresses and ICMPv6 neighbour solicitations (the datapath validates
// them and checks the target). The device keeps its own prefix rather than
// BPFOptions.AcceptARPFor/AcceptNSFor so that neighbour solicitations for
// any target reach the datapath and are counted there (an early version
// also worked around programs the kernel refused for reading scratch
// memory before storing it; wakepattern now zeroes such cells itself).

// Offsets in the frame as the kernel shows it to the filter (outer VLAN
// tag removed).
const (
	bpfEtherType   = 12
	bpfARPTargetIP = 14 + 24
	bpfIPv6Next    = 14 + 6
	bpfICMPv6Type  = 14 + 40
)

// neighbourPrefix returns the prefix program. Layout:
//
//	0      ldh [12]
//	1      jeq #ARP, 2, v6
//	2      ld [38]                    (ARP target protocol address)
//	3..    jeq #addr_i, accept        (one per IPv4 address)
//	       ja pattern
//	v6     jneq #IPv6, pattern        (A still holds the EtherType)
//	       ldb [20]; jneq #58, pattern
//	       ldb [54]; jneq #135, pattern
//	accept ret #snap
//	pattern: the wake-pattern program
//
// Without IPv6 addresses the v6 block is a single "ja pattern".
func neighbourPrefix(v4 []netip.Addr, v6 bool, snap uint32) []bpf.Instruction {
	arpLen := 1 + len(v4) + 1
	v6Len := 1
	if v6 {
		v6Len = 5
	}
	accept := 2 + arpLen + v6Len
	pattern := accept + 1
	skipTo := func(from, to int) uint8 { return uint8(to - from - 1) }
	p := make([]bpf.Instruction, 0, pattern)
	p = append(p, bpf.LoadAbsolute{Off: bpfEtherType, Size: 2})
	p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(wp.EtherTypeARP), SkipFalse: uint8(arpLen)})
	p = append(p, bpf.LoadAbsolute{Off: bpfARPTargetIP, Size: 4})
	for _, a := range v4 {
		b := a.As4()
		p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]),
			SkipTrue: skipTo(len(p), accept)})
	}
	p = append(p, bpf.Jump{Skip: uint32(skipTo(len(p), pattern))})
	if v6 {
		p = append(p, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(wp.EtherTypeIPv6), SkipTrue: skipTo(len(p), pattern)})
		p = append(p, bpf.LoadAbsolute{Off: bpfIPv6Next, Size: 1})
		p = append(p, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(wp.ProtoICMPv6), SkipTrue: skipTo(len(p), pattern)})
		p = append(p, bpf.LoadAbsolute{Off: bpfICMPv6Type, Size: 1})
		p = append(p, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: wp.ICMPv6TypeNeighborSolicit, SkipTrue: skipTo(len(p), pattern)})
	} else {
		p = append(p, bpf.Jump{Skip: uint32(skipTo(len(p), pattern))})
	}
	p = append(p, bpf.RetConstant{Val: snap})
	return p
}

// prefilter compiles the D3 kernel filter for patterns.
func (d *Device) prefilter(patterns []wp.Pattern) ([]bpf.RawInstruction, error) {
	snap := uint32(d.caps.MaxFrame)
	prefix := neighbourPrefix(d.addrs.v4, len(d.addrs.v6) > 0, snap)
	body, err := wp.CompileBPF(patterns, wp.BPFOptions{
		KernelStripsVLAN: true,
		SnapLen:          snap,
		MaxInstructions:  wp.BPFMaxInstructions - len(prefix),
	})
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(append(prefix, body...))
	if err != nil {
		return nil, fmt.Errorf("assemble prefilter: %w", err)
	}
	return raw, nil
}
