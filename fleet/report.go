package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/standbynic/standbynic/bench"
)

// Counters are a shard's totals; every field adds up across shards.
type Counters struct {
	ChannelsConnected uint64 `json:"channels_connected"`
	// Wakes are host wakes by reason (keepalive, push, maintenance).
	Wakes   [numReasons]uint64 `json:"wakes"`
	Resumes uint64             `json:"resumes"`
	// AwakeNanos is the devices' time awake, summed.
	AwakeNanos uint64 `json:"awake_ns"`
	// KeepAlivesNIC were sent by a NIC slot while the host slept,
	// KeepAlivesHost by an awake host; KeepAliveAnswers came back.
	KeepAlivesNIC    uint64 `json:"keepalives_nic"`
	KeepAlivesHost   uint64 `json:"keepalives_host"`
	KeepAliveAnswers uint64 `json:"keepalive_answers"`
	// Published pushes; Delivered to the app (DeliveredAtEnd of them at
	// the final wake); PushesHeld waited for a wake on a software
	// channel; PushesToDead were not sent (their channel was gone).
	Published      uint64 `json:"published"`
	Delivered      uint64 `json:"delivered"`
	DeliveredAtEnd uint64 `json:"delivered_at_end"`
	PushesHeld     uint64 `json:"pushes_held"`
	PushesToDead   uint64 `json:"pushes_to_dead"`
	// PushesRefused: the push server's API refused the push (line).
	PushesRefused uint64 `json:"pushes_refused"`
	// ProbesSent at the end, one per live channel, and ProbesReceived
	// back through the broker: the connections the server still holds.
	ProbesSent     uint64 `json:"probes_sent"`
	ProbesReceived uint64 `json:"probes_received"`
	Disconnects    uint64 `json:"disconnects"`
	ProtocolErrors uint64 `json:"protocol_errors"`
	WriteErrors    uint64 `json:"write_errors"`
}

func (c *Counters) add(o *Counters) {
	c.ChannelsConnected += o.ChannelsConnected
	for i := range c.Wakes {
		c.Wakes[i] += o.Wakes[i]
	}
	c.Resumes += o.Resumes
	c.AwakeNanos += o.AwakeNanos
	c.KeepAlivesNIC += o.KeepAlivesNIC
	c.KeepAlivesHost += o.KeepAlivesHost
	c.KeepAliveAnswers += o.KeepAliveAnswers
	c.Published += o.Published
	c.Delivered += o.Delivered
	c.DeliveredAtEnd += o.DeliveredAtEnd
	c.PushesHeld += o.PushesHeld
	c.PushesToDead += o.PushesToDead
	c.PushesRefused += o.PushesRefused
	c.ProbesSent += o.ProbesSent
	c.ProbesReceived += o.ProbesReceived
	c.Disconnects += o.Disconnects
	c.ProtocolErrors += o.ProtocolErrors
	c.WriteErrors += o.WriteErrors
}

// Histogram counts durations in log-linear buckets (16 per power of two
// of nanoseconds, ≤ 6.25 % wide): exact to merge, percentiles to a
// bucket's upper bound.
type Histogram struct {
	Counts [histBuckets]uint64 `json:"counts"`
}

const histSub = 16
const histBuckets = 48 * histSub // up to 2^52 ns (52 days); the rest in the last

func histIndex(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - 5 // keep 5 significant bits: 1 + 4 sub-bucket bits
	i := (e+1)*histSub + int(v>>uint(e)) - histSub
	return min(i, histBuckets-1)
}

// histUpper is the largest duration of bucket i.
func histUpper(i int) time.Duration {
	if i < histSub {
		return time.Duration(i)
	}
	e := i/histSub - 1
	m := uint64(i%histSub + histSub)
	return time.Duration((m+1)<<uint(e) - 1)
}

// Add counts d.
func (h *Histogram) Add(d time.Duration) { h.Counts[histIndex(d)]++ }

// Total is the number of samples.
func (h *Histogram) Total() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Quantile returns the upper bound of the bucket holding quantile q.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.Total()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n-1)) + 1
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			return histUpper(i)
		}
	}
	return histUpper(histBuckets - 1)
}

func (h *Histogram) add(o *Histogram) {
	for i := range h.Counts {
		h.Counts[i] += o.Counts[i]
	}
}

