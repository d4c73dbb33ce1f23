//go:build linux

package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NewNamed builds a lab as New does and names it: its namespaces become
// "sbn-<name>-<role>" (name checked by CheckName), so other processes find
// them with OpenNamed or `ip netns exec`. A namespace of that name already
// mounted is an error, and nothing is built.
//
// The names are given after the lab is built: each namespace is
// bind-mounted at its new name and its build-time name removed.
func NewNamed(ctx context.Context, name string, opts *Options) (_ *Lab, err error) {
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	for r := Srv; r <= Router; r++ {
		if n := NamedNamespace(name, r); namedExists(n) {
			return nil, fmt.Errorf("netlab: lab %q exists (namespace %s is mounted)", name, n)
		}
	}
	l, err := New(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
		}
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	oldID := l.ID
	var moved []Namespace
	for _, r := range l.Namespaces() {
		from := filepath.Join(netnsDir, "sbn-"+oldID+"-"+r.String())
		to := filepath.Join(netnsDir, NamedNamespace(name, r))
		if err := rebind(from, to); err != nil {
			for _, m := range moved { // undo: the lab's Close removes the old names
				deleteNamed(NamedNamespace(name, m))
			}
			return nil, fmt.Errorf("netlab: name namespace %s: %w", to, err)
		}
		moved = append(moved, r)
	}
	l.ID = name
	return l, nil
}

// rebind mounts the namespace file from at a new file to (created
// exclusively) and removes from.
func rebind(from, to string) error {
	f, err := os.OpenFile(to, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	if err := unix.Mount(from, to, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(to)
		return os.NewSyscallError("mount --bind", err)
	}
	return deleteNamed(filepath.Base(from))
}

// OpenNamed opens the lab a NewNamed call (in any process) built and
// named name. It has a router when its rtr namespace exists. Close
// deletes the lab; Release only lets go of it.
func OpenNamed(name string) (_ *Lab, err error) {
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	l := &Lab{ID: name, router: namedExists(NamedNamespace(name, Router))}
	defer func() {
		if err != nil {
			l.Release()
		}
	}()
	for _, r := range l.Namespaces() {
		p := filepath.Join(netnsDir, NamedNamespace(name, r))
		h, err := netns.GetFromPath(p)
		if err != nil {
			return nil, fmt.Errorf("netlab: lab %q: namespace %s: %w", name, p, err)
		}
		l.ns[r] = h
		hd, err := netlink.NewHandleAt(h)
		if err != nil {
			return nil, fmt.Errorf("netlab: lab %q: netlink handle in %s: %w", name, r, err)
		}
		l.handles[r] = hd
	}
	l.Addr = addressesFor(l.router)
	lk, err := l.handles[NIC].LinkByName(WireLink)
	if err != nil {
		return nil, fmt.Errorf("netlab: lab %q: %s/%s: %w", name, NIC, WireLink, err)
	}
	l.mtu = lk.Attrs().MTU
	return l, nil
}

// Release closes the lab's handles and leaves its namespaces in place (a
// named lab outlives the process); Close does nothing afterwards. It is
// idempotent.
func (l *Lab) Release() {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for r := Srv; r <= Router; r++ {
			if h := l.handles[r]; h != nil {
				h.Close()
				l.handles[r] = nil
			}
			if h := l.ns[r]; h != 0 {
				h.Close()
				l.ns[r] = 0
			}
		}
	})
}

// NamedNamespacePath returns the bind-mount path of NamedNamespace.
func NamedNamespacePath(name string, r Namespace) string {
	return filepath.Join(netnsDir, NamedNamespace(name, r))
}

// NamedExists reports whether any namespace of the lab named name is
// mounted.
func NamedExists(name string) bool {
	for r := Srv; r <= Router; r++ {
		if namedExists(NamedNamespace(name, r)) {
			return true
		}
	}
	return false
}

// NamespacePIDs returns the processes whose network namespace is the one
// mounted at path (as `ip netns pids` does). Processes that exit while it
// looks are left out.
func NamespacePIDs(path string) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// DeleteNamed removes the lab named name. The processes still in its
// namespaces are ended one namespace after the other — host, nic, rtr,
// srv, so a client stops before the NIC and the server it talks to — each
// with SIGTERM, then SIGKILL if alive after grace; then the namespaces
// are unmounted and removed, and the kernel destroys them and their
// veths. Namespaces already gone are not an error. It returns the
// processes it signalled.
func DeleteNamed(ctx context.Context, name string, grace time.Duration) ([]int, error) {
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	var all []int
	var errs []error
	for _, r := range []Namespace{Host, NIC, Router, Srv} {
		if !namedExists(NamedNamespace(name, r)) {
			continue
		}
		pids, err := NamespacePIDs(NamedNamespacePath(name, r))
		if err != nil {
			errs = append(errs, err)
		}
		if err := endProcesses(ctx, pids, grace); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r, err))
		}
		all = append(all, pids...)
	}
	for r := Srv; r <= Router; r++ {
		if err := deleteNamed(NamedNamespace(name, r)); err != nil {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", NamedNamespace(name, r), err))
		}
	}
	if len(errs) > 0 {
		return all, fmt.Errorf("netlab: delete lab %q: %w", name, errors.Join(errs...))
	}
	return all, nil
}

// endProcesses sends SIGTERM to pids, waits until they are gone (polling
// every 10 ms) for at most grace, then sends SIGKILL to the rest and waits
// up to 5 s more.
func endProcesses(ctx context.Context, pids []int, grace time.Duration) error {
	if len(pids) == 0 {
		return nil
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	if waitGone(ctx, pids, grace) {
		return nil
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if waitGone(ctx, pids, 5*time.Second) {
		return nil
	}
	var left []string
	for _, pid := range pids {
		if alive(pid) {
			left = append(left, strconv.Itoa(pid))
		}
	}
	return fmt.Errorf("processes %s still running after SIGKILL", strings.Join(left, ", "))
}

func waitGone(ctx context.Context, pids []int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n := 0
		for _, pid := range pids {
			if alive(pid) {
				n++
			}
		}
		if n == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
