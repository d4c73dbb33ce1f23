package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string // in stderr
	}{
		{"help", []string{"-h"}, exitOK, "--runs N"},
		{"runs below five", []string{"--runs", "4"}, exitUsage, "-runs: 4 out of range 5–1000"},
		{"runs not a number", []string{"--runs", "many"}, exitUsage, "-runs: not an integer"},
		{"unknown scenario", []string{"--only", "classify,warp"}, exitUsage, `unknown scenario "warp"`},
		{"empty out", []string{"--out", ""}, exitUsage, "--out: empty folder name"},
		{"stray argument", []string{"now"}, exitUsage, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runBench(context.Background(), &stdout, &stderr, tt.args)
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("runBench(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.wantCode, tt.wantErr)
			}
		})
	}
}

// TestBenchReport runs the unprivileged simulation scenario through run()
// and checks the folder it writes; bench's own tests check the rest.
func TestBenchReport(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), &stdout, &stderr, []string{"bench", "--quick", "--only", "hostwakes", "--out", out})
	if code != exitOK || strings.Contains(stdout.String(), "not measured") {
		t.Fatalf("bench = %d, stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "report written to "+out) {
		t.Errorf("stdout %q names no report folder", stdout.String())
	}
	for _, f := range []string{"report.md", "hostwakes.svg", "hostenergy.svg"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	raw, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Command   string `json:"command"`
		Runs      int    `json:"runs"`
		Scenarios []struct {
			ID string `json:"id"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if r.Command != "standbynic bench --quick --only hostwakes --out "+out || r.Runs != 5 || len(r.Scenarios) != 1 || r.Scenarios[0].ID != "hostwakes" {
		t.Errorf("report.json header %+v", r)
	}
}