// Sample is one point of the timeline (engine time since the start).
type Sample struct {
	At         float64 `json:"at_s"`
	Connected  uint64  `json:"connected"`
	Asleep     uint64  `json:"asleep"`
	Wakes      uint64  `json:"wakes"`
	Delivered  uint64  `json:"delivered"`
	KeepAlives uint64  `json:"keepalives"`
}

// Memory is standbynic's own memory for the shard's devices, measured
// after every channel connected.
type Memory struct {
	Devices int `json:"devices"`
	// HeapStackBytes: Go heap and goroutine stacks in use, after minus
	// before the devices existed; RSSBytes the same of the resident set.
	HeapStackBytes float64 `json:"heap_stack_bytes"`
	RSSBytes       float64 `json:"rss_bytes"`
	Goroutines     int     `json:"goroutines"`
}

// Report is a shard's result, or a merge of shards.
type Report struct {
	Command   string    `json:"command,omitempty"`
	Seed      uint64    `json:"seed"`
	Devices   int       `json:"devices"` // the fleet's size
	Behaviour Behaviour `json:"behaviour"`
	Duration  float64   `json:"duration_s"`
	Sim       bool      `json:"sim"`
	Broker    string    `json:"broker,omitempty"`
	Protocol  string    `json:"protocol"`
	// Shards merged in this report ("i/N"), sorted; ShardDevices the
	// devices they ran.
	Shards       []string `json:"shards"`
	ShardDevices int      `json:"shard_devices"`
	Channels     int      `json:"channels"`
	// Wall is the wall-clock seconds of the run (longest shard).
	Wall     float64   `json:"wall_s"`
	Counters Counters  `json:"counters"`
	Latency  Histogram `json:"push_latency"`
	Timeline []Sample  `json:"timeline"`
	// Memory per shard (a merge keeps every shard's).
	Memory   Memory   `json:"memory"`
	Memories []Memory `json:"memories,omitempty"`
}

func (e *Engine) reportLocked() *Report {
	return &Report{
		Seed: e.cfg.Seed, Devices: e.cfg.Devices, Behaviour: e.cfg.Behaviour,
		Duration: e.cfg.Duration.Seconds(), Sim: e.cfg.Sim, Broker: brokerString(e.cfg), Protocol: e.cfg.protocol(),
		Shards: []string{e.cfg.Shard.String()}, ShardDevices: len(e.devs), Channels: len(e.chans),
		Counters: e.c, Latency: e.lat, Timeline: slices.Clone(e.samples),
	}
}

func brokerString(c Config) string {
	if c.Sim {
		return ""
	}
	return c.Broker.String()
}

// Merge adds shard reports of one fleet (same seed, size, behaviour and
// duration; distinct shards) into one. Totals, histograms and timelines
// add exactly.
func Merge(rs ...*Report) (*Report, error) {
	if len(rs) == 0 {
		return nil, errors.New("fleet: merge: no reports")
	}
	out := *rs[0]
	out.Shards = nil
	out.Counters = Counters{}
	out.Latency = Histogram{}
	out.Timeline = make([]Sample, len(rs[0].Timeline))
	out.ShardDevices, out.Channels, out.Wall = 0, 0, 0
	out.Memories = nil
	seen := map[string]bool{}
	for i, r := range rs {
		if r.Seed != out.Seed || r.Devices != out.Devices || r.Duration != out.Duration || r.Sim != out.Sim || r.Behaviour != out.Behaviour || r.Protocol != out.Protocol {
			return nil, fmt.Errorf("fleet: merge: report %d is of another fleet (seed, devices, duration, sim, protocol or behaviour differ)", i)
		}
		if len(r.Timeline) != len(out.Timeline) {
			return nil, fmt.Errorf("fleet: merge: report %d has %d timeline samples, want %d", i, len(r.Timeline), len(out.Timeline))
		}
		for _, s := range r.Shards {
			if seen[s] {
				return nil, fmt.Errorf("fleet: merge: shard %s twice", s)
			}
			seen[s] = true
			out.Shards = append(out.Shards, s)
		}
		out.ShardDevices += r.ShardDevices
		out.Channels += r.Channels
		out.Wall = max(out.Wall, r.Wall)
		out.Counters.add(&r.Counters)
		out.Latency.add(&r.Latency)
		for k, s := range r.Timeline {
			t := &out.Timeline[k]
			t.At = s.At
			t.Connected += s.Connected
			t.Asleep += s.Asleep
			t.Wakes += s.Wakes
			t.Delivered += s.Delivered
			t.KeepAlives += s.KeepAlives
		}
		if len(r.Memories) > 0 {
			out.Memories = append(out.Memories, r.Memories...)
		} else {
			out.Memories = append(out.Memories, r.Memory)
		}
	}
	out.Memory = Memory{}
	for _, m := range out.Memories {
		out.Memory.Devices += m.Devices
		out.Memory.HeapStackBytes += m.HeapStackBytes
		out.Memory.RSSBytes += m.RSSBytes
		out.Memory.Goroutines += m.Goroutines
	}
	slices.Sort(out.Shards)
	return &out, nil
}

