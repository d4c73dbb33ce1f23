package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/nic"
)

// runEnv makes the test binary a standbynic process: TestMain runs run()
// with the JSON-encoded arguments it holds and exits with its code. The NIC
// daemon drops capabilities for the whole process and re-executes it, so it
// is tested in a child process, never in the test process.
const runEnv = "STANDBYNIC_TEST_RUN"

func TestMain(m *testing.M) {
	if a := os.Getenv(runEnv); a != "" {
		var args []string
		if err := json.Unmarshal([]byte(a), &args); err != nil {
			fmt.Fprintln(os.Stderr, "bad", runEnv, err)
			os.Exit(3)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Stdout, os.Stderr, args)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// daemon is a standbynic child process.
type daemon struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	err            error
}

// startDaemon starts standbynic with args in namespace ns of lab.
func startDaemon(t *testing.T, lab *netlab.Lab, ns netlab.Namespace, args ...string) *daemon {
	t.Helper()
	a, _ := json.Marshal(args)
	d := &daemon{stdout: newSyncBuffer(), stderr: newSyncBuffer(), done: make(chan struct{})}
	d.cmd = exec.Command(os.Args[0], "-test.run=^$")
	d.cmd.Env = append(os.Environ(), runEnv+"="+string(a))
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	// A child forked from a thread in ns lives in ns.
	if err := lab.Do(ns, d.cmd.Start); err != nil {
		t.Fatalf("start %q: %v", args, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

// stop sends SIGTERM and returns the exit code.
func (d *daemon) stop(t *testing.T) int {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon did not stop on SIGTERM; stderr:\n%s", d.stderr)
	}
	var ee *exec.ExitError
	if errors.As(d.err, &ee) {
		return ee.ExitCode()
	}
	if d.err != nil {
		t.Fatalf("wait: %v", d.err)
	}
	return 0
}

// waitExit waits for the process to end by itself and returns its code.
func (d *daemon) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon did not exit; stderr:\n%s", d.stderr)
	}
	var ee *exec.ExitError
	if errors.As(d.err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

// procStatus returns the fields of /proc/<pid>/task/<tid>/status of every
// thread of pid.
func procStatus(t *testing.T, pid int) []map[string]string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue // the thread ended
		}
		m := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(l, ":")
			if ok {
				m[k] = strings.TrimSpace(v)
			}
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		t.Fatalf("no threads read for pid %d", pid)
	}
	return out
}

