//go:build linux

package procfreeze

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Recover finds the directories Prefix-<pid>-… in standbynic's cgroup of
// each hierarchy whose <pid> no longer runs, thaws them, moves their processes to the
// parent cgroup and removes them. A restarted host calls it first.
func Recover() ([]Recovered, error) {
	hs, err := hierarchies(0)
	if err != nil {
		return nil, err
	}
	var out []Recovered
	var errs []error
	for _, h := range hs {
		if h.mode == Signal {
			continue
		}
		ents, err := os.ReadDir(h.base)
		if err != nil {
			errs = append(errs, fmt.Errorf("%v: %w", h.mode, err))
			continue
		}
		for _, e := range ents {
			owner, ok := ownerPID(e.Name())
			if !ok || !e.IsDir() || ownerAlive(owner) {
				continue
			}
			dir := filepath.Join(h.base, e.Name())
			rec, err := recoverDir(h, dir)
			if err != nil {
				errs = append(errs, err)
			}
			out = append(out, rec)
		}
	}
	return out, errors.Join(errs...)
}

// ownerAlive reports whether pid runs at all: a directory of any live
// process is left alone (a reused PID only delays a recovery; taking a
// running standbynic's processes would be worse).
func ownerAlive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

func recoverDir(h hierarchy, dir string) (Recovered, error) {
	rec := Recovered{Dir: dir, Mode: h.mode}
	p := &Process{mode: h.mode, dir: dir, pidfd: -1, frozen: true, cfg: resolved{timeout: DefaultTimeout}}
	pids, err := p.procs()
	if err != nil {
		return rec, fmt.Errorf("recover %s: %w", dir, err)
	}
	rec.PIDs = pids
	// Still frozen: take every socket the dead host left in TCP_REPAIR
	// out of it before the app runs again (TCP_REPAIR_OFF: a window probe
	// resynchronises the peer; what the NIC sent or absorbed for it is
	// lost with the host, so the app may see its connection fail and
	// reconnect, as after any crash).
	for _, pid := range pids {
		n, err := unrepair(pid)
		rec.Repaired += n
		if err != nil {
			return rec, fmt.Errorf("recover %s: pid %d: %w", dir, pid, err)
		}
	}
	if err := p.setFrozen(false); err != nil {
		return rec, fmt.Errorf("recover %s: thaw: %w", dir, err)
	}
	p.origDir = filepath.Dir(dir)
	if err := p.moveBack(); err != nil {
		return rec, fmt.Errorf("recover %s: %w", dir, err)
	}
	if err := removeGroup(context.Background(), dir, DefaultTimeout); err != nil {
		return rec, fmt.Errorf("recover: %w", err)
	}
	return rec, nil
}

// unrepair takes pid's TCP sockets out of TCP_REPAIR and returns how many
// were in it.
func unrepair(pid int) (int, error) {
	fds, err := socketFDs(pid)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	if len(fds) == 0 {
		return 0, nil
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if err == unix.ESRCH {
			return 0, nil
		}
		return 0, os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(pidfd)
	n := 0
	for _, f := range fds {
		fd, err := unix.PidfdGetfd(pidfd, f.fd, 0)
		if err != nil {
			continue // closed meanwhile, or not ours to take: left as it is
		}
		proto, perr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
		if perr == nil && proto == unix.IPPROTO_TCP {
			if on, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR); err == nil && on != 0 {
				if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); err != nil {
					unix.Close(fd)
					return n, os.NewSyscallError("setsockopt TCP_REPAIR", err)
				}
				n++
			}
		}
		unix.Close(fd)
	}
	return n, nil
}
