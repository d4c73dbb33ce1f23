package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Report is the result of one Run: what ran, where, and every sample.
type Report struct {
	// Command is the command line the report was made with.
	Command string    `json:"command"`
	Started time.Time `json:"started"`
	// Seconds is the run's wall-clock duration.
	Seconds float64 `json:"seconds"`
	Quick   bool    `json:"quick"`
	Runs    int     `json:"runs"`
	Machine Machine `json:"machine"`
	// Scenarios are in the order they ran.
	Scenarios []*Scenario `json:"scenarios"`
}

// Machine describes where the report was measured.
type Machine struct {
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	CPUs      int    `json:"cpus"` // runtime.NumCPU: the CPUs this process may use
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Race      bool   `json:"race"` // built with the race detector
	// LoadAvg is /proc/loadavg's 1, 5 and 15 minute load when the run
	// started: other work on the machine shares its CPUs with the run.
	LoadAvg string `json:"load_avg,omitempty"`
}

// Scenario is the outcome of one scenario: its measurements, the tables
// and plots made of them, and notes that say what was measured and how.
type Scenario struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// Skipped says why the scenario, or a part of it, did not run (e.g.
	// missing privileges); the parts that ran are still reported.
	Skipped []string `json:"skipped,omitempty"`
	Notes   []string `json:"notes,omitempty"`
	// Seconds is the scenario's wall-clock duration.
	Seconds      float64        `json:"seconds"`
	Measurements []*Measurement `json:"measurements"`
	Tables       []*Table       `json:"tables"`
	Plots        []*Plot        `json:"plots,omitempty"`
}

// Measurement is one quantity of one implementation at one parameter,
// measured once per run.
type Measurement struct {
	// Impl names what was measured ("standbynic Matcher", "Linux bridge").
	Impl string `json:"impl"`
	// Param is the parameter as shown in the tables ("4096 patterns");
	// X is its value for the plots.
	Param string  `json:"param"`
	X     float64 `json:"x"`
	// Metric and Unit name the quantity ("time per frame", "ns").
	Metric string `json:"metric"`
	Unit   string `json:"unit"`
	// Samples holds one value per run.
	Samples []float64 `json:"samples"`
	// Values holds every observation behind the samples when a run makes
	// many (the latencies of a CDF); empty otherwise.
	Values []float64 `json:"values,omitempty"`
	// Median is the median of Samples.
	Median JSONNum `json:"median"`
	// Baseline names the measurement this one is compared with (Impl and
	// Param of the same Metric, measured in the same run), and Ratio is
	// Median divided by the baseline's median. The baseline row itself has
	// Ratio 1; NaN (null in JSON) when there is no baseline.
	BaselineImpl  string   `json:"baseline_impl,omitempty"`
	BaselineParam string   `json:"baseline_param,omitempty"`
	Ratio         JSONNum  `json:"ratio"`
	Extra         []string `json:"extra,omitempty"` // e.g. "kernel drops 0"
}

// JSONNum is a float64 that encodes NaN and infinities as null.
type JSONNum float64

// MarshalJSON implements json.Marshaler.
func (n JSONNum) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *JSONNum) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = JSONNum(math.NaN())
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("ratio: %w", err)
	}
	*n = JSONNum(f)
	return nil
}

// Table is one markdown table of a scenario.
type Table struct {
	Title   string     `json:"title"`
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
	// Note is printed under the table.
	Note string `json:"note,omitempty"`
}

// add records a measurement and returns it.
func (s *Scenario) add(m *Measurement) *Measurement {
	s.Measurements = append(s.Measurements, m)
	return m
}

// find returns the measurement of impl, param and metric, or nil.
func (s *Scenario) find(impl, param, metric string) *Measurement {
	for _, m := range s.Measurements {
		if m.Impl == impl && m.Param == param && m.Metric == metric {
			return m
		}
	}
	return nil
}

