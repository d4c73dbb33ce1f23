package offload

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"
)

// BenchmarkKeepAliveBuild measures building one keep-alive frame from the
// slot's template (copy, patch seq/ack/TS/IP ID, incremental checksums),
// excluding the scheduler and any syscall.
func BenchmarkKeepAliveBuild(b *testing.B) {
	for _, c := range []struct {
		name string
		snap Snapshot
		spec Spec
	}{
		{"probe/ipv4", snap4(), probeSpec()},
		{"probe/ipv6", snap6(), probeSpec()},
		{"mqtt/ipv4", snap4(), mqttSpec()},
		{"ws-ping/ipv6", snap6(), wsSpec(WSPing, []byte("keepalive"))},
	} {
		b.Run(c.name, func(b *testing.B) {
			e, _ := newTest(b, &Config{BookBytes: 1 << 16, BookEntries: 1 << 12})
			if err := e.Arm(1, c.snap, c.spec); err != nil {
				b.Fatal(err)
			}
			s := e.slotAt(e.index[1])
			out := &nopOutput{}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				// The books would fill: empty them every 1<<10 sends,
				// outside the timer.
				if s.ext != nil && i&0x3ff == 0 {
					b.StopTimer()
					s.ext.books.Sent = s.ext.books.Sent[:0]
					s.ext.books.Entries = s.ext.books.Entries[:0]
					b.StartTimer()
				}
				e.sendKeepAlive(s, 0, time.Duration(i)*time.Millisecond, out)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
		})
	}
}

// BenchmarkReceiveAbsorb measures classifying and absorbing the exact
// keep-alive ACK of a probe slot.
func BenchmarkReceiveAbsorb(b *testing.B) {
	for _, c := range []struct {
		name string
		snap Snapshot
	}{{"ipv4", snap4()}, {"ipv6", snap6()}} {
		b.Run(c.name, func(b *testing.B) {
			e, _ := newTest(b, nil)
			if err := e.Arm(1, c.snap, probeSpec()); err != nil {
				b.Fatal(err)
			}
			f := peerFrame(b, c.snap, seg{seq: c.snap.RcvNxt, ack: c.snap.SndNxt, flags: flagsACK, ts: true, tsval: 100})
			out := &nopOutput{}
			b.ReportAllocs()
			for b.Loop() {
				if e.Receive(1, f, out) != Absorb {
					b.Fatal("not absorbed")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/frame")
		})
	}
}

// BenchmarkArm1M arms 1,000,000 TCP-probe slots (each with its own
// connection) and reports the heap they hold per slot: slot table, id
// index and scheduler entries.
func BenchmarkArm1M(b *testing.B) {
	const n = 1_000_000
	snap := snap4()
	spec := probeSpec()
	spec.Interval = time.Hour
	spec.Tolerance = time.Minute
	var perSlot float64
	for b.Loop() {
		e, clk := newTest(b, &Config{MaxSlots: n})
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range n {
			snap.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)}), uint16(1024+i&0xff))
			clk.t = time.Duration(i) * time.Microsecond
			if err := e.Arm(SlotID(i), snap, spec); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perSlot = float64(after.HeapAlloc-before.HeapAlloc) / n
		if e.Stats().Armed != n {
			b.Fatalf("armed %d", e.Stats().Armed)
		}
		runtime.KeepAlive(e)
	}
	b.ReportMetric(perSlot, "B/slot")
	if perSlot > 512 {
		b.Errorf("%.0f B/slot above the 512 B budget", perSlot)
	}
}

// TestSlotSize records the slot layout; the budget is BenchmarkArm1M's.
func TestSlotSize(t *testing.T) {
	if n := unsafe.Sizeof(slot{}); n > 384 {
		t.Errorf("slot is %d B; the table, index and scheduler must fit 512 B per slot", n)
	}
}
