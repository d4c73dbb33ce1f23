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
	"sync"
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

// notifyWriter is a goroutine-safe buffer that closes seen once the
// text written contains want.
type notifyWriter struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.b.Write(p)
	if strings.Contains(w.b.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return n, err
}

func (w *notifyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestIntegrationDemoInterrupted runs the demo in this process and ends
// its context (what SIGINT or SIGTERM does through main) once the server
// has pushed: the demo prints the partial summary, removes its lab, names
// the interruption once on stderr and exits 130.
func TestIntegrationDemoInterrupted(t *testing.T) {
	netlab.RequirePrivileges(t)
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	stdout := &notifyWriter{want: " push #1 ", seen: make(chan struct{})}
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(runCtx, stdout, &stderr, []string{"demo", "--duration", "40s", "--out", out})
	}()
	var code int
	select {
	case <-stdout.seen:
		interrupt()
		code = <-done
	case code = <-done:
		t.Fatalf("the demo ended (exit %d) before its first push; stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	case <-ctx.Done():
		t.Fatalf("no push in 2 minutes; stdout:\n%s", stdout.String())
	}
	text := stdout.String()
	t.Logf("stdout:\n%s\nstderr:\n%s", text, stderr.String())
	if code != demo.ExitInterrupted {
		t.Errorf("exit code %d, want %d", code, demo.ExitInterrupted)
	}
	for _, want := range []string{"interrupted after", "summary: INTERRUPTED after", "result: interrupted: ", "pending", "captures (up to the interruption) written to " + out} {
		if !strings.Contains(text, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if strings.Contains(text, "LOST") {
		t.Errorf("an interrupted run reports pushes lost")
	}
	if got := stderr.String(); strings.Count(got, "standbynic demo: interrupted after") != 1 || strings.Count(got, "demo:") != 1 {
		t.Errorf("stderr %q: want one line naming the command once, \"standbynic demo: interrupted after …\"", got)
	}
	// The captures are complete files (wake.pcap may hold no packet yet).
	for _, c := range []struct {
		name string
		min  int64
	}{{demo.WirePcapName, 25}, {demo.WakePcapName, 24}} {
		if fi, err := os.Stat(filepath.Join(out, c.name)); err != nil || fi.Size() < c.min {
			t.Errorf("%s: %v; want at least %d bytes", c.name, err, c.min)
		}
	}
	if !strings.Contains(text, "host     interrupted after") {
		t.Errorf("the timeline does not say the run was interrupted")
	}
	// The lab's namespaces are gone.
	var lab string
	for _, line := range strings.Split(text, "\n") {
		if _, rest, ok := strings.Cut(line, "lab      namespaces "); ok {
			lab, _, _ = strings.Cut(rest, "-srv")
		}
	}
	if lab == "" {
		t.Fatal("no lab line in the timeline")
	}
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), lab) {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
}
