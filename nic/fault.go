package nic

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Faults configures fault injection on the wire port. It is applied to
// frames in both directions on the wire side (as the wire delivers them to
// the NIC, and as the NIC transmits them), each direction with its own
// generator seeded from Seed, so a run is reproducible for a seed and a
// frame sequence. The zero value injects nothing.
//
// The wire is faithful unless told otherwise: delay and jitter keep the
// frames in the order they came (first in, first out, as a real link
// does); reordering happens only when Reorder asks for it, and is counted
// (fault_reordered).
type Faults struct {
	// Seed seeds the PCG generators (math/rand/v2).
	Seed uint64
	// Loss is the probability that a frame is dropped.
	Loss float64
	// Corrupt is the probability that one byte of a frame is flipped.
	Corrupt float64
	// Duplicate is the probability that a frame is sent twice.
	Duplicate float64
	// Reorder is the probability that a frame is held back and sent after
	// the ReorderDepth frames that follow it (or after ReorderHold when
	// they do not come).
	Reorder float64
	// ReorderDepth is how many later frames overtake a reordered frame
	// (1–MaxReorderDepth, default 1: it swaps with the next one).
	ReorderDepth int
	// ReorderHold bounds how long a reordered frame waits for its
	// successors, on top of its delay (default 10 ms).
	ReorderHold time.Duration
	// Delay delays every frame by Delay ± Jitter (uniform, never below 0),
	// first in, first out: a frame whose draw would have it leave before
	// the frame ahead of it leaves right after that one, so jitter
	// spreads the gaps between frames but never reorders them.
	Delay  time.Duration
	Jitter time.Duration
	// QueueLen bounds the frames held for delay or reordering per direction
	// (default 256); a frame that finds the queue full is dropped and
	// counted as fault_queue_full.
	QueueLen int
}

// Fault limits and defaults.
const (
	defaultFaultQueue  = 256
	maxFaultQueue      = 1 << 16
	defaultReorderHold = 10 * time.Millisecond
	// MaxReorderDepth is the most frames that may overtake a reordered one.
	MaxReorderDepth = 64
)

// Enabled reports whether any fault is configured.
func (f Faults) Enabled() bool {
	return f.Loss > 0 || f.Corrupt > 0 || f.Duplicate > 0 || f.Reorder > 0 || f.Delay > 0 || f.Jitter > 0
}

func (f Faults) normalize() (Faults, error) {
	prob := func(name string, p float64) error {
		if !(p >= 0 && p <= 1) {
			return limitError("faults "+name, p, "must be a probability in [0, 1]")
		}
		return nil
	}
	for _, c := range []struct {
		name string
		p    float64
	}{{"loss", f.Loss}, {"corrupt", f.Corrupt}, {"duplicate", f.Duplicate}, {"reorder", f.Reorder}} {
		if err := prob(c.name, c.p); err != nil {
			return f, err
		}
	}
	if f.Delay < 0 || f.Jitter < 0 || f.ReorderHold < 0 {
		return f, limitError("faults delay/jitter/reorder hold", fmt.Sprint(f.Delay, "/", f.Jitter, "/", f.ReorderHold), "must not be negative")
	}
	if f.QueueLen == 0 {
		f.QueueLen = defaultFaultQueue
	}
	if f.QueueLen < 1 || f.QueueLen > maxFaultQueue {
		return f, limitError("faults queue length", f.QueueLen, fmt.Sprintf("must be 1–%d", maxFaultQueue))
	}
	if f.ReorderDepth == 0 {
		f.ReorderDepth = 1
	}
	if f.ReorderDepth < 1 || f.ReorderDepth > MaxReorderDepth {
		return f, limitError("faults reorder depth", f.ReorderDepth, fmt.Sprintf("must be 1–%d frames", MaxReorderDepth))
	}
	if f.ReorderHold == 0 {
		f.ReorderHold = defaultReorderHold
	}
	return f, nil
}

// heldFrame is a frame waiting in a fault queue.
type heldFrame struct {
	// due is when the frame leaves: a delayed frame at the latest of its
	// draw and the frame ahead of it; a reordered frame when its hold
	// runs out, or as soon as behind reaches 0.
	due time.Duration
	// reordered frames wait for behind more frames, arrived after them,
	// to leave first.
	reordered bool
	behind    int
	buf       []byte
}

// faultDir injects faults into one direction. Frames leave through send,
// which is called with mu held (send must not re-enter this faultDir).
//
// The queue q is in arrival order. Frames that are not reordered leave
// from it in that order (their due times never decrease: lastDue); a
// reordered frame stays in place until behind later frames have left or
// its hold ends.
type faultDir struct {
	mu      sync.Mutex
	cfg     Faults
	rng     *rand.Rand
	q       []heldFrame // len == number held; cap == QueueLen
	free    [][]byte    // recycled buffers
	lastDue time.Duration
	cnt     *counters
	send    func([]byte)
}

