package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/pushserver"
	"github.com/standbynic/standbynic/nic"
)

// Issue 13's faults, each with the daemons run apart as users run them
// ("standbynic nic" and "standbynic host" as child processes in their lab
// namespaces, the push server in srv): a NIC killed and restarted while
// the host sleeps, a NIC stopped, a host killed and restarted, a server
// silently blackholed and restored. Each asserts that every push sent
// after the recovery is delivered exactly once (acknowledged once, logged
// once by the host), that every channel is back on its slot (the hardware
// channels armed on the NIC under the host's lease, every frozen socket
// guarded by one), and that no namespace, cgroup or frozen socket is
// left.

// faultChannels are the host's channels: two hardware, one software.
var faultChannels = []string{"chat", "mail", "news"}

const faultOwner = "faults"

// faultRig is the lab of a fault test: the push server, the NIC daemon
// and the host daemon(s).
type faultRig struct {
	t         *testing.T
	lab       *netlab.Lab
	srv       *pushserver.Server
	dir, sock string
	cfgPath   string
	nicArgs   []string
	hostArgs  []string
	nicd      *daemon
	hosts     []*daemon // every host daemon started, the last one current
}

func newFaultRig(t *testing.T, leasePeriod string) *faultRig {
	t.Helper()
	r := &faultRig{t: t}
	var names []string
	// Registered before the lab's own cleanup, so it runs after it.
	t.Cleanup(func() { checkNoLeftovers(t, names) })
	r.lab = netlab.NewForTest(t, nil)
	for _, ns := range r.lab.Namespaces() {
		names = append(names, r.lab.NamespaceName(ns))
	}
	r.srv = startLabPushServer(t, r.lab)
	r.dir = t.TempDir()
	r.sock = filepath.Join(r.dir, "nic.sock")
	hostIf, err := r.lab.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		t.Fatal(err)
	}
	r.nicArgs = []string{"nic", "--wire", netlab.WireLink, "--host", netlab.HostPortLink, "--slots", "2", "--control", r.sock,
		"--host-mac", hostIf.HardwareAddr.String(), "--host-addr", r.lab.Addr.Host4.String(), "--wire-rx", "immediate"}
	cfg := fmt.Sprintf(`{
  "server": {"tcp": %q},
  "policy": {"interval_unit": "1s", "min_interval": 1},
  "host": {"wake_hold": "300ms", "reconnect_min": "300ms", "reconnect_max": "2s"},
  "apps": [
    {"name": "chat", "priority": 2, "channels": [{"id": "chat", "transport": "tcp", "slot": "hardware", "interval": "2s"}]},
    {"name": "mail", "priority": 1, "channels": [{"id": "mail", "transport": "tcp", "slot": "hardware", "interval": "2s"}]},
    {"name": "news", "channels": [{"id": "news", "transport": "tcp", "slot": "software", "interval": "6s"}]}
  ]
}`, r.srv.TCPAddr().String())
	r.cfgPath = filepath.Join(r.dir, "host.json")
	if err := writeFile(r.cfgPath, cfg); err != nil {
		t.Fatal(err)
	}
	r.hostArgs = []string{"host", "--nic", r.sock, "--config", r.cfgPath, "--log-level", "debug", "--dial-timeout", "1s",
		"--lease-owner", faultOwner, "--lease-period", leasePeriod}
	r.startNIC()
	r.startHost()
	r.host().stderr.waitFor(t, regexp.MustCompile(`msg="host in standby"`), 30*time.Second)
	r.waitArmed(20 * time.Second)
	return r
}

func (r *faultRig) startNIC() {
	r.t.Helper()
	r.nicd = startDaemon(r.t, r.lab, netlab.NIC, r.nicArgs...)
	r.nicd.stderr.waitFor(r.t, regexp.MustCompile(`msg="nic running"`), 20*time.Second)
}

func (r *faultRig) startHost() {
	r.t.Helper()
	r.hosts = append(r.hosts, startDaemon(r.t, r.lab, netlab.Host, r.hostArgs...))
}

func (r *faultRig) host() *daemon { return r.hosts[len(r.hosts)-1] }

// logs returns the stderr of every host daemon, then the NIC's.
func (r *faultRig) logs() string {
	var b strings.Builder
	for i, h := range r.hosts {
		fmt.Fprintf(&b, "--- host %d:\n%s", i, h.stderr)
	}
	fmt.Fprintf(&b, "--- nic:\n%s", r.nicd.stderr)
	return b.String()
}

