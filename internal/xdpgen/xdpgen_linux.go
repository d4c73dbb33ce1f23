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
// costs tens of milliseconds of setup (the live-frames page pool) on the
// reference machine.
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

// Pump sends n copies of frame out of ifindex in bursts of up to burst
// frames (1..MaxChunk, within what the receiver buffers), each one
// BPF_PROG_TEST_RUN call, and waits after each until done() (the
// receiver's count) has counted it. It returns the receiver's rate:
// the frames counted over the time they took to be counted, from the
// first count of a burst to its last (so the tens of milliseconds each
// run spends setting up, when nothing flows, are not the receiver's).
// It fails with ErrLost once done() has not moved for stall, and when
// deadline passes.
func (s *Sender) Pump(ifindex int, frame []byte, n, burst int, stall, deadline time.Duration, done func() uint64) (float64, error) {
	if n < 1 || n > MaxFrames {
		return 0, fmt.Errorf("xdpgen: %d frames: limit 1..%d", n, MaxFrames)
	}
	if burst < 1 || burst > MaxChunk {
		return 0, fmt.Errorf("xdpgen: burst %d: limit 1..%d", burst, MaxChunk)
	}
	end := time.Now().Add(deadline)
	var frames uint64
	var active time.Duration
	for sent := 0; sent < n; {
		k := min(burst, n-sent)
		f, d, err := s.burst(ifindex, frame, k, stall, end, done)
		if err != nil {
			return 0, fmt.Errorf("xdpgen: %d of %d sent: %w", sent, n, err)
		}
		frames, active = frames+f, active+d
		sent += k
	}
	if active <= 0 {
		return 0, fmt.Errorf("xdpgen: %d frames counted in no measurable time", frames)
	}
	return float64(frames) / active.Seconds(), nil
}

// burst sends k frames and watches done() from another goroutine while
// the kernel sends; it returns the frames counted and the time from the
// last poll that saw none to the first that saw all.
func (s *Sender) burst(ifindex int, frame []byte, k int, stall time.Duration, end time.Time, done func() uint64) (uint64, time.Duration, error) {
	type seen struct {
		frames uint64
		d      time.Duration
		err    error
	}
	base := done()
	stop := make(chan struct{})
	res := make(chan seen, 1)
	go func() { // owned by burst: it ends when all are counted, or on stall, deadline or stop
		// idle: the last poll that saw nothing counted yet; the burst's
		// time runs from it (at most one poll early) to the poll that
		// saw all counted.
		var first, idle time.Time
		last, lastAt := base, time.Now()
		idle = lastAt
		for {
			v, now := done(), time.Now()
			if v == base {
				idle = now
			} else if first.IsZero() {
				first = now
			}
			if v >= base+uint64(k) {
				res <- seen{frames: v - base, d: now.Sub(idle)}
				return
			}
			select {
			case <-stop:
				res <- seen{err: errors.New("send failed")}
				return
			default:
			}
			if v != last {
				last, lastAt = v, now
			} else if now.Sub(lastAt) > stall+deadlineSlack(first) {
				res <- seen{err: fmt.Errorf("%w: %d of %d counted, none for %v", ErrLost, v-base, k, stall)}
				return
			}
			if now.After(end) {
				res <- seen{err: fmt.Errorf("deadline passed with %d of %d counted", v-base, k)}
				return
			}
			time.Sleep(20 * time.Microsecond) // polls a counter: the receiver has no event to wait on
		}
	}()
	if err := s.Send(ifindex, frame, uint32(k)); err != nil {
		close(stop)
		<-res
		return 0, 0, err
	}
	r := <-res
	return r.frames, r.d, r.err
}

// deadlineSlack is the run's setup time, allowed before the first frame
// counts.
func deadlineSlack(first time.Time) time.Duration {
	if first.IsZero() {
		return time.Second
	}
	return 0
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
