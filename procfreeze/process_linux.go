//go:build linux

package procfreeze

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Process is one program held by standbynic: started by Run or adopted by
// Adopt, in a cgroup of its own (Cgroup2, Cgroup1) or by signals (Signal).
// Its methods are safe for concurrent use.
//
//	Run / Adopt        Freeze              Thaw
//	──────────> running ──────> frozen ───────> running ──> … Close ──> released
//
// Close releases everything standbynic made: the open Sockets, the cgroup
// directory, the pidfd. A started process is stopped (SIGTERM, then
// SIGKILL after StopGrace, children too); an adopted one is thawed and put
// back in the cgroups it came from, and never signalled.
type Process struct {
	cfg     resolved
	mode    Mode
	pid     int
	pidfd   int
	started bool        // Run: standbynic's child
	proc    *os.Process // Run
	exited  chan struct{}
	wg      sync.WaitGroup // the Run wait goroutine

	dir     string // the cgroup directory ("" for Signal)
	origDir string // Adopt: the directory of the same hierarchy to return to

	mu     sync.Mutex
	frozen bool
	closed bool
	socks  map[*Socket]struct{}
	state  *os.ProcessState // Run, after exit
	waited error
}

// PID returns the process's PID (in standbynic's PID namespace).
func (p *Process) PID() int { return p.pid }

// Mode returns the mechanism in use.
func (p *Process) Mode() Mode { return p.mode }

// Dir returns the cgroup directory standbynic made ("" for Signal).
func (p *Process) Dir() string { return p.dir }

// Started reports whether Run started the process (Adopt: false).
func (p *Process) Started() bool { return p.started }

// Frozen reports whether the last Freeze was confirmed and no Thaw
// followed.
func (p *Process) Frozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

// Exited is closed when a started process has ended (nil for Adopt: use
// Alive).
func (p *Process) Exited() <-chan struct{} {
	if !p.started {
		return nil
	}
	return p.exited
}

// ExitState returns a started process's exit state once Exited is closed.
func (p *Process) ExitState() *os.ProcessState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// Alive reports whether the process has not exited (its pidfd is not
// readable).
func (p *Process) Alive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.aliveLocked()
}

func (p *Process) aliveLocked() bool {
	if p.pidfd < 0 {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n == 0
	}
}

var groupSeq atomic.Uint64

// hierarchy is where standbynic makes its cgroup directories.
type hierarchy struct {
	mode  Mode
	mnt   mount
	base  string // standbynic's own cgroup directory in this hierarchy
	procs string // "cgroup.procs"
}

// Indirections for tests.
var (
	mountinfoPath = "/proc/self/mountinfo"
	selfCgroup    = "/proc/self/cgroup"
)

func (h hierarchy) abs(cgpath string) string {
	if h.mnt.Root != "/" {
		if rest, ok := strings.CutPrefix(cgpath, h.mnt.Root); ok {
			cgpath = rest
		}
	}
	return filepath.Join(h.mnt.Point, filepath.Clean("/"+cgpath))
}

// hierarchies returns the usable hierarchies for want (0: every one, best
// first).
func hierarchies(want Mode) ([]hierarchy, error) {
	if want == Signal {
		return []hierarchy{{mode: Signal}}, nil
	}
	mi, err := os.ReadFile(mountinfoPath)
	if err != nil {
		return nil, fmt.Errorf("procfreeze: read mountinfo: %w", err)
	}
	self, err := os.ReadFile(selfCgroup)
	if err != nil {
		return nil, fmt.Errorf("procfreeze: read own cgroup: %w", err)
	}
	v2m, v1m := findMounts(mi)
	v2p, v1p := cgroupPaths(self)
	var out []hierarchy
	if (want == 0 || want == Cgroup2) && v2m.Point != "" {
		h := hierarchy{mode: Cgroup2, mnt: v2m}
		h.base = h.abs(v2p)
		out = append(out, h)
	}
	if (want == 0 || want == Cgroup1) && v1m.Point != "" {
		h := hierarchy{mode: Cgroup1, mnt: v1m}
		h.base = h.abs(v1p)
		out = append(out, h)
	}
	if want == 0 {
		out = append(out, hierarchy{mode: Signal})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("procfreeze: %v: %w (no such cgroup mount in %s)", want, ErrNoFreezer, mountinfoPath)
	}
	return out, nil
}

