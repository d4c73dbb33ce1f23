package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/standbynic/standbynic/fleet"
)

// TestFleetShardsMerge: `fleet --sim` in two shards and `fleet merge` give
// the totals of one process with the same seed.
func TestFleetShardsMerge(t *testing.T) {
	dir := t.TempDir()
	common := []string{"fleet", "--sim", "--quiet", "--devices", "300", "--seed", "9", "--duration", "2h"}
	for _, a := range [][]string{{"--out", filepath.Join(dir, "whole")}, {"--shard", "0/2", "--out", filepath.Join(dir, "s", "{shard}")}, {"--shard", "1/2", "--out", filepath.Join(dir, "s", "{shard}")}} {
		if code, _, stderr := runCmd(t, append(common, a...)...); code != exitOK {
			t.Fatalf("fleet %q: exit %d: %s", a, code, stderr)
		}
	}
	code, stdout, stderr := runCmd(t, "fleet", "merge", "--out", filepath.Join(dir, "merged"), filepath.Join(dir, "s"))
	if code != exitOK || !strings.Contains(stdout, "merged 2 shards (300 of 300 devices)") {
		t.Fatalf("merge: exit %d: %s%s", code, stdout, stderr)
	}
	whole, err := fleet.ReadReport(filepath.Join(dir, "whole", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	merged, err := fleet.ReadReport(filepath.Join(dir, "merged", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(whole.Counters, merged.Counters); diff != "" {
		t.Errorf("merged counters (-whole +merged):\n%s", diff)
	}
	if diff := cmp.Diff(whole.Latency, merged.Latency); diff != "" {
		t.Errorf("merged latency (-whole +merged):\n%s", diff)
	}
	// One shard alone is not the fleet.
	if code, _, _ := runCmd(t, "fleet", "merge", "--out", filepath.Join(dir, "m2"), filepath.Join(dir, "s", "0", "report.json")); code != exitFailure {
		t.Errorf("merge of one of two shards: exit %d, want %d", code, exitFailure)
	}
}

func TestFleetFlagErrors(t *testing.T) {
	t.Setenv("JOB_COMPLETION_INDEX", "x")
	for _, args := range [][]string{
		{"fleet", "--sim", "--shard", "2/2"},
		{"fleet", "--sim", "--shard-count", "2"},
		{"fleet", "--sim", "--shard", "0/2", "--shard-count", "2"},
		{"fleet", "--sim", "--hw-slots", "3"},
		{"fleet", "--broker", "nonsense"},
		{"fleet"},
		{"fleet", "--sim", "--sources", "::/64"},
		{"fleet", "merge"},
	} {
		if code, _, _ := runCmd(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
}
