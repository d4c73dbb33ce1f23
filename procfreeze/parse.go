package procfreeze

// Parsers of the kernel's text files this package reads: one mountinfo
// line, one /proc/PID/cgroup line, /proc/PID/stat and cgroup.events. Each
// takes untrusted bytes and never panics (FuzzParsers).

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

var errParse = errors.New("malformed")

// mount is one line of /proc/PID/mountinfo (proc(5)).
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	(1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
type mount struct {
	Root      string // (4) the mount's root inside its filesystem
	Point     string // (5) the mount point, octal escapes decoded
	FSType    string // (9)
	SuperOpts string // (11)
}

// parseMountLine reads one mountinfo line.
func parseMountLine(line string) (mount, error) {
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+4 {
		return mount{}, errParse
	}
	root, ok1 := unescapeOctal(f[3])
	point, ok2 := unescapeOctal(f[4])
	if !ok1 || !ok2 {
		return mount{}, errParse
	}
	return mount{Root: root, Point: point, FSType: f[sep+1], SuperOpts: f[sep+3]}, nil
}

// unescapeOctal decodes the \NNN escapes the kernel writes for space, tab,
// newline and backslash in paths.
func unescapeOctal(s string) (string, bool) {
	if !strings.Contains(s, `\`) {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+4 > len(s) {
			return "", false
		}
		v, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 3
	}
	return b.String(), true
}

// hasOpt reports whether the comma-separated opts holds o.
func hasOpt(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// mounts finds the cgroup2 mount and the v1 freezer mount in mountinfo
// (either may be zero).
func findMounts(mountinfo []byte) (v2, v1freezer mount) {
	for _, line := range strings.Split(string(mountinfo), "\n") {
		if line == "" {
			continue
		}
		m, err := parseMountLine(line)
		if err != nil {
			continue
		}
		switch {
		case m.FSType == "cgroup2" && v2.Point == "":
			v2 = m
		case m.FSType == "cgroup" && v1freezer.Point == "" && hasOpt(m.SuperOpts, "freezer"):
			v1freezer = m
		}
	}
	return v2, v1freezer
}

// cgroupPaths reads /proc/PID/cgroup: the unified path ("0::/a/b") and the
// v1 freezer path ("N:freezer:/a"), each "" when absent.
func cgroupPaths(b []byte) (v2, freezer string) {
	for _, line := range strings.Split(string(b), "\n") {
		id, rest, ok := strings.Cut(line, ":")
		if !ok || id == "" {
			continue
		}
		ctrls, path, ok := strings.Cut(rest, ":")
		if !ok || !strings.HasPrefix(path, "/") {
			continue
		}
		if id == "0" && ctrls == "" {
			v2 = path
			continue
		}
		if hasOpt(ctrls, "freezer") {
			freezer = path
		}
	}
	return v2, freezer
}

// procStat is what this package reads of /proc/PID/stat (proc(5)).
type procStat struct {
	State     byte   // (3) R S D T t Z X I …
	UTime     uint64 // (14) clock ticks in user mode
	STime     uint64 // (15) clock ticks in kernel mode
	StartTime uint64 // (22) clock ticks after boot
}

// parseStat reads /proc/PID/stat. The command name (2) may hold spaces and
// parentheses, so the fields start after the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return procStat{}, errParse
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3.
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errParse
	}
	st := procStat{State: f[0][0]}
	var err error
	if st.UTime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return procStat{}, errParse
	}
	if st.STime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return procStat{}, errParse
	}
	if st.StartTime, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return procStat{}, errParse
	}
	return st, nil
}

// keyValue returns the value of key in a flat-keyed cgroup file
// ("populated 1\nfrozen 0\n", cpu.stat).
func keyValue(b []byte, key string) (uint64, bool) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// parseSocketLink reads the target of a /proc/PID/fd link to a socket,
// "socket:[12345]".
func parseSocketLink(s string) (uint64, bool) {
	rest, ok := strings.CutPrefix(s, "socket:[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return 0, false
	}
	n, err := strconv.ParseUint(rest[:len(rest)-1], 10, 64)
	return n, err == nil
}

// ownerPID reads <pid> of Prefix-<pid>-<name>-<n>.
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, Prefix+"-")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(num)
	return pid, err == nil && pid > 0
}

// taskStateOK says whether a task's /proc state agrees with the freeze
// state: frozen tasks are never runnable (cgroup2 parks them in the
// signal path, state S; the v1 freezer in TASK_FROZEN, state D; SIGSTOP,
// T), and a thawed Signal task is no longer stopped.
func taskStateOK(m Mode, state byte, frozen bool) bool {
	switch {
	case state == 'Z' || state == 'X':
		return true
	case m == Signal && frozen:
		return state == 'T' || state == 't'
	case m == Signal:
		return state != 'T'
	case frozen:
		return state != 'R'
	}
	return true
}
