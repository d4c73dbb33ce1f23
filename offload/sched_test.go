package offload

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
)

// schedStep is one step of a table test: exactly one of the op kinds.
type schedStep struct {
	op       string // "sched", "cancel", "fire", "next"
	id       uint32
	due, tol time.Duration // sched
	now      time.Duration // fire
	want     []uint32      // fire: ids handed to fn, in order
	wantNext time.Duration // next
	wantOK   bool          // next
	wantLen  int           // fire, next
}

func stSched(id uint32, due, tol time.Duration) schedStep {
	return schedStep{op: "sched", id: id, due: due, tol: tol}
}
func stCancel(id uint32) schedStep { return schedStep{op: "cancel", id: id} }
func stFire(now time.Duration, wantLen int, want ...uint32) schedStep {
	return schedStep{op: "fire", now: now, want: want, wantLen: wantLen}
}
func stNext(want time.Duration, ok bool, wantLen int) schedStep {
	return schedStep{op: "next", wantNext: want, wantOK: ok, wantLen: wantLen}
}

const schedMS = time.Millisecond

func TestSchedulerTable(t *testing.T) {
	tests := []struct {
		name      string
		capacity  int
		steps     []schedStep
		wantStats SchedStats
	}{
		{
			name:      "empty fire",
			capacity:  4,
			steps:     []schedStep{stNext(0, false, 0), stFire(0, 0), stFire(math.MaxInt64, 0), stFire(math.MinInt64, 0)},
			wantStats: SchedStats{},
		},
		{
			name:     "ordering by due",
			capacity: 8,
			steps: []schedStep{
				stSched(1, 30*schedMS, 0), stSched(2, 10*schedMS, 0), stSched(3, 20*schedMS, 0), stSched(4, 40*schedMS, 0),
				stNext(10*schedMS, true, 4),
				stFire(9*schedMS, 4),
				stFire(10*schedMS, 3, 2),
				stNext(20*schedMS, true, 3),
				stFire(35*schedMS, 1, 3, 1), // late driver: both due, in due order
				stFire(40*schedMS, 0, 4),
				stNext(0, false, 0),
			},
			wantStats: SchedStats{Batches: 3, Fired: 4, MaxLateness: 15 * schedMS},
		},
		{
			name:     "same due time fires together in id order",
			capacity: 8,
			steps: []schedStep{
				stSched(5, 10*schedMS, 0), stSched(3, 10*schedMS, 0), stSched(7, 10*schedMS, 0), stSched(1, 11*schedMS, 0),
				stFire(10*schedMS, 1, 3, 5, 7),
				stFire(11*schedMS, 0, 1),
			},
			wantStats: SchedStats{Batches: 2, Fired: 4},
		},
		{
			name:     "reschedule replaces later and earlier",
			capacity: 4,
			steps: []schedStep{
				stSched(1, 10*schedMS, 0), stSched(2, 20*schedMS, 0),
				stSched(1, 30*schedMS, 0), // later
				stNext(20*schedMS, true, 2),
				stFire(20*schedMS, 1, 2),
				stSched(1, 5*schedMS, 0), // earlier, already past
				stNext(5*schedMS, true, 1),
				stFire(20*schedMS, 0, 1),
				stFire(30*schedMS, 0), // the replaced 30 ms entry is gone
			},
			wantStats: SchedStats{Batches: 2, Fired: 2, MaxLateness: 15 * schedMS},
		},
		{
			name:     "reschedule changes the tolerance",
			capacity: 4,
			steps: []schedStep{
				stSched(1, 10*schedMS, 0), stSched(2, 15*schedMS, 10*schedMS),
				stSched(2, 15*schedMS, 0),
				stFire(10*schedMS, 1, 1),
				stFire(15*schedMS, 0, 2),
			},
			wantStats: SchedStats{Batches: 2, Fired: 2},
		},
		{
			name:     "cancel",
			capacity: 4,
			steps: []schedStep{
				stSched(1, 10*schedMS, 0), stSched(2, 20*schedMS, 5*schedMS), stSched(3, 30*schedMS, 0),
				stCancel(1),
				stCancel(1),      // absent: no-op
				stCancel(9),      // never scheduled, beyond capacity: no-op
				stCancel(100000), // far beyond: no-op, no growth
				stNext(20*schedMS, true, 2),
				stFire(15*schedMS, 2), // window of 2 open but nothing due: no batch
				stCancel(2),
				stFire(30*schedMS, 0, 3),
			},
			wantStats: SchedStats{Batches: 1, Fired: 1},
		},
		{
			name:     "ids beyond capacity grow",
			capacity: 1,
			steps: []schedStep{
				stSched(1000, 2*schedMS, 0), stSched(0, 1*schedMS, 0), stSched(70000, 1*schedMS, 0),
				stFire(1*schedMS, 1, 0, 70000),
				stFire(2*schedMS, 0, 1000),
			},
			wantStats: SchedStats{Batches: 2, Fired: 3},
		},
		{
			name:     "tolerance zero: each distinct due time is a batch",
			capacity: 8,
			steps: []schedStep{
				stSched(1, 10*schedMS, 0), stSched(2, 10*schedMS+1, 0), stSched(3, 11*schedMS, 0),
				stFire(10*schedMS, 2, 1),
				stFire(10*schedMS+1, 1, 2),
				stFire(11*schedMS, 0, 3),
			},
			wantStats: SchedStats{Batches: 3, Fired: 3},
		},
		{
			name:     "tolerance aligns open windows into the batch",
			capacity: 8,
			steps: []schedStep{
				stSched(1, 100*schedMS, 0),
				stSched(2, 105*schedMS, 10*schedMS), // window opens at 95: aligned
				stSched(3, 110*schedMS, 10*schedMS), // opens at 100: aligned (boundary)
				stSched(4, 111*schedMS, 10*schedMS), // opens at 101: not yet
				stSched(5, 150*schedMS, 60*schedMS), // opens at 90: aligned, though due much later
				stSched(6, 120*schedMS, 0),          // no window
				stFire(99*schedMS, 6),               // windows of 2 and 5 open, nothing due: nothing
				stFire(100*schedMS, 2, 1, 5, 2, 3),
				stNext(111*schedMS, true, 2),
				stFire(111*schedMS, 1, 4),
				stFire(120*schedMS, 0, 6),
			},
			wantStats: SchedStats{Batches: 3, Fired: 6, Early: 3},
		},
		{
			name:     "early entries ordered by window start then id",
			capacity: 8,
			steps: []schedStep{
				stSched(0, 10*schedMS, 0),
				stSched(4, 30*schedMS, 25*schedMS), // opens 5
				stSched(3, 20*schedMS, 12*schedMS), // opens 8
				stSched(2, 18*schedMS, 10*schedMS), // opens 8
				stSched(1, 12*schedMS, 1*schedMS),  // opens 11: not yet
				stFire(10*schedMS, 1, 0, 4, 2, 3),
				stFire(12*schedMS, 0, 1),
			},
			wantStats: SchedStats{Batches: 2, Fired: 5, Early: 3},
		},
		{
			name:     "late fire takes due entries first then windows",
			capacity: 8,
			steps: []schedStep{
				stSched(1, 10*schedMS, 0), stSched(2, 20*schedMS, 15*schedMS), stSched(3, 12*schedMS, 0),
				stFire(15*schedMS, 0, 1, 3, 2),
			},
			wantStats: SchedStats{Batches: 1, Fired: 3, Early: 1, MaxLateness: 5 * schedMS},
		},
		{
			name:     "large durations do not wrap",
			capacity: 8,
			steps: []schedStep{
				stSched(1, math.MaxInt64, math.MaxInt64), // window opens at 0
				stSched(2, math.MinInt64, 0),
				stSched(3, math.MinInt64+5, math.MaxInt64), // saturates at MinInt64
				stSched(4, math.MaxInt64-1, 0),
				stSched(5, math.MaxInt64, 1),
				stNext(math.MinInt64, true, 5),
				stFire(math.MinInt64, 3, 2, 3),
				stNext(math.MaxInt64-1, true, 3),
				stFire(0, 3), // window of 1 open, nothing due
				stFire(math.MaxInt64-1, 0, 4, 1, 5),
			},
			wantStats: SchedStats{Batches: 2, Fired: 5, Early: 3},
		},
		{
			name:     "lateness saturates",
			capacity: 2,
			steps: []schedStep{
				stSched(1, math.MinInt64, 0),
				stFire(math.MaxInt64, 0, 1),
			},
			wantStats: SchedStats{Batches: 1, Fired: 1, MaxLateness: math.MaxInt64},
		},
		{
			name:     "negative tolerance counts as zero",
			capacity: 2,
			steps: []schedStep{
				stSched(1, 10*schedMS, 0), stSched(2, 5*schedMS, -time.Hour),
				stFire(5*schedMS, 1, 2),
				stFire(10*schedMS, 0, 1),
			},
			wantStats: SchedStats{Batches: 2, Fired: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewScheduler(tt.capacity)
			for i, st := range tt.steps {
				switch st.op {
				case "sched":
					s.Schedule(st.id, st.due, st.tol)
				case "cancel":
					s.Cancel(st.id)
				case "fire":
					var got []uint32
					n := s.Fire(st.now, func(id uint32) { got = append(got, id) })
					if diff := cmp.Diff(st.want, got); diff != "" {
						t.Fatalf("step %d: Fire(%v) fired (-want +got):\n%s", i, st.now, diff)
					}
					if n != len(got) {
						t.Errorf("step %d: Fire returned %d, fn called %d times", i, n, len(got))
					}
					if s.Len() != st.wantLen {
						t.Errorf("step %d: Len() = %d, want %d", i, s.Len(), st.wantLen)
					}
				case "next":
					gotNext, ok := s.Next()
					if gotNext != st.wantNext || ok != st.wantOK {
						t.Errorf("step %d: Next() = %v, %v; want %v, %v", i, gotNext, ok, st.wantNext, st.wantOK)
					}
					if s.Len() != st.wantLen {
						t.Errorf("step %d: Len() = %d, want %d", i, s.Len(), st.wantLen)
					}
				default:
					t.Fatalf("step %d: bad op %q", i, st.op)
				}
			}
			if diff := cmp.Diff(tt.wantStats, s.Stats()); diff != "" {
				t.Errorf("Stats() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSchedulerDue(t *testing.T) {
	s := NewScheduler(4)
	s.Schedule(2, 7*schedMS, schedMS)
	tests := []struct {
		name   string
		id     uint32
		want   time.Duration
		wantOK bool
	}{
		{name: "scheduled", id: 2, want: 7 * schedMS, wantOK: true},
		{name: "never scheduled", id: 1},
		{name: "beyond capacity", id: 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := s.Due(tt.id)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Due(%d) = %v, %v; want %v, %v", tt.id, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestSchedulerFnReentry covers what fn may do to the scheduler during Fire.
func TestSchedulerFnReentry(t *testing.T) {
	type fireCall struct {
		Fired []uint32
		Ret   int
	}
	tests := []struct {
		name string
		// setup schedules entries; fn acts on the scheduler when called for id.
		setup     func(s *Scheduler)
		fn        func(s *Scheduler, now time.Duration, id uint32)
		fires     []time.Duration
		want      []fireCall
		wantLen   int
		wantStats SchedStats
	}{
		{
			name:  "reschedule next interval",
			setup: func(s *Scheduler) { s.Schedule(1, 10*schedMS, 0); s.Schedule(2, 15*schedMS, 0) },
			fn:    func(s *Scheduler, now time.Duration, id uint32) { s.Schedule(id, now+100*schedMS, 0) },
			fires: []time.Duration{10 * schedMS, 15 * schedMS},
			want: []fireCall{
				{Fired: []uint32{1}, Ret: 1},
				{Fired: []uint32{2}, Ret: 1},
			},
			wantLen:   2,
			wantStats: SchedStats{Batches: 2, Fired: 2},
		},
		{
			name:  "rescheduled already due is not fired in the same call",
			setup: func(s *Scheduler) { s.Schedule(1, 10*schedMS, 0) },
			fn:    func(s *Scheduler, _ time.Duration, id uint32) { s.Schedule(id, 0, time.Hour) },
			fires: []time.Duration{10 * schedMS, 10 * schedMS, 10 * schedMS},
			want: []fireCall{
				{Fired: []uint32{1}, Ret: 1},
				{Fired: []uint32{1}, Ret: 1},
				{Fired: []uint32{1}, Ret: 1},
			},
			wantLen:   1,
			wantStats: SchedStats{Batches: 3, Fired: 3, MaxLateness: 10 * schedMS},
		},
		{
			name:  "scheduling another due id is not fired in the same call",
			setup: func(s *Scheduler) { s.Schedule(1, 10*schedMS, 0) },
			fn: func(s *Scheduler, _ time.Duration, id uint32) {
				if id == 1 {
					s.Schedule(2, 5*schedMS, 0)
				}
			},
			fires: []time.Duration{10 * schedMS, 10 * schedMS},
			want: []fireCall{
				{Fired: []uint32{1}, Ret: 1},
				{Fired: []uint32{2}, Ret: 1},
			},
			wantStats: SchedStats{Batches: 2, Fired: 2, MaxLateness: 5 * schedMS},
		},
		{
			name: "cancel of a pending batch member withdraws it",
			setup: func(s *Scheduler) {
				s.Schedule(1, 10*schedMS, 0)
				s.Schedule(2, 10*schedMS, 0)
				s.Schedule(3, 12*schedMS, 5*schedMS)
			},
			fn: func(s *Scheduler, _ time.Duration, id uint32) {
				if id == 1 {
					s.Cancel(3)
					s.Cancel(1) // itself: already removed, no-op
				}
			},
			fires: []time.Duration{10 * schedMS, 20 * schedMS},
			want: []fireCall{
				{Fired: []uint32{1, 2}, Ret: 2},
				{},
			},
			wantStats: SchedStats{Batches: 1, Fired: 2},
		},
		{
			name: "reschedule of a pending batch member withdraws it and keeps the new entry",
			setup: func(s *Scheduler) {
				s.Schedule(1, 10*schedMS, 0)
				s.Schedule(2, 10*schedMS, 0)
			},
			fn: func(s *Scheduler, _ time.Duration, id uint32) {
				if id == 1 {
					s.Schedule(2, 30*schedMS, 0)
				}
			},
			fires: []time.Duration{10 * schedMS, 30 * schedMS},
			want: []fireCall{
				{Fired: []uint32{1}, Ret: 1},
				{Fired: []uint32{2}, Ret: 1},
			},
			wantStats: SchedStats{Batches: 2, Fired: 2},
		},
		{
			name: "Len and Next inside fn see the batch removed",
			setup: func(s *Scheduler) {
				s.Schedule(1, 10*schedMS, 0)
				s.Schedule(2, 11*schedMS, 5*schedMS)
				s.Schedule(3, 50*schedMS, 0)
			},
			fn: func(s *Scheduler, _ time.Duration, id uint32) {
				d, ok := s.Next()
				if s.Len() != 1 || d != 50*schedMS || !ok {
					panic(fmt.Sprintf("inside fn: Len %d Next %v %v", s.Len(), d, ok))
				}
			},
			fires:     []time.Duration{10 * schedMS},
			want:      []fireCall{{Fired: []uint32{1, 2}, Ret: 2}},
			wantLen:   1,
			wantStats: SchedStats{Batches: 1, Fired: 2, Early: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewScheduler(4)
			tt.setup(s)
			var got []fireCall
			for _, now := range tt.fires {
				var c fireCall
				c.Ret = s.Fire(now, func(id uint32) {
					c.Fired = append(c.Fired, id)
					tt.fn(s, now, id)
				})
				got = append(got, c)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Fire calls (-want +got):\n%s", diff)
			}
			if s.Len() != tt.wantLen {
				t.Errorf("Len() = %d, want %d", s.Len(), tt.wantLen)
			}
			if diff := cmp.Diff(tt.wantStats, s.Stats()); diff != "" {
				t.Errorf("Stats() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSchedulerFirePanics(t *testing.T) {
	t.Run("nested Fire", func(t *testing.T) {
		s := NewScheduler(4)
		s.Schedule(1, 1, 0)
		s.Schedule(2, 1, 0)
		msg := schedCatchPanic(func() {
			s.Fire(1, func(uint32) { s.Fire(1, func(uint32) {}) })
		})
		if !strings.Contains(msg, "Fire called from its own callback") {
			t.Fatalf("panic = %q, want the nested-Fire message", msg)
		}
		schedCheckDropped(t, s)
	})
	t.Run("fn panics", func(t *testing.T) {
		s := NewScheduler(4)
		s.Schedule(1, 1, 0)
		s.Schedule(2, 1, 0)
		msg := schedCatchPanic(func() { s.Fire(1, func(uint32) { panic("boom") }) })
		if msg != "boom" {
			t.Fatalf("panic = %q, want boom", msg)
		}
		schedCheckDropped(t, s)
	})
}

// schedCheckDropped checks that after a panic in the batch {1, 2} id 2
// was dropped and the scheduler still works.
func schedCheckDropped(t *testing.T, s *Scheduler) {
	t.Helper()
	if s.Len() != 0 {
		t.Errorf("Len() after panic = %d, want 0", s.Len())
	}
	s.Schedule(3, 2, 0)
	var got []uint32
	s.Fire(2, func(id uint32) { got = append(got, id) })
	if diff := cmp.Diff([]uint32{3}, got); diff != "" {
		t.Errorf("Fire after panic (-want +got):\n%s", diff)
	}
	s.Schedule(2, 3, 0) // the dropped id can be scheduled again
	got = got[:0]
	s.Fire(3, func(id uint32) { got = append(got, id) })
	if diff := cmp.Diff([]uint32{2}, got); diff != "" {
		t.Errorf("Fire of the dropped id rescheduled (-want +got):\n%s", diff)
	}
}

func schedCatchPanic(f func()) (msg string) {
	defer func() { msg = fmt.Sprint(recover()) }()
	f()
	return "no panic"
}

// schedDrive schedules n slots with period interval and phases drawn
// uniformly over one interval, drives Fire at every Next() for the simulated
// span, rescheduling each fired slot one interval after the send, and
// returns the batches and the entries fired. onFire, if not nil, sees every
// send.
func schedDrive(s *Scheduler, rng *rand.Rand, n int, interval, tol, span time.Duration, onFire func(id uint32, now time.Duration)) (batches, fired uint64) {
	for id := range n {
		s.Schedule(uint32(id), time.Duration(rng.Int64N(int64(interval))), tol)
	}
	base := s.Stats()
	for {
		now, ok := s.Next()
		if !ok || now >= span {
			break
		}
		s.Fire(now, func(id uint32) {
			if onFire != nil {
				onFire(id, now)
			}
			s.Schedule(id, now+interval, tol)
		})
	}
	st := s.Stats()
	return st.Batches - base.Batches, st.Fired - base.Fired
}

func TestSchedulerBatchCounting(t *testing.T) {
	const (
		n        = 2000
		interval = time.Minute
		span     = 2 * interval
	)
	tests := []struct {
		name       string
		tol        time.Duration
		minBatches uint64
		maxBatches uint64
	}{
		// Phases are distinct nanoseconds: every send is its own wake-up.
		{name: "tolerance 0", tol: 0, minBatches: 2 * n, maxBatches: 2 * n},
		// Each batch but the last covers more than 1 s of due times, so at
		// most one batch a second: 120 in two minutes (+1 for the edge);
		// at least one a window per minute.
		{name: "tolerance 1s", tol: time.Second, minBatches: 60, maxBatches: 121},
		// All windows are open at the first due time.
		{name: "tolerance 60s", tol: interval, minBatches: 2, maxBatches: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewScheduler(n)
			rng := rand.New(rand.NewPCG(1, 2))
			sends := make([][]time.Duration, n)
			batches, fired := schedDrive(s, rng, n, interval, tt.tol, span, func(id uint32, now time.Duration) {
				sends[id] = append(sends[id], now)
			})
			if batches < tt.minBatches || batches > tt.maxBatches {
				t.Errorf("batches = %d, want in [%d, %d]", batches, tt.minBatches, tt.maxBatches)
			}
			total := 0
			for id, ts := range sends {
				total += len(ts)
				// Every slot keeps its period: sent at least once per
				// interval, never more than tol early.
				if len(ts) < 2 {
					t.Fatalf("slot %d sent %d times in two intervals, want >= 2", id, len(ts))
				}
				for i := 1; i < len(ts); i++ {
					if gap := ts[i] - ts[i-1]; gap > interval || gap < interval-tt.tol {
						t.Fatalf("slot %d: sends %v apart, want in [%v, %v]", id, gap, interval-tt.tol, interval)
					}
				}
			}
			if uint64(total) != fired {
				t.Errorf("fn saw %d sends, Stats counted %d", total, fired)
			}
			if st := s.Stats(); st.MaxLateness != 0 {
				t.Errorf("MaxLateness = %v, want 0 when Fire runs at Next()", st.MaxLateness)
			}
		})
	}
}

func TestSchedulerAllocs(t *testing.T) {
	const n = 1000
	s := NewScheduler(n)
	for id := range n {
		s.Schedule(uint32(id), time.Duration(id)*schedMS, 3*schedMS)
	}
	var id uint32
	tests := []struct {
		name string
		f    func()
	}{
		{name: "Schedule", f: func() {
			id = (id + 7) % n
			s.Schedule(id, time.Duration(id*13%n)*schedMS, schedMS)
		}},
		{name: "Cancel and Schedule", f: func() {
			id = (id + 11) % n
			s.Cancel(id)
			s.Schedule(id, time.Duration(id)*schedMS, 0)
		}},
		{name: "Fire", f: func() {
			now, _ := s.Next()
			s.Fire(now, func(id uint32) { s.Schedule(id, now+time.Second, 10*schedMS) })
		}},
		{name: "Next Len Due Stats", f: func() {
			s.Next()
			s.Len()
			s.Due(id)
			s.Stats()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a := testing.AllocsPerRun(1000, tt.f); a != 0 {
				t.Errorf("%s: %v allocs per run, want 0", tt.name, a)
			}
		})
	}
	if s.Len() != n {
		t.Errorf("Len() = %d after the runs, want %d", s.Len(), n)
	}
}

// footprint returns the bytes s holds in its slices.
func (s *Scheduler) footprint() int {
	item := int(unsafe.Sizeof(schedItem{}))
	return cap(s.due.items)*item + cap(s.early.items)*item +
		(cap(s.due.pos)+cap(s.early.pos)+cap(s.batch))*4
}

func TestSchedulerFootprint(t *testing.T) {
	const n = 1 << 16
	s := NewScheduler(n)
	for id := range n {
		s.Schedule(uint32(id), time.Duration(id), 0)
	}
	// The doc promises 44 B per entry (plus the heaps' padding); the
	// keep-alive budget is 512 B per armed slot in all.
	if got, want := s.footprint(), 44*n+2*heapRoot*int(unsafe.Sizeof(schedItem{})); got != want {
		t.Errorf("footprint = %d B for %d entries, want %d", got, n, want)
	}
}

// schedRef is the naive reference: a slice of entries, sorted per Fire.
type schedRef struct {
	entries []schedRefEntry
	pending map[uint32]bool
	stats   SchedStats
	firing  bool
}

type schedRefEntry struct {
	id         uint32
	due, early time.Duration
}

func newSchedRef() *schedRef { return &schedRef{pending: map[uint32]bool{}} }

func (r *schedRef) find(id uint32) int {
	return slices.IndexFunc(r.entries, func(e schedRefEntry) bool { return e.id == id })
}

func (r *schedRef) Cancel(id uint32) {
	if i := r.find(id); i >= 0 {
		r.entries = slices.Delete(r.entries, i, i+1)
	}
	delete(r.pending, id)
}

func (r *schedRef) Schedule(id uint32, due, tol time.Duration) {
	r.Cancel(id)
	early := due
	if tol > 0 {
		early = due - tol
		if early > due { // wrapped around: saturate
			early = math.MinInt64
		}
	}
	r.entries = append(r.entries, schedRefEntry{id: id, due: due, early: early})
}

func (r *schedRef) Next() (time.Duration, bool) {
	if len(r.entries) == 0 {
		return 0, false
	}
	m := r.entries[0].due
	for _, e := range r.entries {
		m = min(m, e.due)
	}
	return m, true
}

func (r *schedRef) Due(id uint32) (time.Duration, bool) {
	if i := r.find(id); i >= 0 {
		return r.entries[i].due, true
	}
	return 0, false
}

func (r *schedRef) Len() int          { return len(r.entries) }
func (r *schedRef) Stats() SchedStats { return r.stats }

func (r *schedRef) Fire(now time.Duration, fn func(uint32)) int {
	if r.firing {
		panic("reference: nested Fire")
	}
	var due, early, rest []schedRefEntry
	for _, e := range r.entries {
		switch {
		case e.due <= now:
			due = append(due, e)
		case e.early <= now:
			early = append(early, e)
		default:
			rest = append(rest, e)
		}
	}
	if len(due) == 0 {
		return 0
	}
	slices.SortFunc(due, func(a, b schedRefEntry) int {
		if a.due != b.due {
			return schedCmpDur(a.due, b.due)
		}
		return int(a.id) - int(b.id)
	})
	slices.SortFunc(early, func(a, b schedRefEntry) int {
		if a.early != b.early {
			return schedCmpDur(a.early, b.early)
		}
		return int(a.id) - int(b.id)
	})
	r.entries = rest
	for _, e := range due {
		late := now - e.due
		if late < 0 {
			late = math.MaxInt64
		}
		r.stats.MaxLateness = max(r.stats.MaxLateness, late)
	}
	batch := append(due, early...)
	for _, e := range batch {
		r.pending[e.id] = true
	}
	r.firing = true
	defer func() { r.firing = false }()
	fired := 0
	for i, e := range batch {
		if !r.pending[e.id] {
			continue
		}
		delete(r.pending, e.id)
		fired++
		r.stats.Fired++
		if i >= len(due) {
			r.stats.Early++
		}
		fn(e.id)
	}
	r.stats.Batches++
	return fired
}

func schedCmpDur(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// schedAPI is what the reference and the Scheduler share.
type schedAPI interface {
	Schedule(id uint32, due, tol time.Duration)
	Cancel(id uint32)
	Fire(now time.Duration, fn func(uint32)) int
	Next() (time.Duration, bool)
	Due(id uint32) (time.Duration, bool)
	Len() int
	Stats() SchedStats
}

var (
	_ schedAPI = (*Scheduler)(nil)
	_ schedAPI = (*schedRef)(nil)
)

// schedOp is one operation of a random or fuzzed run.
type schedOp struct {
	kind     uint8 // 0 schedule, 1 cancel, 2 fire at now, 3 fire at Next()
	id       uint32
	due, tol time.Duration // schedule; due is also the fire time of kind 2
	seed     uint64        // fire: drives what fn does
}

func (o schedOp) String() string {
	switch o.kind {
	case 0:
		return fmt.Sprintf("Schedule(%d, %v, %v)", o.id, o.due, o.tol)
	case 1:
		return fmt.Sprintf("Cancel(%d)", o.id)
	case 2:
		return fmt.Sprintf("Fire(%v) seed %d", o.due, o.seed)
	}
	return fmt.Sprintf("Fire(Next()) seed %d", o.seed)
}

// schedFnAction makes fn act on s for the k-th callback of a Fire: nothing,
// reschedule the fired id, cancel or schedule another id. Both
// implementations see the same actions as long as they agree.
func schedFnAction(s schedAPI, rng *rand.Rand, now time.Duration, id uint32, idSpace uint32) {
	switch rng.IntN(6) {
	case 0:
		s.Schedule(id, now+time.Duration(rng.IntN(20)-5)*schedMS, time.Duration(rng.IntN(8))*schedMS)
	case 1:
		s.Cancel(rng.Uint32N(idSpace))
	case 2:
		s.Schedule(rng.Uint32N(idSpace), now+time.Duration(rng.IntN(20)-10)*schedMS, time.Duration(rng.IntN(8))*schedMS)
	}
}

// runAgainstRef applies ops to a Scheduler and the reference and fails at
// the first difference in what fn sees, the results, Len, Next, Due or Stats.
func runAgainstRef(t *testing.T, ops []schedOp, idSpace uint32) {
	t.Helper()
	s := NewScheduler(int(idSpace) / 2)
	r := newSchedRef()
	impls := [2]schedAPI{s, r}
	for i, op := range ops {
		var fired [2][]uint32
		var ret [2]int
		for k, impl := range impls {
			switch op.kind {
			case 0:
				impl.Schedule(op.id, op.due, op.tol)
			case 1:
				impl.Cancel(op.id)
			default:
				now := op.due
				if op.kind == 3 {
					now, _ = impl.Next()
				}
				rng := rand.New(rand.NewPCG(op.seed, 7))
				ret[k] = impl.Fire(now, func(id uint32) {
					fired[k] = append(fired[k], id)
					schedFnAction(impl, rng, now, id, idSpace)
				})
			}
		}
		if diff := cmp.Diff(fired[1], fired[0]); diff != "" {
			t.Fatalf("op %d %v: fired (-ref +got):\n%s", i, op, diff)
		}
		if ret[0] != ret[1] || ret[0] != len(fired[0]) {
			t.Fatalf("op %d %v: Fire returned %d, reference %d, fired %d", i, op, ret[0], ret[1], len(fired[0]))
		}
		if s.Len() != r.Len() {
			t.Fatalf("op %d %v: Len() = %d, reference %d", i, op, s.Len(), r.Len())
		}
		gn, gok := s.Next()
		rn, rok := r.Next()
		if gn != rn || gok != rok {
			t.Fatalf("op %d %v: Next() = %v, %v; reference %v, %v", i, op, gn, gok, rn, rok)
		}
		if diff := cmp.Diff(r.Stats(), s.Stats()); diff != "" {
			t.Fatalf("op %d %v: Stats() (-ref +got):\n%s", i, op, diff)
		}
		for id := range idSpace + 2 {
			gd, gok := s.Due(id)
			rd, rok := r.Due(id)
			if gd != rd || gok != rok {
				t.Fatalf("op %d %v: Due(%d) = %v, %v; reference %v, %v", i, op, id, gd, gok, rd, rok)
			}
		}
	}
}

func TestSchedulerAgainstReference(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			idSpace := uint32(8 + rng.IntN(120))
			var ops []schedOp
			now := time.Duration(0)
			for range 2000 {
				op := schedOp{id: rng.Uint32N(idSpace), seed: rng.Uint64()}
				switch p := rng.IntN(100); {
				case p < 45:
					op.kind = 0
					// Millisecond granularity gives equal due times.
					op.due = now + time.Duration(rng.IntN(60)-10)*schedMS
					op.tol = []time.Duration{0, 0, schedMS, 5 * schedMS, 20 * schedMS, -schedMS, math.MaxInt64}[rng.IntN(7)]
				case p < 60:
					op.kind = 1
				case p < 85:
					op.kind = 2
					now += time.Duration(rng.IntN(8)) * schedMS
					op.due = now
				default:
					op.kind = 3
				}
				ops = append(ops, op)
			}
			runAgainstRef(t, ops, idSpace)
		})
	}
}

// decodeSchedOps turns fuzz input into operations: 8 bytes each.
func decodeSchedOps(data []byte) []schedOp {
	var ops []schedOp
	for len(data) >= 8 {
		b := data[:8]
		data = data[8:]
		op := schedOp{kind: b[0] % 4, id: uint32(b[1] % 32), seed: uint64(b[7])}
		v := int64(int16(binary.LittleEndian.Uint16(b[2:4])))
		switch b[4] % 8 {
		case 6:
			v = math.MaxInt64 - int64(b[5])
		case 7:
			v = math.MinInt64 + int64(b[5])
		}
		op.due = time.Duration(v)
		switch b[6] % 4 {
		case 0:
			op.tol = 0
		case 1:
			op.tol = time.Duration(b[6])
		case 2:
			op.tol = math.MaxInt64 - time.Duration(b[6])
		default:
			op.tol = -time.Duration(b[6])
		}
		ops = append(ops, op)
	}
	return ops
}

func FuzzSched(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{
		0, 1, 10, 0, 0, 0, 0, 0, // Schedule(1, 10ns, 0)
		0, 2, 20, 0, 0, 0, 1, 0, // Schedule(2, 20ns, 1)
		0, 3, 12, 0, 0, 0, 5, 0, // Schedule(3, 12ns, 5)
		2, 0, 10, 0, 0, 0, 0, 3, // Fire(10)
		3, 0, 0, 0, 0, 0, 0, 9, // Fire(Next())
		1, 3, 0, 0, 0, 0, 0, 0, // Cancel(3)
	})
	f.Add([]byte{
		0, 1, 0, 0, 6, 0, 2, 0, // Schedule(1, MaxInt64, MaxInt64-2)
		0, 2, 0, 0, 7, 3, 0, 0, // Schedule(2, MinInt64+3, 0)
		3, 0, 0, 0, 0, 0, 0, 1,
		2, 0, 0, 0, 6, 0, 0, 2, // Fire(MaxInt64)
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8*512 {
			data = data[:8*512]
		}
		runAgainstRef(t, decodeSchedOps(data), 32)
	})
}

// schedBenchSizes are the entry counts of the scaling benchmarks.
var schedBenchSizes = []int{1e3, 1e4, 1e5, 1e6}

// schedFill schedules n entries with dues uniform over interval.
func schedFill(s *Scheduler, rng *rand.Rand, n int, interval, tol time.Duration) {
	for id := range n {
		s.Schedule(uint32(id), time.Duration(rng.Int64N(int64(interval))), tol)
	}
}

// BenchmarkSchedule measures re-scheduling an armed entry to a random due
// time among n entries: one op is one Schedule.
func BenchmarkSchedule(b *testing.B) {
	for _, n := range schedBenchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, uint64(n)))
			s := NewScheduler(n)
			schedFill(s, rng, n, time.Minute, time.Second)
			// Precomputed, so the op is the Schedule alone.
			const k = 1 << 16
			ids := make([]uint32, k)
			dues := make([]time.Duration, k)
			for i := range k {
				ids[i] = rng.Uint32N(uint32(n))
				dues[i] = time.Duration(rng.Int64N(int64(time.Minute)))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				s.Schedule(ids[i%k], dues[i%k], time.Second)
			}
		})
	}
}

// BenchmarkFire measures a wake-up at Next() among n entries with tolerance
// 0 that fires one entry, which fn re-schedules one interval (plus jitter)
// later, as the engine does: one op is one Fire of one entry.
func BenchmarkFire(b *testing.B) {
	for _, n := range schedBenchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(2, uint64(n)))
			s := NewScheduler(n)
			schedFill(s, rng, n, time.Minute, 0)
			const k = 1 << 16
			jitter := make([]time.Duration, k)
			for i := range jitter {
				jitter[i] = time.Duration(rng.Int64N(int64(time.Second)))
			}
			var i int
			fired := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				now, _ := s.Next()
				fired += s.Fire(now, func(id uint32) {
					s.Schedule(id, now+time.Minute+jitter[i%k], 0)
					i++
				})
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(fired), "ns/fired")
			if s.Len() != n {
				b.Fatalf("Len() = %d, want %d", s.Len(), n)
			}
		})
	}
}

