package offload

import "time"

// Clock is the engine's only source of time. Now returns the time elapsed
// on a monotonic timeline that keeps counting while the machine is suspended
// (CLOCK_BOOTTIME semantics), so a suspended emulator does not burst on
// resume. Tests drive a fake clock; the NIC passes a real one.
type Clock interface {
	Now() time.Duration
}

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Duration

// Now implements Clock.Now.
func (f ClockFunc) Now() time.Duration { return f() }
