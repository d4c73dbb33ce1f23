package host

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/peers"
	"github.com/standbynic/standbynic/procfreeze"
)

// procLines is a child's stdout, line by line.
type procLines chan string

func newProcLines(t *testing.T) (procLines, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	out := make(procLines, 64)
	go func() {
		defer close(out)
		br := bufio.NewReader(r)
		for {
			l, err := br.ReadString('\n')
			if l != "" {
				out <- l
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { r.Close() })
	return out, w
}

func (o procLines) next(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-o:
		if !ok {
			t.Fatal("the process's stdout closed")
		}
		return l
	case <-time.After(d):
		t.Fatalf("no line from the process within %v", d)
	}
	return ""
}

// procTicks is utime+stime of pid, in clock ticks.
func procTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	u, _ := strconv.ParseUint(f[11], 10, 64)
	k, _ := strconv.ParseUint(f[12], 10, 64)
	return u + k
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func cgroupFrozen(t *testing.T, p *procfreeze.Process) bool {
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
	return false
}

// noCgroupLeft fails when a cgroup directory of this test process, or
// an fd opened after the call, is left. Call it first: its check runs
// after every other cleanup (the lab's included).
func noCgroupLeft(t *testing.T) {
	fds := countFDs(t)
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for countFDs(t) > fds && time.Now().Before(deadline) {
			<-time.After(5 * time.Millisecond) // the runtime closes a reaped child's pidfd, pipes end
		}
		if n := countFDs(t); n > fds {
			t.Errorf("%d fds open after the test, %d before", n, fds)
		}
		for _, base := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/freezer"} {
			m, _ := filepath.Glob(filepath.Join(base, fmt.Sprintf("%s-%d-*", procfreeze.Prefix, os.Getpid())))
			if len(m) > 0 {
				t.Errorf("cgroup directories left: %q", m)
			}
		}
	})
}