// leaseSlots returns the labels of the slots armed under the host's lease
// (nil when the NIC does not answer).
func (r *faultRig) leaseSlots() ([]string, error) {
	c, err := nic.DialControl(r.sock)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ss, err := c.LeaseSlots(ctx, faultOwner)
	if err != nil {
		return nil, err
	}
	var labels []string
	for _, s := range ss {
		labels = append(labels, s.Label)
	}
	return labels, nil
}

// waitArmed waits until both hardware channels are armed on the NIC under
// the host's lease, and the host holds exactly as many frozen sockets:
// every channel back on its slot, no frozen socket unguarded.
func (r *faultRig) waitArmed(timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 20 * time.Millisecond
	var labels []string
	var frozen int
	var err error
	for {
		labels, err = r.leaseSlots()
		frozen = frozenSockets(r.t, r.host().cmd.Process.Pid)
		has := map[string]bool{}
		for _, l := range labels {
			has[l] = true
		}
		if err == nil && len(labels) == 2 && has["chat/chat"] && has["mail/mail"] && frozen == 2 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("channels not back on their slots within %v: lease slots %q (err %v), frozen sockets %d\n%s",
				timeout, labels, err, frozen, r.logs())
		}
		time.Sleep(delay) // polling the NIC's control API and /proc
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// waitFrozen waits until the host holds want frozen sockets.
func (r *faultRig) waitFrozen(want int, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := frozenSockets(r.t, r.host().cmd.Process.Pid)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d frozen sockets after %v, want %d\n%s", n, timeout, want, r.logs())
		}
		time.Sleep(20 * time.Millisecond) // polling /proc
	}
}

// pushAll pushes once on every channel and checks each push is delivered
// exactly once: acknowledged once by the host, logged once across the
// host daemons.
func (r *faultRig) pushAll(tag string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	ids := map[string]uint64{}
	for _, ch := range faultChannels {
		id, err := r.srv.Push(ch, tag+" "+ch)
		if err != nil {
			r.t.Fatalf("push on %s: %v\n%s", ch, err, r.logs())
		}
		ids[ch] = id
	}
	for _, ch := range faultChannels {
		id := ids[ch]
		if err := r.srv.WaitAcked(ctx, ch, id); err != nil {
			r.t.Fatalf("push %d on %s not acknowledged: %v\n%s", id, ch, err, r.logs())
		}
		re := regexp.MustCompile(fmt.Sprintf(`msg=push channel=%s id=%d `, ch, id))
		r.host().stderr.waitFor(r.t, re, 5*time.Second)
		if n := len(re.FindAllString(r.logsHosts(), -1)); n != 1 {
			r.t.Errorf("push %d on %s logged %d times by the host, want 1", id, ch, n)
		}
		c, _ := r.srv.Channel(ch)
		n := 0
		for _, a := range c.Acked {
			if a == id {
				n++
			}
		}
		if n != 1 {
			r.t.Errorf("push %d on %s acknowledged %d times, want 1 (acked %v)", id, ch, n, c.Acked)
		}
	}
}

func (r *faultRig) logsHosts() string {
	var b strings.Builder
	for _, h := range r.hosts {
		b.WriteString(h.stderr.String())
	}
	return b.String()
}

// finish stops the host and the NIC: both exit 0.
func (r *faultRig) finish() {
	r.t.Helper()
	if code := r.host().stop(r.t); code != exitOK {
		r.t.Errorf("host exit %d\n%s", code, r.logs())
	}
	if code := r.nicd.stop(r.t); code != exitOK {
		r.t.Errorf("nic exit %d\n%s", code, r.logs())
	}
}

// TestIntegrationFaultNICKilled: the NIC daemon is killed (SIGKILL) while
// the host sleeps with both hardware channels frozen, and restarted. The
// host must notice (nic-lost), thaw every socket at once (none left in
// TCP_REPAIR while the NIC is away), keep every connection, and arm both
// channels on the new NIC. On the old code the sockets stayed frozen and
// the pushes after the restart were never delivered.
func TestIntegrationFaultNICKilled(t *testing.T) {
	r := newFaultRig(t, "2s")
	r.nicd.cmd.Process.Signal(syscall.SIGKILL)
	r.nicd.waitExit(t)
	r.host().stderr.waitFor(t, regexp.MustCompile(`msg="nic lost: taking back what it guarded"`), 10*time.Second)
	r.waitFrozen(0, 10*time.Second)
	r.startNIC()
	r.host().stderr.waitFor(t, regexp.MustCompile(`msg="nic back: arming again at the next standby"`), 15*time.Second)
	r.waitArmed(20 * time.Second)
	r.pushAll("after the restart")
	r.waitArmed(20 * time.Second)
	if s := r.host().stderr.String(); !regexp.MustCompile(`msg="thawed without the slot's books" component=host channel=(chat|mail)`).MatchString(s) ||
		regexp.MustCompile(`not recovered|hand back failed`).MatchString(s) {
		t.Errorf("want both sockets thawed without books and kept:\n%s", r.logs())
	}
	r.finish()
}