// TestIntegrationNICDaemon runs "standbynic nic" on the lab's wire0/hport0
// in the nic namespace: it must keep only CAP_NET_ADMIN and CAP_NET_RAW on
// every thread, serve its control API on the socket with the group's
// ownership, forward a TCP connection between host and srv, write the wire
// pcap, and on SIGTERM exit 0 and remove its socket.
func TestIntegrationNICDaemon(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	dir := t.TempDir()
	sock := filepath.Join(dir, "ctl", "nic.sock")
	wirePcap := filepath.Join(dir, "wire.pcap")
	hostIf, err := lab.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		t.Fatal(err)
	}
	const group = 4242 // need not exist: a numeric gid
	d := startDaemon(t, lab, netlab.NIC, "nic", "--wire", netlab.WireLink, "--host", netlab.HostPortLink,
		"--slots", "3", "--control", sock, "--control-group", fmt.Sprint(group),
		"--host-mac", hostIf.HardwareAddr.String(), "--host-addr", lab.Addr.Host4.String(),
		"--wire-pcap", wirePcap, "--log-level", "debug")
	d.stderr.waitFor(t, regexp.MustCompile(`msg="nic running" wire=\S+ wire_rx=batch `), 20*time.Second)
	if !strings.Contains(d.stderr.String(), `msg="capabilities dropped" kept=CAP_NET_ADMIN,CAP_NET_RAW no_new_privs=true`) {
		t.Errorf("no capability drop logged:\n%s", d.stderr)
	}

	// Every thread holds exactly CAP_NET_ADMIN (12) and CAP_NET_RAW (13).
	const kept = "0000000000003000"
	for i, st := range procStatus(t, d.cmd.Process.Pid) {
		for _, k := range []string{"CapEff", "CapPrm", "CapBnd"} {
			if st[k] != kept {
				t.Errorf("thread %d (%s): %s = %s, want %s", i, st["Pid"], k, st[k], kept)
			}
		}
		if st["NoNewPrivs"] != "1" {
			t.Errorf("thread %d (%s): NoNewPrivs = %s, want 1", i, st["Pid"], st["NoNewPrivs"])
		}
		if !strings.Contains(" "+st["Groups"]+" ", fmt.Sprintf(" %d ", group)) {
			t.Errorf("thread %d: groups %q lack the control group %d", i, st["Groups"], group)
		}
	}

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != group {
		t.Errorf("socket group %d, want %d", gid, group)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := nic.DialControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caps, err := c.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if caps.Device.Slots != 3 || caps.Group != group {
		t.Errorf("capabilities: slots %d group %d, want 3 and %d", caps.Device.Slots, caps.Group, group)
	}
	if ps, err := c.Power(ctx); err != nil || ps != nic.D0 {
		t.Errorf("power = %v, %v; want D0", ps, err)
	}

	// The daemon is a bump in the wire: a TCP connection crosses it.
	msg := []byte("through the bump in the wire")
	echoThroughNIC(t, ctx, lab, msg, d.stderr)
	metrics, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(metrics), "standbynic_") {
		t.Errorf("metrics lack standbynic_ families:\n%.400s", metrics)
	}
	c.Close()

	if code := d.stop(t); code != exitOK {
		t.Fatalf("exit %d after SIGTERM, want 0; stderr:\n%s", code, d.stderr)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	d.stderr.waitFor(t, regexp.MustCompile(`msg="nic stopping"`), time.Second)

	// The wire capture holds the payload both ways.
	f, err := os.Open(wirePcap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for {
		data, _, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if app := p.ApplicationLayer(); app != nil && string(app.Payload()) == string(msg) {
			seen++
		}
	}
	if seen < 2 {
		t.Errorf("wire pcap holds the payload %d times, want both directions", seen)
	}
}

// TestIntegrationNICDaemonNoLink checks that a missing interface is a
// runtime failure (exit 1) naming it, after the capability drop.
func TestIntegrationNICDaemonNoLink(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	sock := filepath.Join(t.TempDir(), "nic.sock")
	d := startDaemon(t, lab, netlab.NIC, "nic", "--wire", "nope0", "--host", netlab.HostPortLink, "--control", sock)
	if code := d.waitExit(t); code != exitFailure {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, d.stderr)
	}
	for _, w := range []string{`msg="capabilities dropped"`, "open port nope0"} {
		if !strings.Contains(d.stderr.String(), w) {
			t.Errorf("stderr lacks %q:\n%s", w, d.stderr)
		}
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket exists after a failed start: %v", err)
	}
}