func newFaultDir(cfg Faults, stream uint64, cnt *counters, send func([]byte)) *faultDir {
	return &faultDir{
		cfg:  cfg,
		rng:  rand.New(rand.NewPCG(cfg.Seed, stream)),
		q:    make([]heldFrame, 0, cfg.QueueLen),
		free: make([][]byte, 0, cfg.QueueLen),
		cnt:  cnt,
		send: send,
	}
}

// apply runs one frame through the faults at time now. The frame may be
// modified in place (corruption); it is copied when held.
func (f *faultDir) apply(frame []byte, now time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg.Loss > 0 && f.rng.Float64() < f.cfg.Loss {
		f.cnt.inc(cFaultLost)
		return
	}
	if f.cfg.Corrupt > 0 && len(frame) > 0 && f.rng.Float64() < f.cfg.Corrupt {
		frame[f.rng.IntN(len(frame))] ^= byte(1 + f.rng.IntN(255))
		f.cnt.inc(cFaultCorrupted)
	}
	copies := 1
	if f.cfg.Duplicate > 0 && f.rng.Float64() < f.cfg.Duplicate {
		copies = 2
		f.cnt.inc(cFaultDuplicated)
	}
	delayed := f.cfg.Delay > 0 || f.cfg.Jitter > 0
	d := f.cfg.Delay
	if f.cfg.Jitter > 0 {
		d += time.Duration(f.rng.Int64N(int64(2*f.cfg.Jitter)+1)) - f.cfg.Jitter
	}
	d = max(d, 0)
	if f.cfg.Reorder > 0 && f.rng.Float64() < f.cfg.Reorder {
		f.cnt.inc(cFaultReordered)
		for range copies {
			f.hold(frame, now+d+f.cfg.ReorderHold, true)
		}
		f.releaseLocked(now)
		return
	}
	if delayed {
		f.cnt.inc(cFaultDelayed)
		due := max(now+d, f.lastDue) // first in, first out
		for range copies {
			if f.hold(frame, due, false) {
				f.lastDue = due
			}
		}
		f.releaseLocked(now)
		return
	}
	for range copies {
		f.sendLocked(frame, len(f.q))
	}
	f.releaseLocked(now)
}

// hold queues a copy of frame; it reports false (and counts) when the
// queue is full.
func (f *faultDir) hold(frame []byte, due time.Duration, reordered bool) bool {
	if len(f.q) == cap(f.q) {
		f.cnt.inc(cFaultQueueFull)
		return false
	}
	var buf []byte
	if n := len(f.free); n > 0 {
		buf = f.free[n-1]
		f.free = f.free[:n-1]
	}
	if cap(buf) < len(frame) {
		buf = make([]byte, 0, max(len(frame), 2048))
	}
	buf = append(buf[:0], frame...)
	h := heldFrame{due: due, reordered: reordered, buf: buf}
	if reordered {
		h.behind = f.cfg.ReorderDepth
	}
	f.q = append(f.q, h)
	return true
}

// sendLocked sends a frame that arrived after the first at held frames:
// each reordered frame among them has one successor fewer to wait for.
func (f *faultDir) sendLocked(frame []byte, at int) {
	f.send(frame)
	for i := range at {
		if f.q[i].reordered {
			f.q[i].behind--
		}
	}
}

// release sends every held frame that is due at now.
func (f *faultDir) release(now time.Duration) {
	f.mu.Lock()
	f.releaseLocked(now)
	f.mu.Unlock()
}

// releaseLocked sends the held frames that may leave at now, in queue
// order: a delayed frame once due and once every delayed frame ahead of
// it has left; a reordered frame once its successors have overtaken it
// or its hold ran out. A frame that leaves may free a reordered frame
// ahead of it, so the scan starts again after each one.
func (f *faultDir) releaseLocked(now time.Duration) {
	for {
		sent := false
		for i := 0; i < len(f.q); i++ {
			h := &f.q[i]
			if h.reordered {
				if h.behind > 0 && h.due > now {
					continue
				}
			} else if h.due > now {
				// Delayed frames behind this one are not due either
				// (FIFO); reordered ones behind it may be.
				continue
			} else if f.delayedAhead(i) {
				continue
			}
			buf := h.buf
			f.q = append(f.q[:i], f.q[i+1:]...)
			f.sendLocked(buf, i)
			f.free = append(f.free, buf)
			sent = true
			break
		}
		if !sent {
			return
		}
	}
}

// delayedAhead reports whether a delayed (not reordered) frame is held
// ahead of index i.
func (f *faultDir) delayedAhead(i int) bool {
	for j := range i {
		if !f.q[j].reordered {
			return true
		}
	}
	return false
}

// next returns the earliest due time of a held frame.
func (f *faultDir) next() (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var due time.Duration
	ok := false
	for i := range f.q {
		if !ok || f.q[i].due < due {
			due, ok = f.q[i].due, true
		}
	}
	return due, ok
}
