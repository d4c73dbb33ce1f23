package host

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/standbynic/standbynic/slotmgr"
)

// BenchmarkWakeLatency measures, on the real NIC in a lab, the time from
// a push's frame on the wire (the wire port's receive time of the wake
// packet, nic.WakeEvent.RxTime) to the start of the channel's push task
// (Config.OnTaskStart), with a resume latency of 0. Each iteration is one
// push to a hardware channel in standby; at most 200 pushes per run
// (-benchtime=100x is plenty). It reports p50 and p99.
func BenchmarkWakeLatency(b *testing.B) {
	lh := newLabHost(b, 1, func(c *Config) { c.ResumeLatency = 0 })
	setup, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch := lh.channel("hw", slotmgr.RequestHardwareSlot, "mail", 0, lh.dialStream(setup, "hw", nil))
	lh.standby(setup, ch)
	n := min(b.N, 200)
	lats := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := lh.h.Wait(ctx, func(st *Stats) bool { return st.State == Standby && ch.slot != 0 }); err != nil {
			st := lh.h.Stats()
			b.Fatalf("push %d: standby: %v (state %v, armed %v, note %q, wakes %v, nic %v)", i, err, st.State, ch.Armed(), ch.Note(), st.Wakes, lh.dev.State())
		}
		lh.mu.Lock()
		lh.starts = lh.starts[:0]
		lh.mu.Unlock()
		id, err := lh.srv.Push("hw", "m"+strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		if err := lh.srv.WaitAcked(ctx, "hw", id); err != nil {
			b.Fatal(err)
		}
		lh.mu.Lock()
		if len(lh.starts) == 0 || lh.starts[0].wake.RxTime.IsZero() {
			lh.mu.Unlock()
			b.Fatalf("push %d: no task start after a NIC wake with a packet: %+v", i, lh.starts)
		}
		s := lh.starts[0]
		lh.mu.Unlock()
		lats = append(lats, s.at.Sub(s.wake.RxTime))
	}
	b.StopTimer()
	slices.Sort(lats)
	b.ReportMetric(float64(lats[len(lats)/2].Nanoseconds()), "p50-wake-latency-ns")
	b.ReportMetric(float64(lats[min(len(lats)-1, len(lats)*99/100)].Nanoseconds()), "p99-wake-latency-ns")
	b.ReportMetric(float64(len(lats)), "pushes")
}

// BenchmarkHostWakesPerHour runs 100 channels through the host runtime
// for one simulated hour on a FakeClock (a simulation, with real
// loopback TCP sockets frozen and thawed at every wake and a fake NIC
// that arms whatever it is given): intervals 30 s–10 min (fixed seed),
// all asking for hardware, on 0, 4, 8 and 16 hardware slots, with and
// without coalescing of the software keep-alives (tolerance 30 s). The
// row hw=0/coalesce=false is one timer per channel. It reports the
// host's wakes per hour and the keep-alives it sent itself.
func BenchmarkHostWakesPerHour(b *testing.B) {
	for _, hw := range []int{0, 4, 8, 16} {
		for _, co := range []bool{false, true} {
			b.Run(fmt.Sprintf("hw=%d/coalesce=%v", hw, co), func(b *testing.B) {
				var r hourResult
				for range b.N {
					r = simulateHostHour(b, hw, co)
				}
				b.ReportMetric(float64(r.wakes), "wakes/h")
				b.ReportMetric(float64(r.keepAlives), "keepalives/h")
				b.ReportMetric(float64(r.armed), "hw-channels")
			})
		}
	}
}

type hourResult struct {
	wakes, keepAlives uint64
	armed             int
}

func simulateHostHour(b *testing.B, hw int, coalesce bool) hourResult {
	b.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var peers []net.Conn
	defer func() {
		for _, c := range peers {
			c.Close()
		}
	}()
	clk := NewFakeClock(0)
	cfg := &Config{
		Clock:   clk,
		Pool:    &slotmgr.Config{HardwareSlots: max(hw, 1), IntervalUnit: time.Second, MinInterval: 30, MaxInterval: 600, PermittedApps: 7},
		Planner: &slotmgr.PlannerConfig{Coalesce: coalesce, Tolerance: 30 * time.Second},
	}
	var fn *fakeNIC
	if hw > 0 {
		fn = newFakeNIC(hw)
		cfg.NIC = fn
	}
	h, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	rng := rand.New(rand.NewPCG(2026, 100))
	var chans []*Channel
	for i := range 100 {
		c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
		if err != nil {
			b.Fatal(err)
		}
		p, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		peers = append(peers, p)
		if fn != nil {
			fn.add(c)
		}
		res := slotmgr.RequestHardwareSlot
		if hw == 0 {
			res = slotmgr.RequestSoftwareSlot
		}
		iv := time.Duration(30+rng.IntN(571)) * time.Second
		ch, err := h.NewChannel(fmt.Sprintf("ch%03d", i), iv, res, fmt.Sprint("app", i%7), rng.IntN(4))
		if err != nil {
			b.Fatal(err)
		}
		tr, err := NewStream(c, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := ch.UsingTransport(tr); err != nil {
			b.Fatal(err)
		}
		chans = append(chans, ch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.Standby(ctx); err != nil {
		b.Fatal(err)
	}
	armed := 0
	for _, ch := range chans {
		if ch.Armed() {
			armed++
		} else if n := ch.Note(); hw > 0 && strings.Contains(n, "operation not permitted") {
			b.Skipf("hardware channel not armed: TCP_REPAIR needs CAP_NET_ADMIN: %s", n)
		}
	}
	if armed != hw {
		b.Fatalf("%d channels armed, want %d", armed, hw)
	}
	start := h.Stats()
	for clk.Now() < time.Hour {
		at, ok := clk.Next()
		if !ok || at > time.Hour {
			break
		}
		clk.Advance(at - clk.Now())
		syncTB(b, h)
		syncTB(b, h)
	}
	clk.Advance(time.Hour - clk.Now())
	syncTB(b, h)
	st := h.Stats()
	if st.HandBackErrors != 0 || st.StayedSoftware != 0 {
		b.Fatalf("hand-back errors %d, stayed software %d", st.HandBackErrors, st.StayedSoftware)
	}
	ka := st.Unbound - start.Unbound // streams without a system keep-alive fire the app's KeepAlive trigger
	return hourResult{wakes: st.Resumes - start.Resumes, keepAlives: ka + st.KeepAlives - start.KeepAlives, armed: armed}
}

// syncTB waits for one full turn of the host's state machine.
func syncTB(tb testing.TB, h *Host) {
	tb.Helper()
	done := make(chan struct{})
	h.mu.Lock()
	h.syncs = append(h.syncs, done)
	h.kickLocked()
	h.mu.Unlock()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		tb.Fatal("state machine did not turn")
	}
}
