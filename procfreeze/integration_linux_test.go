package procfreeze_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/peers"
	"github.com/standbynic/standbynic/procfreeze"
)

// The test binary doubles as the programs the tests hold: with
// PROCFREEZE_HELPER set it runs one of them instead of the tests.
func TestMain(m *testing.M) {
	switch os.Getenv("PROCFREEZE_HELPER") {
	case "":
		os.Exit(m.Run())
	case "spin":
		fmt.Println("ready")
		for x := 0; ; x++ {
			_ = x
		}
	case "client":
		os.Exit(helperClient(os.Getenv("PROCFREEZE_ADDR")))
	}
	os.Exit(2)
}

// helperClient connects to addr with a blocking socket (plain syscalls,
// no Go poller), says "ready", then copies whatever it reads to stdout.
func helperClient(addr string) int {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ready fd %d\n", fd)
	buf := make([]byte, 4096)
	for {
		n, err := syscall.Read(fd, buf)
		if err != nil {
			fmt.Printf("read error %v\n", err)
			return 1
		}
		if n == 0 {
			return 0
		}
		os.Stdout.Write(buf[:n])
	}
}

func helperEnv(kind string, extra ...string) []string {
	return append(append(os.Environ(), "PROCFREEZE_HELPER="+kind), extra...)
}

// skipIfPerm skips on a permission error naming the capabilities; any other
// error fails.
func skipIfPerm(t *testing.T, err error, what string) {
	t.Helper()
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("%s needs CAP_SYS_ADMIN (cgroups) and CAP_SYS_PTRACE (pidfd_getfd): %v", what, err)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// output is a child's stdout, read line by line.
type output struct {
	lines chan string
	r     *os.File
}

func newOutput(t *testing.T) (*output, *os.File) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	o := &output{lines: make(chan string, 64), r: r}
	go func() {
		defer close(o.lines)
		br := bufio.NewReader(r)
		for {
			l, err := br.ReadString('\n')
			if l != "" {
				o.lines <- l
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { r.Close() })
	return o, w
}

func (o *output) next(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-o.lines:
		if !ok {
			t.Fatal("child's stdout closed")
		}
		return l
	case <-time.After(d):
		t.Fatalf("no line from the child within %v", d)
	}
	return ""
}

// leftovers lists this test process's cgroup directories in every
// hierarchy.
func leftovers(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, base := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/freezer"} {
		m, _ := filepath.Glob(filepath.Join(base, fmt.Sprintf("%s-%d-*", procfreeze.Prefix, os.Getpid())))
		out = append(out, m...)
	}
	return out
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// checkReleased registers the end-of-test checks: no cgroup directory and
// no fd of ours left.
func checkReleased(t *testing.T) {
	fds := openFDs(t)
	t.Cleanup(func() {
		if l := leftovers(t); len(l) != 0 {
			t.Errorf("cgroup directories left: %q", l)
		}
		// The Go runtime may hold an extra fd (pidfd of a child, netpoll) for
		// an instant after a process is reaped; wait for the count to settle.
		deadline := time.Now().Add(2 * time.Second)
		for openFDs(t) > fds && time.Now().Before(deadline) {
			runtime_Gosched()
		}
		if n := openFDs(t); n > fds {
			t.Errorf("%d fds open after the test, %d before", n, fds)
		}
	})
}

func procStat(t *testing.T, pid int) (state byte, ticks uint64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return f[0][0], u + s
}

// frozenByKernel reads the freeze state from the cgroup itself.
func frozenByKernel(t *testing.T, p *procfreeze.Process) bool {
	t.Helper()
	switch p.Mode() {
	case procfreeze.Cgroup2:
		b, err := os.ReadFile(filepath.Join(p.Dir(), "cgroup.events"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(b), "frozen 1")
	case procfreeze.Cgroup1:
		b, err := os.ReadFile(filepath.Join(p.Dir(), "freezer.state"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b)) == "FROZEN"
	}
	st, _ := procStat(t, p.PID())
	return st == 'T'
}

// TestIntegrationFreezeModes runs a spinning program under each mechanism:
// frozen, the kernel says so and it gets no CPU; thawed, it spins again;
// released, it is gone with its cgroup.
func TestIntegrationFreezeModes(t *testing.T) {
	for _, mode := range []procfreeze.Mode{procfreeze.Cgroup2, procfreeze.Cgroup1, procfreeze.Signal} {
		t.Run(mode.String(), func(t *testing.T) {
			checkReleased(t)
			out, w := newOutput(t)
			p, err := procfreeze.Run(&procfreeze.Config{Name: "spin", Mode: mode}, procfreeze.RunConfig{
				Argv: []string{os.Args[0]}, Env: helperEnv("spin"), Stdout: w,
			})
			w.Close()
			skipIfPerm(t, err, "run")
			defer p.Close()
			if p.Mode() != mode {
				t.Fatalf("mode %v, want %v", p.Mode(), mode)
			}
			out.next(t, 10*time.Second)
			for deadline := time.Now().Add(5 * time.Second); ; runtime_Gosched() {
				if _, n := procStat(t, p.PID()); n > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the spinning program used no CPU in 5 s")
				}
			}
			ctx := context.Background()
			if err := p.Freeze(ctx); err != nil {
				t.Fatal(err)
			}
			if !p.Frozen() || !frozenByKernel(t, p) {
				t.Fatalf("Frozen %v, kernel %v; want both", p.Frozen(), frozenByKernel(t, p))
			}
			st, before := procStat(t, p.PID())
			if st == 'R' {
				t.Fatalf("frozen task in state R")
			}
			cpuBefore, err := p.CPU()
			if err != nil {
				t.Fatal(err)
			}
			// Time must pass for a CPU count to be able to change; a spinning
			// thawed program gains ~20 ticks in this window.
			<-time.After(300 * time.Millisecond)
			_, after := procStat(t, p.PID())
			cpuAfter, _ := p.CPU()
			if after != before {
				t.Errorf("utime+stime %d → %d ticks while frozen", before, after)
			}
			if mode == procfreeze.Cgroup2 && cpuAfter != cpuBefore {
				t.Errorf("cgroup cpu.stat usage %v → %v while frozen", cpuBefore, cpuAfter)
			}
			t.Logf("%v: frozen 300 ms, state %c, utime+stime %d ticks unchanged, CPU %v", mode, st, after, cpuAfter)
			if err := p.Thaw(ctx); err != nil {
				t.Fatal(err)
			}
			if p.Frozen() || frozenByKernel(t, p) {
				t.Fatal("still frozen after Thaw")
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				if _, n := procStat(t, p.PID()); n > after {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no CPU used within 5 s of the thaw")
				}
				runtime_Gosched()
			}
			dir := p.Dir()
			pid := p.PID()
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if dir != "" {
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("cgroup %s still there: %v", dir, err)
				}
			}
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("pid %d still there after Close: %v", pid, err)
			}
			if err := p.Freeze(ctx); !errors.Is(err, procfreeze.ErrClosed) {
				t.Errorf("Freeze after Close = %v, want ErrClosed", err)
			}
		})
	}
}

