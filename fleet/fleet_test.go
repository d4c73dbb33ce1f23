package fleet

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func simConfig(devices int, shard Shard) *Config {
	b := DefaultBehaviour()
	return &Config{Devices: devices, Shard: shard, Seed: 42, Behaviour: b, Duration: 6 * time.Hour, Sim: true}
}

func runSim(t *testing.T, cfg *Config) *Report {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestShardsMergeExactly: two (and three) shards merge to the totals,
// latency histogram and timeline of one process with the same seed.
func TestShardsMergeExactly(t *testing.T) {
	whole := runSim(t, simConfig(1000, Shard{}))
	for _, n := range []int{2, 3} {
		var parts []*Report
		for i := n - 1; i >= 0; i-- {
			parts = append(parts, runSim(t, simConfig(1000, Shard{i, n})))
		}
		m, err := Merge(parts...)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(whole.Counters, m.Counters); diff != "" {
			t.Errorf("%d shards: counters (-want +got):\n%s", n, diff)
		}
		if diff := cmp.Diff(whole.Latency, m.Latency); diff != "" {
			t.Errorf("%d shards: latency (-want +got):\n%s", n, diff)
		}
		if diff := cmp.Diff(whole.Timeline, m.Timeline); diff != "" {
			t.Errorf("%d shards: timeline (-want +got):\n%s", n, diff)
		}
		if !m.Complete() || m.Channels != whole.Channels {
			t.Errorf("%d shards: %d devices %d channels, want %d %d", n, m.ShardDevices, m.Channels, whole.ShardDevices, whole.Channels)
		}
	}
	if _, err := Merge(whole, whole); err == nil {
		t.Error("merging a shard with itself: no error")
	}
	other := runSim(t, &Config{Devices: 10, Seed: 7, Behaviour: DefaultBehaviour(), Duration: time.Hour, Sim: true})
	if _, err := Merge(whole, other); err == nil {
		t.Error("merging two fleets: no error")
	}
}

// TestSimModel: with every channel on a hardware slot no keep-alive wakes
// a host; with none, keep-alives wake it, coalesced; no push is lost.
func TestSimModel(t *testing.T) {
	hw := simConfig(500, Shard{})
	hw.HardwareSlotsMin, hw.HardwareSlotsMax = 2, 2
	sw := simConfig(500, Shard{})
	sw.HardwareSlotsMin, sw.HardwareSlotsMax = 0, 0
	rh, rs := runSim(t, hw), runSim(t, sw)
	if n := rh.Counters.Wakes[WakeKeepAlive]; n != 0 {
		t.Errorf("hardware fleet: %d keep-alive wakes, want 0", n)
	}
	if rh.Counters.KeepAlivesNIC == 0 {
		t.Error("hardware fleet: no NIC keep-alive")
	}
	if rs.Counters.Wakes[WakeKeepAlive] == 0 || rs.Counters.KeepAlivesNIC != 0 {
		t.Errorf("software fleet: %d keep-alive wakes, %d NIC keep-alives; want > 0, 0", rs.Counters.Wakes[WakeKeepAlive], rs.Counters.KeepAlivesNIC)
	}
	// Coalescing: fewer keep-alive wakes than software keep-alives sent
	// while asleep would need.
	if w, k := rs.Counters.Wakes[WakeKeepAlive], rs.Counters.KeepAlivesHost; w >= k {
		t.Errorf("software fleet: %d keep-alive wakes for %d keep-alives: nothing coalesced", w, k)
	}
	for _, r := range []*Report{rh, rs} {
		if r.Lost() != 0 || r.Counters.Published == 0 || r.Survival() != 1 {
			t.Errorf("published %d, lost %d, survival %v; want > 0, 0, 1", r.Counters.Published, r.Lost(), r.Survival())
		}
	}
	// Hardware pushes wake at once: their p99 is the resume latency.
	if p := rh.Latency.Quantile(0.99); p > 2*hw.ResumeLatency {
		t.Errorf("hardware fleet: push p99 %v, want ≤ %v", p, 2*hw.ResumeLatency)
	}
	if rs.Latency.Quantile(0.5) <= rh.Latency.Quantile(0.5) {
		t.Errorf("software fleet p50 %v not above the hardware fleet's %v", rs.Latency.Quantile(0.5), rh.Latency.Quantile(0.5))
	}
	if rh.Energy() >= rs.Energy() {
		t.Errorf("energy: hardware %v J ≥ software %v J", rh.Energy(), rs.Energy())
	}
}

func TestReportRoundTrip(t *testing.T) {
	r := runSim(t, simConfig(50, Shard{1, 2}))
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	got, err := ReadReport(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for _, f := range []string{"report.md", "latency.svg", "timeline.svg"} {
		if _, err := filepath.Glob(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	ok := func() *Config { return simConfig(10, Shard{}) }
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no devices", func(c *Config) { c.Devices = 0 }},
		{"too many devices", func(c *Config) { c.Devices = MaxDevices + 1 }},
		{"shard index", func(c *Config) { c.Shard = Shard{2, 2} }},
		{"more shards than devices", func(c *Config) { c.Shard = Shard{0, 11} }},
		{"channels", func(c *Config) { c.Channels = MaxChannels + 1 }},
		{"keep-alive order", func(c *Config) { c.KeepAliveMin = 2 * c.KeepAliveMax }},
		{"short push", func(c *Config) { c.PushEvery = time.Millisecond }},
		{"slots", func(c *Config) { c.HardwareSlotsMax = MaxSlots + 1 }},
		{"maintenance", func(c *Config) { c.MaintenanceFor = c.MaintenanceEvery }},
		{"tolerance", func(c *Config) { c.Tolerance = 2 }},
		{"duration", func(c *Config) { c.Duration = 0 }},
		{"no broker", func(c *Config) { c.Sim = false }},
	}
	if _, err := New(ok()); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.mod(c)
			if _, err := New(c); err == nil {
				t.Error("New: no error")
			}
		})
	}
}

