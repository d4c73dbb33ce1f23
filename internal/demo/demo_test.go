package demo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/host"
)

func TestScript(t *testing.T) {
	for _, d := range []time.Duration{MinDuration, 20 * time.Second, DefaultDuration, 5 * time.Minute} {
		for _, seed := range []uint64{1, 2, 99} {
			t.Run(fmt.Sprintf("%v/seed%d", d, seed), func(t *testing.T) {
				s := script(d, seed, sampleApps)
				if diff := cmp.Diff(s, script(d, seed, sampleApps)); diff != "" {
					t.Fatalf("same seed, different script (-want +got):\n%s", diff)
				}
				pushes, pings, resets := map[string]int{}, map[string]int{}, 0
				reset := time.Duration(resetAt * float64(d))
				for i, st := range s {
					if i > 0 && st.At < s[i-1].At {
						t.Errorf("step %d at %v before step %d at %v", i, st.At, i-1, s[i-1].At)
					}
					switch st.Kind {
					case stepPush:
						pushes[st.Channel]++
						if st.At < time.Duration(pushStart*float64(d)) || st.At >= time.Duration(pushEnd*float64(d)) {
							t.Errorf("push at %v outside [%v, %v)", st.At, pushStart*float64(d), pushEnd*float64(d))
						}
						if q := resetQuietFor(d); st.Channel == resetChannel && st.At > reset-q && st.At < reset+q {
							t.Errorf("push on %s at %v within %v of the reset at %v", st.Channel, st.At, q, reset)
						}
					case stepPing:
						pings[st.Channel]++
					case stepReset:
						resets++
						if st.Channel != resetChannel || st.At != reset {
							t.Errorf("reset of %s at %v, want %s at %v", st.Channel, st.At, resetChannel, reset)
						}
					default:
						t.Errorf("step %d: kind %v", i, st.Kind)
					}
				}
				wantPush, wantPing := map[string]int{}, map[string]int{}
				for _, a := range sampleApps {
					wantPush[a.Channel] = pushesPer(d)
					if a.Transport == host.KindWebSocket {
						wantPing[a.Channel] = pingsPer(d)
					}
				}
				if diff := cmp.Diff(wantPush, pushes); diff != "" {
					t.Errorf("pushes per channel (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(wantPing, pings); diff != "" {
					t.Errorf("pings per channel (-want +got):\n%s", diff)
				}
				if resets != 1 {
					t.Errorf("%d resets, want 1", resets)
				}
			})
		}
	}
	if cmp.Equal(script(DefaultDuration, 1, sampleApps), script(DefaultDuration, 2, sampleApps)) {
		t.Error("seeds 1 and 2 give the same script")
	}
}

func TestSampleApps(t *testing.T) {
	ws, tcp := 0, 0
	prio := map[int]bool{}
	for _, a := range sampleApps {
		switch a.Transport {
		case host.KindWebSocket:
			ws++
		case host.KindStream:
			tcp++
		}
		if prio[a.Priority] {
			t.Errorf("%s: priority %d used twice", a.Channel, a.Priority)
		}
		prio[a.Priority] = true
	}
	if len(sampleApps) < 6 || len(sampleApps) <= DefaultSlots || ws == 0 || tcp == 0 {
		t.Errorf("%d apps (%d WebSocket, %d TCP) for %d default slots: want ≥ 6, more than the slots, both transports",
			len(sampleApps), ws, tcp, DefaultSlots)
	}
	// The software channels by default (the lowest priorities) mix both
	// transports too.
	sw := sampleApps[DefaultSlots:]
	kinds := map[host.TransportKind]bool{}
	for _, a := range sw {
		kinds[a.Transport] = true
	}
	if len(kinds) != 2 {
		t.Errorf("software channels %v: want both transports", sw)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string // "" for valid
	}{
		{"zero is defaults", Options{}, ""},
		{"all set", Options{Duration: 20 * time.Second, Slots: 8, Seed: 3, Loss: 0.1, OutDir: "x", Quiet: true, Drain: time.Second}, ""},
		{"short", Options{Duration: 9 * time.Second}, "duration 9s outside 10s–1h0m0s"},
		{"long", Options{Duration: 2 * time.Hour}, "duration 2h0m0s outside 10s–1h0m0s"},
		{"negative slots", Options{Slots: -1}, "slots -1 outside 1–64"},
		{"too many slots", Options{Slots: 65}, "slots 65 outside 1–64"},
		{"loss", Options{Loss: 0.3}, "loss 0.3 outside 0–0.2"},
		{"negative loss", Options{Loss: -0.1}, "loss -0.1 outside 0–0.2"},
		{"negative drain", Options{Drain: -time.Second}, "drain -1s below 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if err := tc.o.Validate(); err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
	now := time.Date(2026, 11, 25, 17, 4, 5, 0, time.UTC)
	got := Options{}.withDefaults(now)
	want := Options{Duration: DefaultDuration, Slots: DefaultSlots, Seed: DefaultSeed, Drain: DefaultDrain, OutDir: "standbynic-demo-20261125-170405"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("withDefaults (-want +got):\n%s", diff)
	}
}

func TestParsePush(t *testing.T) {
	type res struct {
		ID, Seq uint64
		OK      bool
	}
	tests := []struct {
		in   string
		want res
	}{
		{"push 12 3 new mail", res{12, 3, true}},
		{"push 1 2", res{1, 2, true}},
		{"push 1", res{}},
		{"tick 1 2 x", res{}},
		{"push x 2 y", res{0, 2, false}},
		{"push 1 -2 y", res{1, 0, false}},
		{"", res{}},
	}
	for _, tc := range tests {
		id, seq, ok := parsePush(tc.in)
		if diff := cmp.Diff(tc.want, res{id, seq, ok}); diff != "" {
			t.Errorf("parsePush(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.5, 7 * time.Millisecond},
		{ms(30, 10, 20), 0.5, 20 * time.Millisecond},
		{ms(30, 10, 20, 40), 0.5, 20 * time.Millisecond},
		{ms(30, 10, 20, 40), 1, 40 * time.Millisecond},
		{ms(30, 10, 20, 40), 0, 10 * time.Millisecond},
	}
	for _, tc := range tests {
		if got := percentile(tc.ds, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.ds, tc.p, got, tc.want)
		}
	}
}

func TestSummaryWrite(t *testing.T) {
	s := Summary{
		Duration: time.Minute, Slots: 4, Seed: 1,
		Channels: []ChannelSummary{
			{Name: "voip", Transport: "websocket", Priority: 7, Interval: 3 * time.Second, Slot: "hardware", FinalSlot: "hardware", Armed: 5, Sent: 3, Delivered: 3, Acked: 3, P50: 21 * time.Millisecond, Max: 25 * time.Millisecond},
			{Name: "social", Transport: "websocket", Priority: 3, Interval: 8 * time.Second, Slot: "software", FinalSlot: "hardware", Sent: 3, Delivered: 2, Acked: 2, P50: 700 * time.Millisecond, Max: 12 * time.Second},
			{Name: "weather", Transport: "tcp", Priority: 2, Interval: 10 * time.Second, Slot: "software", FinalSlot: "software"},
		},
		HostWakes:      map[string]uint64{"hardware-push": 4, "user": 1},
		NICWakes:       map[string]uint64{"data": 4, "host": 1},
		KeepAlivesSent: 20, RepliesAbsorbed: 19, PingsAnswered: 3,
		EnergyMJ: 500, SoftwareOnlyMJ: 1000,
		WirePcap: "out/wire.pcap", WakePcap: "out/wake.pcap", WireFrames: 300, WakePackets: 4,
	}
	if s.Lost() != 1 || s.Pushes() != 6 {
		t.Errorf("Lost %d Pushes %d, want 1 and 6", s.Lost(), s.Pushes())
	}
	var b bytes.Buffer
	if err := s.Write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"summary: 1m0s asleep, 4 hardware slots, 3 channels, seed 1",
		"software→hardware",
		"21.0 ms", "12.00 s",
		"host wakes: 5 (hardware-push 4, user 1)",
		"nic wake events: data 4, host 1",
		"20 sent, 0 retried, 19 replies absorbed, 3 server Pings answered; host woken by them: 0",
		"energy: 500 mJ with hardware slots vs 1000 mJ all-software (50% saved)",
		"out/wire.pcap (300 frames), out/wake.pcap (4 wake packets)",
		"result: 1 of 6 pushes LOST",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	// weather had no delivery: no latency shown.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "weather") && !strings.Contains(line, " -  ") {
			t.Errorf("weather line shows a latency: %q", line)
		}
	}
}

func TestTimelineOrder(t *testing.T) {
	var mu sync.Mutex
	now := time.Duration(0)
	clock := func() time.Duration { mu.Lock(); defer mu.Unlock(); return now }
	var b bytes.Buffer
	tl := newTimeline(&b, false, clock)
	mu.Lock()
	now = 3 * time.Second
	mu.Unlock()
	tl.add("b", "second")
	tl.addAt(time.Second, "a", "first, reported late")
	tl.add("c", "third %d", 3)
	tl.close()
	tl.add("d", "after close") // dropped, no panic
	want := "   +1.000s  a        first, reported late\n" +
		"   +3.000s  b        second\n" +
		"   +3.000s  c        third 3\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("timeline (-want +got):\n%s", diff)
	}

	b.Reset()
	q := newTimeline(&b, true, clock)
	q.add("x", "hidden")
	q.close()
	q.close()
	if b.Len() != 0 {
		t.Errorf("quiet timeline printed %q", b.String())
	}
}

func TestMissingPrivileges(t *testing.T) {
	msg := missingPrivileges(fmt.Errorf("create namespace: %w", errors.New("operation not permitted")), errors.New("new user namespace: operation not permitted"))
	for _, want := range []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "operation not permitted", "new user namespace", "root", "user.max_user_namespaces"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
}

// TestTimelineLate checks that an event reported after a later one was
// printed keeps the timeline's times in order: it is printed at the last
// printed time with its own time in its text.
func TestTimelineLate(t *testing.T) {
	var mu sync.Mutex
	now := time.Duration(0)
	set := func(d time.Duration) { mu.Lock(); now = d; mu.Unlock() }
	clock := func() time.Duration { mu.Lock(); defer mu.Unlock(); return now }
	pr, pw := io.Pipe()
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	tl := newTimeline(pw, false, clock)
	set(5 * time.Second)
	tl.addAt(2*time.Second, "a", "printed first")
	if got := <-lines; got != "   +2.000s  a        printed first" {
		t.Errorf("first line %q", got)
	}
	tl.addAt(time.Second, "b", "reported late")
	tl.close()
	pw.Close()
	if got, want := <-lines, "   +2.000s  b        reported late (at +1.000s, reported late)"; got != want {
		t.Errorf("late line %q, want %q", got, want)
	}
}

func TestSummaryWriteInterrupted(t *testing.T) {
	s := Summary{
		Duration: time.Minute, Slots: 4, Seed: 1, Interrupted: true, Elapsed: 12345 * time.Millisecond,
		Channels: []ChannelSummary{
			{Name: "voip", Transport: "websocket", Slot: "hardware", FinalSlot: "hardware", Sent: 2, Delivered: 1, Acked: 1},
			{Name: "mail", Transport: "tcp", Slot: "hardware", FinalSlot: "hardware", Sent: 1, Delivered: 0},
		},
	}
	if s.Lost() != 0 || s.Pending() != 2 || s.Pushes() != 3 {
		t.Errorf("Lost %d Pending %d Pushes %d, want 0, 2, 3", s.Lost(), s.Pending(), s.Pushes())
	}
	var b bytes.Buffer
	if err := s.Write(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"summary: INTERRUPTED after 12.345s of 1m0s asleep",
		"result: interrupted: 1 of 3 pushes delivered so far, 2 pending",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "LOST") {
		t.Errorf("an interrupted run's pending pushes reported lost:\n%s", b.String())
	}
}

// TestLaunchErrorPrefix checks that a failing run's message names the
// command once: Run's errors carry no prefix, Launch adds
// "standbynic demo: ".
func TestLaunchErrorPrefix(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Launch(context.Background(), Options{Duration: time.Second}, []string{"demo"}, &stdout, &stderr)
	if code != ExitFailed {
		t.Errorf("exit code %d, want %d", code, ExitFailed)
	}
	if want := "standbynic demo: duration 1s outside 10s–1h0m0s\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
	checkNoDoubledPrefix(t, stderr.String())
	if _, err := Run(context.Background(), Options{Slots: -1}, io.Discard); err == nil || strings.HasPrefix(err.Error(), "demo") {
		t.Errorf("Run error %v: want one without a prefix", err)
	}
}

// checkNoDoubledPrefix fails when s names the command twice in a row.
func checkNoDoubledPrefix(t *testing.T, s string) {
	t.Helper()
	for _, bad := range []string{"demo: demo:", "standbynic demo: standbynic", "demo: standbynic demo"} {
		if strings.Contains(s, bad) {
			t.Errorf("doubled prefix %q in %q", bad, s)
		}
	}
}
