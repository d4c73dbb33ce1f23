package nic

import (
	"time"

	"golang.org/x/sys/unix"
)

// bootClock reads CLOCK_BOOTTIME: monotonic, and it keeps counting while the
// machine is suspended, so keep-alives do not burst on resume.
type bootClock struct{}

// Now implements offload.Clock.Now.
func (bootClock) Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return monoNow()
	}
	return time.Duration(ts.Nano())
}
