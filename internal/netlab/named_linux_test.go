//go:build linux

package netlab

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// testName returns a lab name no other test uses.
func testName(t *testing.T) string {
	t.Helper()
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	return "t" + id
}

// TestIntegrationNamedLab builds a named lab, lets go of it, opens it by
// name as another process would, finds a process started in it and
// deletes it: the process ends and no namespace is left.
func TestIntegrationNamedLab(t *testing.T) {
	RequirePrivileges(t)
	name := testName(t)
	t.Cleanup(func() { DeleteNamed(context.Background(), name, time.Second) })
	l, err := NewNamed(context.Background(), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range l.Namespaces() {
		if got, want := l.NamespaceName(r), "sbn-"+name+"-"+r.String(); got != want {
			t.Errorf("NamespaceName(%v) = %q, want %q", r, got, want)
		}
		if !namedExists(l.NamespaceName(r)) {
			t.Errorf("%s not mounted", l.NamespaceName(r))
		}
	}
	if _, err := NewNamed(context.Background(), name, nil); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second NewNamed(%q) = %v, want an error saying it exists", name, err)
	}
	l.Release()
	l.Release()
	if err := l.Close(); err != nil { // a no-op after Release
		t.Fatal(err)
	}
	if !NamedExists(name) {
		t.Fatal("Release removed the lab")
	}

	o, err := OpenNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	if o.MTU() != DefaultMTU || o.Addr != addressesFor(false) {
		t.Errorf("opened lab: MTU %d, addresses %+v", o.MTU(), o.Addr)
	}
	bridgeNIC(t, o)
	ln, err := o.ListenTCP(Srv, "198.18.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := o.DialTCP(ctx, Host, ln.Addr().String())
	if err != nil {
		t.Fatalf("dial srv from host in the opened lab: %v", err)
	}
	c.Close()
	o.Release()

	// A process in the host namespace, started as `ip netns exec` would.
	cmd := exec.Command("sleep", "60")
	var started error
	err = o2(t, name).Do(Host, func() error { started = cmd.Start(); return nil })
	if err != nil || started != nil {
		t.Fatalf("start sleep in host: %v %v", err, started)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	pids, err := NamespacePIDs(NamedNamespacePath(name, Host))
	if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Fatalf("NamespacePIDs = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
	got, err := DeleteNamed(context.Background(), name, 5*time.Second)
	if err != nil || len(got) != 1 || got[0] != cmd.Process.Pid {
		t.Fatalf("DeleteNamed = %v, %v; want [%d]", got, err, cmd.Process.Pid)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the process in the lab is still running")
	}
	if NamedExists(name) {
		t.Error("namespaces left after DeleteNamed")
	}
	if _, err := OpenNamed(name); err == nil {
		t.Error("OpenNamed found a deleted lab")
	}
	if _, err := DeleteNamed(context.Background(), name, time.Second); err != nil {
		t.Errorf("DeleteNamed of a deleted lab: %v", err)
	}
}

// bridgeNIC joins wire0 and hport0 with a bridge in the nic namespace, so
// host and srv reach each other without a device.
func bridgeNIC(t *testing.T, l *Lab) {
	t.Helper()
	err := l.Do(NIC, func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return err
		}
		for _, n := range []string{WireLink, HostPortLink} {
			lk, err := netlink.LinkByName(n)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetMaster(lk, br); err != nil {
				return err
			}
		}
		return netlink.LinkSetUp(br)
	})
	if err != nil {
		t.Fatalf("bridge in nic: %v", err)
	}
	if err := l.WaitLinkReady(context.Background(), NIC, "br0"); err != nil {
		t.Fatal(err)
	}
}

// o2 opens the lab named name and releases it at the end of the test.
func o2(t *testing.T, name string) *Lab {
	t.Helper()
	l, err := OpenNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Release)
	return l
}

// TestIntegrationMasquerade: with Masquerade the server sees the host's
// connections from the router's far address, over IPv4 and IPv6, and the
// conntrack timeout is the router namespace's own.
func TestIntegrationMasquerade(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("nft not found: install the Debian package nftables")
	}
	l := NewForTest(t, &Options{Router: true})
	var rootTimeout []byte
	rootTimeout, _ = os.ReadFile("/proc/sys/" + conntrackEstablished)
	bridgeNIC(t, l)
	if err := l.Masquerade(37 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d, err := l.NATTimeout(); err != nil || d != 37*time.Second {
		t.Errorf("NATTimeout() = %v, %v; want 37s", d, err)
	}
	if after, _ := os.ReadFile("/proc/sys/" + conntrackEstablished); string(after) != string(rootTimeout) {
		t.Errorf("root namespace's timeout changed: %q → %q", rootTimeout, after)
	}
	for _, tc := range []struct{ srv, wantFrom string }{
		{"198.18.1.2:0", "198.18.1.1"},
		{"[2001:2:0:1::2]:0", "2001:2:0:1::1"},
	} {
		ln, err := l.ListenTCP(Srv, tc.srv)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := l.DialTCP(ctx, Host, ln.Addr().String())
		cancel()
		if err != nil {
			ln.Close()
			t.Fatalf("dial %s: %v", ln.Addr(), err)
		}
		ln.SetDeadline(time.Now().Add(10 * time.Second))
		sc, err := ln.AcceptTCP()
		ln.Close()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		from := sc.RemoteAddr().(*net.TCPAddr).IP.String()
		sc.Close()
		if from != tc.wantFrom {
			t.Errorf("srv saw the connection from %s, want %s (masqueraded)", from, tc.wantFrom)
		}
	}
	for _, d := range []time.Duration{-time.Second, 500 * time.Millisecond, 1500 * time.Millisecond, MaxNATTimeout + time.Second} {
		if err := l.Masquerade(d); err == nil {
			t.Errorf("Masquerade(%v) accepted", d)
		}
	}
	plain := NewForTest(t, nil)
	if err := plain.Masquerade(0); err == nil {
		t.Error("Masquerade without a router accepted")
	}
}

// TestIntegrationMasqueradeTimeout: a connection idle for longer than the
// NAT's established-timeout is forgotten: what srv sends next never
// reaches the host, and the router answers it with a reset.
func TestIntegrationMasqueradeTimeout(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("nft not found: install the Debian package nftables")
	}
	l := NewForTest(t, &Options{Router: true})
	bridgeNIC(t, l)
	const timeout = time.Second
	if err := l.Masquerade(timeout); err != nil {
		t.Fatal(err)
	}
	ln, err := l.ListenTCP(Srv, "198.18.1.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc, err := l.DialTCP(ctx, Host, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	sc, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	// Before the timeout the flow works both ways.
	if _, err := sc.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := hc.Read(buf); err != nil || string(buf[:n]) != "a" {
		t.Fatalf("host read %q, %v; want \"a\"", buf[:n], err)
	}
	// Idle past the timeout (conntrack's clock has a granularity of a
	// jiffy; two timeouts leave room).
	idle := time.NewTimer(2*timeout + 500*time.Millisecond)
	<-idle.C
	if _, err := sc.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := sc.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("srv read after the NAT forgot the flow: %v, want a reset from the router", err)
	}
	hc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := hc.Read(buf); err == nil {
		t.Errorf("host read %q after the NAT forgot the flow", buf[:n])
	}
}
