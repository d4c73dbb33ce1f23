package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/nic"
)

func TestDefaultLeaseOwner(t *testing.T) {
	a := defaultLeaseOwner("/etc/standbynic/host.json")
	if a != defaultLeaseOwner("/etc/standbynic/host.json") || a == defaultLeaseOwner("/srv/other/host.json") {
		t.Errorf("owner %q: want the same for one path, another for another", a)
	}
	if !strings.HasPrefix(a, "host-host-") {
		t.Errorf("owner %q: want host-<name>-<hash>", a)
	}
	for _, p := range []string{"/x/a b$c.json", "/x/" + strings.Repeat("é", 40) + ".json", "rel.json", "/x/.json"} {
		if err := checkOwnerName(defaultLeaseOwner(p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestLeaseFlags(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "h.json")
	for _, tt := range []struct {
		args []string
		want *nic.RemoteLease
		err  string
	}{
		{nil, &nic.RemoteLease{Owner: defaultLeaseOwner(cfg), Period: nic.DefaultLeasePeriod}, ""},
		{[]string{"--lease-owner", "phone@1", "--lease-period", "1s", "--lease-take-over"}, &nic.RemoteLease{Owner: "phone@1", Period: time.Second, TakeOver: true}, ""},
		{[]string{"--lease-owner", "a/b"}, nil, `-lease-owner: "a/b": byte 1 ('/') is not a letter`},
		{[]string{"--lease-owner", strings.Repeat("x", 65)}, nil, "65 bytes, want 1–64"},
	} {
		fs := newFlagSet("host", &bytes.Buffer{}, "", "")
		lf := addLeaseFlags(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		got, err := lf.lease(cfg)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("%q (-want +got):\n%s", tt.args, d)
		}
	}
}

// TestHostLeasePeriodRange: a lease period outside 100ms–1h is a usage
// error naming the flag and the range.
func TestHostLeasePeriodRange(t *testing.T) {
	for p, want := range map[string]string{"50ms": "below minimum 100ms", "2h": "above maximum 1h"} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), &stdout, &stderr, []string{"host", "--nic", "none", "--config", "x.json", "--lease-period", p})
		if code != exitUsage || !strings.Contains(stderr.String(), "lease-period") || !strings.Contains(stderr.String(), want) {
			t.Errorf("--lease-period %s: exit %d, stderr %q", p, code, stderr.String())
		}
	}
}

// TestNICReorderDepthFlag: --reorder-depth reaches the faults, within 1–64.
func TestNICReorderDepthFlag(t *testing.T) {
	f, code, done := parseNICFlags(&bytes.Buffer{}, []string{"--wire", "a", "--host", "b", "--reorder", "0.1", "--reorder-depth", "5",
		"--control-read-timeout", "2s", "--control-max-conns", "8"})
	if done {
		t.Fatalf("parse: exit %d", code)
	}
	if f.faults.ReorderDepth != 5 || f.ctlRead != 2*time.Second || f.ctlConns != 8 {
		t.Errorf("reorder depth %d, read timeout %v, max conns %d", f.faults.ReorderDepth, f.ctlRead, f.ctlConns)
	}
	var stderr bytes.Buffer
	if _, code, done := parseNICFlags(&stderr, []string{"--wire", "a", "--host", "b", "--reorder-depth", "65"}); !done || code != exitUsage {
		t.Errorf("--reorder-depth 65: exit %d done %v (%s)", code, done, stderr.String())
	}
}