func runtime_Gosched() { <-time.After(time.Millisecond) }

// TestIntegrationAdopt adopts a sleep the test started: frozen and thawed in
// its cgroup, then put back where it was, alive and unsignalled.
func TestIntegrationAdopt(t *testing.T) {
	for _, mode := range []procfreeze.Mode{procfreeze.Cgroup2, procfreeze.Cgroup1, procfreeze.Signal} {
		t.Run(mode.String(), func(t *testing.T) {
			checkReleased(t)
			cmd := exec.Command("sleep", "1000")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			origCg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
			p, err := procfreeze.Adopt(&procfreeze.Config{Name: "sleep", Mode: mode}, cmd.Process.Pid)
			skipIfPerm(t, err, "adopt")
			defer p.Close()
			if mode != procfreeze.Signal {
				cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
				if !strings.Contains(string(cg), filepath.Base(p.Dir())) {
					t.Fatalf("/proc/%d/cgroup does not name %s:\n%s", cmd.Process.Pid, p.Dir(), cg)
				}
			}
			ctx := context.Background()
			if err := p.Freeze(ctx); err != nil {
				t.Fatal(err)
			}
			if !frozenByKernel(t, p) {
				t.Fatal("kernel says not frozen")
			}
			if err := p.Thaw(ctx); err != nil {
				t.Fatal(err)
			}
			if err := p.Freeze(ctx); err != nil { // released while frozen
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(cmd.Process.Pid, 0); err != nil {
				t.Fatalf("adopted process gone after Close: %v", err)
			}
			// Thawed, the sleep goes back to sleeping (S), neither stopped
			// nor frozen.
			for deadline := time.Now().Add(5 * time.Second); ; runtime_Gosched() {
				st, _ := procStat(t, cmd.Process.Pid)
				if st == 'S' {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("adopted process state %c after Close, want S (sleeping, thawed)", st)
				}
			}
			cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
			if string(cg) != string(origCg) {
				t.Errorf("cgroups after Close:\n%s\nwant:\n%s", cg, origCg)
			}
		})
	}
}

func TestIntegrationAdoptErrors(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		want error
	}{
		{"no such pid", 1<<22 - 1, procfreeze.ErrNoProcess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := procfreeze.Adopt(nil, tt.pid)
			if !errors.Is(err, tt.want) {
				t.Errorf("Adopt(%d) = %v, want %v", tt.pid, err, tt.want)
			}
		})
	}
	for _, pid := range []int{0, 1, os.Getpid()} {
		if _, err := procfreeze.Adopt(nil, pid); err == nil {
			t.Errorf("Adopt(%d) accepted", pid)
		}
	}
}