// TestIntegrationDaemons runs the three daemons apart, as a person would:
// the push server in srv, "standbynic nic" in nic, "standbynic host" in
// host, joined by the NIC's control socket. The host's channels take the
// NIC's hardware slots (and one software slot), the host sleeps, and a push
// on a hardware channel wakes it and is acknowledged.
func TestIntegrationDaemons(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	srv := startLabPushServer(t, lab)
	dir := t.TempDir()
	sock := filepath.Join(dir, "nic.sock")
	hostIf, err := lab.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		t.Fatal(err)
	}
	nicd := startDaemon(t, lab, netlab.NIC, "nic", "--wire", netlab.WireLink, "--host", netlab.HostPortLink,
		"--slots", "2", "--control", sock, "--host-mac", hostIf.HardwareAddr.String(), "--host-addr", lab.Addr.Host4.String(),
		"--wake-pcap", filepath.Join(dir, "wake.pcap"), "--wire-rx", "immediate")
	nicd.stderr.waitFor(t, regexp.MustCompile(`msg="nic running" wire=\S+ wire_rx=immediate `), 20*time.Second)

	cfg := fmt.Sprintf(`{
  "server": {"tcp": %q, "websocket": %q},
  "policy": {"interval_unit": "1s", "min_interval": 1},
  "host": {"wake_hold": "300ms"},
  "apps": [
    {"name": "chat", "priority": 2, "channels": [{"id": "chat", "transport": "tcp", "slot": "hardware", "interval": "4s"}]},
    {"name": "mail", "priority": 1, "channels": [{"id": "mail", "transport": "websocket", "slot": "hardware", "interval": "4s"}]},
    {"name": "news", "channels": [{"id": "news", "transport": "tcp", "slot": "software", "interval": "30s"}]}
  ]
}`, srv.TCPAddr().String(), srv.WSURL())
	cfgPath := filepath.Join(dir, "host.json")
	if err := writeFile(cfgPath, cfg); err != nil {
		t.Fatal(err)
	}
	hostd := startDaemon(t, lab, netlab.Host, "host", "--nic", sock, "--config", cfgPath, "--log-level", "debug")
	hostd.stderr.waitFor(t, regexp.MustCompile(`msg="host in standby"`), 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, ch := range []string{"chat", "mail"} {
		// Push while the host sleeps: after its (i+1)-th entry to standby.
		hostd.stderr.waitFor(t, regexp.MustCompile(fmt.Sprintf(`(?s)(from=entering-standby to=standby.*){%d}`, i+1)), 20*time.Second)
		id, err := srv.Push(ch, "wake up "+ch)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.WaitAcked(ctx, ch, id); err != nil {
			t.Fatalf("push %d on %s not acknowledged: %v\nhost:\n%s\nnic:\n%s", id, ch, err, hostd.stderr, nicd.stderr)
		}
		hostd.stderr.waitFor(t, regexp.MustCompile(`msg="host in standby"(?s:.*)msg=push channel=`+ch), 10*time.Second)
	}
	if code := hostd.stop(t); code != exitOK {
		t.Errorf("host exit %d; stderr:\n%s", code, hostd.stderr)
	}
	out := hostd.stdout.String()
	for _, re := range []string{
		`(?m)^chat\s+chat\s+tcp\s+RequestHardwareSlot\s+HardwareSlotAllocated\s+1\s+1\s`,
		`(?m)^mail\s+mail\s+websocket\s+RequestHardwareSlot\s+HardwareSlotAllocated\s+1\s+1\s`,
		`(?m)^news\s+news\s+tcp\s+RequestSoftwareSlot\s+SoftwareSlotAllocated\s`,
		`(?m)^wakes: \d+, hardware-push [2-9]`,
		`(?m)^slots armed: [2-9]`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("host summary does not match %s:\n%s\nhost log:\n%s", re, out, hostd.stderr)
		}
	}
	if code := nicd.stop(t); code != exitOK {
		t.Errorf("nic exit %d; stderr:\n%s", code, nicd.stderr)
	}
	if !regexp.MustCompile(`msg=wake reason=\S+ slot=[12]`).MatchString(nicd.stderr.String()) {
		t.Errorf("the NIC logged no slot wake:\n%s", nicd.stderr)
	}
}

