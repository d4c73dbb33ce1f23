// Package wakepattern decides, for one Ethernet frame, which wake pattern or
// hardware slot it belongs to.
//
// It owns the frame views (Ethernet, 802.1Q/QinQ, ARP, IPv4, IPv6 with its
// extension chain, TCP with its options, ICMPv6 neighbour solicitation), the
// single validating decoder that never panics (Frame.Decode), the pattern
// kinds a device accepts (TCP connection, TCP SYN to a port, bitmap, magic
// packet), the limits a device advertises (Capabilities), the compiled
// immutable Matcher, and the compilation of a pattern set to a classic-BPF
// kernel prefilter that never rejects a frame the Matcher accepts.
//
// It does no I/O, starts no goroutines and never reads the clock; the
// decode and match paths allocate nothing.
package wakepattern
