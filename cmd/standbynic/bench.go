package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"

	"github.com/standbynic/standbynic/bench"
)

// runBench is `standbynic bench`: it runs the side-by-side scenarios and
// writes the report folder.
func runBench(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	fs := newFlagSet("bench", stderr, "[--quick] [--out DIR] [--runs N] [--only LIST]",
		"Measure standbynic beside what it replaces, on this machine in one run, and write a\n"+
			"report folder: report.md (tables: the median of N runs and the ratio against the\n"+
			"baseline measured beside it), report.json (every sample) and SVG plots.\n"+
			"Scenarios: "+strings.Join(bench.Scenarios(), ", ")+". The lab scenarios need root\n"+
			"(network namespaces, AF_PACKET); without it they are listed as not measured.\n"+
			"A full run takes at most 10 minutes, --quick at most 60 seconds.")
	quick := fs.Bool("quick", false, "small sizes: the whole run stays under 60 s")
	out := fs.String("out", "bench-report", "report folder (created if missing)")
	runs := newIntFlag(fs, "runs", bench.MinRuns, bench.MinRuns, 1000, "runs per table row; each row is their median")
	only := fs.String("only", "", "comma-separated scenarios to run (default all): "+strings.Join(bench.Scenarios(), ","))
	if code, done := parse(fs, args); done {
		return code
	}
	// As for the demo: a closed stdout must not kill a run whose lab is up.
	signal.Ignore(syscall.SIGPIPE)
	cfg := &bench.Config{Quick: *quick, Runs: *runs, Command: "standbynic bench " + strings.Join(args, " "), Log: stderr}
	if *only != "" {
		for _, id := range strings.Split(*only, ",") {
			if id = strings.TrimSpace(id); id != "" {
				cfg.Only = append(cfg.Only, id)
			}
		}
	}
	if *out == "" {
		return usageError(fs, "--out: empty folder name")
	}
	if err := cfg.Validate(); err != nil {
		return usageError(fs, "%v", err)
	}
	r, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "standbynic bench: %v\n", err)
		return exitFailure
	}
	if err := r.Write(*out); err != nil {
		fmt.Fprintf(stderr, "standbynic bench: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "report written to %s (report.md, report.json, %d plots) in %.0f s\n", *out, plotCount(r), r.Seconds)
	for _, s := range r.Scenarios {
		for _, sk := range s.Skipped {
			fmt.Fprintf(stdout, "not measured: %s\n", sk)
		}
	}
	return exitOK
}

func plotCount(r *bench.Report) int {
	n := 0
	for _, s := range r.Scenarios {
		n += len(s.Plots)
	}
	return n
}