// TestIntegrationProcessMosquittoSub is issue 14's proof: a real
// mosquitto_sub (Debian mosquitto-clients), started by the host as a run
// app in the host namespace and subscribed to a real mosquitto broker in
// the server namespace, is frozen with the host. The host sleeps for 3×
// the broker's keep-alive grace (1.5 × 5 s): the NIC sends the PINGREQs
// (mqtt preset for port 1883) and absorbs the PINGRESPs, the broker keeps
// the client, the process is frozen (cgroup state) and uses no CPU. A
// publish wakes the host, the absorbed PINGRESPs are advanced past, the
// process is thawed, and mosquitto_sub itself prints the message
// byte-exact.
func TestIntegrationProcessMosquittoSub(t *testing.T) {
	sub, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Fatalf("mosquitto_sub (Debian package mosquitto-clients): %v", err)
	}
	noCgroupLeft(t)
	lh := newLabHost(t, 1, nil)
	broker := peers.StartMosquitto(t, lh.lab, netlab.Srv, peers.MosquittoConfig{})
	out, w := newProcLines(t)
	const keepAlive = 5 // seconds: mosquitto_sub's least
	p, err := procfreeze.Run(&procfreeze.Config{Name: "mosquitto-sub"}, procfreeze.RunConfig{
		Argv:   []string{sub, "-h", broker.Addr.Addr().String(), "-p", strconv.Itoa(int(broker.Addr.Port())), "-i", "frozen-sub", "-t", "standby/t", "-k", strconv.Itoa(keepAlive), "-V", "mqttv311"},
		Stdout: w, Stderr: os.Stderr,
		NetNS: lh.lab.NamespacePath(netlab.Host),
	})
	w.Close()
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("running a program in a cgroup needs CAP_SYS_ADMIN: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("process close: %v", err)
		}
	})
	broker.Log.Wait(t, regexp.MustCompile(`Received SUBSCRIBE from frozen-sub`), 10*time.Second)
	pa, err := lh.h.AddProcess(ProcessConfig{
		Name: "mosquitto-sub", Process: p, Interval: 3 * time.Second, // 0.75 × 5 s, rounded down
		Endpoints: []ProcessEndpoint{{Remote: broker.Addr}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := labDeadline(t)
	// SUBACK may be unread for an instant: the first entry may keep the
	// connection on software; enter until a slot guards it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := lh.h.Standby(ctx); err != nil {
			t.Fatal(err)
		}
		chs := pa.Channels()
		if len(chs) == 1 && chs[0].Armed() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no armed channel for the process: %q", pa.Stats().Notes)
		}
		if err := lh.h.Wake(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st := pa.Stats()
	t.Logf("process %d (%v, %s): %q", p.PID(), st.Mode, p.Dir(), st.Notes)
	if !st.Frozen || !cgroupFrozen(t, p) {
		t.Fatalf("not frozen: stats %v, cgroup %v", st.Frozen, cgroupFrozen(t, p))
	}
	wakes0 := lh.h.Stats().Resumes
	ticks0 := procTicks(t, p.PID())
	cpu0, _ := p.CPU()
	pings0 := broker.Received("PINGREQ", "frozen-sub")
	grace := time.Duration(keepAlive) * time.Second * 3 / 2
	// The proof is that time passes: 3× the broker's grace with the
	// process frozen.
	<-time.After(3 * grace)
	if got := lh.h.Stats().Resumes; got != wakes0 {
		t.Errorf("host woke %d times while the process slept", got-wakes0)
	}
	if d := broker.Dropped("frozen-sub"); len(d) != 0 {
		t.Fatalf("broker dropped the frozen client: %q", d)
	}
	pings := broker.Received("PINGREQ", "frozen-sub") - pings0
	if pings < int(3*grace/(3*time.Second))-1 {
		t.Errorf("broker got %d PINGREQs in %v, want about one per 3 s from the NIC", pings, 3*grace)
	}
	if !cgroupFrozen(t, p) {
		t.Fatal("the cgroup is not frozen after the sleep")
	}
	ticks1 := procTicks(t, p.PID())
	cpu1, _ := p.CPU()
	if ticks1 != ticks0 || cpu1 != cpu0 {
		t.Errorf("CPU while frozen: %d → %d ticks, %v → %v", ticks0, ticks1, cpu0, cpu1)
	}
	select {
	case l := <-out:
		t.Fatalf("frozen mosquitto_sub printed %q", l)
	default:
	}
	t.Logf("slept %v frozen: %d PINGREQs from the NIC, broker kept the client, utime+stime %d ticks unchanged, cgroup CPU %v", 3*grace, pings, ticks1, cpu1)

	payload := "standby push \x01 ü " + strings.Repeat("x", 100)
	sent := time.Now()
	peers.Publish(t, lh.lab, netlab.Srv, peers.Publication{Addr: broker.Addr, Topic: "standby/t", Payload: []byte(payload), QoS: 0})
	if got := out.next(t, 10*time.Second); got != payload+"\n" {
		t.Fatalf("mosquitto_sub printed %q, want %q", got, payload+"\n")
	}
	printed := time.Since(sent)
	st = pa.Stats()
	t.Logf("publish → printed by mosquitto_sub in %v; wake packet on the wire → process runnable %v; %d absorbed bytes advanced past; wakes %v",
		printed, st.LastWakeLatency, st.SkippedAbsorbed, lh.h.Stats().Wakes)
	if st.Thaws == 0 || st.LastWakeLatency <= 0 {
		t.Errorf("stats after the wake: %+v", st)
	}
	// Some PINGRESPs were absorbed by the NIC (the host read others
	// while awake): a whole, non-zero number of 2-byte PINGRESPs.
	if st.SkippedAbsorbed == 0 || st.SkippedAbsorbed%2 != 0 {
		t.Errorf("advanced past %d absorbed bytes, want whole PINGRESPs (2 bytes each, at least one)", st.SkippedAbsorbed)
	}
	// The client is still in session with the broker: a second publish
	// reaches it awake, and the broker never saw a protocol error.
	if err := lh.h.Wake(ctx); err != nil {
		t.Fatal(err)
	}
	peers.Publish(t, lh.lab, netlab.Srv, peers.Publication{Addr: broker.Addr, Topic: "standby/t", Payload: []byte("awake"), QoS: 0})
	if got := out.next(t, 10*time.Second); got != "awake\n" {
		t.Fatalf("mosquitto_sub printed %q, want %q", got, "awake\n")
	}
	if d := broker.Dropped("frozen-sub"); len(d) != 0 {
		t.Errorf("broker dropped the client: %q", d)
	}
	if err := lh.h.Close(); err != nil {
		t.Fatal(err)
	}
	if pa.Stats().Frozen || cgroupFrozen(t, p) {
		t.Error("process frozen after the host's Close")
	}
}

// nodeWSClient is a WebSocket client on the Debian node-ws module: it
// prints "open", then every message as "message HEX" and every Ping it
// reads as "ping HEX" (ws answers it).
const nodeWSClient = `'use strict';
const WebSocket = require('ws');
const ws = new WebSocket(process.argv[2]);
ws.on('open', () => console.log('open'));
ws.on('message', (d) => console.log('message ' + Buffer.from(d).toString('hex')));
ws.on('ping', (d) => console.log('ping ' + Buffer.from(d).toString('hex')));
ws.on('close', (c) => { console.log('close ' + c); process.exit(0); });
ws.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
`

// nodeBusyClient connects, never reads (what the server sends stays
// unread: the socket is busy), and writes "ka N" every 200 ms: its own
// keep-alive, which only goes out while it runs.
const nodeBusyClient = `'use strict';
const net = require('net');
const [host, port] = [process.argv[2], Number(process.argv[3])];
let n = 0;
const s = net.connect(port, host, () => {
  s.pause();
  console.log('open');
  setInterval(() => { n++; s.write('ka ' + n + '\n'); }, 200);
});
s.pause();
s.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
`

// startNode starts node with script in the lab's host namespace (ip netns
// exec keeps the PID), outside standbynic: the test adopts it.
func startNode(t *testing.T, lab *netlab.Lab, script string, args ...string) (*exec.Cmd, procLines) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node (Debian package nodejs): %v", err)
	}
	if _, err := os.Stat("/usr/share/nodejs/ws/package.json"); err != nil {
		t.Fatalf("node's ws module (Debian package node-ws): %v", err)
	}
	path := filepath.Join(t.TempDir(), "client.js")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out, w := newProcLines(t)
	cmd := exec.Command("ip", append([]string{"netns", "exec", lab.NamespaceName(netlab.Host), node, path}, args...)...)
	cmd.Env = append(os.Environ(), "NODE_PATH=/usr/share/nodejs")
	cmd.Stdout, cmd.Stderr = w, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, out
}