// makeGroup makes a uniquely named cgroup directory in the first usable
// hierarchy and returns it ("" for Signal).
func makeGroup(r resolved) (Mode, hierarchy, string, error) {
	hs, err := hierarchies(r.mode)
	if err != nil {
		return 0, hierarchy{}, "", err
	}
	var errs []error
	for _, h := range hs {
		if h.mode == Signal {
			return Signal, h, "", nil
		}
		name := fmt.Sprintf("%s-%d-%s-%d", Prefix, os.Getpid(), r.name, groupSeq.Add(1))
		dir := filepath.Join(h.base, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("%v: mkdir %s: %w", h.mode, dir, err))
			continue
		}
		ctl := "cgroup.freeze"
		if h.mode == Cgroup1 {
			ctl = "freezer.state"
		}
		if _, err := os.Stat(filepath.Join(dir, ctl)); err != nil {
			errs = append(errs, fmt.Errorf("%v: %s: %w", h.mode, ctl, err))
			_ = os.Remove(dir)
			continue
		}
		return h.mode, h, dir, nil
	}
	err = errors.Join(errs...)
	if errors.Is(err, os.ErrPermission) {
		return 0, hierarchy{}, "", fmt.Errorf("procfreeze: %w: making a cgroup needs CAP_SYS_ADMIN or write access to the hierarchy: %w", ErrNoFreezer, err)
	}
	return 0, hierarchy{}, "", fmt.Errorf("procfreeze: %w: %w", ErrNoFreezer, err)
}

// Run starts rc's program in a new cgroup (Cgroup2: born in it, with
// CLONE_INTO_CGROUP; Cgroup1: moved into it right after the fork, so a
// child it forks in the first instant escapes) in its own process group.
func Run(cfg *Config, rc RunConfig) (*Process, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if err := rc.check(); err != nil {
		return nil, err
	}
	path, err := lookPath(rc.Argv[0], rc.Env)
	if err != nil {
		return nil, err
	}
	mode, _, dir, err := makeGroup(r)
	if err != nil {
		return nil, err
	}
	p := &Process{cfg: r, mode: mode, dir: dir, pidfd: -1, started: true, exited: make(chan struct{})}
	if err := p.start(path, rc); err != nil {
		if dir != "" {
			_ = os.Remove(dir)
		}
		return nil, err
	}
	return p, nil
}

func (rc *RunConfig) check() error {
	if len(rc.Argv) == 0 || rc.Argv[0] == "" {
		return errors.New("procfreeze: argv: empty command line")
	}
	if len(rc.Argv) > 1024 {
		return fmt.Errorf("procfreeze: argv: %d elements, at most 1024", len(rc.Argv))
	}
	for i, a := range rc.Argv {
		if len(a) > 4096 {
			return fmt.Errorf("procfreeze: argv[%d]: %d bytes, at most 4096", i, len(a))
		}
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("procfreeze: argv[%d]: holds a NUL byte", i)
		}
	}
	return nil
}

// lookPath finds name in PATH (of env, else standbynic's) when it has no
// slash.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := executable(name); err != nil {
			return "", fmt.Errorf("procfreeze: argv[0] %q: %w", name, err)
		}
		return name, nil
	}
	pathEnv, found := os.LookupEnv("PATH")
	if env != nil {
		pathEnv, found = "", false
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				pathEnv, found = v, true
			}
		}
	}
	if !found {
		pathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("procfreeze: argv[0] %q: not found in PATH", name)
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: not an executable file", p)
	}
	return nil
}

