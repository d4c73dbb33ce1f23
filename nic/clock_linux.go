package nic

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// bootClock reads CLOCK_BOOTTIME: monotonic, and it keeps counting while the
// machine is suspended, so keep-alives do not burst on resume.
//
// clock_gettime(CLOCK_BOOTTIME) is a real system call from Go (x/sys does
// not go through the vDSO), ~0.5 µs, and the datapath reads the clock per
// frame. So Now reads Go's monotonic clock (CLOCK_MONOTONIC through the
// vDSO) and adds BOOTTIME − MONOTONIC, which only grows, by the time spent
// suspended; the offset is re-read every bootResync. After a resume Now
// may lag BOOTTIME by the suspended time for at most bootResync.
type bootClock struct{}

const bootResync = 100 * time.Millisecond

var (
	bootOffset   atomic.Int64 // BOOTTIME − monoNow, never decreasing
	bootSyncedAt atomic.Int64 // monoNow at the last resync; 0: never
)

// Now implements offload.Clock.Now.
func (bootClock) Now() time.Duration {
	m := monoNow()
	if last := bootSyncedAt.Load(); last == 0 || m-time.Duration(last) >= bootResync {
		bootResyncNow()
		m = monoNow()
	}
	return m + time.Duration(bootOffset.Load())
}

func bootResyncNow() {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		bootSyncedAt.Store(int64(max(monoNow(), 1)))
		return
	}
	m := monoNow() // read after: BOOTTIME − m underestimates, never overshoots
	off := int64(time.Duration(ts.Nano()) - m)
	for {
		old := bootOffset.Load()
		if off <= old && bootSyncedAt.Load() != 0 {
			break
		}
		if bootOffset.CompareAndSwap(old, off) {
			break
		}
	}
	bootSyncedAt.Store(int64(max(m, 1)))
}