// fdFlags reads the file status flags of pid's fd from /proc (octal).
func fdFlags(t *testing.T, pid, fd int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "flags:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no flags in fdinfo %d/%d", pid, fd)
	return 0
}

// TestIntegrationSocketsShared runs a blocking TCP client in a lab's host
// namespace, takes its connection with pidfd_getfd while it is frozen,
// freezes it with TCP_REPAIR through the duplicate and thaws it with bytes
// "absorbed" into the receive queue: the app reads them from its own fd,
// byte-exact, so the kernel socket is the app's. A connection with an
// unread byte is reported busy.
func TestIntegrationSocketsShared(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	checkReleased(t)
	ln, err := lab.ListenTCP(netlab.Host, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, w := newOutput(t)
	p, err := procfreeze.Run(&procfreeze.Config{Name: "client"}, procfreeze.RunConfig{
		Argv:   []string{os.Args[0]},
		Env:    helperEnv("client", "PROCFREEZE_ADDR="+ln.Addr().String()),
		Stdout: w, Stderr: os.Stderr,
		NetNS: lab.NamespacePath(netlab.Host),
	})
	w.Close()
	skipIfPerm(t, err, "run")
	defer p.Close()
	t.Logf("mode %v, cgroup %s", p.Mode(), p.Dir())
	srv, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var appFD int
	if _, err := fmt.Sscanf(out.next(t, 10*time.Second), "ready fd %d", &appFD); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := p.Sockets(nil); !errors.Is(err, procfreeze.ErrNotFrozen) {
		t.Fatalf("Sockets while running = %v, want ErrNotFrozen", err)
	}
	if err := p.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	flagsBefore := fdFlags(t, p.PID(), appFD)
	socks, err := p.Sockets(host.Idle)
	skipIfPerm(t, err, "sockets")
	var tcp []*procfreeze.Socket
	for _, s := range socks {
		t.Logf("%v", s)
		if s.Err == nil {
			tcp = append(tcp, s)
		}
	}
	if len(tcp) != 1 {
		t.Fatalf("%d offloadable sockets, want 1: %v", len(tcp), socks)
	}
	s := tcp[0]
	if s.FD != appFD || s.Remote != netip.MustParseAddrPort(ln.Addr().String()) || s.Local.String() != srv.RemoteAddr().String() {
		t.Fatalf("socket %v, want fd %d %v→%v", s, appFD, srv.RemoteAddr(), ln.Addr())
	}
	if flagsBefore&syscall.O_NONBLOCK != 0 {
		t.Fatalf("the app's socket was non-blocking before: %o", flagsBefore)
	}
	fr, state, err := host.Freeze(s.Conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TCP_REPAIR snapshot through the duplicate: %v→%v snd.nxt %d rcv.nxt %d", state.Local, state.Remote, state.SndNxt, state.RcvNxt)
	if state.Local != s.Local || state.Remote != s.Remote {
		t.Errorf("snapshot %v→%v, sock_diag %v→%v", state.Local, state.Remote, s.Local, s.Remote)
	}
	absorbed := []byte("bytes the NIC absorbed\n")
	if err := fr.Thaw(nil, absorbed); err != nil {
		t.Fatal(err)
	}
	if err := p.Thaw(ctx); err != nil { // closes s
		t.Fatal(err)
	}
	if got := fdFlags(t, p.PID(), appFD); got != flagsBefore {
		t.Errorf("app's fd flags %o after Thaw, %o before", got, flagsBefore)
	}
	if got := out.next(t, 10*time.Second); got != string(absorbed) {
		t.Fatalf("app read %q, want %q", got, absorbed)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationBusySocket: a frozen client with an unread byte stays on
// software, and says why.
func TestIntegrationBusySocket(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	checkReleased(t)
	ln, err := lab.ListenTCP(netlab.Host, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, w := newOutput(t)
	p, err := procfreeze.Run(&procfreeze.Config{Name: "busy"}, procfreeze.RunConfig{
		Argv:   []string{os.Args[0]},
		Env:    helperEnv("client", "PROCFREEZE_ADDR="+ln.Addr().String()),
		Stdout: w, Stderr: os.Stderr,
		NetNS: lab.NamespacePath(netlab.Host),
	})
	w.Close()
	skipIfPerm(t, err, "run")
	defer p.Close()
	srv, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	out.next(t, 10*time.Second)
	ctx := context.Background()
	if err := p.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Write([]byte("unread\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var busy *procfreeze.Socket
	for busy == nil {
		socks, err := p.Sockets(host.Idle)
		skipIfPerm(t, err, "sockets")
		for _, s := range socks {
			if s.State == procfreeze.TCPEstablished && s.RecvQ == 7 {
				busy = s
			} else {
				_ = s.Close()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket with 7 unread bytes: %v", socks)
		}
		if busy == nil {
			runtime_Gosched()
		}
	}
	if !errors.Is(busy.Err, procfreeze.ErrBusy) || busy.Conn == nil {
		t.Fatalf("busy socket: %v (conn %v), want ErrBusy and a duplicate", busy, busy.Conn)
	}
	if err := host.Idle(busy.Conn); !errors.Is(err, host.ErrNotIdle) {
		t.Errorf("host.Idle of the busy duplicate = %v, want ErrNotIdle", err)
	}
	t.Logf("%v", busy)
	if err := p.Thaw(ctx); err != nil {
		t.Fatal(err)
	}
	if got := out.next(t, 10*time.Second); got != "unread\n" {
		t.Errorf("app read %q after the thaw, want %q", got, "unread\n")
	}
}

// TestIntegrationMosquittoSub holds a real mosquitto_sub (Debian
// mosquitto-clients) subscribed to a real mosquitto broker in the lab's host
// namespace: frozen, its one MQTT connection is found idle and taken; a
// publish while it is frozen waits in its receive queue (the connection is
// then busy); thawed, mosquitto_sub prints the payload byte-exact.
func TestIntegrationMosquittoSub(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	checkReleased(t)
	sub, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Fatalf("mosquitto_sub (Debian package mosquitto-clients): %v", err)
	}
	broker := peers.StartMosquitto(t, lab, netlab.Host, peers.MosquittoConfig{Addr: netip.MustParseAddr("127.0.0.1"), Port: 1883})
	out, w := newOutput(t)
	p, err := procfreeze.Run(&procfreeze.Config{Name: "mosquitto-sub"}, procfreeze.RunConfig{
		Argv:   []string{sub, "-h", "127.0.0.1", "-p", "1883", "-i", "frozen-sub", "-t", "standby/t", "-k", "60", "-q", "0"},
		Stdout: w, Stderr: os.Stderr,
		NetNS: lab.NamespacePath(netlab.Host),
	})
	w.Close()
	skipIfPerm(t, err, "run")
	defer p.Close()
	broker.Log.Wait(t, regexpMust(`Received SUBSCRIBE from frozen-sub`), 10*time.Second)
	ctx := context.Background()
	// SUBACK may still be in flight: wait for an idle socket.
	deadline := time.Now().Add(5 * time.Second)
	var conn *procfreeze.Socket
	for conn == nil {
		if err := p.Freeze(ctx); err != nil {
			t.Fatal(err)
		}
		socks, err := p.Sockets(host.Idle)
		skipIfPerm(t, err, "sockets")
		for _, s := range socks {
			if s.Err == nil && s.Remote.Port() == 1883 {
				conn = s
			}
		}
		if conn == nil {
			if time.Now().After(deadline) {
				t.Fatalf("no idle MQTT connection: %v", socks)
			}
			if err := p.Thaw(ctx); err != nil {
				t.Fatal(err)
			}
			runtime_Gosched()
		}
	}
	t.Logf("mode %v: %v", p.Mode(), conn)
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	payload := []byte("push to a frozen mosquitto_sub \x01\x02 ü")
	cpu0, _ := p.CPU()
	peers.Publish(t, lab, netlab.Host, peers.Publication{Addr: broker.Addr, Topic: "standby/t", Payload: payload})
	deadline = time.Now().Add(5 * time.Second)
	for {
		socks, err := p.Sockets(host.Idle)
		if err != nil {
			t.Fatal(err)
		}
		var busy *procfreeze.Socket
		for _, s := range socks {
			if s.Remote.Port() == 1883 && errors.Is(s.Err, procfreeze.ErrBusy) {
				busy = s
			}
			_ = s.Close()
		}
		if busy != nil {
			t.Logf("frozen with the PUBLISH unread: %v", busy)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the PUBLISH never reached the frozen client's queue: %v", socks)
		}
		runtime_Gosched()
	}
	if cpu1, _ := p.CPU(); cpu1 != cpu0 {
		t.Errorf("CPU %v → %v while frozen", cpu0, cpu1)
	}
	select {
	case l := <-out.lines:
		t.Fatalf("frozen mosquitto_sub printed %q", l)
	default:
	}
	if err := p.Thaw(ctx); err != nil {
		t.Fatal(err)
	}
	if got := out.next(t, 10*time.Second); got != string(payload)+"\n" {
		t.Fatalf("mosquitto_sub printed %q, want %q", got, string(payload)+"\n")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// TestIntegrationRecoverRepair leaves what a SIGKILLed host leaves behind
// for a guarded connection: the client frozen in a directory of a dead
// standbynic, its socket in TCP_REPAIR. Recover takes the socket out of
// repair mode before thawing the client, which then reads what its server
// sends.
func TestIntegrationRecoverRepair(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	checkReleased(t)
	ln, err := lab.ListenTCP(netlab.Host, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, w := newOutput(t)
	p, err := procfreeze.Run(&procfreeze.Config{Name: "crash", Mode: procfreeze.Cgroup2}, procfreeze.RunConfig{
		Argv: []string{os.Args[0]}, Env: helperEnv("client", "PROCFREEZE_ADDR="+ln.Addr().String()),
		Stdout: w, Stderr: os.Stderr, NetNS: lab.NamespacePath(netlab.Host),
	})
	w.Close()
	skipIfPerm(t, err, "run")
	defer p.Close()
	srv, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	out.next(t, 10*time.Second)
	ctx := context.Background()
	if err := p.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	socks, err := p.Sockets(host.Idle)
	skipIfPerm(t, err, "sockets")
	var s *procfreeze.Socket
	for _, x := range socks {
		if x.Err == nil {
			s = x
		}
	}
	if s == nil {
		t.Fatalf("no idle socket: %v", socks)
	}
	if _, _, err := host.Freeze(s.Conn); err != nil { // never thawed: the host "dies"
		t.Fatal(err)
	}
	s.Close()
	// The dead host's directory, beside ours, with the client frozen in it.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(filepath.Dir(p.Dir()), fmt.Sprintf("%s-%d-crashed-1", procfreeze.Prefix, dead.Process.Pid))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	if err := os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(p.PID())), 0); err != nil {
		t.Fatal(err)
	}
	recs, err := procfreeze.Recover()
	if err != nil {
		t.Fatal(err)
	}
	var got *procfreeze.Recovered
	for i := range recs {
		if recs[i].Dir == dir {
			got = &recs[i]
		}
	}
	if got == nil || got.Repaired != 1 || len(got.PIDs) != 1 || got.PIDs[0] != p.PID() {
		t.Fatalf("Recover = %+v, want %s with pid %d and 1 socket out of repair", recs, dir, p.PID())
	}
	// The client runs again, out of our cgroup (Close still stops it).
	if _, err := srv.Write([]byte("after the crash\n")); err != nil {
		t.Fatal(err)
	}
	if got := out.next(t, 10*time.Second); got != "after the crash\n" {
		t.Fatalf("client read %q", got)
	}
}
