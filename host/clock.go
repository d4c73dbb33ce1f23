package host

import (
	"sort"
	"sync"
	"time"

	"github.com/standbynic/standbynic/nic"
)

// Clock is the host's source of time and timers. Now has offload.Clock's
// semantics (a monotonic timeline that keeps counting in suspend), so the
// host, the NIC and the offload engine can share one clock; NewTimer
// fires after d on that timeline.
type Clock interface {
	Now() time.Duration
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer of a Clock.
type Timer interface {
	// C receives once when the timer fires.
	C() <-chan struct{}
	// Stop cancels the timer; it reports whether it was still pending.
	Stop() bool
}

// SystemClock returns the real clock: CLOCK_BOOTTIME (nic.BootClock) for
// Now, runtime timers for NewTimer.
func SystemClock() Clock { return systemClock{now: nic.BootClock()} }

type systemClock struct {
	now interface{ Now() time.Duration }
}

// Now implements Clock.Now.
func (c systemClock) Now() time.Duration { return c.now.Now() }

// NewTimer implements Clock.NewTimer.
func (systemClock) NewTimer(d time.Duration) Timer {
	t := &sysTimer{c: make(chan struct{}, 1)}
	t.t = time.AfterFunc(d, func() { t.c <- struct{}{} })
	return t
}

type sysTimer struct {
	t *time.Timer
	c chan struct{}
}

func (t *sysTimer) C() <-chan struct{} { return t.c }
func (t *sysTimer) Stop() bool         { return t.t.Stop() }

// FakeClock is a manual clock for tests: time moves only by Advance, which
// fires the timers that became due, in order. It also implements
// nic.AdvancingClock, so one FakeClock can drive a host and a NIC. It is
// safe for concurrent use.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Duration
	timers []*fakeTimer
	tick   chan struct{}
	added  chan struct{}
}

// NewFakeClock returns a fake clock reading start.
func NewFakeClock(start time.Duration) *FakeClock {
	return &FakeClock{now: start, tick: make(chan struct{}, 1), added: make(chan struct{}, 1)}
}

// Now implements Clock.Now.
func (c *FakeClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer implements Clock.NewTimer. A timer of d ≤ 0 fires at once.
func (c *FakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{clock: c, c: make(chan struct{}, 1)}
	c.mu.Lock()
	t.at = c.now + d
	if d <= 0 {
		t.fired = true
		t.c <- struct{}{}
	} else {
		c.timers = append(c.timers, t)
	}
	c.mu.Unlock()
	select {
	case c.added <- struct{}{}:
	default:
	}
	return t
}

// Advance moves the clock forward by d, firing every timer due by then.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now += d
	var keep []*fakeTimer
	due := c.timers[:0:0]
	for _, t := range c.timers {
		if t.at <= c.now {
			due = append(due, t)
		} else {
			keep = append(keep, t)
		}
	}
	c.timers = keep
	sort.SliceStable(due, func(i, j int) bool { return due[i].at < due[j].at })
	for _, t := range due {
		t.fired = true
		t.c <- struct{}{}
	}
	c.mu.Unlock()
	select {
	case c.tick <- struct{}{}:
	default:
	}
}

// Next returns the time of the earliest pending timer, and false when no
// timer is pending.
func (c *FakeClock) Next() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return 0, false
	}
	at := c.timers[0].at
	for _, t := range c.timers[1:] {
		at = min(at, t.at)
	}
	return at, true
}

// Pending returns the number of pending timers.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// TimerAdded returns a channel that receives (coalesced) whenever a timer
// is created: tests wait on it instead of sleeping.
func (c *FakeClock) TimerAdded() <-chan struct{} { return c.added }

// Advanced implements nic.AdvancingClock.Advanced.
func (c *FakeClock) Advanced() <-chan struct{} { return c.tick }

var _ nic.AdvancingClock = (*FakeClock)(nil)

type fakeTimer struct {
	clock *FakeClock
	at    time.Duration
	fired bool
	c     chan struct{}
}

func (t *fakeTimer) C() <-chan struct{} { return t.c }

func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.fired {
		return false
	}
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return true
		}
	}
	return false
}