// BenchmarkBatches counts radio wake-ups: 10^6 slots with a 60 s interval
// and phases spread uniformly over it, driven at Next() for two simulated
// minutes, each sent slot re-scheduled one interval after its send, with
// tolerance 0 and 1 s.
func BenchmarkBatches(b *testing.B) {
	const (
		n        = 1_000_000
		interval = time.Minute
		minutes  = 2
	)
	for _, tol := range []time.Duration{0, time.Second} {
		b.Run(fmt.Sprintf("n=%d/tol=%v", n, tol), func(b *testing.B) {
			var batches, fired uint64
			for b.Loop() {
				b.StopTimer()
				s := NewScheduler(n)
				rng := rand.New(rand.NewPCG(3, 4))
				b.StartTimer()
				bt, f := schedDrive(s, rng, n, interval, tol, minutes*interval, nil)
				batches += bt
				fired += f
			}
			runs := float64(b.N)
			b.ReportMetric(float64(batches)/runs/minutes, "batches/min")
			b.ReportMetric(float64(fired)/runs/minutes, "sends/min")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(fired), "ns/send")
		})
	}
}

// BenchmarkSchedulerMemory reports the heap bytes per entry of a Scheduler
// holding 10^6 entries.
func BenchmarkSchedulerMemory(b *testing.B) {
	const n = 1_000_000
	var perEntry float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := NewScheduler(n)
		schedFill(s, rand.New(rand.NewPCG(5, 6)), n, time.Minute, time.Second)
		runtime.GC()
		runtime.ReadMemStats(&after)
		perEntry = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(s)
	}
	b.ReportMetric(perEntry, "B/entry")
}

