//go:build linux

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Shedding capabilities in a Go program.
//
// Capabilities, securebits and no_new_privs belong to each thread, not to the
// process: capset(2) and prctl(2) change only the calling thread. A Go process
// has many threads, created before main runs and later on demand by whichever
// thread needs one, so lowering the caller's set leaves every other thread as
// privileged as before (and a goroutine may move to one of them at any time).
// syscall.AllThreadsSyscall runs a system call on every thread, but only in
// binaries without cgo: with cgo linked in (the default when a C compiler is
// present, since package net uses the C resolver) it returns ENOTSUP, because
// threads created by C code would be missed.
//
// execve(2) is the one place where a thread's credentials become the whole
// process's: the calling thread survives, every other thread is destroyed,
// and the new image starts with one thread whose credentials every later
// thread inherits. So the daemon lowers its privileges on one locked thread
// and re-executes itself from that thread:
//
//  1. setgroups adds the control socket's group (so the new image may chown
//     the socket to it without CAP_CHOWN);
//  2. the kept capabilities (CAP_NET_ADMIN, CAP_NET_RAW) are made inheritable
//     and raised in the ambient set, which carries them across execve of a
//     binary without file capabilities;
//  3. with CAP_SETPCAP: securebits NOROOT, NO_SETUID_FIXUP and
//     NO_CAP_AMBIENT_RAISE, each locked (uid 0 gets no capabilities from
//     execve and none can be raised later), and every other capability is
//     dropped from the bounding set;
//  4. capset lowers the permitted, effective and inheritable sets to the kept
//     ones; prctl(PR_SET_NO_NEW_PRIVS) forbids gaining any through a later
//     execve (setuid or file capabilities);
//  5. execve("/proc/self/exe") with the same arguments and
//     STANDBYNIC_CAPS_DROPPED=1 in the environment.
//
// The new image finds the variable, checks that its permitted and effective
// sets hold nothing beyond the kept capabilities and that no_new_privs is
// set, removes the variable, and goes on: it opens the AF_PACKET ports and
// the control socket with what it kept. The drop thus happens before the
// sockets are opened rather than after: both need only CAP_NET_RAW and
// CAP_NET_ADMIN, so nothing is lost, and the code that opens them already
// runs unprivileged.

const capsEnv = "STANDBYNIC_CAPS_DROPPED"

// keptCaps are the capabilities the NIC daemon keeps.
var keptCaps = []int{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW}

// Securebits (linux/securebits.h).
const (
	secbitNoRoot                  = 1 << 0
	secbitNoRootLocked            = 1 << 1
	secbitNoSetuidFixup           = 1 << 2
	secbitNoSetuidFixupLocked     = 1 << 3
	secbitKeepCapsLocked          = 1 << 5
	secbitNoCapAmbientRaise       = 1 << 6
	secbitNoCapAmbientRaiseLocked = 1 << 7
)

// capSets are a thread's permitted, effective and inheritable sets.
type capSets struct{ prm, eff, inh uint64 }

func capGet() (capSets, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var d [2]unix.CapUserData
	if err := unix.Capget(&hdr, &d[0]); err != nil {
		return capSets{}, os.NewSyscallError("capget", err)
	}
	join := func(lo, hi uint32) uint64 { return uint64(lo) | uint64(hi)<<32 }
	return capSets{join(d[0].Permitted, d[1].Permitted), join(d[0].Effective, d[1].Effective), join(d[0].Inheritable, d[1].Inheritable)}, nil
}

func capSet(s capSets) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	d := [2]unix.CapUserData{
		{Effective: uint32(s.eff), Permitted: uint32(s.prm), Inheritable: uint32(s.inh)},
		{Effective: uint32(s.eff >> 32), Permitted: uint32(s.prm >> 32), Inheritable: uint32(s.inh >> 32)},
	}
	return os.NewSyscallError("capset", unix.Capset(&hdr, &d[0]))
}

func capMask(caps []int) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << c
	}
	return m
}

// capNames names the capabilities in mask, for errors and logs.
func capNames(mask uint64) string {
	names := map[int]string{unix.CAP_NET_ADMIN: "CAP_NET_ADMIN", unix.CAP_NET_RAW: "CAP_NET_RAW",
		unix.CAP_SETPCAP: "CAP_SETPCAP", unix.CAP_SYS_ADMIN: "CAP_SYS_ADMIN", unix.CAP_SETGID: "CAP_SETGID"}
	var out []string
	for c := 0; c < 64; c++ {
		if mask&(1<<c) == 0 {
			continue
		}
		if n, ok := names[c]; ok {
			out = append(out, n)
		} else {
			out = append(out, "cap"+strconv.Itoa(c))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// lastCap returns the highest capability number the kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 && n < 64 {
			return n
		}
	}
	return unix.CAP_LAST_CAP
}

