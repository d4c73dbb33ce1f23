package nic

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// faultRun pushes n numbered frames through a faultDir at 1 ms steps, then
// lets every held frame out, and returns what left in order.
func faultRun(t *testing.T, cfg Faults, n int) ([]string, *counters) {
	t.Helper()
	cfg, err := cfg.normalize()
	if err != nil {
		t.Fatal(err)
	}
	var cnt counters
	var out []string
	f := newFaultDir(cfg, 1, &cnt, func(b []byte) { out = append(out, fmt.Sprintf("%x", b)) })
	now := time.Duration(0)
	for i := range n {
		f.apply([]byte{byte(i >> 8), byte(i), 0xaa, 0x55}, now)
		now += time.Millisecond
		f.release(now)
	}
	f.release(now + time.Hour)
	if due, ok := f.next(); ok {
		t.Fatalf("frame still held after release, due %v", due)
	}
	return out, &cnt
}

func frames(ids ...int) []string {
	var s []string
	for _, i := range ids {
		s = append(s, fmt.Sprintf("%x", []byte{byte(i >> 8), byte(i), 0xaa, 0x55}))
	}
	return s
}

func TestFaultsSingle(t *testing.T) {
	tests := []struct {
		name string
		cfg  Faults
		want []string
		cnt  map[counterID]uint64
	}{
		{"none", Faults{}, frames(0, 1, 2), nil},
		{"loss all", Faults{Loss: 1}, nil, map[counterID]uint64{cFaultLost: 3}},
		{"duplicate all", Faults{Duplicate: 1}, frames(0, 0, 1, 1, 2, 2), map[counterID]uint64{cFaultDuplicated: 3}},
		{"delay keeps order", Faults{Delay: 5 * time.Millisecond}, frames(0, 1, 2), map[counterID]uint64{cFaultDelayed: 3}},
		{"reorder all waits for hold", Faults{Reorder: 1}, frames(0, 1, 2), map[counterID]uint64{cFaultReordered: 3}},
		{"queue full drops", Faults{Delay: time.Hour, QueueLen: 2}, frames(0, 1), map[counterID]uint64{cFaultDelayed: 3, cFaultQueueFull: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cnt := faultRun(t, tt.cfg, 3)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("frames (-want +got):\n%s", diff)
			}
			for id := range numCounters {
				if w, g := tt.cnt[id], cnt.get(id); w != g {
					t.Errorf("%s = %d, want %d", counterNames[id], g, w)
				}
			}
		})
	}
}

func TestFaultsReorderSwapsWithNext(t *testing.T) {
	cfg, _ := Faults{Reorder: 1}.normalize()
	var cnt counters
	var out []string
	f := newFaultDir(cfg, 1, &cnt, func(b []byte) { out = append(out, fmt.Sprintf("%x", b)) })
	f.apply([]byte{0, 0, 0xaa, 0x55}, 0)
	f.cfg.Reorder = 0
	f.apply([]byte{0, 1, 0xaa, 0x55}, 0)
	f.apply([]byte{0, 2, 0xaa, 0x55}, 0)
	if diff := cmp.Diff(frames(1, 0, 2), out); diff != "" {
		t.Errorf("frames (-want +got):\n%s", diff)
	}
}

func TestFaultsCorruptFlipsOneByte(t *testing.T) {
	cfg, _ := Faults{Corrupt: 1, Seed: 7}.normalize()
	var cnt counters
	for i := range 200 {
		orig := bytes.Repeat([]byte{byte(i)}, 60)
		var got []byte
		f := newFaultDir(cfg, uint64(i), &cnt, func(b []byte) { got = append([]byte(nil), b...) })
		f.apply(append([]byte(nil), orig...), 0)
		diff := 0
		for j := range orig {
			if orig[j] != got[j] {
				diff++
			}
		}
		if diff != 1 {
			t.Fatalf("frame %d: %d bytes differ, want exactly 1", i, diff)
		}
	}
	if got := cnt.get(cFaultCorrupted); got != 200 {
		t.Errorf("fault_corrupted = %d, want 200", got)
	}
}

