package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestNICProfileFlag(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		profile   string
		slots     int
		wantUsage string // non-empty: a usage error mentioning it
	}{
		{"default", nil, "generic", 8, ""},
		{"android takes its slot count", []string{"--profile", "android-apf"}, "android-apf", 0, ""},
		{"--slots overrides", []string{"--profile", "infineon-tko", "--slots", "2"}, "infineon-tko", 2, ""},
		{"unknown", []string{"--profile", "tg3"}, "", 0, "realwow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			f, _, done := parseNICFlags(&stderr, append([]string{"--wire", "a", "--host", "b"}, tc.args...))
			if tc.wantUsage != "" {
				if !done || !strings.Contains(stderr.String(), tc.wantUsage) {
					t.Fatalf("done %v, stderr %q; want a usage error listing the profiles", done, stderr.String())
				}
				return
			}
			if done {
				t.Fatalf("parse failed: %s", stderr.String())
			}
			if f.profile != tc.profile || f.slots != tc.slots {
				t.Errorf("profile %q slots %d, want %q %d", f.profile, f.slots, tc.profile, tc.slots)
			}
			p := nicProfile(f.profile)
			if (p == nil) != (tc.profile == "generic") || p != nil && p.Name != tc.profile {
				t.Errorf("nicProfile(%q) = %+v", f.profile, p)
			}
		})
	}
}