// Complete says whether the report covers every device of the fleet.
func (r *Report) Complete() bool { return r.ShardDevices == r.Devices }

// DeviceHours is the devices' run time, in hours.
func (r *Report) DeviceHours() float64 { return float64(r.ShardDevices) * r.Duration / 3600 }

// WakesPerDeviceHour returns host wakes per device-hour by reason name
// and in total.
func (r *Report) WakesPerDeviceHour() map[string]float64 {
	out := map[string]float64{}
	h := r.DeviceHours()
	var all uint64
	for i, n := range r.Counters.Wakes {
		out[reasonNames[i]] = float64(n) / h
		all += n
	}
	out["total"] = float64(all) / h
	return out
}

// Lost is the pushes published and never delivered.
func (r *Report) Lost() uint64 {
	return r.Counters.Published - min(r.Counters.Delivered, r.Counters.Published)
}

// Survival is the share of connected channels the broker still served at
// the end (probes back / channels connected).
func (r *Report) Survival() float64 {
	if r.Counters.ChannelsConnected == 0 {
		return 0
	}
	return float64(r.Counters.ProbesReceived) / float64(r.Counters.ChannelsConnected)
}

// BytesPerDevice is standbynic's own memory per device (heap and stacks).
func (r *Report) BytesPerDevice() float64 {
	if r.Memory.Devices == 0 {
		return 0
	}
	return r.Memory.HeapStackBytes / float64(r.Memory.Devices)
}

// Energy is the fleet's modelled energy in joules: awake, standby and
// resumes.
func (r *Report) Energy() float64 {
	b := r.Behaviour
	awake := float64(r.Counters.AwakeNanos) / 1e9
	total := r.DeviceHours() * 3600
	return (b.AwakeMW*awake + b.StandbyMW*(total-awake) + b.ResumeMJ*float64(r.Counters.Resumes)) / 1000
}

