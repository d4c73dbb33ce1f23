// Package xdp generates, loads and drives the D3 fast path of the wire
// port: an XDP program built in Go with cilium/ebpf's asm package (no
// clang, no object file) that runs in the driver before any socket sees
// the frame.
//
// The program is a superset filter of the wakepattern Matcher plus an
// exact absorb of the offload engine's commonest verdict:
//
//   - XDP_DROP, counted as Absorbed (and in the slot's record), exactly
//     the keep-alive reply of an armed slot that carries no stream bytes:
//     untagged, IPv4 without options or IPv6 straight to TCP, ACK set
//     and no SYN, FIN or RST, no payload, a TCP header of 20 bytes or of
//     32 with NOP NOP TS, SEQ = the slot's RCV.NXT, ACK = its SND.NXT, a
//     TSval not older than TS.Recent (PAWS), a good IPv4 header checksum
//     and TCP checksum. The engine absorbs exactly these (pureACK); the
//     program counts them as replies or as ACKs the way the engine does
//     (Slot.Reply), and moves TS.Recent to the reply's TSval.
//   - XDP_DROP, counted by Reason, a frame no pattern can match: an
//     untagged frame neither IP nor ARP, an ARP frame that is not a
//     request for one of the host's addresses, an IP packet neither TCP
//     nor a neighbour solicitation, a fragment, a TCP segment of no
//     connection pattern (unless a SYN pattern could take it). With a
//     bitmap or magic pattern in the set, which look at raw bytes,
//     nothing is dropped but what is absorbed.
//   - XDP_PASS everything else: wakes, ARP requests and neighbour
//     solicitations, data, RST, FIN, SYN, replies with options it does
//     not parse, IP options and IPv6 extension headers, bad checksums
//     (on veth a partial checksum looks bad: those pass and the
//     userspace datapath finishes them), VLAN-tagged frames, anything
//     short.
//
// TestIntegrationXDPSuperset proves both directions through
// BPF_PROG_TEST_RUN on generated frames: a frame dropped by reason is one
// the Matcher rejects and no neighbour frame for the host; a frame
// absorbed is one the engine absorbs as the exact reply (and counts the
// same way); and every canonical exact reply the engine absorbs is
// absorbed.
//
// # VLANs
//
// The program compares no VLAN, as the classic-BPF prefilter with
// KernelStripsVLAN does: a tagged frame passes, and a kernel that moved
// the tag into metadata shows the frame untagged. So a slot on a VLAN
// other than 0, or a 4-tuple that two patterns share on different
// VLANs, never absorbs in XDP (Arm reports false) and its frames pass.
// Left open: a frame whose nonzero tag the kernel stripped, carrying an
// untagged slot's exact reply (its 4-tuple, seq, ack and checksums), is
// absorbed where the Matcher would have dropped it as on the wrong VLAN.
//
// # Maps
//
//   - conns (hash, one bpf() update per pattern at New and per Arm or
//     Disarm): the wire 4-tuple and family → the slot index (0: a pattern
//     without an absorbing slot, which passes).
//   - slots (array, BPF_F_MMAPABLE): per slot index, the expected seq and
//     ack, TS.Recent, flags and counters (replies, ACKs, frames passed).
//     Update (after the engine sends), Pause (on a wake), SlotCounters and
//     TSRecent are loads and stores in the mapping: no syscall, no
//     allocation.
//   - globals (array of one, BPF_F_MMAPABLE): a counter per Reason (Count).
//
// Loading needs CAP_BPF (and CAP_PERFMON is not needed: no pointer leaks);
// attaching needs CAP_NET_ADMIN. Once loaded and attached, arming needs
// only the conns update (the map fd is kept), so a daemon that drops its
// privileges keeps the program's fds open.
//
// # Life
//
//	New → (Arm | Update | Pause | Disarm)* ; Attach ↔ Detach ; Close
//
// Attach uses a bpf_link in driver mode (a program goes when its link is
// closed, or when the process dies); an interface without native XDP
// fails with ErrUnsupported, and so does a kernel or a process that
// cannot load the program: the caller falls back to the classic-BPF
// socket filter. Close detaches and frees everything; it is idempotent.
//
// # In nic
//
// nic uses the package with Config.XDP (off by default; the environment
// variable STANDBYNIC_XDP=on|off overrides it) — see nic/xdppath.go: the
// program is built from d3Table.prefilterPatterns and the host's IPv4
// addresses whenever the classic-BPF prefilter is attached (that filter
// stays: the fallback when this package returns ErrUnsupported, and a
// superset behind XDP); each live slot is armed from
// offload.Engine.Expected and attached to the wire port in its socket's
// network namespace; a wake, Resume and Close detach it; before every
// engine timer, in Counters, SlotState and Disarm the new SlotCounters go
// to the engine (offload.Engine.AbsorbedElsewhere: replies before a
// retry, TS.Recent back) and into the device's and slot's counters
// (d3_rx_absorbed, slot<N>_rx_absorbed, …; d3_xdp_absorbed says how many
// the kernel took), the Reasons into d3_rx_dropped_bpf; Update follows
// every Fire and Receive; a slot the engine no longer runs is paused.
// Device.XDP, the control API's power status (prefilter.path) and the
// d3_xdp_attached gauge report the path in use.
//
// On veth a peer kernel's segments carry partial checksums, so the
// program passes them all (they are absorbed in userspace as before):
// XDP absorbs on veth only with the peer's TX checksum offload off.
package xdp
