package nic

import (
	"sync/atomic"
	"time"

	"github.com/standbynic/standbynic/offload"
)

var monoStart = time.Now()

func monoNow() time.Duration { return time.Since(monoStart) }

// BootClock returns the device's default clock: CLOCK_BOOTTIME on Linux.
func BootClock() offload.Clock { return bootClock{} }

// AdvancingClock is an optional interface of a Clock whose time does not
// follow the wall clock (a fake clock in tests). The device's timer loop
// then waits on Advanced instead of a real timer: it runs whatever became
// due each time the clock is moved.
type AdvancingClock interface {
	offload.Clock
	// Advanced returns a channel that receives (non-blocking, coalesced)
	// every time the clock's time moves forward.
	Advanced() <-chan struct{}
}

// ManualClock is a fake clock for tests and simulations. It is safe for
// concurrent use.
type ManualClock struct {
	now  atomic.Int64
	tick chan struct{}
}

// NewManualClock returns a clock reading start.
func NewManualClock(start time.Duration) *ManualClock {
	c := &ManualClock{tick: make(chan struct{}, 1)}
	c.now.Store(int64(start))
	return c
}

// Now implements offload.Clock.Now.
func (c *ManualClock) Now() time.Duration { return time.Duration(c.now.Load()) }

// Advance moves the clock forward by d and wakes the device's timer loop.
func (c *ManualClock) Advance(d time.Duration) {
	c.now.Add(int64(d))
	select {
	case c.tick <- struct{}{}:
	default:
	}
}

// Advanced implements AdvancingClock.Advanced.
func (c *ManualClock) Advanced() <-chan struct{} { return c.tick }
