package slotmgr

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// simResult is what one simulated stretch of standby cost the host.
type simResult struct {
	hardware   int    // channels on hardware slots: the NIC keeps them, 0 host wakes
	software   int    // channels the host keeps alive itself
	wakes      uint64 // host wakes for software keep-alives
	keepAlives uint64 // software keep-alives sent
}

// simulateWakes places 100 channels that all ask for hardware (random
// priorities, intervals 30 s–10 min, random phases; fixed seed) on a pool
// of hw hardware slots (0: a NIC without slots, everything software), plans
// the software ones with or without coalescing (tolerance 30 s), and runs
// the plan over d of fake time.
func simulateWakes(tb testing.TB, hw int, coalesce bool, d time.Duration) simResult {
	rng := rand.New(rand.NewPCG(2026, 100))
	var pool *Pool
	if hw > 0 {
		cfg := secondsConfig(hw)
		var err error
		if pool, err = New(&cfg, &fakeClock{}); err != nil {
			tb.Fatal(err)
		}
		defer pool.Close()
	}
	planner, err := NewPlanner(&PlannerConfig{Coalesce: coalesce, Tolerance: 30 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	var res simResult
	reqs := make(map[string]Request, 100)
	phases := make(map[string]time.Duration, 100)
	for i := range 100 {
		req := Request{
			Channel:  fmt.Sprintf("ch%03d", i),
			App:      fmt.Sprint("app", i%7),
			Resource: RequestHardwareSlot,
			Interval: time.Duration(30+rng.IntN(571)) * time.Second,
			Priority: rng.IntN(4),
		}
		reqs[req.Channel] = req
		phases[req.Channel] = -time.Duration(rng.Int64N(int64(req.Interval)))
		if pool != nil {
			if r, err := pool.Request(req); err != nil || !r.Status.Allocated() {
				tb.Fatalf("Request(%+v) = %+v, %v", req, r, err)
			}
		}
	}
	// Placement is final only once every request is in: later ones evict.
	for i := range 100 {
		ch := fmt.Sprintf("ch%03d", i)
		if pool != nil {
			if r, _ := pool.Lookup(ch); r.Kind == Hardware {
				res.hardware++
				continue
			}
		}
		res.software++
		if err := planner.Add(ch, reqs[ch].Interval, phases[ch]); err != nil {
			tb.Fatal(err)
		}
	}
	planner.RunUntil(0, d)
	c := planner.Counters()
	if c.Late != 0 {
		tb.Fatalf("%d late keep-alives", c.Late)
	}
	res.wakes, res.keepAlives = c.Wakes, c.KeepAlives
	return res
}

// TestSimulatedHostWakes checks the shape the benchmark reports: more
// hardware slots never cost more wakes, coalescing never costs more than one
// timer per channel, and keep-alives are the same with or without it.
func TestSimulatedHostWakes(t *testing.T) {
	prev := map[bool]uint64{}
	for _, hw := range []int{0, 4, 8, 16} {
		base := simulateWakes(t, hw, false, time.Hour)
		co := simulateWakes(t, hw, true, time.Hour)
		if base.hardware != hw || base.software != 100-hw {
			t.Errorf("hw %d: %d hardware, %d software channels", hw, base.hardware, base.software)
		}
		if co.wakes > base.wakes {
			t.Errorf("hw %d: %d wakes coalescing > %d one timer per channel", hw, co.wakes, base.wakes)
		}
		// Coalescing sends keep-alives early, so never fewer of them.
		if co.keepAlives < base.keepAlives {
			t.Errorf("hw %d: %d keep-alives coalescing < %d baseline", hw, co.keepAlives, base.keepAlives)
		}
		for coalesce, w := range map[bool]uint64{false: base.wakes, true: co.wakes} {
			if hw > 0 && w > prev[coalesce] {
				t.Errorf("hw %d coalesce %v: %d wakes, more than with fewer slots (%d)", hw, coalesce, w, prev[coalesce])
			}
			prev[coalesce] = w
		}
		t.Logf("hw %2d: %5d wakes/h one timer per channel, %4d coalescing (%d keep-alives/h)", hw, base.wakes, co.wakes, co.keepAlives)
	}
}

// BenchmarkHostWakes reports host wakes per simulated hour for 100
// channels with 0, 4, 8 and 16 hardware slots, with coalescing on and off
// (off: one timer per channel). Each iteration simulates one hour.
func BenchmarkHostWakes(b *testing.B) {
	for _, hw := range []int{0, 4, 8, 16} {
		for _, coalesce := range []bool{false, true} {
			name := fmt.Sprintf("hw=%d/coalesce=%v", hw, coalesce)
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				var r simResult
				for b.Loop() {
					r = simulateWakes(b, hw, coalesce, time.Hour)
				}
				b.ReportMetric(float64(r.wakes), "wakes/h")
				b.ReportMetric(float64(r.keepAlives), "keepalives/h")
			})
		}
	}
}