// TestIntegrationFaultNICStopped: the NIC daemon is stopped (SIGTERM)
// while the host sleeps; the host sleeps on its own keep-alives while the
// NIC is away (nothing frozen), and arms again when a NIC is started.
// On the old code the host dropped the frozen connections at its next
// timer.
func TestIntegrationFaultNICStopped(t *testing.T) {
	r := newFaultRig(t, "2s")
	if code := r.nicd.stop(t); code != exitOK {
		t.Fatalf("nic exit %d", code)
	}
	r.host().stderr.waitFor(t, regexp.MustCompile(`msg="nic lost: taking back what it guarded"`), 10*time.Second)
	r.waitFrozen(0, 10*time.Second)
	// Asleep without the NIC: the hardware channels on the host's own
	// keep-alives.
	r.host().stderr.waitFor(t, regexp.MustCompile(`msg="nic lost(?s:.*)from=entering-standby to=standby`), 15*time.Second)
	r.startNIC()
	r.waitArmed(20 * time.Second)
	r.pushAll("after the stop")
	r.waitArmed(20 * time.Second)
	r.finish()
}

// TestIntegrationFaultHostKilled: the host daemon is killed (SIGKILL)
// while it sleeps with both channels armed; its slots stay armed under
// its lease. A host started at once finds the previous instance's lease,
// clears it (its slots disarmed, the NIC back in D0), dials again and
// arms its own. On the old code the NIC stayed in D3 with the dead
// host's slots and the new host exited with "no route to host".
func TestIntegrationFaultHostKilled(t *testing.T) {
	r := newFaultRig(t, "3s")
	old := r.host()
	old.cmd.Process.Signal(syscall.SIGKILL)
	old.waitExit(t)
	r.startHost()
	r.host().stderr.waitFor(t, regexp.MustCompile(`msg="nic lease: cleared the previous instance's" owner=faults previous_pid=\d+ slots_disarmed=2 resumed=true`), 20*time.Second)
	r.host().stderr.waitFor(t, regexp.MustCompile(`msg="host in standby"`), 30*time.Second)
	r.waitArmed(20 * time.Second)
	r.pushAll("after the host's restart")
	r.waitArmed(20 * time.Second)
	r.finish()
}

// TestIntegrationFaultServerBlackholed: the server's namespace silently
// drops the push server's TCP traffic (nftables). The NIC's keep-alives
// go unanswered and both hardware slots wake with keep-alive-timeout;
// the host closes the dead connections, and their reset tasks try to
// reconnect on the reconnect schedule (failing while the blackhole
// lasts). Once it is lifted the channels reconnect and are armed again.
// On the old code the reset task never ran and the channels stayed dead.
func TestIntegrationFaultServerBlackholed(t *testing.T) {
	r := newFaultRig(t, "2s")
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("nft not found: install the Debian package nftables")
	}
	port := r.srv.TCPAddr().Port
	ns := r.lab.NamespaceName(netlab.Srv)
	rules := fmt.Sprintf(`table inet sbnblackhole {
  chain in { type filter hook input priority 0; policy accept; tcp dport %d drop; }
  chain out { type filter hook output priority 0; policy accept; tcp sport %d drop; }
}
`, port, port)
	rulesPath := filepath.Join(r.dir, "blackhole.nft")
	if err := writeFile(rulesPath, rules); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-f", rulesPath).CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	lifted := false
	lift := func() {
		if lifted {
			return
		}
		lifted = true
		if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "sbnblackhole").CombinedOutput(); err != nil {
			t.Errorf("nft delete: %v: %s", err, out)
		}
	}
	t.Cleanup(lift)
	h := r.host().stderr
	h.waitFor(t, regexp.MustCompile(`msg=wake reason=keep-alive-timeout`), 20*time.Second)
	for _, ch := range []string{"chat", "mail"} {
		h.waitFor(t, regexp.MustCompile(`msg=reconnect channel=`+ch+` attempt=\d+ err=`), 20*time.Second)
	}
	lift()
	for _, ch := range []string{"chat", "mail"} {
		h.waitFor(t, regexp.MustCompile(`msg=reconnected channel=`+ch+` `), 20*time.Second)
	}
	r.waitArmed(20 * time.Second)
	r.pushAll("after the blackhole")
	r.waitArmed(20 * time.Second)
	r.finish()
}

