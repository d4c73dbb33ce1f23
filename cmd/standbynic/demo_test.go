package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/standbynic/standbynic/internal/demo"
	"github.com/standbynic/standbynic/internal/netlab"
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
			"--seed", "--loss P", "--out DIR", "--quiet", "CAP_NET_ADMIN", "Exit codes",
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

// TestIntegrationDemoUnprivileged runs the built command as nobody: where
// the kernel allows unprivileged user namespaces the demo re-runs itself
// in one and completes (exit 0, the pcaps written, owned by nobody);
// where it does not, it exits 1 naming the missing capabilities. Either
// way the outcome must be the documented one.
func TestIntegrationDemoUnprivileged(t *testing.T) {
	netlab.RequirePrivileges(t) // root, to run the child as nobody
	const nobody = 65534
	dir, err := os.MkdirTemp("", "standbynic-demo-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "standbynic")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, out} {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--duration", "10s", "--quiet", "--out", out)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	var ee *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	switch code {
	case exitOK:
		for _, want := range []string{"running inside a new user+network namespace", "result: all ", "pushes delivered"} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("stdout lacks %q", want)
			}
		}
		for _, name := range []string{demo.WirePcapName, demo.WakePcapName} {
			fi, err := os.Stat(filepath.Join(out, name))
			if err != nil {
				t.Error(err)
				continue
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Size() <= 24 || st.Uid != nobody {
				t.Errorf("%s: %d bytes, owner %d; want more than a pcap header, owned by %d", name, fi.Size(), st.Uid, nobody)
			}
		}
	case exitFailure:
		for _, want := range []string{"missing privilege", "CAP_NET_ADMIN", "CAP_NET_RAW", "user namespace"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr lacks %q", want)
			}
		}
	default:
		t.Errorf("exit code %d, want %d or %d", code, exitOK, exitFailure)
	}
}
