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
	// the next one (or after ReorderHold when no next frame comes).
	Reorder float64
	// ReorderHold bounds how long a reordered frame waits for a successor
	// (default 10 ms).
	ReorderHold time.Duration
	// Delay delays every frame by Delay ± Jitter (uniform, never below 0).
	Delay  time.Duration
	Jitter time.Duration
	// QueueLen bounds the frames held for delay or reordering per direction
	// (default 256); a frame that finds the queue full is dropped and
	// counted as fault_queue_full.
	QueueLen int
}

const (
	defaultFaultQueue  = 256
	maxFaultQueue      = 1 << 16
	defaultReorderHold = 10 * time.Millisecond
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
	if f.ReorderHold == 0 {
		f.ReorderHold = defaultReorderHold
	}
	return f, nil
}

// heldFrame is a frame waiting in a fault queue.
type heldFrame struct {
	due       time.Duration
	seq       uint64
	afterNext bool // reordered: release after the next frame goes out
	buf       []byte
}

// faultDir injects faults into one direction. Frames leave through send,
// which is called with mu held (send must not re-enter this faultDir).
type faultDir struct {
	mu   sync.Mutex
	cfg  Faults
	rng  *rand.Rand
	q    []heldFrame // len == number held; cap == QueueLen
	free [][]byte    // recycled buffers
	seq  uint64
	cnt  *counters
	send func([]byte)
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
	if f.cfg.Reorder > 0 && f.rng.Float64() < f.cfg.Reorder {
		f.cnt.inc(cFaultReordered)
		for range copies {
			f.hold(frame, now+f.cfg.ReorderHold, true)
		}
		return
	}
	if f.cfg.Delay > 0 || f.cfg.Jitter > 0 {
		d := f.cfg.Delay
		if f.cfg.Jitter > 0 {
			d += time.Duration(f.rng.Int64N(int64(2*f.cfg.Jitter)+1)) - f.cfg.Jitter
		}
		d = max(d, 0)
		f.cnt.inc(cFaultDelayed)
		for range copies {
			f.hold(frame, now+d, false)
		}
		f.releaseLocked(now, true)
		return
	}
	for range copies {
		f.send(frame)
	}
	f.releaseLocked(now, true)
}

func (f *faultDir) hold(frame []byte, due time.Duration, afterNext bool) {
	if len(f.q) == cap(f.q) {
		f.cnt.inc(cFaultQueueFull)
		return
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
	f.seq++
	f.q = append(f.q, heldFrame{due: due, seq: f.seq, afterNext: afterNext, buf: buf})
}

// release sends every held frame that is due at now.
func (f *faultDir) release(now time.Duration) {
	f.mu.Lock()
	f.releaseLocked(now, false)
	f.mu.Unlock()
}

// releaseLocked sends the held frames that are due, earliest first (ties in
// arrival order); with sentNext, reordered frames are due as well.
func (f *faultDir) releaseLocked(now time.Duration, sentNext bool) {
	for {
		best := -1
		for i := range f.q {
			h := &f.q[i]
			if h.due > now && !(sentNext && h.afterNext) {
				continue
			}
			if best < 0 || h.due < f.q[best].due || (h.due == f.q[best].due && h.seq < f.q[best].seq) {
				best = i
			}
		}
		if best < 0 {
			return
		}
		h := f.q[best]
		f.q = append(f.q[:best], f.q[best+1:]...)
		f.send(h.buf)
		f.free = append(f.free, h.buf)
	}
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