// frozenSockets counts the TCP sockets of process pid in repair mode
// (TCP_REPAIR): each is taken with pidfd_getfd and read with
// getsockopt(TCP_REPAIR_WINDOW), which only a socket in repair mode
// answers (EPERM otherwise; host/repair.go).
func frozenSockets(t *testing.T, pid int) int {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(pidfd)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("fds of %d: %v", pid, err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dup, err := unix.PidfdGetfd(pidfd, fd, 0)
		if err != nil {
			continue // closed meanwhile
		}
		if isRepairTCP(dup) {
			n++
		}
		unix.Close(dup)
	}
	return n
}

func isRepairTCP(fd int) bool {
	if p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || p != unix.IPPROTO_TCP {
		return false
	}
	var w [20]byte // struct tcp_repair_window
	l := uint32(len(w))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW,
		uintptr(unsafe.Pointer(&w[0])), uintptr(unsafe.Pointer(&l)), 0)
	return errno == 0
}

// checkNoLeftovers fails t if a namespace of the lab is still listed or a
// cgroup is named after one, once every cleanup before it ran.
func checkNoLeftovers(t *testing.T, names []string) {
	for _, name := range names {
		if _, err := os.Stat(filepath.Join("/run/netns", name)); err == nil {
			t.Errorf("namespace %s left", name)
		}
	}
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		for _, name := range names {
			if strings.Contains(e.Name(), name) {
				t.Errorf("cgroup %s left", e.Name())
			}
		}
	}
}

// TestIntegrationFaultHostKilledTakeOver: as TestIntegrationFaultHostKilled,
// but the new host takes the lease over (--lease-take-over): it keeps the
// lease, disarms the slots its predecessor left under it (they guard
// sockets that died with it) and brings the NIC to D0, then arms its own.
func TestIntegrationFaultHostKilledTakeOver(t *testing.T) {
	r := newFaultRig(t, "3s")
	old := r.host()
	old.cmd.Process.Signal(syscall.SIGKILL)
	old.waitExit(t)
	r.hostArgs = append(r.hostArgs, "--lease-take-over")
	r.startHost()
	h := r.host().stderr
	h.waitFor(t, regexp.MustCompile(`msg="nic lease: took over the previous instance's" owner=faults slots=2 `), 20*time.Second)
	h.waitFor(t, regexp.MustCompile(`(?s)msg="nic: disarmed a stale slot of the lease" component=host slot=\d+ label=chat/chat.*msg="host in standby"`), 30*time.Second)
	if !regexp.MustCompile(`msg="nic: disarmed a stale slot of the lease" component=host slot=\d+ label=mail/mail`).MatchString(h.String()) {
		t.Errorf("mail's stale slot not disarmed:\n%s", r.logs())
	}
	r.waitArmed(20 * time.Second)
	r.pushAll("after the take-over")
	r.waitArmed(20 * time.Second)
	r.finish()
}

