// Package bench is the side-by-side harness behind `standbynic bench`:
// bounded scenarios that measure standbynic beside what a user would use
// instead, on the same machine in the same run, and a report folder
// (report.md with tables, report.json with every sample, SVG plots).
//
// # Scenarios (IDs for Config.Only)
//
//	classify     time per frame against the number of connection patterns:
//	             wakepattern.Matcher vs gopacket NewPacket + map, gopacket
//	             DecodingLayerParser + map, the compiled classic BPF in the
//	             x/net/bpf VM, and the same program attached in the kernel
//	             to an AF_PACKET socket on a veth (plot)
//	rx           frames/s the device classifies in D3 on a veth with zero
//	             kernel drops vs a plain TPACKET_V3 loop and a recvfrom loop
//	forward      frames/s and TCP throughput (iperf3, Debian package
//	             iperf3) through the device in D0 vs a Linux bridge joining
//	             the same veths, both with the kernel's default offloads,
//	             device and bridge rounds alternating within each run
//	keepalive    offload engine at 10^3–10^6 slots: CPU per keep-alive,
//	             send lateness p50/p99, memory per slot, vs the kernel's
//	             TCP keep-alive on as many loopback sockets as the fd limit
//	             allows (plots)
//	wakelatency  CDF of send → wake event and kernel rx → wake event vs a
//	             blocked reader on the same veth (plot)
//	hostwakes    slotmgr simulation on a fake clock: host wakes per hour and
//	             energy for 10–1000 channels, 0/1/4/8/16 hardware slots,
//	             coalescing on and off (plots)
//
// # Rules
//
// Every row is the median of at least MinRuns runs and carries the ratio
// against a baseline measured in the same run. Scenarios run one at a
// time; each is bounded in work (frame counts, slot counts) and in time
// (a share of FullBudget, or of QuickBudget with Config.Quick). Traffic
// stays inside network namespaces the harness creates (internal/netlab,
// 198.18.0.0/15) and removes; the kernel keep-alive baseline uses
// loopback connections inside such a namespace. Scenarios that need
// privileges record what they could not measure in Scenario.Skipped.
// Nothing here asserts speed: tests check that reports are well formed.
//
// # Output
//
//	Report ──Write(dir)──> report.md, report.json, <plot>.svg
//
// The SVGs are written by this package (Plot.WriteSVG): a <title>,
// labelled axes with units, a legend, logarithmic axes where the data
// spans decades.
package bench