func (p *Process) start(path string, rc RunConfig) error {
	files := []*os.File{rc.Stdin, rc.Stdout, rc.Stderr}
	var null *os.File
	for i, f := range files {
		if f != nil {
			continue
		}
		if null == nil {
			var err error
			if null, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
				return fmt.Errorf("procfreeze: open %s: %w", os.DevNull, err)
			}
			defer null.Close()
		}
		files[i] = null
	}
	sys := &syscall.SysProcAttr{Setpgid: true}
	if p.mode == Cgroup2 {
		cg, err := unix.Open(p.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("procfreeze: open %s: %w", p.dir, err)
		}
		defer unix.Close(cg)
		sys.UseCgroupFD, sys.CgroupFD = true, cg
	}
	attr := &os.ProcAttr{Dir: rc.Dir, Env: rc.Env, Files: files, Sys: sys}
	proc, err := startIn(rc.NetNS, func() (*os.Process, error) { return os.StartProcess(path, rc.Argv, attr) })
	if err != nil {
		return fmt.Errorf("procfreeze: start %s: %w", path, err)
	}
	p.proc, p.pid = proc, proc.Pid
	// The child is not reaped before p.wait runs, so its PID is its own.
	fd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		_ = proc.Kill()
		_, _ = proc.Wait()
		return fmt.Errorf("procfreeze: pidfd_open %d: %w", p.pid, os.NewSyscallError("pidfd_open", err))
	}
	p.pidfd = fd
	p.wg.Add(1)
	go p.wait()
	if p.mode == Cgroup1 {
		if err := writeFile(filepath.Join(p.dir, "cgroup.procs"), strconv.Itoa(p.pid)); err != nil {
			p.killAll(unix.SIGKILL)
			p.wg.Wait()
			unix.Close(p.pidfd)
			return fmt.Errorf("procfreeze: move %d into %s: %w", p.pid, p.dir, err)
		}
	}
	return nil
}

// wait reaps a started process; it owns nothing else.
func (p *Process) wait() {
	defer p.wg.Done()
	st, err := p.proc.Wait()
	p.mu.Lock()
	p.state, p.waited = st, err
	p.mu.Unlock()
	close(p.exited)
}

// startIn runs start on an OS thread switched into the network namespace
// at path ("" : the caller's thread as it is).
func startIn(path string, start func() (*os.Process, error)) (*os.Process, error) {
	if path == "" {
		return start()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", path, err)
	}
	defer target.Close()
	type result struct {
		proc *os.Process
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			ch <- result{err: fmt.Errorf("current netns: %w", err)}
			return // the locked thread ends with the goroutine
		}
		defer origin.Close()
		if err := netns.Set(target); err != nil {
			ch <- result{err: fmt.Errorf("enter netns %s: %w", path, err)}
			return
		}
		proc, err := start()
		if netns.Set(origin) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{proc, err}
	}()
	res := <-ch
	return res.proc, res.err
}

// Adopt takes the running process pid into a new cgroup (moving all its
// threads; children it forks later follow) without starting or signalling
// it. Close puts it back where it was.
func Adopt(cfg *Config, pid int) (*Process, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if pid <= 1 || pid > 1<<22 {
		return nil, fmt.Errorf("procfreeze: pid %d out of range 2–%d", pid, 1<<22)
	}
	if pid == os.Getpid() {
		return nil, fmt.Errorf("procfreeze: pid %d is standbynic itself", pid)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if err == unix.ESRCH {
			return nil, fmt.Errorf("procfreeze: adopt %d: %w", pid, ErrNoProcess)
		}
		return nil, fmt.Errorf("procfreeze: adopt %d: %w", pid, os.NewSyscallError("pidfd_open", err))
	}
	p := &Process{cfg: r, pid: pid, pidfd: fd}
	if err := p.adopt(r); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return p, nil
}

func (p *Process) adopt(r resolved) error {
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("procfreeze: adopt %d: %w", p.pid, ErrNoProcess)
		}
		return fmt.Errorf("procfreeze: adopt %d: %w", p.pid, err)
	}
	v2p, v1p := cgroupPaths(cg)
	mode, h, dir, err := makeGroup(r)
	if err != nil {
		return err
	}
	p.mode, p.dir = mode, dir
	switch mode {
	case Cgroup2:
		p.origDir = h.abs(v2p)
	case Cgroup1:
		p.origDir = h.abs(v1p)
	}
	if mode == Signal {
		return nil
	}
	if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(p.pid)); err != nil {
		_ = os.Remove(dir)
		switch {
		case errors.Is(err, unix.ESRCH):
			return fmt.Errorf("procfreeze: adopt %d: %w", p.pid, ErrNoProcess)
		case errors.Is(err, os.ErrPermission):
			return fmt.Errorf("procfreeze: adopt %d: moving it into %s needs CAP_SYS_ADMIN and write access to both cgroups: %w", p.pid, dir, err)
		}
		return fmt.Errorf("procfreeze: adopt %d: move into %s: %w", p.pid, dir, err)
	}
	return nil
}