// TestIntegrationFaultServerRSTAndFIN: the other ends of a channel. The
// server resets chat's connection (RST) while the host sleeps: a
// hardware-reset wake, the reset task, a new connection. Then the server
// closes every connection (FIN) and stays down: each channel's reset task
// fails (connection refused) and is run again at the host's reconnect
// wakes, each later than the last (backoff, with jitter), until the
// server is back on the same address; then every channel reconnects and
// is back on its slot.
func TestIntegrationFaultServerRSTAndFIN(t *testing.T) {
	r := newFaultRig(t, "2s")
	h := r.host().stderr
	if err := r.srv.Reset("chat"); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, regexp.MustCompile(`msg=wake reason=hardware-reset`), 10*time.Second)
	h.waitFor(t, regexp.MustCompile(`msg=reconnected channel=chat `), 10*time.Second)
	r.waitArmed(20 * time.Second)

	addr := r.srv.TCPAddr().String()
	r.srv.Close() // FIN on every connection; the listener is gone
	re := regexp.MustCompile(`time=(\S+) level=WARN msg=reconnect channel=mail attempt=(\d+) err=`)
	h.waitFor(t, regexp.MustCompile(`(?s)(msg=reconnect channel=mail attempt=\d+ err=.*){4}`), 20*time.Second)
	var at []time.Time
	for _, m := range re.FindAllStringSubmatch(h.String(), -1) {
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatal(err)
		}
		at = append(at, ts)
	}
	// reconnect_min 300 ms doubling, ±20 %: the gap before the 4th
	// attempt (~1.2 s) is well above the one before the 2nd (~0.3 s).
	if g1, g3 := at[1].Sub(at[0]), at[3].Sub(at[2]); g3 < 2*g1 {
		t.Errorf("reconnect gaps %v then %v: no backoff\n%s", g1, g3, r.logs())
	}
	if err := r.lab.Do(netlab.Srv, func() error {
		var err error
		r.srv, err = pushserver.New(&pushserver.Config{TCPAddr: addr, WSAddr: netip.AddrPortFrom(r.lab.Addr.Srv4, 0).String(),
			HTTPAddr: netip.AddrPortFrom(r.lab.Addr.Srv4, 0).String()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.srv.Close() })
	for _, ch := range faultChannels {
		h.waitFor(t, regexp.MustCompile(`(?s)msg=reconnect channel=mail attempt=4 .*msg=reconnected channel=`+ch+` `), 20*time.Second)
	}
	r.waitArmed(20 * time.Second)
	r.pushAll("after the server's return")
	r.waitArmed(20 * time.Second)
	r.finish()
}

// TestIntegrationFaultNICHung: the NIC daemon hangs (SIGSTOP) while the
// host sleeps. Its wake stream stays open, so it keeps the lease, but the
// host's renewals time out: nic-lost, every socket thawed at once without
// waiting on the hung daemon. When it runs again (SIGCONT) it is the same
// instance with the old slots still armed under the lease: the host
// disarms them (their books are read then), brings the NIC to D0 and arms
// its channels again.
func TestIntegrationFaultNICHung(t *testing.T) {
	r := newFaultRig(t, "1s")
	if err := r.nicd.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			r.nicd.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	h := r.host().stderr
	h.waitFor(t, regexp.MustCompile(`msg="nic lost" component=nic-remote why="lease renewal failed"(?s:.*)msg="nic lost: taking back what it guarded"`), 10*time.Second)
	r.waitFrozen(0, 5*time.Second)
	r.nicd.cmd.Process.Signal(syscall.SIGCONT)
	stopped = false
	for _, l := range []string{"chat/chat", "mail/mail"} {
		h.waitFor(t, regexp.MustCompile(`msg="nic: disarmed a stale slot of the lease" component=host slot=\d+ label=`+l+` sent=0 absorbed=0`), 15*time.Second)
	}
	r.waitArmed(20 * time.Second)
	r.pushAll("after the hang")
	r.waitArmed(20 * time.Second)
	if regexp.MustCompile(`not recovered|hand back failed`).MatchString(h.String()) {
		t.Errorf("a connection was not kept:\n%s", r.logs())
	}
	r.finish()
}

// pingServer is a raw TCP service that answers "PING\r\n" with
// "PONG\r\n" and counts the pings of each connection.
type pingServer struct {
	ln    *net.TCPListener
	mu    sync.Mutex
	conns []*net.TCPConn
	pings []int
}

func (s *pingServer) serve() {
	for {
		c, err := s.ln.AcceptTCP()
		if err != nil {
			return
		}
		s.mu.Lock()
		i := len(s.conns)
		s.conns = append(s.conns, c)
		s.pings = append(s.pings, 0)
		s.mu.Unlock()
		go func() {
			defer c.Close()
			buf := make([]byte, 4096)
			var pending []byte
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				pending = append(pending, buf[:n]...)
				for len(pending) >= 6 && string(pending[:6]) == "PING\r\n" {
					pending = pending[6:]
					s.mu.Lock()
					s.pings[i]++
					s.mu.Unlock()
					c.Write([]byte("PONG\r\n"))
				}
			}
		}()
	}
}

func (s *pingServer) state() (conns int, pings []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns), append([]int(nil), s.pings...)
}