// dropCapabilities leaves the process with at most CAP_NET_ADMIN and
// CAP_NET_RAW and no_new_privs set, re-executing it when the current image
// holds more (see the comment above). It returns nil in the image that may
// go on; on a successful re-execution it does not return. group, when
// non-negative, is a supplementary group the new image must belong to.
func dropCapabilities(log *slog.Logger, group int) error {
	keep := capMask(keptCaps)
	if os.Getenv(capsEnv) != "" {
		os.Unsetenv(capsEnv)
		cur, err := capGet()
		if err != nil {
			return fmt.Errorf("drop capabilities: %w", err)
		}
		nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
		if err != nil {
			return fmt.Errorf("drop capabilities: %w", os.NewSyscallError("prctl", err))
		}
		if extra := (cur.prm | cur.eff) &^ keep; extra != 0 || nnp != 1 {
			return fmt.Errorf("drop capabilities: after re-execution still holding %s (no_new_privs %d)", capNames(extra), nnp)
		}
		log.Info("capabilities dropped", "kept", capNames(cur.prm), "no_new_privs", true)
		return nil
	}

	// Everything below changes this thread only; it stays locked, so no
	// other goroutine ever runs on it, and execve takes the process.
	runtime.LockOSThread()
	cur, err := capGet()
	if err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	kept := cur.prm & keep
	ruid, euid, suid := unix.Getresuid()
	root := ruid == 0 || euid == 0 || suid == 0
	setpcap := cur.eff&(1<<unix.CAP_SETPCAP) != 0
	if root && !setpcap {
		return errors.New("drop capabilities: running as uid 0 without CAP_SETPCAP: cannot keep execve from restoring every capability (set SECBIT_NOROOT)")
	}
	if group >= 0 {
		groups, err := unix.Getgroups()
		if err != nil {
			return fmt.Errorf("drop capabilities: %w", os.NewSyscallError("getgroups", err))
		}
		if !slices.Contains(groups, group) {
			groups = append(groups, group)
			// unix.Setgroups would go through the C library or
			// AllThreadsSyscall; this thread alone is what execve keeps.
			gids := make([]uint32, len(groups))
			for i, g := range groups {
				gids[i] = uint32(g)
			}
			if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), uintptr(unsafe.Pointer(&gids[0])), 0); e != 0 {
				return fmt.Errorf("drop capabilities: join group %d (needs CAP_SETGID): %w", group, os.NewSyscallError("setgroups", e))
			}
		}
	}
	if err := capSet(capSets{prm: cur.prm, eff: cur.eff, inh: cur.inh | kept}); err != nil {
		return fmt.Errorf("drop capabilities: inheritable: %w", err)
	}
	for c := range 64 {
		if kept&(1<<c) == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return fmt.Errorf("drop capabilities: raise ambient %s: %w", capNames(1<<c), os.NewSyscallError("prctl", err))
		}
	}
	if setpcap {
		bits := secbitNoRoot | secbitNoRootLocked | secbitNoSetuidFixup | secbitNoSetuidFixupLocked |
			secbitKeepCapsLocked | secbitNoCapAmbientRaise | secbitNoCapAmbientRaiseLocked
		if err := unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(bits), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capabilities: securebits: %w", os.NewSyscallError("prctl", err))
		}
		for c := 0; c <= lastCap(); c++ {
			if keep&(1<<c) != 0 {
				continue
			}
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				return fmt.Errorf("drop capabilities: bounding set: %w", os.NewSyscallError("prctl", err))
			}
		}
	}
	if err := capSet(capSets{prm: kept, eff: kept, inh: kept}); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("drop capabilities: %w", os.NewSyscallError("prctl", err))
	}
	env := append(os.Environ(), capsEnv+"=1")
	log.Debug("re-executing with reduced capabilities", "kept", capNames(kept), "dropped", capNames(cur.prm&^kept))
	err = syscall.Exec("/proc/self/exe", os.Args, env)
	return fmt.Errorf("drop capabilities: re-execute: %w", os.NewSyscallError("execve", err))
}