func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Freeze freezes the process (every process of its cgroup) and returns
// once the kernel confirms it: cgroup.events "frozen 1" or freezer.state
// FROZEN, and no task of it runnable in /proc/TID/stat (Signal: every
// thread stopped, state T).
func (p *Process) Freeze(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.frozen {
		return nil
	}
	if !p.aliveLocked() {
		return fmt.Errorf("procfreeze: freeze %d: %w", p.pid, ErrExited)
	}
	if err := p.setFrozen(true); err != nil {
		return fmt.Errorf("procfreeze: freeze %d (%v): %w", p.pid, p.mode, err)
	}
	if err := p.confirm(ctx, true); err != nil {
		return fmt.Errorf("procfreeze: freeze %d (%v): %w", p.pid, p.mode, err)
	}
	p.frozen = true
	return nil
}

// Thaw releases every open Socket of the process (so the app never runs
// with the file status flags the duplicates set) and thaws it, returning
// once the kernel confirms it.
func (p *Process) Thaw(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	return p.thawLocked(ctx)
}

func (p *Process) thawLocked(ctx context.Context) error {
	p.closeSocketsLocked()
	if !p.frozen {
		return nil
	}
	if err := p.setFrozen(false); err != nil {
		return fmt.Errorf("procfreeze: thaw %d (%v): %w", p.pid, p.mode, err)
	}
	p.frozen = false
	if !p.aliveLocked() {
		return nil
	}
	if err := p.confirm(ctx, false); err != nil {
		return fmt.Errorf("procfreeze: thaw %d (%v): %w", p.pid, p.mode, err)
	}
	return nil
}

func (p *Process) setFrozen(on bool) error {
	switch p.mode {
	case Cgroup2:
		v := "0"
		if on {
			v = "1"
		}
		return writeFile(filepath.Join(p.dir, "cgroup.freeze"), v)
	case Cgroup1:
		v := "THAWED"
		if on {
			v = "FROZEN"
		}
		return writeFile(filepath.Join(p.dir, "freezer.state"), v)
	}
	sig := unix.SIGCONT
	if on {
		sig = unix.SIGSTOP
	}
	if err := unix.PidfdSendSignal(p.pidfd, sig, nil, 0); err != nil {
		if err == unix.ESRCH {
			return ErrExited
		}
		return os.NewSyscallError("pidfd_send_signal", err)
	}
	return nil
}

// confirm polls until the kernel reports the state wanted, the process
// exits, or the timeout or ctx ends.
func (p *Process) confirm(ctx context.Context, frozen bool) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.timeout)
	defer cancel()
	var last string
	delay := 50 * time.Microsecond
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		ok, why, err := p.check(frozen)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		last = why
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("%w after %v: %s", ErrTimeout, p.cfg.timeout, last)
			}
			return fmt.Errorf("%w: %s", ctx.Err(), last)
		case <-t.C:
		}
		if delay < 5*time.Millisecond {
			delay *= 2
		}
		t.Reset(delay)
	}
}

// check reads the freeze state once: ok when it is as wanted, else why not.
func (p *Process) check(frozen bool) (ok bool, why string, err error) {
	switch p.mode {
	case Cgroup2:
		b, err := os.ReadFile(filepath.Join(p.dir, "cgroup.events"))
		if err != nil {
			return false, "", err
		}
		if pop, ok := keyValue(b, "populated"); ok && pop == 0 {
			return false, "", ErrExited
		}
		v, ok := keyValue(b, "frozen")
		if !ok {
			return false, "", fmt.Errorf("cgroup.events %q: no frozen key", b)
		}
		if (v == 1) != frozen {
			return false, fmt.Sprintf("cgroup.events frozen %d", v), nil
		}
	case Cgroup1:
		b, err := os.ReadFile(filepath.Join(p.dir, "freezer.state"))
		if err != nil {
			return false, "", err
		}
		st := string(bytes.TrimSpace(b))
		if want := map[bool]string{true: "FROZEN", false: "THAWED"}[frozen]; st != want {
			return false, "freezer.state " + st, nil
		}
	}
	tids, err := p.tasks()
	if err != nil {
		return false, "", err
	}
	if len(tids) == 0 {
		return false, "", ErrExited
	}
	for _, tid := range tids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", tid))
		if err != nil {
			continue // the task ended
		}
		st, err := parseStat(b)
		if err != nil {
			return false, "", fmt.Errorf("/proc/%d/stat: %w", tid, err)
		}
		if !taskStateOK(p.mode, st.State, frozen) {
			return false, fmt.Sprintf("task %d state %c", tid, st.State), nil
		}
	}
	return true, "", nil
}