func (s *pingServer) close() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// TestIntegrationFaultNICKilledPayload: a raw channel whose slot sends the
// service's own keep-alive (PING/PONG) when the NIC is killed after it has
// sent some. The host cannot know how many: the service's RCV.NXT is past
// the socket's SND.NXT by the pings the NIC sent, and its SND.NXT past the
// socket's RCV.NXT by the pongs the NIC absorbed, which TCP never sends
// again. So the host thaws the socket, closes the connection (not
// recovered, said in the log), and the reset task dials again once the
// NIC is back; the new connection is armed and a message on it is
// delivered once.
func TestIntegrationFaultNICKilledPayload(t *testing.T) {
	var names []string
	t.Cleanup(func() { checkNoLeftovers(t, names) })
	lab := netlab.NewForTest(t, nil)
	for _, ns := range lab.Namespaces() {
		names = append(names, lab.NamespaceName(ns))
	}
	ps := &pingServer{}
	if err := lab.Do(netlab.Srv, func() error {
		var err error
		ps.ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(lab.Addr.Srv4, 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go ps.serve()
	t.Cleanup(ps.close)
	dir := t.TempDir()
	r := &faultRig{t: t, lab: lab, dir: dir, sock: filepath.Join(dir, "nic.sock")}
	hostIf, err := lab.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		t.Fatal(err)
	}
	r.nicArgs = []string{"nic", "--wire", netlab.WireLink, "--host", netlab.HostPortLink, "--slots", "2", "--control", r.sock,
		"--host-mac", hostIf.HardwareAddr.String(), "--host-addr", lab.Addr.Host4.String(), "--wire-rx", "immediate"}
	cfg := fmt.Sprintf(`{
  "policy": {"interval_unit": "1s", "min_interval": 1},
  "host": {"wake_hold": "300ms", "reconnect_min": "300ms", "reconnect_max": "1s"},
  "apps": [{"name": "telemetry", "channels": [
    {"id": "plant", "endpoint": "tcp://%s", "protocol": "raw", "slot": "hardware", "interval": "1s",
     "keepalive": {"kind": "payload", "request": {"text": "PING\r\n"}, "reply": {"text": "PONG\r\n"}},
     "raw_keepalive": {"text": "PING\r\n"}}
  ]}]
}`, ps.ln.Addr())
	r.cfgPath = filepath.Join(dir, "host.json")
	if err := writeFile(r.cfgPath, cfg); err != nil {
		t.Fatal(err)
	}
	r.hostArgs = []string{"host", "--nic", r.sock, "--config", r.cfgPath, "--log-level", "debug", "--dial-timeout", "1s",
		"--lease-owner", faultOwner, "--lease-period", "2s"}
	r.startNIC()
	r.startHost()
	h := r.host().stderr
	h.waitFor(t, regexp.MustCompile(`msg="host in standby"`), 30*time.Second)
	armed := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			labels, _ := r.leaseSlots()
			if len(labels) == 1 && labels[0] == want && frozenSockets(t, r.host().cmd.Process.Pid) == 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("not armed: %q\n%s", labels, r.logs())
			}
			time.Sleep(20 * time.Millisecond) // polling
		}
	}
	armed("telemetry/plant")
	// The NIC's pings on the frozen connection.
	_, p0 := ps.state()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, p := ps.state(); p[0] >= p0[0]+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the NIC sent no ping\n%s", r.logs())
		}
		time.Sleep(20 * time.Millisecond) // polling
	}
	r.nicd.cmd.Process.Signal(syscall.SIGKILL)
	r.nicd.waitExit(t)
	h.waitFor(t, regexp.MustCompile(`msg="connection not recovered after the NIC's loss" component=host channel=plant why="slot \d+ lost with the NIC`), 10*time.Second)
	r.waitFrozen(0, 5*time.Second)
	r.startNIC()
	h.waitFor(t, regexp.MustCompile(`msg=reconnected channel=plant `), 20*time.Second)
	armed("telemetry/plant")
	conns, _ := ps.state()
	if conns != 2 {
		t.Fatalf("%d connections at the service, want 2", conns)
	}
	ps.mu.Lock()
	c := ps.conns[1]
	ps.mu.Unlock()
	if _, err := c.Write([]byte("reading 42\n")); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`msg=push channel=plant bytes=11 payload="reading 42\\n"`)
	h.waitFor(t, re, 10*time.Second)
	if n := len(re.FindAllString(h.String(), -1)); n != 1 {
		t.Errorf("message delivered %d times", n)
	}
	r.finish()
}
