package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestIntegrationHostRunProcess runs `standbynic host --run` without a NIC:
// the sleep it starts is frozen with the host (no connections to guard),
// and at exit it is stopped and its cgroup removed.
func TestIntegrationHostRunProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a cgroup needs CAP_SYS_ADMIN (run as root)")
	}
	path := filepath.Join(t.TempDir(), "host.json")
	if err := os.WriteFile(path, []byte(`{"policy": {"interval_unit": "1s", "min_interval": 1}, "processes": [{"name": "napper", "run": ["sleep", "1000"], "interval": "10s"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd(t, "host", "--nic", "none", "--config", path, "--run", "other=sleep 999", "--duration", "2s", "--log-level", "debug")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	re := regexp.MustCompile(`msg=process name=(napper|other) pid=(\d+) started=true mode=(\S+) cgroup=(\S+)`)
	m := re.FindAllStringSubmatch(stderr, -1)
	if len(m) != 2 {
		t.Fatalf("%d process log lines, want 2:\n%s", len(m), stderr)
	}
	if n := strings.Count(stderr, "msg=\"process books\""); n != 2 {
		t.Errorf("%d process books lines, want 2:\n%s", n, stderr)
	}
	if n := strings.Count(stderr, "msg=\"process frozen\""); n < 2 {
		t.Errorf("%d process frozen lines, want the two processes frozen:\n%s", n, stderr)
	}
	for _, l := range m {
		t.Logf("%s: pid %s, %s, %s", l[1], l[2], l[3], l[4])
		pid, _ := strconv.Atoi(l[2])
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still there after the host exited: %v", l[1], pid, err)
		}
		if _, err := os.Stat(l[4]); l[4] != `""` && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left: %v", l[4], err)
		}
	}
}
