package procfreeze

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestIntegrationRecover leaves what a SIGKILLed standbynic leaves — a
// frozen sleep in a directory named for a standbynic that is gone — in each
// cgroup hierarchy, and checks that Recover thaws it, puts it in the parent
// cgroup and removes the directory, and leaves a live standbynic's alone.
func TestIntegrationRecover(t *testing.T) {
	hs, err := hierarchies(0)
	if err != nil {
		t.Fatal(err)
	}
	// A PID that no longer runs: a reaped child's.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.Process.Pid
	for _, h := range hs {
		if h.mode == Signal {
			continue
		}
		t.Run(h.mode.String(), func(t *testing.T) {
			dir := filepath.Join(h.base, fmt.Sprintf("%s-%d-crashed-1", Prefix, deadPID))
			live := filepath.Join(h.base, fmt.Sprintf("%s-%d-live-1", Prefix, os.Getpid()))
			for _, d := range []string{dir, live} {
				if err := os.Mkdir(d, 0o755); err != nil {
					if errors.Is(err, os.ErrPermission) {
						t.Skipf("making a cgroup needs CAP_SYS_ADMIN: %v", err)
					}
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { os.Remove(dir); os.Remove(live) })
			sleep := exec.Command("sleep", "1000")
			if err := sleep.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
			if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(sleep.Process.Pid)); err != nil {
				t.Fatal(err)
			}
			p := &Process{mode: h.mode, dir: dir, pid: sleep.Process.Pid, pidfd: -1, cfg: resolved{timeout: DefaultTimeout}}
			if err := p.setFrozen(true); err != nil {
				t.Fatal(err)
			}
			if err := p.confirm(t.Context(), true); err != nil {
				t.Fatal(err)
			}
			recs, err := Recover()
			if err != nil {
				t.Fatal(err)
			}
			var got *Recovered
			for i := range recs {
				if recs[i].Dir == dir {
					got = &recs[i]
				}
				if recs[i].Dir == live {
					t.Errorf("Recover took a live standbynic's directory %s", live)
				}
			}
			if got == nil || len(got.PIDs) != 1 || got.PIDs[0] != sleep.Process.Pid {
				t.Fatalf("Recover = %+v, want %s with pid %d", recs, dir, sleep.Process.Pid)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s still there: %v", dir, err)
			}
			if _, err := os.Stat(live); err != nil {
				t.Errorf("live directory removed: %v", err)
			}
			cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", sleep.Process.Pid))
			if strings.Contains(string(cg), "crashed") {
				t.Errorf("sleep still in the crashed cgroup:\n%s", cg)
			}
			for deadline := time.Now().Add(5 * time.Second); ; {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", sleep.Process.Pid))
				st, err := parseStat(b)
				if err == nil && st.State == 'S' {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("sleep state %c after Recover, want S", st.State)
				}
				<-time.After(time.Millisecond)
			}
		})
	}
}
