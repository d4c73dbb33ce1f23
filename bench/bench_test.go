package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/internal/netlab"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"zero", Config{}, ""},
		{"five runs", Config{Runs: 5}, ""},
		{"too few runs", Config{Runs: 4}, "runs 4 below the minimum 5"},
		{"too many runs", Config{Runs: 1001}, "runs 1001 above the limit 1000"},
		{"known scenarios", Config{Only: []string{"classify", "hostwakes"}}, ""},
		{"unknown scenario", Config{Only: []string{"classify", "nope"}}, `unknown scenario "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate() = %v, want an ErrConfig containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		q    float64
		want float64
	}{
		{"odd median", []float64{3, 1, 2}, 0.5, 2},
		{"even median", []float64{4, 1, 3, 2}, 0.5, 2.5},
		{"min", []float64{5, 7, 6}, 0, 5},
		{"max", []float64{5, 7, 6}, 1, 7},
		{"p99 interpolates", []float64{0, 100}, 0.99, 99},
		{"one", []float64{42}, 0.99, 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.xs...)
			if got := quantile(tt.xs, tt.q); got != tt.want {
				t.Errorf("quantile(%v, %v) = %v, want %v", tt.xs, tt.q, got, tt.want)
			}
			if diff := cmp.Diff(in, tt.xs); diff != "" {
				t.Errorf("quantile modified its input (-want +got):\n%s", diff)
			}
		})
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
}

func TestFinishRatios(t *testing.T) {
	s := &Scenario{}
	s.add(&Measurement{Impl: "a", Param: "p", Metric: "m", Unit: "ns", Samples: []float64{10, 30, 20, 20, 20}, BaselineImpl: "b"})
	s.add(&Measurement{Impl: "b", Param: "p", Metric: "m", Unit: "ns", Samples: []float64{40, 40, 40, 40, 40}, BaselineImpl: "b"})
	s.add(&Measurement{Impl: "c", Param: "q", Metric: "m", Unit: "ns", Samples: []float64{80, 80, 80, 80, 80}, BaselineImpl: "b", BaselineParam: "p"})
	s.add(&Measurement{Impl: "d", Param: "p", Metric: "other", Unit: "B", Samples: []float64{1, 1, 1, 1, 1}})
	s.finish()
	got := []float64{float64(s.Measurements[0].Ratio), float64(s.Measurements[1].Ratio), float64(s.Measurements[2].Ratio)}
	if diff := cmp.Diff([]float64{0.5, 1, 2}, got); diff != "" {
		t.Errorf("ratios (-want +got):\n%s", diff)
	}
	if !math.IsNaN(float64(s.Measurements[3].Ratio)) {
		t.Errorf("ratio without baseline = %v, want NaN", s.Measurements[3].Ratio)
	}
	if len(s.Tables) != 2 || len(s.Tables[0].Rows) != 3 || len(s.Tables[1].Rows) != 1 {
		t.Fatalf("tables %+v, want one of 3 rows for m and one of 1 row for other", s.Tables)
	}
	if row := s.Tables[0].Rows[2]; row[5] != "2×" || row[6] != "b @ p" {
		t.Errorf("row %q: want ratio 2× against b @ p", row)
	}
	b, err := json.Marshal(s.Measurements[3])
	if err != nil || !strings.Contains(string(b), `"ratio":null`) {
		t.Errorf("json of a NaN ratio = %s, %v; want null", b, err)
	}
}

// svgInfo is what checkSVG found in a document.
type svgInfo struct {
	title, xlabel, ylabel string
	legend                []string
	lines                 int // polylines and markers drawn
}

// checkSVG parses an SVG document as XML and returns what a reader sees.
func checkSVG(t *testing.T, name string, data []byte) svgInfo {
	t.Helper()
	var info svgInfo
	dec := xml.NewDecoder(bytes.NewReader(data))
	var stack []xml.StartElement
	root := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed XML: %v", name, err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
			stack = append(stack, el)
			if el.Name.Local == "polyline" || el.Name.Local == "circle" {
				info.lines++
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				continue
			}
			top := stack[len(stack)-1]
			text := strings.TrimSpace(string(el))
			class := ""
			for _, a := range top.Attr {
				if a.Name.Local == "class" {
					class = a.Value
				}
			}
			switch {
			case top.Name.Local == "title" && len(stack) == 2 && info.title == "":
				info.title = text
			case class == "xlabel":
				info.xlabel = text
			case class == "ylabel":
				info.ylabel = text
			case class == "legend-entry":
				info.legend = append(info.legend, text)
			}
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root element %q, want svg", name, root)
	}
	return info
}

func TestPlotSVG(t *testing.T) {
	p := &Plot{File: "x.svg", Title: "Cost <per> frame & more", XLabel: "patterns", YLabel: "time (ns)", LogX: true, LogY: true,
		Series: []Series{
			{Name: "a", Points: []Point{{1, 10}, {10, 20}, {1000, 25}}},
			{Name: "b", Points: []Point{{1, 100}, {10, 0}, {1000, 2500}}}, // 0 cannot be drawn on a log axis
		}}
	var b bytes.Buffer
	if err := p.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	got := checkSVG(t, p.File, b.Bytes())
	want := svgInfo{title: "Cost <per> frame & more", xlabel: "patterns — log scale", ylabel: "time (ns) — log scale", legend: []string{"a", "b"}, lines: 2 + 3 + 2}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(svgInfo{})); diff != "" {
		t.Errorf("svg (-want +got):\n%s", diff)
	}
}

func TestNewAxis(t *testing.T) {
	tests := []struct {
		name  string
		vals  []float64
		log   bool
		ticks []string
	}{
		{"decades", []float64{3, 4000}, true, []string{"1", "10", "100", "1k", "10k"}},
		{"one decade", []float64{100, 100}, true, []string{"100", "1k"}},
		{"linear from zero", []float64{0.2, 0.9}, false, []string{"0", "0.2", "0.4", "0.6", "0.8", "1"}},
		{"nothing drawable", []float64{0, -1}, true, []string{"1", "10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, major, _ := newAxis(tt.vals, tt.log, 0, 100)
			var got []string
			for _, tk := range major {
				got = append(got, tk.label)
			}
			if diff := cmp.Diff(tt.ticks, got); diff != "" {
				t.Errorf("ticks (-want +got):\n%s", diff)
			}
		})
	}
}

// wantRows lists, per scenario, the implementations its tables must show.
var wantRows = map[string][]string{
	"classify":    {implMatcher, implNewPacket, implDLP, implBPFVM, implKernelBPF, implKernelNone},
	"rx":          {implD3, implTPacket, implRecv},
	"forward":     {implD0, implBridge},
	"keepalive":   {implEngine, implKernelKA},
	"wakelatency": {implWakeSend, implWakeRx, implHostWake, implHostTask, implRingRead, implRecvRead},
	"hostwakes":   {hostWakesImpl(0, false), hostWakesImpl(16, true)},
}

// wantPlots lists the plots of each scenario.
var wantPlots = map[string][]string{
	"classify":    {"classify.svg"},
	"keepalive":   {"keepalive-cpu.svg", "keepalive-lateness.svg", "keepalive-memory.svg"},
	"wakelatency": {"wakelatency.svg"},
	"hostwakes":   {"hostwakes.svg", "hostenergy.svg"},
}

// checkReportDir checks a report folder: report.json parses and holds the
// scenarios with at least runs samples per row and a ratio wherever a
// baseline is named, every plot parses as SVG with a title, axis labels
// and a legend, and report.md shows every table row.
func checkReportDir(t *testing.T, dir string, ids []string, runs int, privileged bool) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range r.Scenarios {
		got = append(got, s.ID)
	}
	if diff := cmp.Diff(ids, got); diff != "" {
		t.Fatalf("scenarios (-want +got):\n%s", diff)
	}
	if r.Runs != runs || r.Machine.CPUs < 1 || r.Machine.GOOS == "" {
		t.Errorf("report header: runs %d (want %d), machine %+v", r.Runs, runs, r.Machine)
	}
	for _, s := range r.Scenarios {
		if privileged && len(s.Skipped) > 0 {
			t.Errorf("%s: skipped parts with privileges: %q", s.ID, s.Skipped)
		}
		if !strings.Contains(string(md), "## "+s.Title) {
			t.Errorf("report.md has no section %q", s.Title)
		}
		impls := map[string]bool{}
		for _, m := range s.Measurements {
			impls[m.Impl] = true
			if len(m.Samples) < runs {
				t.Errorf("%s: %s %s %s: %d samples, want ≥ %d", s.ID, m.Impl, m.Param, m.Metric, len(m.Samples), runs)
			}
			for _, v := range m.Samples {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Errorf("%s: %s %s %s: sample %v", s.ID, m.Impl, m.Param, m.Metric, v)
				}
			}
			if m.BaselineImpl != "" && math.IsNaN(float64(m.Ratio)) {
				t.Errorf("%s: %s %s %s: no ratio against %s", s.ID, m.Impl, m.Param, m.Metric, m.BaselineImpl)
			}
		}
		want := wantRows[s.ID]
		if !privileged {
			want = want[:0:0]
			for _, impl := range wantRows[s.ID] {
				if !strings.Contains(impl, "kernel") && !strings.Contains(impl, "AF_PACKET") && impl != implKernelKA {
					want = append(want, impl)
				}
			}
		}
		for _, impl := range want {
			if !impls[impl] {
				t.Errorf("%s: no row for %q", s.ID, impl)
			}
		}
		rows := 0
		for _, tb := range s.Tables {
			rows += len(tb.Rows)
			if !strings.Contains(string(md), "**"+tb.Title+"**") {
				t.Errorf("%s: report.md lacks table %q", s.ID, tb.Title)
			}
			for _, row := range tb.Rows {
				if len(row) != len(tb.Columns) {
					t.Errorf("%s: row %q has %d cells for %d columns", s.ID, row, len(row), len(tb.Columns))
				}
				if !strings.Contains(string(md), "| "+row[0]+" | "+row[1]+" | "+row[2]+" |") {
					t.Errorf("%s: report.md lacks row %q", s.ID, row[:3])
				}
			}
		}
		if rows != len(s.Measurements) {
			t.Errorf("%s: %d table rows for %d measurements", s.ID, rows, len(s.Measurements))
		}
		var files []string
		for _, p := range s.Plots {
			files = append(files, p.File)
			data, err := os.ReadFile(filepath.Join(dir, p.File))
			if err != nil {
				t.Errorf("%s: %v", s.ID, err)
				continue
			}
			info := checkSVG(t, p.File, data)
			if info.title == "" || info.xlabel == "" || info.ylabel == "" || len(info.legend) == 0 || info.lines == 0 {
				t.Errorf("%s: %s: title %q, x label %q, y label %q, legend %q, %d lines: want all", s.ID, p.File, info.title, info.xlabel, info.ylabel, info.legend, info.lines)
			}
			if !strings.Contains(info.xlabel, "(") && !strings.Contains(info.xlabel, "channels") && !strings.Contains(info.xlabel, "slots") && !strings.Contains(info.xlabel, "patterns") {
				t.Errorf("%s: %s: x label %q names no unit", s.ID, p.File, info.xlabel)
			}
			if !strings.Contains(info.ylabel, "(") {
				t.Errorf("%s: %s: y label %q names no unit", s.ID, p.File, info.ylabel)
			}
			if !strings.Contains(string(md), "]("+p.File+")") {
				t.Errorf("%s: report.md does not show %s", s.ID, p.File)
			}
		}
		if diff := cmp.Diff(wantPlots[s.ID], files); diff != "" {
			t.Errorf("%s: plots (-want +got):\n%s", s.ID, diff)
		}
	}
}

// TestReportHostWakes runs the unprivileged simulation scenario and checks
// the folder it writes.
func TestReportHostWakes(t *testing.T) {
	r, err := Run(context.Background(), &Config{Quick: true, Only: []string{"hostwakes"}, Command: "test"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	checkReportDir(t, dir, []string{"hostwakes"}, MinRuns, true)
	// The shape the simulation must have: more hardware slots never cost
	// more wakes, and coalescing never costs more than one timer each.
	s := r.Scenarios[0]
	for _, n := range []string{"10 channels", "100 channels", "1000 channels"} {
		prev := math.Inf(1)
		for _, hw := range []int{0, 1, 4, 8, 16} {
			off := s.find(hostWakesImpl(hw, false), n, "host wakes per hour")
			on := s.find(hostWakesImpl(hw, true), n, "host wakes per hour")
			if off == nil || on == nil {
				t.Fatalf("%s, %d hw: missing rows", n, hw)
			}
			if float64(on.Median) > float64(off.Median) {
				t.Errorf("%s, %d hw: %v wakes/h coalescing > %v without", n, hw, on.Median, off.Median)
			}
			if float64(off.Median) > prev {
				t.Errorf("%s, %d hw: %v wakes/h, more than with fewer slots (%v)", n, hw, off.Median, prev)
			}
			prev = float64(off.Median)
		}
	}
}

// TestIntegrationQuickReport runs the whole harness with Quick, as
// `standbynic bench --quick` does, and checks the report folder (not the
// speed).
func TestIntegrationQuickReport(t *testing.T) {
	netlab.RequirePrivileges(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var log bytes.Buffer
	r, err := Run(ctx, &Config{Quick: true, Command: "standbynic bench --quick", Log: &log})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	// STANDBYNIC_BENCH_KEEP keeps the folder for inspection.
	dir := os.Getenv("STANDBYNIC_BENCH_KEEP")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	checkReportDir(t, dir, Scenarios(), MinRuns, true)
	checkTaskStart(t, r)
	t.Logf("quick run took %.1f s (race detector %v)", r.Seconds, raceEnabled)
}

// checkTaskStart checks that scenario 5 reaches the push task's start:
// its CDF has the wake event and the task start of every push, each
// after the frame's receive time.
func checkTaskStart(t *testing.T, r *Report) {
	t.Helper()
	for _, s := range r.Scenarios {
		if s.ID != "wakelatency" {
			continue
		}
		got := map[string][]Point{}
		for _, p := range s.Plots {
			for _, sr := range p.Series {
				got[sr.Name] = sr.Points
			}
		}
		for _, impl := range []string{implHostWake, implHostTask} {
			pts := got[impl]
			if want := 20 * r.Runs; len(pts) != want {
				t.Errorf("wakelatency: series %q has %d points, want %d (20 pushes × %d runs)", impl, len(pts), want, r.Runs)
			}
			for _, p := range pts {
				if !(p.X > 0) {
					t.Errorf("wakelatency: %q: latency %v µs, want > 0", impl, p.X)
					break
				}
			}
		}
		return
	}
	t.Error("no wakelatency scenario")
}
