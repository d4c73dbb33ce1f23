package nic_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/nic"
)

// TestControlPeerCredentials reads this test's own credentials through
// SO_PEERCRED/SO_PEERGROUPS on a real Unix socket: the server sees the
// pid, uid, gid and groups of the process that connected, and grants
// control to root (CI) alone with no group configured.
func TestControlPeerCredentials(t *testing.T) {
	r := newRig(t, nil)
	dir, err := os.MkdirTemp("", "nicctl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "nic.sock")
	srv := nic.NewControlServer(r.dev, nil)
	defer srv.Close()
	if err := srv.ListenUnix(path, 0o660, os.Getgid()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}

	cl, err := nic.DialControl(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cred, known, control, err := cl.WhoAmI(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !known || cred.PID != int32(os.Getpid()) || cred.UID != uint32(os.Getuid()) || cred.GID != uint32(os.Getgid()) {
		t.Errorf("peer credentials %+v (known %v), want pid %d uid %d gid %d", cred, known, os.Getpid(), os.Getuid(), os.Getgid())
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	var want []uint32
	for _, g := range groups {
		want = append(want, uint32(g))
	}
	got := slices.Clone(cred.Groups)
	slices.Sort(got)
	slices.Sort(want)
	if cred.Groups != nil && !slices.Equal(got, want) {
		t.Errorf("peer groups %v, want %v", got, want)
	}
	if root := os.Getuid() == 0; control != root {
		t.Errorf("control %v for uid %d, want %v", control, os.Getuid(), root)
	}
	_, err = cl.Slots(ctx(t))
	if os.Getuid() == 0 && err != nil {
		t.Errorf("root lists slots: %v", err)
	}
	if os.Getuid() != 0 && !errors.Is(err, os.ErrPermission) {
		t.Errorf("uid %d lists slots: %v, want a refusal", os.Getuid(), err)
	}

	// A second server refuses the live socket; after Close the socket
	// file is gone.
	srv2 := nic.NewControlServer(r.dev, nil)
	defer srv2.Close()
	if err := srv2.ListenUnix(path, 0o600, -1); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second ListenUnix on a live socket: %v, want in use", err)
	}
	srv.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Close: %v, want removed", err)
	}
}

// TestControlStaleSocket replaces a socket file nothing listens on and
// refuses to replace another kind of file.
func TestControlStaleSocket(t *testing.T) {
	r := newRig(t, nil)
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody listens
	srv := nic.NewControlServer(r.dev, nil)
	defer srv.Close()
	if err := srv.ListenUnix(path, 0o600, -1); err != nil {
		t.Fatalf("ListenUnix over a stale socket: %v", err)
	}
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv2 := nic.NewControlServer(r.dev, nil)
	defer srv2.Close()
	if err := srv2.ListenUnix(file, 0o600, -1); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("ListenUnix over a regular file: %v, want not a socket", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Error("regular file clobbered")
	}
}

// helperEnv names the socket TestControlHelperProcess talks to.
const helperEnv = "STANDBYNIC_CONTROL_HELPER_SOCKET"

// helperResult is what the helper process saw, printed after "RESULT ".
type helperResult struct {
	UID, GID      uint32
	Groups        []uint32
	Known         bool
	Control       bool
	SlotsStatus   int
	DisarmStatus  int
	ErrorMessages []string
}

func statusOf(err error) int {
	var ce *nic.ControlError
	if errors.As(err, &ce) {
		return ce.Status
	}
	if err != nil {
		return -1
	}
	return 200
}

// TestControlHelperProcess is the client side of
// TestIntegrationControlPeerCredOtherUID, run in a child process under
// another uid; it does nothing in a normal run.
func TestControlHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper of TestIntegrationControlPeerCredOtherUID (runs in its child process)")
	}
	cl, err := nic.DialControl(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var r helperResult
	cred, known, control, err := cl.WhoAmI(cx)
	if err != nil {
		t.Fatal(err)
	}
	r.UID, r.GID, r.Groups, r.Known, r.Control = cred.UID, cred.GID, cred.Groups, known, control
	_, err = cl.Slots(cx)
	r.SlotsStatus = statusOf(err)
	if err != nil {
		r.ErrorMessages = append(r.ErrorMessages, err.Error())
	}
	_, err = cl.Disarm(cx, 1)
	r.DisarmStatus = statusOf(err)
	if err != nil {
		r.ErrorMessages = append(r.ErrorMessages, err.Error())
	}
	b, _ := json.Marshal(r)
	fmt.Printf("RESULT %s\n", b)
}

// TestIntegrationControlPeerCredOtherUID connects to the control socket
// from a child process running as uid 1000 (with and without the control
// group): the server reads that uid and those groups with SO_PEERCRED and
// SO_PEERGROUPS, grants control to the group member only, and lets
// neither disarm root's slot.
func TestIntegrationControlPeerCredOtherUID(t *testing.T) {
	r := newRig(t, nil)
	dir, err := os.MkdirTemp("", "nicuid")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary's own directory is private to its user: copy it
	// where uid 1000 may run it.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "nic.test")
	if err := copyFile(exe, bin); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "nic.sock")
	// The child's groups are set by the test, not by the group database:
	// judge them on the kernel's credentials (SO_PEERGROUPS) alone.
	srv := nic.NewControlServer(r.dev, &nic.ControlConfig{Group: 27, TrustPeerGroups: true})
	defer srv.Close()
	if err := srv.ListenUnix(sock, 0o666, -1); err != nil {
		t.Fatal(err)
	}
	root, err := nic.DialControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.Arm(ctx(t), slotConfig(40000)); errors.Is(err, os.ErrPermission) {
		t.Skipf("arming as this process's uid %d: %v (the test needs root: CAP_SETUID and CAP_SETGID for the child)", os.Getuid(), err)
	} else if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		groups []uint32
		want   helperResult
	}{
		{"member of the control group", []uint32{27},
			helperResult{UID: 1000, GID: 1000, Groups: []uint32{27}, Known: true, Control: true, SlotsStatus: 200, DisarmStatus: 403}},
		{"outside the control group", []uint32{},
			helperResult{UID: 1000, GID: 1000, Known: true, Control: false, SlotsStatus: 403, DisarmStatus: 403}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(cx, bin, "-test.run=^TestControlHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+sock)
			cmd.Dir = dir
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000, Groups: tt.groups}}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EPERM) {
				t.Skipf("start a child as uid 1000: %v (needs CAP_SETUID and CAP_SETGID)", err)
			}
			if err != nil {
				t.Fatalf("helper: %v\n%s", err, out.Bytes())
			}
			_, line, ok := strings.Cut(out.String(), "RESULT ")
			if !ok {
				t.Fatalf("helper printed no result:\n%s", out.Bytes())
			}
			line, _, _ = strings.Cut(line, "\n")
			var got helperResult
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("%v: %q", err, line)
			}
			msgs := got.ErrorMessages
			got.ErrorMessages = nil
			if got.Groups != nil && len(got.Groups) == 0 {
				got.Groups = nil
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("seen from uid 1000 (-want +got):\n%s\nerrors: %q", d, msgs)
			}
		})
	}
	if got := r.dev.Slots(); len(got) != 1 {
		t.Errorf("slots %v after the refused disarms, want root's slot", got)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
