package nic_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
