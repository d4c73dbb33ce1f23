package pktpump

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/standbynic/standbynic/nic/porttest"
)

// TestPumpCounts: every frame sent arrives and is counted, with at most a
// window in flight.
func TestPumpCounts(t *testing.T) {
	a, b := porttest.Pipe()
	defer a.Close()
	var count atomic.Uint64
	done := make(chan struct{})
	go CountLoop(b, &count, done)
	frame := make([]byte, 60)
	frame[12], frame[13] = 0x88, 0xb5
	rate, err := Pump(context.Background(), a, [][]byte{frame}, 5000, 256, time.Second, count.Load)
	if err != nil || rate <= 0 {
		t.Fatalf("Pump = %v, %v", rate, err)
	}
	if got := count.Load(); got != 5000 {
		t.Errorf("counted %d, want 5000", got)
	}
	b.Close()
	<-done
}

// TestPumpLost: a receiver that never counts makes Pump give up with
// ErrLost once the window is full and nothing moves.
func TestPumpLost(t *testing.T) {
	a, b := porttest.Pipe()
	defer a.Close()
	defer b.Close()
	frame := make([]byte, 60)
	_, err := Pump(context.Background(), a, [][]byte{frame}, 1000, 16, 100*time.Millisecond, func() uint64 { return 0 })
	if !errors.Is(err, ErrLost) {
		t.Fatalf("Pump = %v, want ErrLost", err)
	}
}

// TestPumpExtraFrames: a receiver that counts frames nobody sent through
// the pump (the kernel's own traffic on the link) neither stalls the pump
// nor makes it count them as sent.
func TestPumpExtraFrames(t *testing.T) {
	a, b := porttest.Pipe()
	defer a.Close()
	var count atomic.Uint64
	done := make(chan struct{})
	go CountLoop(b, &count, done)
	frame := make([]byte, 60)
	if _, err := Pump(context.Background(), a, [][]byte{frame}, 2000, 16, time.Second, func() uint64 {
		// After the first frames, the receiver has seen 100 more than sent.
		if n := count.Load(); n > 0 {
			return n + 100
		}
		return 0
	}); err != nil {
		t.Fatalf("Pump with a receiver counting extra frames: %v", err)
	}
	b.Close()
	<-done
}
