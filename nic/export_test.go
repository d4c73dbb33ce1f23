package nic

import (
	"runtime"
	"time"
)

// CounterValue reads one device counter by name without allocating, for
// allocation tests that wait on the datapath.
func CounterValue(d *Device, name string) uint64 {
	d.engMu.Lock()
	d.xdpSyncLocked() // what the XDP fast path absorbed (allocation-free)
	d.engMu.Unlock()
	for i, n := range counterNames {
		if n == name {
			return d.cnt.get(counterID(i))
		}
	}
	panic("no counter " + name)
}

// WaitCounter spins until the named counter reaches want or the deadline
// passes; it allocates nothing.
func WaitCounter(d *Device, name string, want uint64, deadline time.Time) bool {
	for CounterValue(d, name) < want {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
	return true
}

// CounterFunc returns a reader of one device counter: a single atomic load
// per call, for benchmarks that poll it.
func CounterFunc(d *Device, name string) func() uint64 {
	for i, n := range counterNames {
		if n == name {
			return d.cnt[i].Load
		}
	}
	panic("no counter " + name)
}

// ReadBatchLent and ReleaseLent expose a ringLender port's lending reads
// (ok is false for a port that does not lend).
func ReadBatchLent(p Port, pkts []Packet) (n int, ok bool, err error) {
	l, ok := p.(ringLender)
	if !ok {
		return 0, false, nil
	}
	n, err = l.readBatchLent(pkts)
	return n, true, err
}

func ReleaseLent(p Port) { p.(ringLender).releaseLent() }

// Lent reports whether pkt points into a port's ring.
func Lent(pkt *Packet) bool { return pkt.lent != nil }