// standbyArmed enters standby until the process's channels number n and
// (armed) a slot guards each.
func standbyArmed(t *testing.T, ctx context.Context, h *Host, pa *ProcessApp, n int, armed bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := h.Standby(ctx); err != nil {
			t.Fatal(err)
		}
		chs := pa.Channels()
		ok := len(chs) == n
		for _, ch := range chs {
			ok = ok && ch.Armed() == armed
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process channels not as wanted (%d, armed %v): %q", n, armed, pa.Stats().Notes)
		}
		if err := h.Wake(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIntegrationProcessAdoptedWebSocket: a node-ws client the test
// started is adopted by PID. Frozen with the host, its connection to a
// node-ws server that pings every 500 ms is guarded by a WebSocket slot:
// the NIC answers the server's Pings and sends its own, the host does not
// wake, the process uses no CPU. A push wakes the host and the client
// itself prints it byte-exact. The server Pings the NIC absorbed are
// advanced past (the client never reads them), or with KeepAbsorbed put
// in its receive queue (it reads every one, in order); released, the
// process is back in its own cgroup, running.
func TestIntegrationProcessAdoptedWebSocket(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep_absorbed=%v", keep), func(t *testing.T) { testAdoptedWebSocket(t, keep) })
	}
}

// wsLines reads the client's lines until one that is not a Ping and
// returns it; the Pings' payloads are added to pings.
func wsLine(t *testing.T, out procLines, pings *[]string) string {
	t.Helper()
	for {
		l := out.next(t, 10*time.Second)
		if h, ok := strings.CutPrefix(l, "ping "); ok {
			b, _ := hex.DecodeString(strings.TrimSpace(h))
			*pings = append(*pings, string(b))
			continue
		}
		return l
	}
}

func testAdoptedWebSocket(t *testing.T, keep bool) {
	noCgroupLeft(t)
	lh := newLabHost(t, 1, nil)
	srvAddr := netip.AddrPortFrom(lh.lab.Addr.Srv4, 8080)
	srv := peers.StartNodeWS(t, lh.lab, netlab.Srv, srvAddr)
	cmd, out := startNode(t, lh.lab, nodeWSClient, "ws://"+srvAddr.String()+"/standby?ping=500")
	var pings []string
	if got := wsLine(t, out, &pings); got != "open\n" {
		t.Fatalf("client said %q, want open", got)
	}
	origCg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	p, err := procfreeze.Adopt(&procfreeze.Config{Name: "ws-client"}, cmd.Process.Pid)
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("adopting into a cgroup needs CAP_SYS_ADMIN: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	pa, err := lh.h.AddProcess(ProcessConfig{
		Name: "ws-client", Process: p, Interval: 2 * time.Second,
		Endpoints: []ProcessEndpoint{{Remote: srvAddr, KeepAlive: KeepAliveConfig{Kind: KeepAliveWebSocket}, KeepAbsorbed: keep}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := labDeadline(t)
	standbyArmed(t, ctx, lh.h, pa, 1, true)
	t.Logf("adopted %d (%v): %q", p.PID(), p.Mode(), pa.Stats().Notes)
	wakes0 := lh.h.Stats().Resumes
	ticks0 := procTicks(t, p.PID())
	srvPings0, pongs0, nicPings0 := srv.Count("sent-ping", 1), srv.Count("pong", 1), srv.Count("ping", 1)
	// Wait for 4 server Pings answered by the NIC while the process is frozen.
	for deadline := time.Now().Add(10 * time.Second); srv.Count("pong", 1)-pongs0 < 4; {
		if time.Now().After(deadline) {
			t.Fatalf("server Pings %d, Pongs %d after 10 s", srv.Count("sent-ping", 1)-srvPings0, srv.Count("pong", 1)-pongs0)
		}
		<-time.After(20 * time.Millisecond)
	}
	if got := lh.h.Stats().Resumes; got != wakes0 {
		t.Errorf("the host woke %d times for the server's Pings", got-wakes0)
	}
	if !cgroupFrozen(t, p) || procTicks(t, p.PID()) != ticks0 {
		t.Errorf("process not frozen or used CPU: cgroup %v, ticks %d → %d", cgroupFrozen(t, p), ticks0, procTicks(t, p.PID()))
	}
	srvPings1 := srv.Count("sent-ping", 1)
	t.Logf("frozen: server sent %d Pings, %d Pongs came back from the NIC; the NIC sent %d Pings of its own",
		srvPings1-srvPings0, srv.Count("pong", 1)-pongs0, srv.Count("ping", 1)-nicPings0)
	pings = nil
	push := []byte("push to an adopted process")
	srv.Push(t, 1, push, false)
	if got, want := wsLine(t, out, &pings), fmt.Sprintf("message %x\n", push); got != want {
		t.Fatalf("client printed %q, want %q", got, want)
	}
	st := pa.Stats()
	t.Logf("wake packet on the wire → process runnable %v; %d absorbed bytes advanced past; the client read Pings %q",
		st.LastWakeLatency, st.SkippedAbsorbed, pings)
	// The Pings the server sent while the process was frozen (the NIC
	// answered them): srv<k> for k in (srvPings0, srvPings1].
	var frozenPings []string
	for k := srvPings0 + 1; k <= srvPings1; k++ {
		frozenPings = append(frozenPings, fmt.Sprintf("srv%d", k))
	}
	var seen []string
	for _, pg := range pings {
		if slices.Contains(frozenPings, pg) {
			seen = append(seen, pg)
		}
	}
	if keep {
		if diff := cmp.Diff(frozenPings, seen); diff != "" || st.SkippedAbsorbed != 0 {
			t.Errorf("kept: skipped %d bytes; Pings of the frozen time the client read (-want +got):\n%s", st.SkippedAbsorbed, diff)
		}
	} else if len(seen) != 0 || st.SkippedAbsorbed == 0 {
		t.Errorf("advanced past: skipped %d bytes, but the client read %q of the frozen time's Pings", st.SkippedAbsorbed, seen)
	}
	if err := lh.h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid)); string(cg) != string(origCg) {
		t.Errorf("cgroups after release:\n%s\nwant\n%s", cg, origCg)
	}
	// Still running and connected: a push awake reaches it.
	srv.Push(t, 1, []byte("after"), false)
	if got := wsLine(t, out, &pings); got != fmt.Sprintf("message %x\n", "after") {
		t.Fatalf("released client printed %q", got)
	}
}

// TestIntegrationProcessBusySocket: a process whose socket holds unread
// bytes cannot be offloaded; its connection stays on software and the
// process is thawed for its window at the host's coalesced software
// wakes, so its own keep-alives ("ka N", every 200 ms while it runs)
// reach the server only then.
func TestIntegrationProcessBusySocket(t *testing.T) {
	noCgroupLeft(t)
	lh := newLabHost(t, 1, func(c *Config) { c.SoftwareWakeHold = 10 * time.Millisecond })
	ln, err := lh.lab.ListenTCP(netlab.Srv, netip.AddrPortFrom(lh.lab.Addr.Srv4, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	cmd, out := startNode(t, lh.lab, nodeBusyClient, addr.Addr().String(), strconv.Itoa(int(addr.Port())))
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := out.next(t, 15*time.Second); got != "open\n" {
		t.Fatalf("client said %q", got)
	}
	if _, err := c.Write([]byte("never read\n")); err != nil {
		t.Fatal(err)
	}
	type arrival struct {
		at   time.Time
		line string
	}
	arrivals := make(chan arrival, 1024)
	go func() {
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				close(arrivals)
				return
			}
			arrivals <- arrival{time.Now(), l}
		}
	}()
	p, err := procfreeze.Adopt(&procfreeze.Config{Name: "busy"}, cmd.Process.Pid)
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("adopting into a cgroup needs CAP_SYS_ADMIN: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	const window = 300 * time.Millisecond
	pa, err := lh.h.AddProcess(ProcessConfig{Name: "busy", Process: p, Interval: 2 * time.Second, ThawWindow: window})
	if err != nil {
		t.Fatal(err)
	}
	ctx := labDeadline(t)
	standbyArmed(t, ctx, lh.h, pa, 1, false)
	t.Logf("%q", pa.Stats().Notes)
	drain := func() int {
		n := 0
		for {
			select {
			case <-arrivals:
				n++
			default:
				return n
			}
		}
	}
	<-time.After(100 * time.Millisecond) // what was in flight at the freeze
	drain()
	st0 := pa.Stats()
	// 7 s: about 3 software wakes (2 s interval), each thawing the
	// process for 300 ms (about 2 keep-alives each); running throughout
	// it would have written 35.
	<-time.After(7 * time.Second)
	n := drain()
	st := pa.Stats()
	windows := st.WindowThaws - st0.WindowThaws
	t.Logf("7 s in standby: %d window thaws, %d software wakes in all, %d keep-alives from the process", windows, lh.h.Stats().Wakes[WakeSoftwareKeepAlive], n)
	if windows < 2 {
		t.Fatalf("%d window thaws in 7 s, want about 3", windows)
	}
	if n == 0 || n > int(windows)*int(window/(200*time.Millisecond)+2) {
		t.Errorf("%d keep-alives for %d windows of %v: want them only in the windows", n, windows, window)
	}
	if err := lh.h.Close(); err != nil {
		t.Fatal(err)
	}
}
