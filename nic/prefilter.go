package nic

import (
	"golang.org/x/net/bpf"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// prefilter compiles the D3 kernel filter: the wake-pattern program for
// patterns, which also lets through the neighbour-offload frames — ARP
// requests for the host's IPv4 addresses and neighbour solicitations for
// its IPv6 addresses (the datapath validates and answers them).
func (d *Device) prefilter(patterns []wp.Pattern) ([]bpf.RawInstruction, error) {
	return wp.CompileBPFRaw(patterns, wp.BPFOptions{
		AcceptARPFor:     d.addrs.v4,
		AcceptNSFor:      d.addrs.v6,
		KernelStripsVLAN: true,
		SnapLen:          uint32(d.caps.MaxFrame),
	})
}
