// Package pktpump is the flow-controlled sender and the plain TPACKET
// receive loop of the throughput benchmarks on veth (nic's testing.B and
// the bench harness): a rate is measured with every frame accounted for.
package pktpump

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/standbynic/standbynic/nic"
)

// Flow control of the senders: frames in flight stay within what the
// receive ring holds whatever the pace, so nothing is lost and a rate is a
// rate with zero drops, and above what one ring block holds at full pace,
// or the sender would wait for the ring's 1 ms block timeout to hand each
// block over and the rate would be the timeout's, not the receiver's.
// A TPACKET_V3 block holds about 900 short frames when frames come fast,
// but the kernel retires it after 1 ms however few it holds: a starved
// sender (the race detector, parallel tests) that gets one batch of 64 out
// per millisecond fills the 64-block ring with 4096 frames. 2048 frames in
// flight are two blocks and more at full pace, and half the ring at that
// worst pace.
const (
	Window = 2048
	Batch  = 64 // frames per sendmmsg
)

// ErrLost is wrapped when frames in flight never arrived.
var ErrLost = errors.New("frames lost on the way")

// Pump sends n frames from p (cycling over frames), keeping at most
// window of them ahead of done(), and waits until done() has counted all
// n. It returns the frames per second done() saw, or ErrLost once done()
// has not moved for stall.
func Pump(ctx context.Context, p nic.Port, frames [][]byte, n, window int, stall time.Duration, done func() uint64) (float64, error) {
	batch := make([][]byte, Batch)
	base := done()
	start := time.Now()
	last, lastAt := base, start
	// progress reports whether done() moved within stall.
	progress := func() error {
		v := done()
		if v != last {
			last, lastAt = v, time.Now()
			return nil
		}
		if time.Since(lastAt) > stall {
			return fmt.Errorf("%w: %d of %d counted, none for %v", ErrLost, v-base, n, stall)
		}
		return ctx.Err()
	}
	sent := 0
	for sent < n {
		// Signed: a receiver may count more than was sent (the kernel's
		// own neighbour discovery on the link), which an unsigned
		// difference would turn into a huge number in flight.
		for spins := 0; int64(sent)-int64(done()-base) > int64(window); spins++ {
			if spins&255 == 255 {
				if err := progress(); err != nil {
					return 0, err
				}
			}
			runtime.Gosched()
		}
		k := min(Batch, n-sent)
		for i := range k {
			batch[i] = frames[(sent+i)%len(frames)]
		}
		w, err := p.WriteBatch(batch[:k])
		if err != nil {
			return 0, fmt.Errorf("send: %w", err)
		}
		sent += w
	}
	for spins := 0; done()-base < uint64(n); spins++ {
		if spins&255 == 255 {
			if err := progress(); err != nil {
				return 0, err
			}
		}
		runtime.Gosched()
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// CountLoop reads p until it is closed, counting frames in count, and
// closes done when it returns: the plain TPACKET receive loop a receiver
// under test is compared with.
func CountLoop(p nic.Port, count *atomic.Uint64, done chan<- struct{}) {
	defer close(done)
	pkts := make([]nic.Packet, Batch)
	for i := range pkts {
		pkts[i].Buf = make([]byte, 2048)
	}
	for {
		n, err := p.ReadBatch(pkts)
		if err != nil {
			return
		}
		count.Add(uint64(n))
	}
}
