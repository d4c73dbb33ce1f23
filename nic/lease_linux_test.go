package nic_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
)

// leaseHelperEnv names the control socket TestLeaseHelperProcess talks
// to; leaseArmEnv the file holding the arm body it sends.
const (
	leaseHelperEnv = "STANDBYNIC_LEASE_HELPER_SOCKET"
	leaseArmEnv    = "STANDBYNIC_LEASE_HELPER_ARM"
	leasePeriod    = 500 * time.Millisecond
)

// TestLeaseHelperProcess is the host's control client of
// TestIntegrationLeaseHostKilledNICFailsOpen, run in a child process: it
// takes the lease through a Remote (stream bound, renewed), arms the slot
// under it, puts the NIC in D3, says READY and waits to be killed. It
// does nothing in a normal run.
func TestLeaseHelperProcess(t *testing.T) {
	sock := os.Getenv(leaseHelperEnv)
	if sock == "" {
		t.Skip("helper of TestIntegrationLeaseHostKilledNICFailsOpen (runs in its child process)")
	}
	cl, err := nic.DialControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	rem, err := cl.Remote(&nic.RemoteConfig{Lease: &nic.RemoteLease{Owner: "host", Period: leasePeriod}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(os.Getenv(leaseArmEnv))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, _, err := nic.ParseArm(b)
	if err != nil {
		t.Fatal(err)
	}
	id, err := rem.Arm(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rem.Sleep(); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %d\n", id)
	io.Copy(io.Discard, os.Stdin) // until killed
}

// freezeForSlot freezes the host's socket (TCP_REPAIR) once it is idle
// on the wire and returns the slot that would guard it.
func (r *labRig) freezeForSlot(spec offload.Spec) nic.SlotConfig {
	t := r.t
	var l nic.Learned
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ok bool
		l, ok = r.dev.Learned(r.conn)
		if ok && l.SeenIn && l.SeenOut && l.HostAck == l.RcvNxt && l.SndUna == l.SndNxt {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection not idle on the wire: %+v", l)
		}
		time.Sleep(time.Millisecond)
	}
	f, st, err := host.Freeze(r.hostConn)
	if err != nil {
		t.Fatal(err)
	}
	r.frozen, r.tcp = f, st
	snap := offload.Snapshot{
		LocalMAC: l.LocalMAC, RemoteMAC: l.RemoteMAC, Local: st.Local, Remote: st.Remote,
		SndNxt: st.SndNxt, RcvNxt: st.RcvNxt, SndWnd: st.Window.SndWnd, RcvWnd: st.Window.RcvWnd,
		SndWScale: st.SndWScale, RcvWScale: st.RcvWScale, TTL: st.TTL, TOS: st.TOS, MSS: uint16(st.MSS),
	}
	if st.Timestamps {
		rate := uint32(1000)
		if st.UsecTimestamps {
			rate = 1_000_000
		}
		snap.Timestamps = offload.Timestamps{Enabled: true, Val: st.TSVal, At: r.clock.Now(), Rate: rate, Recent: l.TSRecent}
	}
	return nic.SlotConfig{Pattern: r.conn, Spec: spec, Snapshot: snap, Owner: "mail"}
}

// TestIntegrationLeaseHostKilledNICFailsOpen is issue 13's host crash: a
// host process holds a lease with a slot armed for its frozen connection
// and the NIC in D3, and is killed (SIGKILL). One lease period later the
// NIC has disarmed the slot, is back in D0 and forwards: the server's
// next segment reaches the host's kernel, which (the socket died with
// the host) answers it with a reset, so the server learns at once that
// the connection is gone. The counters say so.
func TestIntegrationLeaseHostKilledNICFailsOpen(t *testing.T) {
	r := newLabRig(t, nil)
	r.connect()
	dir := t.TempDir()
	sock := filepath.Join(dir, "nic.sock")
	api := nic.NewControlServer(r.dev, nil)
	t.Cleanup(func() { api.Close() })
	if err := api.ListenUnix(sock, 0o600, -1); err != nil {
		t.Fatal(err)
	}
	cl, err := nic.DialControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	body, err := nic.ArmBody(r.freezeForSlot(fastSpec()))
	if err != nil {
		t.Fatal(err)
	}
	armFile := filepath.Join(dir, "arm.json")
	if err := os.WriteFile(armFile, body, 0o600); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cx, exe, "-test.run=^TestLeaseHelperProcess$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), leaseHelperEnv+"="+sock, leaseArmEnv+"="+armFile)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan string, 1)
	var lines strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines.WriteString(sc.Text() + "\n")
			if s, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- s
			}
		}
		close(ready)
	}()
	var slot string
	select {
	case s, ok := <-ready:
		if !ok {
			cmd.Wait()
			t.Fatalf("the host process ended before READY:\n%s%s", lines.String(), stderr.String())
		}
		slot = s
	case <-time.After(30 * time.Second):
		t.Fatalf("the host process never said READY:\n%s", stderr.String())
	}

	// Asleep, guarded, under the host's lease.
	if st := r.dev.State(); st != nic.D3 {
		t.Fatalf("state %v, want D3", st)
	}
	ls, err := cl.Leases(ctx(t))
	if err != nil || len(ls) != 1 || ls[0].Owner != "host" || ls[0].Streams != 1 || len(ls[0].Slots) != 1 || fmt.Sprint(ls[0].Slots[0]) != slot {
		t.Fatalf("leases %+v, %v; want the host's, bound to its stream, holding slot %s", ls, err, slot)
	}

	// The host dies; its frozen socket dies with it (closed in repair
	// mode: silently, as the kernel frees a killed process's sockets).
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	cmd.Wait()
	r.hostConn.Close()
	r.hostConn = nil

	deadline := time.Now().Add(10 * time.Second)
	for r.dev.State() != nic.D0 || len(r.dev.Slots()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the kill: state %v, slots %v; want D0, none", r.dev.State(), r.dev.Slots())
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(killed)
	t.Logf("NIC back in D0 with the slot disarmed %v after the host was killed (lease period %v)", took, leasePeriod)
	if took < leasePeriod/2 || took > leasePeriod+3*time.Second {
		t.Errorf("failed open after %v, want about one lease period (%v)", took, leasePeriod)
	}
	want := map[string]uint64{"leases_expired": 1, "lease_slots_disarmed": 1, "lease_resumes": 1, "leases_released": 0}
	got := map[string]uint64{}
	m, err := cl.Metrics(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for name := range want {
		var v uint64
		for _, line := range strings.Split(string(m), "\n") {
			if n, ok := strings.CutPrefix(line, "standbynic_control_"+name+"_total "); ok {
				fmt.Sscan(n, &v)
			}
		}
		got[name] = v
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}

	// The NIC forwards again: the server's push reaches the host's
	// kernel, whose reset comes back through the NIC.
	r.srvConn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.srvConn.Write([]byte("push after the host died\n")); err != nil {
		t.Fatal(err)
	}
	_, err = r.srvConn.Read(make([]byte, 16))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("server read after its push: %v, want ECONNRESET (the host's kernel reset, forwarded by the NIC)", err)
	}
	if n := r.counter("host_tx_frames"); n == 0 {
		t.Error("host_tx_frames = 0: nothing forwarded from the host")
	}
}