// TestIntegrationNICDaemonOffloads is issue 12's proof: "standbynic nic"
// between two fresh veth pairs with the kernel's default offloads (TX
// checksum, SG, TSO, GSO on) carries a TCP transfer of 8 MB each way at
// once byte-exact, its TSO super-frames crossing as they are; then
// "standbynic host" puts its channel's connection to sleep on the NIC and
// a push through the NIC wakes it and is acknowledged.
func TestIntegrationNICDaemonOffloads(t *testing.T) {
	lab := netlab.NewForTest(t, nil) // default offloads
	dir := t.TempDir()
	sock := filepath.Join(dir, "nic.sock")
	hostIf, err := lab.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		t.Fatal(err)
	}
	nicd := startDaemon(t, lab, netlab.NIC, "nic", "--wire", netlab.WireLink, "--host", netlab.HostPortLink,
		"--slots", "2", "--control", sock, "--host-mac", hostIf.HardwareAddr.String(), "--host-addr", lab.Addr.Host4.String())
	nicd.stderr.waitFor(t, regexp.MustCompile(`msg="nic running"`), 20*time.Second)

	// 8 MB each way at once, through the daemon.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ln, err := lab.ListenTCP(netlab.Srv, netip.AddrPortFrom(lab.Addr.Srv4, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		ln.SetDeadline(time.Now().Add(20 * time.Second))
		sc, err := ln.Accept()
		if err != nil {
			sc = nil
		}
		accepted <- sc
	}()
	hc, err := lab.DialTCP(ctx, netlab.Host, ln.Addr().String())
	if err != nil {
		t.Fatalf("dial through the NIC: %v\nstderr:\n%s", err, nicd.stderr)
	}
	defer hc.Close()
	sc := <-accepted
	if sc == nil {
		t.Fatal("accept failed")
	}
	defer sc.Close()
	const size = 8 << 20
	up, down := make([]byte, size), make([]byte, size)
	for i := range up {
		up[i], down[i] = byte(i*7+i>>13), byte(i*13+i>>11)
	}
	deadline := time.Now().Add(60 * time.Second)
	hc.SetDeadline(deadline)
	sc.SetDeadline(deadline)
	errs := make(chan error, 4)
	got := make(chan [2][]byte, 2)
	start := time.Now()
	for _, x := range []struct {
		w, r net.Conn
		b    []byte
		idx  int
	}{{hc, sc, up, 0}, {sc, hc, down, 1}} {
		go func() {
			_, err := x.w.Write(x.b)
			errs <- err
		}()
		go func() {
			buf := make([]byte, size)
			_, err := io.ReadFull(x.r, buf)
			errs <- err
			got <- [2][]byte{{byte(x.idx)}, buf}
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("transfer: %v\nnic:\n%s", err, nicd.stderr)
		}
	}
	elapsed := time.Since(start)
	for range 2 {
		g := <-got
		want := up
		if g[0][0] == 1 {
			want = down
		}
		if string(g[1]) != string(want) {
			t.Fatalf("direction %d: bytes differ after crossing the NIC", g[0][0])
		}
	}
	t.Logf("16 MB (8 MB each way at once) in %v: %.2f Gbit/s in total", elapsed, float64(2*size*8)/elapsed.Seconds()/1e9)
	hc.Close()
	sc.Close()

	c, err := nic.DialControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	metrics, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`(?m)^standbynic_nic_vnet_ports\{[^}]*\} 2$`, `(?m)^standbynic_nic_vnet_rx_gso_frames_total\{[^}]*\} [1-9]`,
		`(?m)^standbynic_nic_vnet_dropped_bad_frames_total\{[^}]*\} 0$`, `(?m)^standbynic_nic_vnet_sw_gso_frames_total\{[^}]*\} 0$`, `(?m)^standbynic_nic_tx_errors_total\{[^}]*\} 0$`} {
		if !regexp.MustCompile(re).Match(metrics) {
			t.Errorf("metrics do not match %s:\n%s", re, grepLines(string(metrics), "vnet_|tx_errors"))
		}
	}

	// Sleep and wake through the same daemon.
	srv := startLabPushServer(t, lab)
	cfg := fmt.Sprintf(`{
  "server": {"tcp": %q, "websocket": %q},
  "policy": {"interval_unit": "1s", "min_interval": 1},
  "host": {"wake_hold": "300ms"},
  "apps": [{"name": "chat", "channels": [{"id": "chat", "transport": "tcp", "slot": "hardware", "interval": "4s"}]}]
}`, srv.TCPAddr().String(), srv.WSURL())
	cfgPath := filepath.Join(dir, "host.json")
	if err := writeFile(cfgPath, cfg); err != nil {
		t.Fatal(err)
	}
	hostd := startDaemon(t, lab, netlab.Host, "host", "--nic", sock, "--config", cfgPath, "--log-level", "debug")
	hostd.stderr.waitFor(t, regexp.MustCompile(`from=entering-standby to=standby`), 30*time.Second)
	// A push big enough to leave srv as one TSO super-frame.
	msg := strings.Repeat("a push through an offloading link ", 110) // 3.7 KB: 3 segments
	id, err := srv.Push("chat", msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.WaitAcked(ctx, "chat", id); err != nil {
		t.Fatalf("push %d not acknowledged: %v\nhost:\n%s\nnic:\n%s", id, err, hostd.stderr, nicd.stderr)
	}
	if code := hostd.stop(t); code != exitOK {
		t.Errorf("host exit %d; stderr:\n%s", code, hostd.stderr)
	}
	if !regexp.MustCompile(`(?m)^wakes: \d+, hardware-push [1-9]`).MatchString(hostd.stdout.String()) {
		t.Errorf("host summary has no hardware-push wake:\n%s\nhost log:\n%s", hostd.stdout, hostd.stderr)
	}
	if !regexp.MustCompile(`msg=wake reason=data slot=1`).MatchString(nicd.stderr.String()) {
		t.Errorf("the NIC logged no data wake of slot 1:\n%s", nicd.stderr)
	}
	c.Close()
	if code := nicd.stop(t); code != exitOK {
		t.Errorf("nic exit %d; stderr:\n%s", code, nicd.stderr)
	}
}

// grepLines returns the lines of s matching the regexp re.
func grepLines(s, re string) string {
	m := regexp.MustCompile(re)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if m.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
