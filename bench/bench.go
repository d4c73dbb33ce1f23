package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/standbynic/standbynic/internal/pktpump"
)

// MinRuns is the fewest runs per row: every table row is a median of at
// least this many.
const MinRuns = 5

// Bounds of a whole Run.
const (
	FullBudget  = 10 * time.Minute
	QuickBudget = 60 * time.Second
)

// ErrConfig is wrapped by every error about a bad Config.
var ErrConfig = errors.New("invalid bench config")

// Config selects what Run measures. The zero value runs every scenario
// at full size with MinRuns runs.
type Config struct {
	// Quick shrinks every scenario so the whole run stays under
	// QuickBudget (CI); the full run stays under FullBudget.
	Quick bool
	// Runs is the number of runs per row, at least MinRuns; 0 means
	// MinRuns.
	Runs int
	// Only lists the scenario IDs to run (see Scenarios); empty runs all.
	Only []string
	// Command is recorded in the report as the command that made it.
	Command string
	// Log receives one progress line per step (nil: discard).
	Log io.Writer
}

// scenarioFunc measures one scenario into s. It returns an error only
// when the scenario could not be measured at all; parts that cannot run
// (no privileges) are listed in s.Skipped.
type scenarioFunc func(ctx context.Context, e *env, s *Scenario) error

type scenarioDef struct {
	id, title string
	run       scenarioFunc
	// share is the scenario's expected part of the run's time.
	share time.Duration
}

// scenarios, in the order they run.
var scenarios = []scenarioDef{
	{"classify", "1. Classification cost per frame against the number of patterns", runClassify, 100 * time.Second},
	{"rx", "2. Receive path on a veth while asleep (D3)", runRx, 70 * time.Second},
	{"forward", "3. Forwarding while awake (D0)", runForward, 100 * time.Second},
	{"keepalive", "4. Keep-alive engine scale against the kernel's TCP keep-alive", runKeepalive, 200 * time.Second},
	{"wakelatency", "5. Wake latency", runWakeLatency, 40 * time.Second},
	{"hostwakes", "6. Host wakes per hour and estimated energy", runHostWakes, 40 * time.Second},
}

// The senders' window (internal/pktpump): a quick run (CI: the race
// detector, tests in parallel) keeps 512, a quarter of pktpump.Window:
// its figures are not compared.
const pumpWindowQuick = 512

// window is the senders' window of this run.
func (e *env) window() int { return pick(e, pumpWindowQuick, pktpump.Window) }

// Scenarios returns the IDs of the scenarios in the order Run runs them.
func Scenarios() []string {
	ids := make([]string, len(scenarios))
	for i, s := range scenarios {
		ids[i] = s.id
	}
	return ids
}

// env is what a scenario reads: sizes, run count, the log.
type env struct {
	quick bool
	runs  int
	log   io.Writer
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// pick returns quick in a quick run, full otherwise.
func pick[T any](e *env, quick, full T) T {
	if e.quick {
		return quick
	}
	return full
}

// Validate reports the first bad field of c.
func (c *Config) Validate() error {
	if c.Runs != 0 && c.Runs < MinRuns {
		return fmt.Errorf("%w: runs %d below the minimum %d (every row is a median of at least %d runs)", ErrConfig, c.Runs, MinRuns, MinRuns)
	}
	if c.Runs > 1000 {
		return fmt.Errorf("%w: runs %d above the limit 1000", ErrConfig, c.Runs)
	}
	for _, id := range c.Only {
		if !slices.Contains(Scenarios(), id) {
			return fmt.Errorf("%w: unknown scenario %q (known: %s)", ErrConfig, id, strings.Join(Scenarios(), ", "))
		}
	}
	return nil
}

// Run measures the selected scenarios one after the other (never two at
// once, so they do not disturb each other) and returns the report. Each
// scenario is bounded in work and in time; a scenario that fails is
// reported with its error in Skipped and the others still run. Run returns
// an error only for a bad Config or when ctx ends.
func Run(ctx context.Context, cfg *Config) (*Report, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &env{quick: cfg.Quick, runs: cfg.Runs, log: cfg.Log}
	if e.runs == 0 {
		e.runs = MinRuns
	}
	if e.log == nil {
		e.log = io.Discard
	}
	r := &Report{Command: cfg.Command, Started: time.Now(), Quick: cfg.Quick, Runs: e.runs, Machine: machine()}
	// The whole run is bounded; each scenario gets at most twice its
	// share of it, four times over (shares add up to the whole), and never more than what
	// is left. Runs beyond MinRuns stretch the bound proportionally; the
	// race detector (tests) slows everything about tenfold.
	total, scale := FullBudget, time.Duration(e.runs)
	if cfg.Quick {
		total = QuickBudget
	}
	if raceEnabled {
		scale *= 10
	}
	total = total * scale / MinRuns
	var shares time.Duration
	for _, def := range scenarios {
		shares += def.share
	}
	runCtx, cancelRun := context.WithTimeout(ctx, total)
	defer cancelRun()
	for _, def := range scenarios {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, def.id) {
			continue
		}
		s := &Scenario{ID: def.id, Title: def.title}
		r.Scenarios = append(r.Scenarios, s)
		if runCtx.Err() != nil {
			s.Skipped = append(s.Skipped, fmt.Sprintf("%s: the run's time bound (%v) was reached before it started", def.id, total))
			s.finish()
			continue
		}
		e.logf("bench: %s …", def.id)
		start := time.Now()
		sctx, cancel := context.WithTimeout(runCtx, time.Duration(4*float64(total)*float64(def.share)/float64(shares)))
		err := def.run(sctx, e, s)
		cancel()
		s.Seconds = time.Since(start).Seconds()
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("bench %s: %w", def.id, ctx.Err())
			}
			s.Skipped = append(s.Skipped, fmt.Sprintf("%s stopped: %v", def.id, err))
		}
		s.finish()
		e.logf("bench: %s done in %.1f s", def.id, s.Seconds)
	}
	r.Seconds = time.Since(r.Started).Seconds()
	return r, nil
}

// machine describes the machine the run is on.
func machine() Machine {
	m := Machine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Race: raceEnabled, CPUModel: "unknown", Kernel: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// repeat calls fn runs times (fn gets the run's index) and stops early
// with ctx's error when ctx ends between runs.
func repeat(ctx context.Context, runs int, fn func(run int) error) error {
	for i := range runs {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("run %d of %d: %w", i+1, runs, err)
		}
		if err := fn(i); err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
	}
	return nil
}