func TestFaultsDeterministicForSeed(t *testing.T) {
	cfg := Faults{Seed: 42, Loss: 0.1, Corrupt: 0.05, Duplicate: 0.1, Reorder: 0.1, Delay: 3 * time.Millisecond, Jitter: 2 * time.Millisecond}
	a, ca := faultRun(t, cfg, 2000)
	b, cb := faultRun(t, cfg, 2000)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("same seed, different output (-first +second):\n%s", diff)
	}
	for id := range numCounters {
		if ca.get(id) != cb.get(id) {
			t.Errorf("%s differs between runs: %d vs %d", counterNames[id], ca.get(id), cb.get(id))
		}
	}
	// The books balance: every frame is lost, sent once, or sent twice.
	lost, dup := ca.get(cFaultLost), ca.get(cFaultDuplicated)
	if want := 2000 - lost + dup; uint64(len(a)) != want {
		t.Errorf("sent %d frames, want 2000 - %d lost + %d duplicated = %d", len(a), lost, dup, want)
	}
	for _, id := range []counterID{cFaultLost, cFaultCorrupted, cFaultDuplicated, cFaultReordered, cFaultDelayed} {
		if ca.get(id) == 0 {
			t.Errorf("%s = 0 over 2000 frames", counterNames[id])
		}
	}
	cfg.Seed = 43
	c, _ := faultRun(t, cfg, 2000)
	if cmp.Equal(a, c) {
		t.Error("seeds 42 and 43 produced the same output")
	}
}

func TestFaultsValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Faults
		want string
	}{
		{"loss above 1", Faults{Loss: 1.5}, "faults loss = 1.5"},
		{"negative corrupt", Faults{Corrupt: -0.1}, "faults corrupt = -0.1"},
		{"negative delay", Faults{Delay: -1}, "must not be negative"},
		{"queue too long", Faults{QueueLen: 1 << 20}, "faults queue length = 1048576"},
		{"reorder depth", Faults{ReorderDepth: 65}, "faults reorder depth = 65"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.normalize()
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Errorf("normalize() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// faultRunEvery is faultRun with frames every step instead of every 1 ms.
func faultRunEvery(t *testing.T, cfg Faults, n int, step time.Duration) []int {
	t.Helper()
	cfg, err := cfg.normalize()
	if err != nil {
		t.Fatal(err)
	}
	var cnt counters
	var out []int
	f := newFaultDir(cfg, 1, &cnt, func(b []byte) { out = append(out, int(b[0])<<8|int(b[1])) })
	now := time.Duration(0)
	for i := range n {
		f.apply([]byte{byte(i >> 8), byte(i), 0xaa, 0x55}, now)
		now += step
		f.release(now)
	}
	f.release(now + time.Hour)
	return out
}

func seqTo(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// TestFaultsJitterKeepsFIFO: the demo's wire (1 ms ± 200 µs) with frames
// 20 µs apart, far closer than the jitter's spread: a real link delays
// them but never swaps them, so every frame leaves in the order it came.
func TestFaultsJitterKeepsFIFO(t *testing.T) {
	tests := []struct {
		name string
		cfg  Faults
		step time.Duration
	}{
		{"demo wire, frames 20µs apart", Faults{Seed: 1, Delay: time.Millisecond, Jitter: 200 * time.Microsecond}, 20 * time.Microsecond},
		{"jitter equal to delay", Faults{Seed: 7, Delay: time.Millisecond, Jitter: time.Millisecond, QueueLen: 4096}, time.Microsecond},
		{"back to back", Faults{Seed: 9, Delay: 5 * time.Millisecond, Jitter: 4 * time.Millisecond, QueueLen: 4096}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := faultRunEvery(t, tt.cfg, 2000, tt.step)
			if diff := cmp.Diff(seqTo(2000), got); diff != "" {
				t.Errorf("frames left out of order (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFaultsJitterSpreadsDelay: FIFO does not flatten the jitter: the
// frames spaced wider than the jitter see delays spread over its range.
func TestFaultsJitterSpreadsDelay(t *testing.T) {
	cfg, _ := Faults{Seed: 5, Delay: time.Millisecond, Jitter: 200 * time.Microsecond}.normalize()
	var cnt counters
	var left []time.Duration
	now := time.Duration(0)
	f := newFaultDir(cfg, 1, &cnt, func([]byte) { left = append(left, now) })
	var sent []time.Duration
	for i := range 200 {
		at := time.Duration(i) * 2 * time.Millisecond
		sent = append(sent, at)
		for now < at {
			now += 10 * time.Microsecond
			f.release(now)
		}
		f.apply([]byte{byte(i)}, now)
	}
	for range 1000 {
		now += 10 * time.Microsecond
		f.release(now)
	}
	if len(left) != 200 {
		t.Fatalf("%d frames left, want 200", len(left))
	}
	lo, hi := time.Hour, time.Duration(0)
	for i := range left {
		d := left[i] - sent[i]
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo > 850*time.Microsecond || hi < 1150*time.Microsecond || lo < 800*time.Microsecond || hi > 1210*time.Microsecond {
		t.Errorf("delays spread over %v–%v, want about 800µs–1.2ms", lo, hi)
	}
}

// TestFaultsReorderDepth: a reordered frame is overtaken by exactly
// ReorderDepth later frames, with or without delay; alone it leaves when
// its hold ends.
func TestFaultsReorderDepth(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Faults
		first int // frames sent before the reordered one
		want  []int
	}{
		{"depth 1 swaps", Faults{}, 0, []int{1, 0, 2, 3, 4}},
		{"depth 3", Faults{ReorderDepth: 3}, 0, []int{1, 2, 3, 0, 4}},
		{"depth 3 mid-stream", Faults{ReorderDepth: 3}, 1, []int{0, 2, 3, 4, 1}},
		{"depth 2 with jitter", Faults{ReorderDepth: 2, Delay: time.Millisecond, Jitter: 900 * time.Microsecond, Seed: 4}, 0, []int{1, 2, 0, 3, 4}},
		{"depth beyond the stream: hold", Faults{ReorderDepth: 10}, 0, []int{1, 2, 3, 4, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.cfg.normalize()
			if err != nil {
				t.Fatal(err)
			}
			var cnt counters
			var out []int
			f := newFaultDir(cfg, 1, &cnt, func(b []byte) { out = append(out, int(b[0])) })
			now := time.Duration(0)
			for i := range 5 {
				f.cfg.Reorder = 0
				if i == tt.first {
					f.cfg.Reorder = 1
				}
				f.apply([]byte{byte(i)}, now)
				now += 10 * time.Microsecond
				f.release(now)
			}
			for range 3000 { // 30 ms in 10 µs steps: every hold ends
				now += 10 * time.Microsecond
				f.release(now)
			}
			if diff := cmp.Diff(tt.want, out); diff != "" {
				t.Errorf("frames (-want +got):\n%s", diff)
			}
			if got := cnt.get(cFaultReordered); got != 1 {
				t.Errorf("fault_reordered = %d, want 1", got)
			}
		})
	}
}

// TestFaultsReorderOnlyWhenAsked: with Reorder set, the frames that leave
// out of order are the reordered ones, no more: every inversion is
// counted.
func TestFaultsReorderOnlyWhenAsked(t *testing.T) {
	cfg := Faults{Seed: 11, Delay: time.Millisecond, Jitter: 200 * time.Microsecond, Reorder: 0.05, ReorderDepth: 2}
	c, _ := cfg.normalize()
	var cnt counters
	var out []int
	f := newFaultDir(c, 1, &cnt, func(b []byte) { out = append(out, int(b[0])<<8|int(b[1])) })
	now := time.Duration(0)
	for i := range 2000 {
		f.apply([]byte{byte(i >> 8), byte(i)}, now)
		now += 20 * time.Microsecond
		f.release(now)
	}
	f.release(now + time.Hour)
	if len(out) != 2000 {
		t.Fatalf("%d frames left, want 2000", len(out))
	}
	// A frame is late when a later one left before it.
	late := 0
	maxSeen := -1
	for _, id := range out {
		if id < maxSeen {
			late++
		}
		maxSeen = max(maxSeen, id)
	}
	if r := cnt.get(cFaultReordered); late == 0 || uint64(late) > r {
		t.Errorf("%d frames left late, %d reordered: want 0 < late ≤ reordered", late, r)
	}
}

// TestFaultsAllocateNothing: once its buffers are warm, the fault stage
// allocates nothing per frame, whatever it does to the frame.
func TestFaultsAllocateNothing(t *testing.T) {
	cfg, err := Faults{Seed: 2, Loss: 0.05, Corrupt: 0.05, Duplicate: 0.1, Reorder: 0.1, ReorderDepth: 3,
		Delay: time.Millisecond, Jitter: 200 * time.Microsecond}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	var cnt counters
	sent := 0
	f := newFaultDir(cfg, 1, &cnt, func([]byte) { sent++ })
	frame := make([]byte, 1500)
	now := time.Duration(0)
	step := func() {
		f.apply(frame, now)
		now += 20 * time.Microsecond
		f.release(now)
	}
	for range 2000 { // warm: the queue's buffers exist
		step()
	}
	if n := testing.AllocsPerRun(5000, step); n != 0 {
		t.Errorf("%v allocations per frame, want 0", n)
	}
	if sent == 0 {
		t.Error("nothing left the fault stage")
	}
}
