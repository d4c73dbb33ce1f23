//go:build !linux

package nic

import "time"

// bootClock falls back to the Go monotonic clock where CLOCK_BOOTTIME does
// not exist; it does not count suspended time.
type bootClock struct{}

// Now implements offload.Clock.Now.
func (bootClock) Now() time.Duration { return monoNow() }
