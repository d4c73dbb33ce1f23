//go:build linux

package peers

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/standbynic/standbynic/internal/netlab"
)

// binaries maps each program to the Debian package that ships it.
var binaries = map[string]string{
	"mosquitto":     "mosquitto",
	"mosquitto_pub": "mosquitto-clients",
	"nginx":         "nginx-light",
	"node":          "nodejs",
}

// lookPath finds a program in PATH or in /usr/sbin and /usr/bin (a test's
// PATH may lack the sbin directories); a missing one fails t naming its
// Debian package.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("peers: %s not found: install the Debian package %q", name, binaries[name])
	return ""
}

// Proc is a child process running in a lab namespace. Its stdout and
// stderr are kept (Output) and its lines can be waited for.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	out  *lines
	// Stdin is the process's standard input when started with one.
	stdin io.WriteCloser
	done  chan struct{}
	err   error
}

// start runs path with args in ns, its working directory dir, and
// registers its kill and wait with t.Cleanup.
func start(t testing.TB, lab *netlab.Lab, ns netlab.Namespace, dir string, env []string, path string, args ...string) *Proc {
	t.Helper()
	return startIn(t, lab, ns, dir, env, false, path, args...)
}

// startIn is start, with a pipe to the process's stdin when withStdin.
func startIn(t testing.TB, lab *netlab.Lab, ns netlab.Namespace, dir string, env []string, withStdin bool, path string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: filepath.Base(path), out: newLines(), done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if withStdin {
		w, err := p.cmd.StdinPipe()
		if err != nil {
			t.Fatalf("peers: %s stdin: %v", p.Name, err)
		}
		p.stdin = w
	}
	// Its own process group, so Cleanup can end what it forks too.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A child forked from a thread in ns lives in ns.
	if err := lab.Do(ns, p.cmd.Start); err != nil {
		t.Fatalf("peers: start %s: %v", p.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop() })
	return p
}

// Stop kills the process (its group) and waits for it; it is idempotent.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Output returns everything the process wrote to stdout and stderr.
func (p *Proc) Output() string { return p.out.String() }

// WaitOutput waits until re matches the process's output and returns the
// match; it fails t on the timeout or when the process ends first.
func (p *Proc) WaitOutput(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		changed := p.out.Changed()
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		select {
		case <-changed:
		case <-p.done:
			if m := re.FindStringSubmatch(p.out.String()); m != nil {
				return m
			}
			t.Fatalf("peers: %s exited (%v) before %s; output:\n%s", p.Name, p.err, re, p.out)
		case <-deadline.C:
			t.Fatalf("peers: %s: no %s within %v; output:\n%s", p.Name, re, timeout, p.out)
		}
	}
}

// lines is a concurrency-safe text buffer whose readers can wait for a
// change.
type lines struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{}
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lines) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// LogFile is a log a server writes to a file.
type LogFile struct {
	Path string
	proc *Proc
}

// String returns the log's text so far ("" before the file exists).
func (f *LogFile) String() string {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return ""
	}
	return string(b)
}

// Count returns the lines of the log matching re.
func (f *LogFile) Count(re *regexp.Regexp) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(f.String()))
	for sc.Scan() {
		if re.MatchString(sc.Text()) {
			n++
		}
	}
	return n
}

// Wait polls the file every 20 ms until re matches its text, and returns
// the match; it fails t on the timeout or when the server ends first.
func (f *LogFile) Wait(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if m := re.FindStringSubmatch(f.String()); m != nil {
			return m
		}
		if f.proc != nil {
			if done, err := f.proc.Exited(); done {
				t.Fatalf("peers: %s exited (%v) before %s in %s; output:\n%s\nlog:\n%s", f.proc.Name, err, re, f.Path, f.proc.Output(), f.String())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("peers: no %s in %s within %v; log:\n%s", re, f.Path, timeout, f.String())
		}
		<-tick.C
	}
}

var _ io.Writer = (*lines)(nil)
