package procfreeze

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Mode is how a Process is frozen. The zero value is invalid; Config.Mode
// zero means "the best one available".
type Mode uint8

// The freezing mechanisms, best first.
const (
	_ Mode = iota
	// Cgroup2 writes cgroup.freeze in a cgroup of the unified hierarchy
	// and waits for cgroup.events "frozen 1".
	Cgroup2
	// Cgroup1 writes freezer.state of a v1 freezer cgroup and waits for
	// FROZEN.
	Cgroup1
	// Signal sends SIGSTOP and SIGCONT to the process (not its children)
	// and waits for /proc/PID/stat state T. Its parent sees the stop
	// (waitpid WUNTRACED), and a SIGCONT from anyone else thaws it.
	Signal
)

func (m Mode) String() string {
	switch m {
	case Cgroup2:
		return "cgroup2"
	case Cgroup1:
		return "cgroup1-freezer"
	case Signal:
		return "signal"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode reads a Mode by its String ("cgroup2", "cgroup1-freezer",
// "signal"); "" and "auto" give 0 (the best available).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "auto":
		return 0, nil
	case "cgroup2":
		return Cgroup2, nil
	case "cgroup1-freezer", "cgroup1":
		return Cgroup1, nil
	case "signal":
		return Signal, nil
	}
	return 0, fmt.Errorf("freeze mode %q: want auto, cgroup2, cgroup1-freezer or signal", s)
}

var (
	// ErrNoFreezer says the mode asked for (or, for auto, every mode) is not
	// available here: no cgroup2 mount with cgroup.freeze, no v1 freezer
	// mount, or no permission to make a cgroup.
	ErrNoFreezer = errors.New("no freezer available")
	// ErrNoProcess says the PID names no process (or it exited).
	ErrNoProcess = errors.New("no such process")
	// ErrExited says the process ended while standbynic held it.
	ErrExited = errors.New("process exited")
	// ErrNotFrozen says an operation that needs the process frozen (taking
	// its sockets) was asked while it runs.
	ErrNotFrozen = errors.New("process not frozen")
	// ErrClosed says the Process was closed.
	ErrClosed = errors.New("process released")
	// ErrTimeout says a freeze or thaw was not confirmed within the
	// timeout (cgroup state and every task's /proc state).
	ErrTimeout = errors.New("freeze state not confirmed in time")

	// ErrNotTCP says a socket is not a TCP socket of the process's network
	// namespace (unix, UDP, raw, netlink …): it cannot be offloaded.
	ErrNotTCP = errors.New("not a TCP socket")
	// ErrNotEstablished says a TCP socket is not ESTABLISHED (listening,
	// closing, connecting): there is no connection to guard.
	ErrNotEstablished = errors.New("tcp connection not established")
	// ErrBusy says a connection has bytes unsent, unacknowledged or unread
	// (sock_diag's queues, or the idle check the caller gave): it stays on
	// software.
	ErrBusy = errors.New("connection not idle")
)

// Defaults.
const (
	DefaultTimeout   = 2 * time.Second
	DefaultStopGrace = 2 * time.Second
	// Prefix starts the name of every cgroup directory standbynic makes:
	// Prefix-<standbynic pid>-<name>-<n>. Recover looks for it.
	Prefix = "standbynic"
	// MaxNameLen bounds Config.Name.
	MaxNameLen = 32
)

// Config says how a Process is held. nil means defaults.
type Config struct {
	// Name labels the cgroup directory: 1–32 of [a-z0-9_-]; "" means
	// "app".
	Name string
	// Mode forces a mechanism; 0 picks the best available (Cgroup2, then
	// Cgroup1, then Signal).
	Mode Mode
	// Timeout bounds each freeze and thaw confirmation; 0 means
	// DefaultTimeout, at most 1 minute.
	Timeout time.Duration
	// StopGrace is how long Close waits after SIGTERM before SIGKILL for
	// a process it started (Run); 0 means DefaultStopGrace, at most
	// 1 minute. An adopted process is never signalled by Close.
	StopGrace time.Duration
}

// resolved is a validated Config.
type resolved struct {
	name      string
	mode      Mode
	timeout   time.Duration
	stopGrace time.Duration
}

func (c *Config) resolve() (resolved, error) {
	r := resolved{name: "app", timeout: DefaultTimeout, stopGrace: DefaultStopGrace}
	if c == nil {
		return r, nil
	}
	if c.Name != "" {
		if err := checkName(c.Name); err != nil {
			return r, err
		}
		r.name = c.Name
	}
	if c.Mode > Signal {
		return r, fmt.Errorf("procfreeze: mode %v: want cgroup2, cgroup1-freezer, signal or 0", c.Mode)
	}
	r.mode = c.Mode
	switch {
	case c.Timeout < 0 || c.Timeout > time.Minute:
		return r, fmt.Errorf("procfreeze: timeout %v out of range 0–1m", c.Timeout)
	case c.Timeout > 0:
		r.timeout = c.Timeout
	}
	switch {
	case c.StopGrace < 0 || c.StopGrace > time.Minute:
		return r, fmt.Errorf("procfreeze: stop grace %v out of range 0–1m", c.StopGrace)
	case c.StopGrace > 0:
		r.stopGrace = c.StopGrace
	}
	return r, nil
}

func checkName(s string) error {
	if len(s) > MaxNameLen {
		return fmt.Errorf("procfreeze: name %q: %d bytes, at most %d", s, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("procfreeze: name %q: byte %d is %q, want [a-z0-9_-]", s, i, c)
		}
	}
	return nil
}

// RunConfig is the program Run starts.
type RunConfig struct {
	// Argv is the command line; Argv[0] is looked up in PATH when it has
	// no slash. At least one element, each at most 4096 bytes, at most
	// 1024 elements.
	Argv []string
	// Env is the environment; nil means standbynic's own.
	Env []string
	// Dir is the working directory; "" means standbynic's own.
	Dir string
	// Stdin, Stdout, Stderr are the child's fds 0–2; nil means /dev/null.
	Stdin, Stdout, Stderr *os.File
	// NetNS is the path of a network namespace to start the program in
	// (/run/netns/NAME, /proc/PID/ns/net); "" means standbynic's own.
	NetNS string
}

// Recovered is a cgroup directory a standbynic that is gone left behind
// (killed with SIGKILL: nothing of it ran to release its processes).
type Recovered struct {
	Dir  string
	Mode Mode
	// PIDs are the processes found in it: thawed and moved to Dir's parent
	// (the cgroup the dead standbynic ran in), never signalled.
	PIDs []int
	// Repaired counts their TCP sockets taken out of TCP_REPAIR.
	Repaired int
}
