package xdpgen

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// XDP verdicts (enum xdp_action).
const (
	xdpPass = 2
	xdpTX   = 3
)

// ErrLost is wrapped when frames sent never reached the receiver's count.
var ErrLost = errors.New("frames lost on the way")

// BatchSize is the live-frames batch: the frames the kernel builds and
// transmits before it flushes them (and the veth peer's NAPI runs).
const BatchSize = 64

// MaxChunk bounds one BPF_PROG_TEST_RUN call's Repeat in Pump. A call
// costs tens of milliseconds of setup (the live-frames page pool), so
// runs are long.
const MaxChunk = 1 << 22

// MaxFrames bounds one Pump.
const MaxFrames = 1 << 26

func load(name string, verdict int32) (*ebpf.Program, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: name, Type: ebpf.XDP, License: "Dual MIT/GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, verdict), asm.Return()},
	})
	if err != nil {
		return nil, fmt.Errorf("xdpgen: load %s: %w", name, err)
	}
	return p, nil
}

// Sender transmits a fixed frame from inside the kernel.
type Sender struct {
	prog *ebpf.Program
}

// NewSender loads the XDP_TX program.
func NewSender() (*Sender, error) {
	p, err := load("sbn_gen_tx", xdpTX)
	if err != nil {
		return nil, err
	}
	return &Sender{prog: p}, nil
}

// Close frees the program; it is idempotent.
func (s *Sender) Close() error {
	if s.prog == nil {
		return nil
	}
	err := s.prog.Close()
	s.prog = nil
	return err
}

// Send transmits frame n times out of the interface ifindex of the
// calling thread's network namespace (run it inside netlab's Lab.Do).
func (s *Sender) Send(ifindex int, frame []byte, n uint32) error {
	if n == 0 {
		return nil
	}
	if len(frame) < 14 || len(frame) > 3000 {
		return fmt.Errorf("xdpgen: frame of %d bytes: limit 14..3000", len(frame))
	}
	md := &xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)}
	if _, err := s.prog.Run(&ebpf.RunOptions{
		Data: frame, Repeat: n, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, Context: md, BatchSize: BatchSize,
	}); err != nil {
		return fmt.Errorf("xdpgen: send %d frames on %d: %w", n, ifindex, err)
	}
	return nil
}

// xdpMd is struct xdp_md, the context of a live-frames run.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// Pump sends n copies of frame out of ifindex, in runs of up to
// MaxChunk frames, and waits until done() (the receiver's count) has
// counted them all. It returns the frames per second done() saw, from
// the first frame sent to the last counted. It fails with ErrLost once
// done() has not moved for stall, and when deadline passes. The kernel
// sends a run as fast as the path takes it (the veth peer's NAPI runs on
// the sender's CPU between batches of BatchSize), so a receiver that
// keeps up with its NAPI loses nothing: the caller checks its drops.
func (s *Sender) Pump(ifindex int, frame []byte, n int, stall, deadline time.Duration, done func() uint64) (float64, error) {
	if n < 1 || n > MaxFrames {
		return 0, fmt.Errorf("xdpgen: %d frames: limit 1..%d", n, MaxFrames)
	}
	base := done()
	start := time.Now()
	end := start.Add(deadline)
	for sent := 0; sent < n; {
		k := min(MaxChunk, n-sent)
		if err := s.Send(ifindex, frame, uint32(k)); err != nil {
			return 0, err
		}
		sent += k
		if time.Now().After(end) {
			return 0, fmt.Errorf("xdpgen: deadline %v passed with %d of %d sent", deadline, sent, n)
		}
	}
	last, lastAt := done(), time.Now()
	for spins := 0; ; spins++ {
		v := done()
		now := time.Now()
		if v >= base+uint64(n) {
			return float64(n) / now.Sub(start).Seconds(), nil
		}
		if v != last {
			last, lastAt = v, now
		} else if now.Sub(lastAt) > stall {
			return 0, fmt.Errorf("xdpgen: %w: %d of %d counted, none for %v", ErrLost, v-base, n, stall)
		}
		if now.After(end) {
			return 0, fmt.Errorf("xdpgen: deadline %v passed with %d of %d counted", deadline, v-base, n)
		}
		if spins > 1000 {
			time.Sleep(50 * time.Microsecond) // polls a counter: the receiver has no event to wait on
		}
	}
}

// AttachPass attaches an XDP_PASS program in driver mode to ifindex in
// the calling thread's network namespace, so a veth runs NAPI and takes
// XDP-transmitted frames from its peer. Close the link to detach.
func AttachPass(ifindex int) (link.Link, error) {
	p, err := load("sbn_gen_pass", xdpPass)
	if err != nil {
		return nil, err
	}
	defer p.Close() // the link holds its own reference
	l, err := link.AttachXDP(link.XDPOptions{Program: p, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		return nil, fmt.Errorf("xdpgen: attach pass to %d: %w", ifindex, err)
	}
	return l, nil
}