func TestParseShard(t *testing.T) {
	for _, s := range []string{"", "1", "a/b", "2/2", "-1/3", "0/0", "0/10001"} {
		if _, err := ParseShard(s); err == nil {
			t.Errorf("ParseShard(%q): no error", s)
		}
	}
	got, err := ParseShard("3/8")
	if err != nil || got != (Shard{3, 8}) {
		t.Errorf("ParseShard(3/8) = %v, %v", got, err)
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{0, 1, 15, 16, 17, 1000, time.Millisecond, time.Second, time.Hour, 1 << 62} {
		i := histIndex(d)
		if d < 1<<51 && histUpper(i) < d {
			t.Errorf("histUpper(histIndex(%v)) = %v < %v", d, histUpper(i), d)
		}
		if i > 0 && d < 1<<51 && histUpper(i-1) >= d {
			t.Errorf("%v: bucket %d, the one below ends at %v", d, i, histUpper(i-1))
		}
		h.Add(d)
	}
	if h.Total() != 10 {
		t.Errorf("total %d, want 10", h.Total())
	}
	if q := h.Quantile(0.5); q < 17 || q > 1100 {
		t.Errorf("p50 %v", q)
	}
}

func TestDecode(t *testing.T) {
	pub := appendPublish(nil, "sbn/1/2/0", 12345, kindPush)
	tests := []struct {
		name string
		in   []byte
		want packet
		n    int
		err  error
	}{
		{"connack", []byte{0x20, 2, 0, 0}, packet{typ: mqttConnack}, 4, nil},
		{"connack refused", []byte{0x20, 2, 0, 5}, packet{typ: mqttConnack, rc: 5}, 4, nil},
		{"suback", []byte{0x90, 3, 0, 1, 0}, packet{typ: mqttSuback}, 5, nil},
		{"pingresp", []byte{0xd0, 0, 0xd0}, packet{typ: mqttPingresp}, 2, nil},
		{"publish", pub, packet{typ: mqttPublish, at: 12345, kind: kindPush}, len(pub), nil},
		{"short", pub[:len(pub)-1], packet{}, 0, errShort},
		{"short header", []byte{0x30}, packet{}, 0, errShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n, err := decode(tt.in)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if tt.err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(packet{})); diff != "" || n != tt.n {
				t.Errorf("decode (-want +got):\n%s n %d want %d", diff, n, tt.n)
			}
		})
	}
	for _, bad := range [][]byte{{0x32, 2, 0, 0}, {0x40, 2, 0, 1}, {0x20, 3, 0, 0, 0}, {0x30, 0xff, 0xff, 0xff, 0xff, 1}} {
		if _, _, err := decode(bad); err == nil || errors.Is(err, errShort) {
			t.Errorf("decode(%x) = %v, want a field error", bad, err)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = decode(pub) }); n != 0 {
		t.Errorf("decode allocates %v times", n)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(appendPublish(nil, "sbn/1/2/0", 7, kindProbe))
	f.Add([]byte{0x20, 2, 0, 0})
	f.Add([]byte{0x90, 3, 0, 1, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, n, err := decode(b)
		if err != nil {
			return
		}
		if n <= 0 || n > len(b) || n > maxPacket {
			t.Fatalf("length %d of %d bytes", n, len(b))
		}
		if p.typ == mqttPublish && p.kind != kindPush && p.kind != kindProbe {
			t.Fatalf("push kind %#x accepted", p.kind)
		}
	})
}

