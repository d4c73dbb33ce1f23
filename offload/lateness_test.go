package offload

import (
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"
)

// lateOutput records, for every keep-alive the engine sends, how late it
// left after its slot's due time. The slot is recovered from the frame's
// source address and port (IPv4, untagged: fixed offsets), so recording
// costs a few loads and no allocation.
type lateOutput struct {
	start time.Time
	base  time.Duration
	dues  []time.Duration
	late  []time.Duration
	wakes int
}

func (o *lateOutput) Send(frame []byte) {
	now := o.base + time.Since(o.start)
	port := int(frame[34])<<8 | int(frame[35])
	i := int(frame[28])<<16 | int(frame[29])<<8 | (port - 1024)
	o.late = append(o.late, now-o.dues[i])
}

func (o *lateOutput) Wake(Event) { o.wakes++ }

// BenchmarkEngineLateness arms 1,000,000 TCP-probe slots whose first
// keep-alives fall due, spread uniformly, over a 5 s window of real time,
// then drives the engine the way the NIC does — sleep on a timer until
// NextDeadline, Fire — and reports how late each keep-alive frame was built
// and handed to the output (p50/p99/max), with the number of batches.
// Tolerance is 0, so every slot is sent at or after its due time, never early.
// Bounded: it stops when every slot has sent once, or 10 s after the last
// due time.
func BenchmarkEngineLateness(b *testing.B) {
	if testing.Short() {
		b.Skip("real-clock benchmark: about 7 s per run")
	}
	const (
		n    = 1_000_000
		lead = 500 * time.Millisecond
		span = 5 * time.Second
		base = 2 * time.Hour // engine timeline origin for the run
	)
	spec := probeSpec()
	spec.Interval = time.Hour
	spec.RetryInterval = time.Hour // no retries inside the run
	spec.Tolerance = 0
	out := &lateOutput{dues: make([]time.Duration, n), late: make([]time.Duration, 0, n)}
	var p50, p99, worst time.Duration
	var batches uint64
	for b.Loop() {
		b.StopTimer()
		e, clk := newTest(b, &Config{MaxSlots: n})
		snap := snap4()
		for i := range n {
			due := base + lead + time.Duration(int64(span)*int64(i)/n)
			out.dues[i] = due
			snap.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)}), uint16(1024+i&0xff))
			clk.t = due - spec.Interval
			if err := e.Arm(SlotID(i), snap, spec); err != nil {
				b.Fatal(err)
			}
		}
		out.late = out.late[:0]
		before := e.Stats().Sched.Batches
		runtime.GC()
		b.StartTimer()

		out.start, out.base = time.Now(), base
		timer := time.NewTimer(time.Hour)
		deadline := base + lead + span + 10*time.Second
		for len(out.late) < n {
			next, ok := e.NextDeadline()
			if !ok {
				b.Fatal("no deadline with slots still unsent")
			}
			if d := next - (base + time.Since(out.start)); d > 0 {
				timer.Reset(d)
				<-timer.C
			}
			now := base + time.Since(out.start)
			if now > deadline {
				b.Fatalf("ran past the deadline with %d of %d keep-alives sent", len(out.late), n)
			}
			clk.t = now
			e.Fire(now, out)
		}
		timer.Stop()

		b.StopTimer()
		batches = e.Stats().Sched.Batches - before
		late := slices.Clone(out.late)
		slices.Sort(late)
		if len(late) != n {
			b.Fatalf("sent %d keep-alives, want %d (one per slot)", len(late), n)
		}
		if late[0] < 0 {
			b.Fatalf("a keep-alive left %v before its due time with tolerance 0", -late[0])
		}
		p50, p99, worst = late[n/2], late[n*99/100], late[n-1]
		b.StartTimer()
	}
	b.ReportMetric(float64(p50.Nanoseconds()), "p50-late-ns")
	b.ReportMetric(float64(p99.Nanoseconds()), "p99-late-ns")
	b.ReportMetric(float64(worst.Nanoseconds()), "max-late-ns")
	b.ReportMetric(float64(batches), "batches")
}