// tasks lists the thread IDs under freeze: the cgroup's (cgroup.threads,
// tasks), or the process's (/proc/PID/task) for Signal.
func (p *Process) tasks() ([]int, error) {
	switch p.mode {
	case Cgroup2:
		return readIDs(filepath.Join(p.dir, "cgroup.threads"))
	case Cgroup1:
		return readIDs(filepath.Join(p.dir, "tasks"))
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	out := make([]int, 0, len(ents))
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// procs lists the processes held: the cgroup's, or the one PID for Signal.
func (p *Process) procs() ([]int, error) {
	if p.mode == Signal {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.pid)); err != nil {
			return nil, nil
		}
		return []int{p.pid}, nil
	}
	return readIDs(filepath.Join(p.dir, "cgroup.procs"))
}

func readIDs(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not an ID", path, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// CPU returns the CPU time the held processes used: the cgroup's
// cpu.stat usage_usec for Cgroup2, else the sum of utime and stime of
// /proc/PID/stat over the processes (clock ticks of 10 ms).
func (p *Process) CPU() (time.Duration, error) {
	if p.mode == Cgroup2 {
		b, err := os.ReadFile(filepath.Join(p.dir, "cpu.stat"))
		if err == nil {
			if us, ok := keyValue(b, "usage_usec"); ok {
				return time.Duration(us) * time.Microsecond, nil
			}
		}
	}
	pids, err := p.procs()
	if err != nil {
		return 0, err
	}
	var ticks uint64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		st, err := parseStat(b)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += st.UTime + st.STime
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// killAll sends sig to every process held (a started process's cgroup:
// its children too).
func (p *Process) killAll(sig unix.Signal) {
	// The process itself through its pidfd, even if something moved it out
	// of the cgroup.
	if p.pidfd >= 0 {
		_ = unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	}
	if p.mode == Cgroup2 && sig == unix.SIGKILL {
		if writeFile(filepath.Join(p.dir, "cgroup.kill"), "1") == nil {
			return
		}
	}
	if p.mode == Signal {
		return
	}
	pids, _ := p.procs()
	for _, pid := range pids {
		if pid != p.pid {
			_ = unix.Kill(pid, sig)
		}
	}
}

// Close releases the process: see Process. It is idempotent; the first
// call's error is the only one.
func (p *Process) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var errs []error
	ctx := context.Background()
	if p.started {
		p.closeSocketsLocked()
		p.killAll(unix.SIGTERM)
		if err := p.thawLocked(ctx); err != nil && !errors.Is(err, ErrExited) {
			errs = append(errs, err)
		}
		p.mu.Unlock()
		select {
		case <-p.exited:
		case <-time.After(p.cfg.stopGrace):
		}
		p.mu.Lock()
		p.killAll(unix.SIGKILL)
		p.mu.Unlock()
		p.wg.Wait()
		p.mu.Lock()
	} else {
		if err := p.thawLocked(ctx); err != nil && !errors.Is(err, ErrExited) {
			errs = append(errs, err)
		}
		if p.dir != "" && p.origDir != "" {
			if err := p.moveBack(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if p.dir != "" {
		if err := removeGroup(ctx, p.dir, p.cfg.timeout); err != nil {
			errs = append(errs, err)
		}
	}
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
	p.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("procfreeze: release %d: %w", p.pid, err)
	}
	return nil
}

// moveBack returns every process of the cgroup to the adopted process's
// original cgroup.
func (p *Process) moveBack() error {
	pids, err := p.procs()
	if err != nil {
		return err
	}
	var errs []error
	for _, pid := range pids {
		if err := writeFile(filepath.Join(p.origDir, "cgroup.procs"), strconv.Itoa(pid)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("move %d back to %s: %w", pid, p.origDir, err))
		}
	}
	return errors.Join(errs...)
}

// removeGroup removes an emptied cgroup directory, waiting for the kernel
// to see its last task go (a reaped task can linger an instant).
func removeGroup(ctx context.Context, dir string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := 100 * time.Microsecond
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove %s: still populated after %v: %w", dir, timeout, err)
		case <-time.After(delay):
		}
		if delay < 10*time.Millisecond {
			delay *= 2
		}
	}
}
