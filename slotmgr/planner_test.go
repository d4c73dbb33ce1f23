package slotmgr

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const sec = time.Second

type wake struct {
	At       time.Duration
	Channels []string
}

func newPlanner(t testing.TB, coalesce bool, tol time.Duration) *Planner {
	t.Helper()
	p, err := NewPlanner(&PlannerConfig{Coalesce: coalesce, Tolerance: tol})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func addAll(t testing.TB, p *Planner, chans []planned) {
	t.Helper()
	for _, c := range chans {
		if err := p.Add(c.id, c.interval, c.last); err != nil {
			t.Fatal(err)
		}
	}
}

// run follows NextWake/Wake until the next wake lies beyond until.
func run(p *Planner, until time.Duration) []wake {
	var out []wake
	now := time.Duration(0)
	for {
		at, chs := p.NextWake(now)
		if at < 0 || at > until {
			return out
		}
		planned := slices.Clone(chs)
		served := p.Wake(at)
		if !slices.Equal(planned, served) {
			panic(fmt.Sprintf("NextWake planned %v, Wake served %v", planned, served))
		}
		out = append(out, wake{at, planned})
		now = at
	}
}

var smallCase = []planned{
	{id: "a", interval: 60 * sec, last: 0},
	{id: "b", interval: 65 * sec, last: 0},
	{id: "c", interval: 100 * sec, last: 0},
	{id: "d", interval: 30 * sec, last: 25 * sec},
}

func TestPlannerSmallCase(t *testing.T) {
	tests := []struct {
		name     string
		coalesce bool
		want     []wake
		counters PlannerCounters
	}{
		{
			name:     "coalescing, tolerance 10s",
			coalesce: true,
			want: []wake{
				{55 * sec, []string{"a", "b", "d"}}, // a 5s early, b 10s early
				{85 * sec, []string{"d"}},
				{100 * sec, []string{"c"}},
				{115 * sec, []string{"a", "b", "d"}}, // b 5s early
				{145 * sec, []string{"d"}},
				{175 * sec, []string{"a", "b", "d"}}, // b 5s early; c (200) is 25s away
			},
			counters: PlannerCounters{Wakes: 6, KeepAlives: 12, Early: 4, EarlyTotal: 25 * sec},
		},
		{
			name: "one timer per channel",
			want: []wake{
				{55 * sec, []string{"d"}},
				{60 * sec, []string{"a"}},
				{65 * sec, []string{"b"}},
				{85 * sec, []string{"d"}},
				{100 * sec, []string{"c"}},
				{115 * sec, []string{"d"}},
				{120 * sec, []string{"a"}},
				{130 * sec, []string{"b"}},
				{145 * sec, []string{"d"}},
				{175 * sec, []string{"d"}},
			},
			counters: PlannerCounters{Wakes: 10, KeepAlives: 10},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlanner(t, tt.coalesce, 10*sec)
			addAll(t, p, smallCase)
			if diff := cmp.Diff(tt.want, run(p, 175*sec)); diff != "" {
				t.Errorf("wakes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.counters, p.Counters()); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlannerEdges(t *testing.T) {
	p := newPlanner(t, true, 10*sec)
	if at, chs := p.NextWake(5 * sec); at != -1 || chs != nil {
		t.Errorf("NextWake on an empty planner = %v, %v", at, chs)
	}
	if err := p.Add("a", 0, 0); err == nil {
		t.Error("Add with a zero interval succeeded")
	}
	addAll(t, p, smallCase)
	if err := p.Add("a", sec, 0); err == nil {
		t.Error("Add of a planned channel succeeded")
	}
	if _, err := NewPlanner(&PlannerConfig{Tolerance: -1}); err == nil {
		t.Error("NewPlanner with a negative tolerance succeeded")
	}
	// A wake for something else that serves nothing is not counted.
	if got := p.Wake(10 * sec); len(got) != 0 || p.Counters().Wakes != 0 {
		t.Errorf("Wake(10s) served %v, counters %+v", got, p.Counters())
	}
	// A push wake at 50s piggybacks d (due 55) and a (due 60).
	if diff := cmp.Diff([]string{"a", "d"}, p.Wake(50*sec)); diff != "" {
		t.Errorf("Wake(50s) (-want +got):\n%s", diff)
	}
	// Touch moves b's keep-alive; Remove drops c.
	if !p.Touch("b", 60*sec) || p.Touch("zz", 0) {
		t.Error("Touch result wrong")
	}
	if !p.Remove("c") || p.Remove("c") || p.Len() != 3 {
		t.Errorf("Remove: Len %d", p.Len())
	}
	at, chs := p.NextWake(50 * sec)
	if diff := cmp.Diff(wake{80 * sec, []string{"d"}}, wake{at, slices.Clone(chs)}); diff != "" {
		t.Errorf("NextWake (-want +got):\n%s", diff)
	}
	// A host that overslept is told to wake now, and the keep-alives count late.
	at, _ = p.NextWake(200 * sec)
	if at != 200*sec {
		t.Fatalf("NextWake(200s) at %v, want 200s", at)
	}
	p.Wake(at)
	if c := p.Counters(); c.Late != 3 || c.LateTotal != (200-110+200-125+200-80)*sec {
		t.Errorf("late counters %+v", c)
	}
	// Channels with an interval below the tolerance are sent at most half an interval early.
	q := newPlanner(t, true, time.Minute)
	addAll(t, q, []planned{{id: "x", interval: 20 * sec}, {id: "y", interval: 200 * sec, last: -195 * sec}})
	if diff := cmp.Diff([]wake{{5 * sec, []string{"y"}}, {20 * sec, []string{"x"}}}, run(q, 20*sec)); diff != "" {
		t.Errorf("short interval (-want +got):\n%s", diff)
	}
}

// randomChannels returns n channels with intervals in [lo, hi] and random
// phases.
func randomChannels(rng *rand.Rand, n int, lo, hi time.Duration) []planned {
	out := make([]planned, n)
	for i := range out {
		iv := lo + time.Duration(rng.Int64N(int64(hi-lo+1)))
		iv = iv.Truncate(time.Millisecond)
		out[i] = planned{id: fmt.Sprintf("ch%03d", i), interval: iv, last: -time.Duration(rng.Int64N(int64(iv)))}
	}
	return out
}

// TestPlannerRandomNeverLate plans 100 channels for six hours, with and
// without coalescing, with random extra (push) wakes, and checks every gap
// between two keep-alives of a channel: never longer than its interval,
// never shorter than interval − min(tolerance, interval/2).
func TestPlannerRandomNeverLate(t *testing.T) {
	const horizon = 6 * time.Hour
	tol := 30 * sec
	for seed := range uint64(5) {
		wakes := map[bool]uint64{}
		for _, coalesce := range []bool{false, true} {
			rng := rand.New(rand.NewPCG(seed, 7))
			chans := randomChannels(rng, 100, 15*sec, 20*time.Minute)
			p := newPlanner(t, coalesce, tol)
			addAll(t, p, chans)
			byID := map[string]planned{}
			last := map[string]time.Duration{}
			for _, c := range chans {
				byID[c.id] = c
				last[c.id] = c.last
			}
			check := func(at time.Duration, served []string) {
				for _, id := range served {
					c := byID[id]
					gap := at - last[id]
					early := min(tol, c.interval/2)
					if !coalesce {
						early = 0
					}
					if gap > c.interval || gap < c.interval-early {
						t.Fatalf("seed %d coalesce %v: %s served at %v after %v, interval %v", seed, coalesce, id, at, gap, c.interval)
					}
					last[id] = at
				}
			}
			now := time.Duration(0)
			for now < horizon {
				at, _ := p.NextWake(now)
				if push := now + time.Duration(rng.Int64N(int64(2*time.Minute))); rng.IntN(4) == 0 && push < at {
					at = push // woken early by a push: serve what is due by then
				}
				check(at, p.Wake(at))
				now = at
			}
			for id, l := range last {
				if horizon-l > byID[id].interval {
					t.Fatalf("seed %d: %s last served at %v, starved", seed, id, l)
				}
			}
			c := p.Counters()
			if c.Late != 0 {
				t.Fatalf("seed %d coalesce %v: %d late keep-alives", seed, coalesce, c.Late)
			}
			wakes[coalesce] = c.Wakes
		}
		if wakes[true] >= wakes[false] {
			t.Errorf("seed %d: %d wakes coalescing, %d without: coalescing must save wakes", seed, wakes[true], wakes[false])
		}
		t.Logf("seed %d: %d wakes coalescing, %d one timer per channel", seed, wakes[true], wakes[false])
	}
}

func TestPlannerAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	p := newPlanner(t, true, 30*sec)
	addAll(t, p, randomChannels(rng, 100, 15*sec, 20*time.Minute))
	now := time.Duration(0)
	step := func() {
		at, _ := p.NextWake(now)
		p.Wake(at)
		now = at
	}
	for range 1000 {
		step()
	}
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Errorf("NextWake+Wake allocate %v times per run, want 0", n)
	}
}

func TestPlannerDue(t *testing.T) {
	p := newPlanner(t, true, 5*sec)
	addAll(t, p, []planned{{id: "a", interval: 60 * sec, last: 10 * sec}, {id: "b", interval: 58 * sec, last: 0}})
	type due struct {
		At time.Duration
		OK bool
	}
	get := func(id string) due { at, ok := p.Due(id); return due{at, ok} }
	if diff := cmp.Diff([]due{{70 * sec, true}, {58 * sec, true}, {0, false}}, []due{get("a"), get("b"), get("x")}); diff != "" {
		t.Errorf("Due before the wake (-want +got):\n%s", diff)
	}
	// The wake at 58 s serves b, not a (due 70 s, beyond the 5 s tolerance).
	p.Wake(58 * sec)
	p.Touch("a", 20*sec)
	p.Remove("b")
	if diff := cmp.Diff([]due{{80 * sec, true}, {0, false}}, []due{get("a"), get("b")}); diff != "" {
		t.Errorf("Due after wake, touch and remove (-want +got):\n%s", diff)
	}
}

func TestPlannerRunUntil(t *testing.T) {
	p, err := NewPlanner(&PlannerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if n, last := p.RunUntil(5*time.Second, time.Hour); n != 0 || last != 5*time.Second {
		t.Errorf("empty planner: RunUntil = %d, %v; want 0, 5s", n, last)
	}
	if err := p.Add("a", 10*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if n, last := p.RunUntil(0, 35*time.Second); n != 3 || last != 30*time.Second {
		t.Errorf("RunUntil(0, 35s) = %d, %v; want 3 wakes, the last at 30s", n, last)
	}
	// end is exclusive: the wake due at 40s is not made before 40s.
	if n, last := p.RunUntil(30*time.Second, 40*time.Second); n != 0 || last != 30*time.Second {
		t.Errorf("RunUntil(30s, 40s) = %d, %v; want 0, 30s", n, last)
	}
	if n, last := p.RunUntil(30*time.Second, 40*time.Second+1); n != 1 || last != 40*time.Second {
		t.Errorf("RunUntil(30s, 40s+1ns) = %d, %v; want 1, 40s", n, last)
	}
	if c := p.Counters(); c.Wakes != 4 || c.KeepAlives != 4 || c.Late != 0 {
		t.Errorf("counters %+v, want 4 wakes and keep-alives, none late", c)
	}
}
