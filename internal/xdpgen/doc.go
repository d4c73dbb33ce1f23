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
// Pump sends n frames in bursts, one BPF_PROG_TEST_RUN call each, and
// waits after each until the receiver counted it; the rate is the frames
// counted over the time from a burst's first count to its last (a run
// spends tens of milliseconds setting up, when nothing flows). The veth
// peer's NAPI runs on the sender's CPU after each batch of BatchSize
// frames, so the kernel never outruns the veth itself; a receiver that
// buffers (a TPACKET ring) keeps a burst that fits its buffer whole, and
// the caller checks its drops. Pump gives up when the receiver stalls or
// a deadline passes: every load loop is bounded in count and time, and
// stops by itself.
//
// Needs CAP_BPF and CAP_NET_ADMIN; Linux only.
package xdpgen
