package nic

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestBootClockFollowsBoottime(t *testing.T) {
	c := BootClock()
	prev := c.Now()
	for range 1000 {
		now := c.Now()
		if now < prev {
			t.Fatalf("clock went back: %v after %v", now, prev)
		}
		prev = now
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatal(err)
	}
	got, want := c.Now(), time.Duration(ts.Nano())
	if d := got - want; d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("Now() = %v, CLOCK_BOOTTIME = %v: %v apart", got, want, d)
	}
}

func BenchmarkBootClock(b *testing.B) {
	c := BootClock()
	for range b.N {
		c.Now()
	}
}
