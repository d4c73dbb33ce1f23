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