// BenchmarkSchedulerLateness drives 10^6 entries due over 5 s of real time
// with a loop that sleeps on a time.Timer until Next(), calls Fire, and
// records for every fired entry how late fn ran after its due time. It
// reports the p50, p99 and max lateness, and the p99 of the wake-ups' own
// lateness (now − Next() when the timer returns), which is the driver's
// share: Go's Linux netpoller sleeps in whole milliseconds (a 5 µs timer
// wakes after ~1 ms), so with an entry due every 5 µs a sleep gathers a
// batch and per-entry lateness is at least the timer's. The loop stops 5 s
// after the last due time at the latest.
func BenchmarkSchedulerLateness(b *testing.B) {
	if testing.Short() {
		b.Skip("real-clock benchmark: 6 s per run")
	}
	const (
		n    = 1_000_000
		lead = 200 * time.Millisecond
		span = 5 * time.Second
	)
	dues := make([]time.Duration, n)
	late := make([]time.Duration, 0, n)
	wakes := make([]time.Duration, 0, n)
	var p50, p99, worst, wakeP99 time.Duration
	var batches uint64
	for b.Loop() {
		b.StopTimer()
		rng := rand.New(rand.NewPCG(7, 8))
		s := NewScheduler(n)
		for id := range n {
			dues[id] = lead + time.Duration(rng.Int64N(int64(span)))
			s.Schedule(uint32(id), dues[id], 0)
		}
		late, wakes = late[:0], wakes[:0]
		runtime.GC() // the setup's garbage is not the loop's
		b.StartTimer()

		start := time.Now()
		timer := time.NewTimer(time.Hour)
		deadline := lead + 2*span
		for s.Len() > 0 {
			next, _ := s.Next()
			if d := next - time.Since(start); d > 0 {
				timer.Reset(d)
				<-timer.C
			}
			now := time.Since(start)
			wakes = append(wakes, now-next)
			if now > deadline {
				b.Fatalf("loop ran past its deadline with %d entries left", s.Len())
			}
			s.Fire(now, func(id uint32) {
				late = append(late, time.Since(start)-dues[id])
			})
		}
		timer.Stop()

		b.StopTimer()
		if len(late) != n {
			b.Fatalf("fired %d entries, want %d", len(late), n)
		}
		slices.Sort(late)
		p50, p99, worst = late[n/2], late[n*99/100], late[n-1]
		slices.Sort(wakes)
		wakeP99 = wakes[len(wakes)*99/100]
		batches = s.Stats().Batches
		b.StartTimer()
	}
	b.ReportMetric(float64(p50.Nanoseconds()), "p50-late-ns")
	b.ReportMetric(float64(p99.Nanoseconds()), "p99-late-ns")
	b.ReportMetric(float64(worst.Nanoseconds()), "max-late-ns")
	b.ReportMetric(float64(wakeP99.Nanoseconds()), "p99-wake-late-ns")
	b.ReportMetric(float64(batches), "batches")
}
