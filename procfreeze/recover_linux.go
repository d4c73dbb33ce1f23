//go:build linux

package procfreeze

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	if err := p.setFrozen(false); err != nil {
		return rec, fmt.Errorf("recover %s: thaw: %w", dir, err)
	}
	pids, err := p.procs()
	if err != nil {
		return rec, fmt.Errorf("recover %s: %w", dir, err)
	}
	rec.PIDs = pids
	p.origDir = filepath.Dir(dir)
	if err := p.moveBack(); err != nil {
		return rec, fmt.Errorf("recover %s: %w", dir, err)
	}
	if err := removeGroup(context.Background(), dir, DefaultTimeout); err != nil {
		return rec, fmt.Errorf("recover: %w", err)
	}
	return rec, nil
}