// WriteMarkdown writes the report's tables.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	c := &r.Counters
	mode := r.Protocol + " server " + r.Broker
	if r.Sim {
		mode = "simulation (virtual clock, no network)"
	}
	fmt.Fprintf(&b, "# standbynic fleet\n\n")
	if r.Command != "" {
		fmt.Fprintf(&b, "`%s`\n\n", r.Command)
	}
	fmt.Fprintf(&b, "%d of %d devices (shards %s), %d channels, %s, seed %d, %.0f s (%.1f s wall).\n",
		r.ShardDevices, r.Devices, strings.Join(r.Shards, " "), r.Channels, mode, r.Seed, r.Duration, r.Wall)
	bh := r.Behaviour
	fmt.Fprintf(&b, "Behaviour: keep-alive %v–%v, push every %v (mean), hardware slots %d–%d, maintenance every %v for %v.\n\n",
		bh.KeepAliveMin, bh.KeepAliveMax, bh.PushEvery, bh.HardwareSlotsMin, bh.HardwareSlotsMax, bh.MaintenanceEvery, bh.MaintenanceFor)
	wph := r.WakesPerDeviceHour()
	h := r.DeviceHours()
	b.WriteString("| metric | value |\n|---|---|\n")
	row := func(k, f string, a ...any) { fmt.Fprintf(&b, "| %s | "+f+" |\n", append([]any{k}, a...)...) }
	for _, name := range reasonNames {
		row("host wakes / device-hour: "+name, "%.3f", wph[name])
	}
	row("host wakes / device-hour: total", "%.3f", wph["total"])
	row("keep-alives on the wire / hour, fleet-wide (NIC, host)", "%.0f (%.0f, %.0f)", float64(c.KeepAlivesNIC+c.KeepAlivesHost)/(h/float64(max(r.ShardDevices, 1))), float64(c.KeepAlivesNIC)/(h/float64(max(r.ShardDevices, 1))), float64(c.KeepAlivesHost)/(h/float64(max(r.ShardDevices, 1))))
	if r.Protocol == ProtocolLine {
		row("keep-alives answered", "— (the line protocol's \"ka\" has no answer)")
	} else {
		row("keep-alives answered", "%d of %d", c.KeepAliveAnswers, c.KeepAlivesNIC+c.KeepAlivesHost)
	}
	row("connections held by the server at the end", "%d of %d (%.2f %%)", c.ProbesReceived, c.ChannelsConnected, 100*r.Survival())
	row("disconnects seen", "%d", c.Disconnects)
	if c.PushesRefused > 0 {
		row("pushes the server refused", "%d", c.PushesRefused)
	}
	row("pushes published, delivered, lost", "%d, %d, %d", c.Published, c.Delivered, r.Lost())
	row("pushes held for a wake (software channels)", "%d (%d at the final wake)", c.PushesHeld, c.DeliveredAtEnd)
	for _, q := range []float64{0.5, 0.9, 0.99, 1} {
		row(fmt.Sprintf("push delivery latency p%g", q*100), "%v", r.Latency.Quantile(q))
	}
	row("energy (model)", "%.1f J (%.2f mW per device)", r.Energy(), 1000*r.Energy()/max(h*3600, 1e-9))
	row("memory per device (heap+stacks, RSS)", "%.0f B, %.0f B", r.BytesPerDevice(), r.Memory.RSSBytes/float64(max(r.Memory.Devices, 1)))
	row("goroutines", "%d", r.Memory.Goroutines)
	b.WriteString("\n![push latency](latency.svg)\n\n![timeline](timeline.svg)\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) plots() []*bench.Plot {
	lat := &bench.Plot{File: "latency.svg", Title: "Push delivery latency (CDF)", XLabel: "latency (ms)", YLabel: "pushes (%)", LogX: true}
	s := bench.Series{Name: "fleet"}
	n := r.Latency.Total()
	var seen uint64
	for i, c := range r.Latency.Counts {
		if c == 0 {
			continue
		}
		seen += c
		s.Points = append(s.Points, bench.Point{X: max(float64(histUpper(i))/1e6, 1e-3), Y: 100 * float64(seen) / float64(n)})
	}
	lat.Series = []bench.Series{s}
	tl := &bench.Plot{File: "timeline.svg", Title: "Fleet over time", XLabel: "time (s)", YLabel: "count"}
	var conn, asleep, wakes, deliv bench.Series
	conn.Name, asleep.Name, wakes.Name, deliv.Name = "channels connected", "devices asleep", "host wakes (cumulative)", "pushes delivered (cumulative)"
	for _, p := range r.Timeline {
		conn.Points = append(conn.Points, bench.Point{X: p.At, Y: float64(p.Connected)})
		asleep.Points = append(asleep.Points, bench.Point{X: p.At, Y: float64(p.Asleep)})
		wakes.Points = append(wakes.Points, bench.Point{X: p.At, Y: float64(p.Wakes)})
		deliv.Points = append(deliv.Points, bench.Point{X: p.At, Y: float64(p.Delivered)})
	}
	tl.Series = []bench.Series{conn, asleep, wakes, deliv}
	return []*bench.Plot{lat, tl}
}

// Write writes report.md, report.json and the SVG plots into dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("fleet: report: %w", err)
	}
	write := func(name string, fn func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("fleet: report: %w", err)
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("fleet: report %s: %w", name, err)
		}
		return f.Close()
	}
	if err := write("report.json", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}); err != nil {
		return err
	}
	if err := write("report.md", r.WriteMarkdown); err != nil {
		return err
	}
	for _, p := range r.plots() {
		if len(p.Series) == 0 || len(p.Series[0].Points) == 0 {
			continue
		}
		if err := write(p.File, p.WriteSVG); err != nil {
			return err
		}
	}
	return nil
}

// ReadReport reads a report.json (strictly: unknown fields fail).
func ReadReport(path string) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(io.LimitReader(f, 64<<20))
	dec.DisallowUnknownFields()
	var r Report
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("fleet: %s: %w", path, err)
	}
	if r.Devices < 1 || r.Devices > MaxDevices || r.ShardDevices < 0 || r.ShardDevices > r.Devices || len(r.Shards) == 0 {
		return nil, fmt.Errorf("fleet: %s: devices %d, shard devices %d, %d shards: not a fleet report", path, r.Devices, r.ShardDevices, len(r.Shards))
	}
	return &r, nil
}
