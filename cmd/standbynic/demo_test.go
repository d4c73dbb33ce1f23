package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestRunDemoFlags checks the demo's flag errors and help, through run:
// none of these cases reaches the lab.
func TestRunDemoFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		// want are substrings of stderr.
		want []string
	}{
		{"help", []string{"-h"}, exitOK, []string{
			"usage: standbynic demo", "--duration DURATION", "(default 1m0s)", "--slots N", "1–64", "(default 4)",
			"--seed", "--loss P", "--out DIR", "--quiet", "CAP_NET_ADMIN", "Exit codes", "130 interrupted",
		}},
		{"duration too short", []string{"--duration", "5s"}, exitUsage, []string{"-duration", "10s"}},
		{"duration too long", []string{"--duration", "2h"}, exitUsage, []string{"-duration", "1h"}},
		{"duration without unit", []string{"--duration", "60"}, exitUsage, []string{"-duration"}},
		{"no slots", []string{"--slots", "0"}, exitUsage, []string{"-slots", "1–64"}},
		{"too many slots", []string{"--slots", "65"}, exitUsage, []string{"-slots", "1–64"}},
		{"bad seed", []string{"--seed", "-1"}, exitUsage, []string{"-seed"}},
		{"loss not a probability", []string{"--loss", "1.5"}, exitUsage, []string{"-loss"}},
		{"loss above the demo's limit", []string{"--loss", "0.5"}, exitUsage, []string{"loss 0.5", "0.2"}},
		{"unknown flag", []string{"--bogus"}, exitUsage, []string{"bogus"}},
		{"stray argument", []string{"now"}, exitUsage, []string{`unexpected argument "now"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), &stdout, &stderr, append([]string{"demo"}, tc.args...))
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout not empty: %q", stdout.String())
			}
		})
	}
}