func TestDecodeLine(t *testing.T) {
	tests := []struct {
		name string
		in   string
		id   uint64
		at   int64
		kind byte
		n    int
		err  bool
	}{
		{"push", "push 7 p123\nrest", 7, 123, kindPush, 12, false},
		{"probe", "push 18 q0\n", 18, 0, kindProbe, 11, false},
		{"not a push", "tick 1\n", 0, 0, 0, 0, true},
		{"bad kind", "push 1 x5\n", 0, 0, 0, 0, true},
		{"bad id", "push x p5\n", 0, 0, 0, 0, true},
		{"no payload", "push 1\n", 0, 0, 0, 0, true},
		{"bad time", "push 1 p5z\n", 0, 0, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, at, kind, n, err := decodeLine([]byte(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("err %v, want error %v", err, tt.err)
			}
			if diff := cmp.Diff([]any{tt.id, tt.at, tt.kind, tt.n}, []any{id, at, kind, n}); diff != "" {
				t.Errorf("decodeLine (-want +got):\n%s", diff)
			}
		})
	}
	if _, _, _, _, err := decodeLine([]byte("push 1 p")); !errors.Is(err, errShort) {
		t.Errorf("no newline: %v, want errShort", err)
	}
	long := make([]byte, maxLine)
	if _, _, _, _, err := decodeLine(long); err == nil || errors.Is(err, errShort) {
		t.Errorf("%d bytes without a newline: %v, want a length error", maxLine, err)
	}
	b := []byte("push 42 p987654321\n")
	if n := testing.AllocsPerRun(100, func() { _, _, _, _, _ = decodeLine(b) }); n != 0 {
		t.Errorf("decodeLine allocates %v times", n)
	}
}

func FuzzDecodeLine(f *testing.F) {
	f.Add([]byte("push 7 p123\n"))
	f.Add([]byte("push 18446744073709551615 q9\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, at, kind, n, err := decodeLine(b)
		if err != nil {
			return
		}
		if n <= 0 || n > len(b) || b[n-1] != '\n' || at < 0 || (kind != kindPush && kind != kindProbe) {
			t.Fatalf("decodeLine(%q): n %d at %d kind %q", b, n, at, kind)
		}
	})
}
