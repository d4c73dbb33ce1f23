// Package xdpgen is the in-kernel load generator of the receive
// benchmarks on veth: an XDP program that returns XDP_TX, run by
// BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (the xdp-trafficgen
// technique), so the kernel itself transmits a fixed frame out of an
// interface Repeat times in batches, without a socket, a syscall or a
// copy per frame. A userspace AF_PACKET sender (internal/pktpump) tops out
// near 0.55 Mfps on the reference machine, below what the receivers under
// test absorb; this one is not the bottleneck.
//
// On veth, a frame transmitted by XDP reaches the peer only when the peer
// runs NAPI: it has an XDP program or GRO. AttachPass attaches an
// XDP_PASS program for receivers that have none of their own.
//
// Pump sends n frames in long runs (a run costs tens of milliseconds of
// setup, so it cannot be paced in small chunks) and waits for the
// receiver's count; it gives up when the receiver stalls or a deadline
// passes: every load loop is bounded in count and time, and stops by
// itself. The veth peer's NAPI runs on the sender's CPU after each batch
// of BatchSize frames, so the kernel never outruns the veth; a receiver
// that cannot keep up shows it in its own drops, which the caller checks.
//
// Needs CAP_BPF and CAP_NET_ADMIN; Linux only.
package xdpgen
