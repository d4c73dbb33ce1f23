// Package nic is the emulated connected-standby network adapter: a bump in
// the wire between the host's link and the network's link that forwards
// frames while the host is awake (D0) and guards it while it sleeps (D3).
//
// # Ports
//
// A Device sits between two Ports: Wire (towards the network) and Host
// (towards the host). OpenPacketPort opens an AF_PACKET port with a
// TPACKET_V3 receive ring on Linux (frames handed over in blocks, at the
// latest after 1 ms: the most frames per second), or with
// PortConfig.Immediate a TPACKET_V2 ring that hands over each frame as it
// arrives (a wake frame is seen in tens of microseconds instead of up to
// a millisecond, at about a third less D3 throughput when the link is
// saturated); nic/porttest holds an in-memory pipe for unit tests. The device owns both ports from New on and closes them
// in Close. A TPACKET_V3 port lends the device its ring rather than
// copying each frame out: the blocks of a batch go back to the kernel
// once the batch is forwarded (at most half the ring is held).
//
// # Offloads
//
// Linux links have checksum and segmentation offloads on by default, so
// a sender's TCP segments reach the device as GSO super-frames of up to
// 64 KB with partial checksums. Both AF_PACKET ports set PACKET_VNET_HDR
// (OffloadPort): every frame moves with its virtio_net_hdr (Packet.Vnet),
// and in D0 (and, from the host, while waking) the device forwards such
// frames unchanged, in batches both ways. Frames it looks into in D3 and
// while waking are made whole first: a partial checksum completed, a
// super-frame cut into its segments with full checksums (vnet.go), so a
// partial checksum is never a bad one, and a push arriving as one
// super-frame wakes and is buffered segment by segment. Learning reads a
// super-frame's sequence span from its length. A port without headers (a
// Port that is not an OffloadPort, PortConfig.NoOffloads, fault
// injection) gets whole frames, finished in software. A kernel without
// PACKET_VNET_HDR makes OpenPacketPort fail with a message naming the
// option. Counters: vnet_ports (how many ports carry headers),
// vnet_rx_gso, vnet_rx_csum_partial, vnet_sw_csum, vnet_sw_gso,
// vnet_sw_segments, vnet_dropped_bad (a header that does not match its
// frame), vnet_dropped_truncated (a super-frame longer than the read
// buffer).
//
// # Power states
//
//	        Sleep()                        ok
//	┌────┐ ─────────▶ ┌────────┐ ─────────────────▶ ┌────┐
//	│ D0 │            │ arming │                    │ D3 │
//	└────┘ ◀───────── └────────┘                    └────┘
//	  ▲      error                                     │ slot wake (data, FIN, RST,
//	  │                                                │ keep-alive timeout, books full),
//	  │ Resume(): deliver the post-wake buffer         │ wake pattern, or Wake()
//	  │           in order, then forward               ▼
//	  └──────────────────────────────────────────── ┌────────┐
//	                                                │ waking │
//	                                                └────────┘
//	any state ── Close() ──▶ closed
//
// Every transition is counted (pm_d0_to_arming, pm_arming_to_d3,
// pm_arming_to_d0, pm_d3_to_waking, pm_waking_to_d0, pm_to_closed).
//
//   - D0: every frame is forwarded both ways, in batches. Connections
//     registered with Track are learned from the segments crossing the
//     device (SND.NXT, RCV.NXT, windows, window scales, TSval/TS.Recent,
//     TTL/TOS, MACs): Learned, Learned.Snapshot.
//   - Arming: Sleep compiles the wake table (wakepattern.Compile over the
//     armed slots' connection patterns and the extra wake patterns),
//     attaches the kernel prefilter to the wire port (wakepattern's
//     classic BPF for those patterns, which also accepts ARP requests and
//     neighbour solicitations for the host's addresses; Prefilter reports
//     its level and length), and swaps the table in with atomic.Pointer.
//   - D3: nothing reaches the host, and frames from the host are dropped
//     (d3_host_tx_dropped). Per wire frame, decoded with checksum
//     verification: ARP requests and neighbour solicitations for the
//     host's addresses are answered (d3_arp_replies, d3_ns_replies); a
//     slot's segment goes to the offload engine, which absorbs it
//     (d3_rx_absorbed), answers it (d3_tx_answers), drops it (by reason:
//     d3_rx_dropped_out_of_window, _paws, _slot) or wakes; an extra
//     pattern's match wakes with reason pattern; everything else is dropped
//     by reason: d3_rx_dropped_no_match, _malformed, _bad_csum, _fragment,
//     _wrong_vlan, and the kernel's counts d3_rx_dropped_bpf (frames the
//     prefilter rejected, where the port can tell) and d3_rx_dropped_kernel
//     (ring overflow).
//   - Waking: a wake event (WakeEvent: reason, slot or pattern ID, device
//     time, wire receive time, the saved packet cut to
//     Capabilities.WakePacketSave) is sent on Wakes() and to
//     Config.OnWake; the prefilter is detached; the wake frame and every
//     later wire frame go to the bounded post-wake buffer
//     (postwake_buffered, postwake_dropped_overflow), except the frames
//     armed slots still absorb and the ARP/NS the device still answers;
//     frames from the host are forwarded (the host is thawing its
//     sockets). Resume delivers the buffer to the host in order
//     (postwake_delivered) and returns to D0.
//
// Slots stay armed until Disarm, which returns the engine's report: state,
// status, counters and the books of the stream bytes the slot sent and
// absorbed, with which the host thaws its socket byte-exact.
//
// # Goroutines and locks
//
// One reader per port, one timer loop (keep-alives, delayed frames), the
// engine's transmit queue (the engine never blocks: a full queue drops and
// counts timer_queue_dropped), and one writer per pcap. Close stops and
// waits for all of them and is idempotent. Control operations hold Device.mu;
// the offload engine is guarded by engMu; the post-wake buffer by its own
// lock, taken in that order. The per-frame path takes no lock in D0 and
// only the engine's in D3, and allocates nothing (alloc_test.go). Each
// batch of wire frames holds a read lock that Sleep takes once after
// entering D3: when Sleep returns, every frame taken in D0 has been handed
// to the host port and no later one will be.
//
// # Knobs
//
// Config: the ports; the host's MAC and addresses (at most ARPOffloads
// IPv4 and NSOffloads IPv6); Capabilities (Slots 1–64, default 8;
// WakePacketSave ≥ 128 bytes, default 1514; PostWakeFrames 1–65536,
// default 1024; ARPOffloads 1–8, default 8; NSOffloads 2–8, default 2;
// MaxFrame 1518–262144, default 9234); Patterns (wake-pattern limits,
// default wakepattern.DefaultCapabilities with the connection patterns
// clamped to Slots); Engine (the offload engine's books and answer rate
// limits); Clock (default CLOCK_BOOTTIME; a clock implementing
// AdvancingClock, such as ManualClock, drives the timer loop in tests);
// Faults (seeded loss, corruption, duplication, delay with jitter on the
// wire port, both directions, with a bounded queue: fault_* counters;
// jitter keeps frames in order, first in first out, as a real link does;
// reordering is its own fault, a frame held back behind the next
// ReorderDepth frames); WirePcap and WakePcap (nanosecond pcaps written off
// the hot path: pcap_* counters); Logger; OnWake; Batch (frames per read,
// default 64); NoPrefilter (keep every frame in userspace so every drop is
// counted by reason); Profile (a firmware profile, package profile: its
// capabilities fill the zero fields above, its behaviours go to the
// engine as offload.Firmware, Arm refuses what it cannot honour with the
// part's own error, a *profile.Error, and under most-recently-used
// admission evicts the slot armed longest ago, reported by TakeEvictions;
// profile.go, docs/profiles.md).
//
// # Counters
//
// Counters returns the device's counters, then each armed slot's
// ("slot3_keepalives_sent", "slot3_rx_absorbed", …), in a stable order and
// named the way ethtool -S names a driver's statistics; WritePrometheus
// writes them in the Prometheus text format.
package nic
