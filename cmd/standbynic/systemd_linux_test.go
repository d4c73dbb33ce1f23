package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/nic"
)

// The uid and gid the daemon runs as (nobody, nogroup: they need no
// passwd entry, the kernel takes numbers).
const systemdUID, systemdGID = 65534, 65534

// TestIntegrationNICDaemonSystemd starts "standbynic nic" the way the unit
// of docs/systemd.md does, without systemd: as uid/gid 65534
// (User=, Group=) with the ambient capabilities CAP_NET_RAW and
// CAP_NET_ADMIN (AmbientCapabilities=), forked from a thread whose
// bounding set holds only those two (CapabilityBoundingSet=), its socket
// in a directory the uid owns (RuntimeDirectory=). The daemon sets
// no_new_privs itself (NoNewPrivileges=). It must run: every thread as
// 65534 with exactly the two capabilities and no_new_privs, the control
// API answering on a socket of the control group, a TCP connection
// crossing the bump in the wire, a sleep and a wake, exit 0 on SIGTERM
// with the socket gone.
func TestIntegrationNICDaemonSystemd(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	hostIf, err := lab.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		t.Fatal(err)
	}

	// The binary: this test binary (TestMain runs run() under runEnv),
	// copied where uid 65534 may execute it.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(dir, "standbynic")
	copyExecutable(t, exe)
	// RuntimeDirectory=standbynic, RuntimeDirectoryMode=0750.
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, systemdUID, systemdGID); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(run, "nic.sock")

	args, _ := json.Marshal([]string{"nic", "--wire", netlab.WireLink, "--host", netlab.HostPortLink,
		"--slots", "2", "--control", sock, "--control-group", fmt.Sprint(systemdGID),
		"--host-mac", hostIf.HardwareAddr.String(), "--host-addr", lab.Addr.Host4.String(), "--log-level", "debug"})
	d := &daemon{stdout: newSyncBuffer(), stderr: newSyncBuffer(), done: make(chan struct{})}
	d.cmd = exec.Command(exe, "-test.run=^$")
	d.cmd.Env = append(os.Environ(), runEnv+"="+string(args))
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: systemdUID, Gid: systemdGID, Groups: []uint32{systemdGID}},
		AmbientCaps: []uintptr{unix.CAP_NET_RAW, unix.CAP_NET_ADMIN},
		// No Pdeathsig: the forking thread ends at once (below).
	}
	err = lab.Do(netlab.NIC, func() error {
		// The bounding set is the thread's: lower it on a thread that
		// never runs anything else (locked twice, so netlab's unlock
		// leaves it locked and it ends with its goroutine), then fork
		// from it.
		runtime.LockOSThread()
		if err := boundCapabilities(unix.CAP_NET_RAW, unix.CAP_NET_ADMIN); err != nil {
			return err
		}
		return d.cmd.Start()
	})
	if err != nil {
		t.Fatalf("start the daemon as uid %d: %v", systemdUID, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	d.stderr.waitFor(t, regexp.MustCompile(`msg="nic running" wire=\S+ `), 20*time.Second)
	if !strings.Contains(d.stderr.String(), `msg="capabilities dropped" kept=CAP_NET_ADMIN,CAP_NET_RAW no_new_privs=true`) {
		t.Errorf("no capability drop logged:\n%s", d.stderr)
	}

	const kept = "0000000000003000" // CAP_NET_ADMIN (12), CAP_NET_RAW (13)
	want := fmt.Sprintf("%d\t%d\t%d\t%d", systemdUID, systemdUID, systemdUID, systemdUID)
	for i, st := range procStatus(t, d.cmd.Process.Pid) {
		for _, k := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
			if st[k] != kept {
				t.Errorf("thread %d (%s): %s = %s, want %s", i, st["Pid"], k, st[k], kept)
			}
		}
		if st["NoNewPrivs"] != "1" {
			t.Errorf("thread %d (%s): NoNewPrivs = %s, want 1", i, st["Pid"], st["NoNewPrivs"])
		}
		for _, k := range []string{"Uid", "Gid"} {
			if st[k] != want {
				t.Errorf("thread %d (%s): %s = %q, want %q", i, st["Pid"], k, st[k], want)
			}
		}
	}

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != systemdUID || st.Gid != systemdGID || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket %v owned by %d:%d, want 0660 and %d:%d", fi.Mode(), st.Uid, st.Gid, systemdUID, systemdGID)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := nic.DialControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caps, err := c.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if caps.Device.Slots != 2 || caps.Group != systemdGID {
		t.Errorf("capabilities: slots %d group %d, want 2 and %d", caps.Device.Slots, caps.Group, systemdGID)
	}

	// A TCP connection crosses the bump in the wire.
	echoThroughNIC(t, ctx, lab, []byte("through an unprivileged bump in the wire"), d.stderr)

	// Sleep (the D3 prefilter goes on the wire socket), wake, resume.
	for _, to := range []nic.PowerState{nic.D3, nic.Waking, nic.D0} {
		if st, err := c.SetPower(ctx, to); err != nil || st != to {
			t.Fatalf("SetPower(%v) = %v, %v\nstderr:\n%s", to, st, err, d.stderr)
		}
	}
	c.Close()

	if code := d.stop(t); code != exitOK {
		t.Fatalf("exit %d after SIGTERM, want 0; stderr:\n%s", code, d.stderr)
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Error("socket left behind")
	}
}

// boundCapabilities drops every capability but keep from the calling
// thread's bounding set.
func boundCapabilities(keep ...int) error {
	for c := 0; c <= lastCap(); c++ {
		if containsInt(keep, c) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, os.NewSyscallError("prctl", err))
		}
	}
	return nil
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// copyExecutable copies the running test binary to dst, mode 0755.
func copyExecutable(t *testing.T, dst string) {
	t.Helper()
	src, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