// finish computes the medians and ratios of s's measurements and builds
// one table per metric, rows in the order measured.
func (s *Scenario) finish() {
	for _, m := range s.Measurements {
		m.Median = JSONNum(median(m.Samples))
	}
	var metrics []string
	seen := map[string]bool{}
	for _, m := range s.Measurements {
		m.Ratio = JSONNum(math.NaN())
		if m.BaselineImpl != "" {
			bp := m.BaselineParam
			if bp == "" {
				bp = m.Param
			}
			if b := s.find(m.BaselineImpl, bp, m.Metric); b != nil && b.Median > 0 && !math.IsNaN(float64(b.Median)) {
				m.Ratio = m.Median / b.Median
			}
		}
		if !seen[m.Metric] {
			seen[m.Metric] = true
			metrics = append(metrics, m.Metric)
		}
	}
	for _, metric := range metrics {
		t := &Table{Title: metric, Columns: []string{"parameter", "implementation", "median", "min – max", "runs", "÷ baseline", "baseline", "notes"}}
		for _, m := range s.Measurements {
			if m.Metric != metric {
				continue
			}
			lo, hi := minMax(m.Samples)
			ratio := "—"
			base := "—"
			if m.BaselineImpl != "" {
				base = m.BaselineImpl
				if m.BaselineParam != "" && m.BaselineParam != m.Param {
					base += " @ " + m.BaselineParam
				}
				if !math.IsNaN(float64(m.Ratio)) {
					ratio = fmt.Sprintf("%.3g×", float64(m.Ratio))
				}
			}
			t.Rows = append(t.Rows, []string{m.Param, m.Impl, fmtVal(float64(m.Median), m.Unit),
				fmtVal(lo, "") + " – " + fmtVal(hi, ""), strconv.Itoa(len(m.Samples)), ratio, base, strings.Join(m.Extra, "; ")})
		}
		s.Tables = append(s.Tables, t)
	}
}

// fmtVal formats a median with three significant digits and its unit.
func fmtVal(v float64, unit string) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	var s string
	switch av := math.Abs(v); {
	case av >= 1e6:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case av >= 100:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	default:
		s = strconv.FormatFloat(v, 'g', 3, 64)
	}
	if unit != "" {
		s += " " + unit
	}
	return s
}

// Write writes the report folder: report.md, report.json and every
// plot's SVG. dir is created if needed.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report dir: %w", err)
	}
	for _, s := range r.Scenarios {
		for _, p := range s.Plots {
			if err := writeFile(filepath.Join(dir, p.File), p.WriteSVG); err != nil {
				return err
			}
		}
	}
	if err := writeFile(filepath.Join(dir, "report.json"), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		return enc.Encode(r)
	}); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "report.md"), func(w io.Writer) error { return r.WriteMarkdown(w, "") })
}

func writeFile(path string, fn func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := fn(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// WriteMarkdown writes the report as markdown; plots are linked as
// imgDir/<file> (imgDir "" for the report folder itself).
func (r *Report) WriteMarkdown(w io.Writer, imgDir string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# standbynic bench report\n\n")
	fmt.Fprintf(&b, "- command: `%s`\n", r.Command)
	fmt.Fprintf(&b, "- started: %s, took %.0f s; %d runs per row (the median is shown)%s\n", r.Started.UTC().Format(time.RFC3339), r.Seconds, r.Runs, map[bool]string{true: "; --quick sizes", false: ""}[r.Quick])
	m := r.Machine
	fmt.Fprintf(&b, "- machine: %d CPUs, %s, Linux kernel %s, %s/%s, %s%s\n", m.CPUs, m.CPUModel, m.Kernel, m.GOOS, m.GOARCH, m.GoVersion, map[bool]string{true: ", race detector on (figures are not representative)", false: ""}[m.Race])
	if m.LoadAvg != "" {
		fmt.Fprintf(&b, "- load average when the run started: %s (other work shares the CPUs with the run)\n", m.LoadAvg)
	}
	b.WriteString("- every baseline is measured on the same machine in the same run; \"÷ baseline\" is this row's median divided by the baseline row's median (for a cost, below 1 means cheaper than the baseline; for a rate, above 1 means faster)\n\n")
	for _, s := range r.Scenarios {
		writeScenarioMarkdown(&b, s, imgDir, "##")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeScenarioMarkdown(b *strings.Builder, s *Scenario, imgDir, h string) {
	fmt.Fprintf(b, "%s %s\n\n", h, s.Title)
	for _, n := range s.Notes {
		fmt.Fprintf(b, "- %s\n", n)
	}
	for _, n := range s.Skipped {
		fmt.Fprintf(b, "- **not measured:** %s\n", n)
	}
	fmt.Fprintf(b, "- scenario time: %.1f s\n\n", s.Seconds)
	for _, t := range s.Tables {
		fmt.Fprintf(b, "**%s**\n\n", t.Title)
		b.WriteString("| " + strings.Join(t.Columns, " | ") + " |\n")
		b.WriteString("|" + strings.Repeat("---|", len(t.Columns)) + "\n")
		for _, row := range t.Rows {
			cells := make([]string, len(row))
			for i, c := range row {
				cells[i] = strings.ReplaceAll(c, "|", `\|`)
			}
			b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		}
		if t.Note != "" {
			fmt.Fprintf(b, "\n%s\n", t.Note)
		}
		b.WriteString("\n")
	}
	for _, p := range s.Plots {
		path := p.File
		if imgDir != "" {
			path = imgDir + "/" + p.File
		}
		fmt.Fprintf(b, "![%s](%s)\n\n", p.Title, path)
	}
}
