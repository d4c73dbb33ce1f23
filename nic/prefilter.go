package nic

import (
	"golang.org/x/net/bpf"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// PrefilterInfo describes the kernel prefilter attached to the wire port
// in D3.
type PrefilterInfo struct {
	// Level is how precisely the program filters connection patterns
	// (wakepattern.BPFExact unless the set had to degrade to fit).
	Level wp.BPFLevel
	// Instructions is the program's length.
	Instructions int
}

// Prefilter returns the prefilter attached to the wire port, and false
// when none is (in D0 and after a wake, or with Config.NoPrefilter).
func (d *Device) Prefilter() (PrefilterInfo, bool) {
	if p := d.filter.Load(); p != nil {
		return *p, true
	}
	return PrefilterInfo{}, false
}

// prefilter compiles the D3 kernel filter: the wake-pattern program for
// patterns, which also lets through the neighbour-offload frames — ARP
// requests for the host's IPv4 addresses and neighbour solicitations for
// its IPv6 addresses (the datapath validates and answers them).
func (d *Device) prefilter(patterns []wp.Pattern) ([]bpf.RawInstruction, PrefilterInfo, error) {
	p, err := wp.BuildBPF(patterns, wp.BPFOptions{
		AcceptARPFor:     d.addrs.v4,
		AcceptNSFor:      d.addrs.v6,
		KernelStripsVLAN: true,
		SnapLen:          uint32(d.readLen(d.wire)), // a super-frame is not cut
	})
	if err != nil {
		return nil, PrefilterInfo{}, err
	}
	raw, err := p.Assemble()
	if err != nil {
		return nil, PrefilterInfo{}, err
	}
	return raw, PrefilterInfo{Level: p.Level, Instructions: len(raw)}, nil
}
