//go:build linux

package netlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// rootState is what the root namespace's links and addresses look like.
type rootState struct {
	Links []string // "index name"
	Addrs []string // "index prefix"
}

func snapshotRoot(t *testing.T) rootState {
	t.Helper()
	h, err := netlink.NewHandleAt(rootNS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lks, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var s rootState
	for _, lk := range lks {
		s.Links = append(s.Links, fmt.Sprintf("%d %s", lk.Attrs().Index, lk.Attrs().Name))
		as, err := h.AddrList(lk, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			s.Addrs = append(s.Addrs, fmt.Sprintf("%d %s", lk.Attrs().Index, a.IPNet))
		}
	}
	slices.Sort(s.Links)
	slices.Sort(s.Addrs)
	return s
}

// rootNS returns a handle to the namespace of PID 1's network (the root).
func rootNS(t *testing.T) netns.NsHandle {
	t.Helper()
	h, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func wantLinks(router bool) map[Namespace][]string {
	m := map[Namespace][]string{
		NIC:  {HostPortLink, "lo", WireLink},
		Host: {HostLink, "lo"},
		Srv:  {"lo", SrvLink},
	}
	if router {
		m[Router] = []string{"lo", RouterNICLink, RouterSrvLink}
	}
	return m
}

// globalAddrs drops link-local addresses.
func globalAddrs(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		if !p.Addr().IsLinkLocalUnicast() {
			out = append(out, p.String())
		}
	}
	slices.Sort(out)
	return out
}

func TestIntegrationLabTopology(t *testing.T) {
	RequirePrivileges(t)
	tests := []struct {
		name   string
		opts   Options
		addrs  map[[2]string][]string // {ns, link} -> global prefixes
		mtu    int
		router bool
	}{
		{
			name: "direct",
			opts: Options{},
			mtu:  1500,
			addrs: map[[2]string][]string{
				{"srv", SrvLink}:      {"198.18.0.1/24", "2001:2::1/64"},
				{"host", HostLink}:    {"198.18.0.2/24", "2001:2::2/64"},
				{"nic", WireLink}:     nil,
				{"nic", HostPortLink}: nil,
			},
		},
		{
			name:   "router jumbo",
			opts:   Options{Router: true, MTU: 9000, DisableOffloads: true},
			mtu:    9000,
			router: true,
			addrs: map[[2]string][]string{
				{"srv", SrvLink}:       {"198.18.1.2/24", "2001:2:0:1::2/64"},
				{"host", HostLink}:     {"198.18.0.2/24", "2001:2::2/64"},
				{"nic", WireLink}:      nil,
				{"nic", HostPortLink}:  nil,
				{"rtr", RouterNICLink}: {"198.18.0.1/24", "2001:2::1/64"},
				{"rtr", RouterSrvLink}: {"198.18.1.1/24", "2001:2:0:1::1/64"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshotRoot(t)
			l, err := New(context.Background(), &tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			for ns, want := range wantLinks(tt.router) {
				got, err := l.Links(ns)
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(got)
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("%s links (-want +got):\n%s", ns, d)
				}
			}
			byName := map[string]Namespace{"srv": Srv, "nic": NIC, "host": Host, "rtr": Router}
			for k, want := range tt.addrs {
				ns := byName[k[0]]
				ps, err := l.Addrs(ns, k[1])
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(want, globalAddrs(ps)); d != "" {
					t.Errorf("%s/%s addresses (-want +got):\n%s", k[0], k[1], d)
				}
				if ns == NIC && len(ps) != 0 {
					t.Errorf("nic/%s has addresses %v, want none", k[1], ps)
				}
				ifi, err := l.Interface(ns, k[1])
				if err != nil {
					t.Fatal(err)
				}
				if ifi.MTU != tt.mtu || ifi.Flags&net.FlagUp == 0 {
					t.Errorf("%s/%s: mtu %d flags %v, want mtu %d and up", k[0], k[1], ifi.MTU, ifi.Flags, tt.mtu)
				}
				checkOffloads(t, l, ns, k[1], !tt.opts.DisableOffloads)
			}
			if d := cmp.Diff(before, snapshotRoot(t)); d != "" {
				t.Errorf("root namespace changed while the lab is up (-before +during):\n%s", d)
			}
			if tt.router {
				checkRouted(t, l)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			for _, ns := range l.Namespaces() {
				if namedExists(l.NamespaceName(ns)) {
					t.Errorf("namespace %s still mounted after Close", l.NamespaceName(ns))
				}
			}
			if d := cmp.Diff(before, snapshotRoot(t)); d != "" {
				t.Errorf("root namespace changed by a lab (-before +after):\n%s", d)
			}
		})
	}
}

// checkRouted proves the srv side of a router lab works at once (IPv4 and
// NODAD IPv6): srv connects to a listener in rtr, and the neighbour entry
// it learnt can be flushed.
func checkRouted(t *testing.T, l *Lab) {
	t.Helper()
	for _, addr := range []string{"198.18.1.1:0", "[2001:2:0:1::1]:0"} {
		ln, err := l.ListenTCP(Router, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := l.DialTCP(ctx, Srv, ln.Addr().String())
		if err != nil {
			t.Fatalf("srv dial %s: %v", ln.Addr(), err)
		}
		ln.SetDeadline(time.Now().Add(5 * time.Second))
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("through the lab")
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.Close()
		got, err := io.ReadAll(s)
		s.Close()
		if err != nil || string(got) != string(msg) {
			t.Fatalf("read %q, %v; want %q", got, err, msg)
		}
	}
	n, err := l.FlushNeigh(Srv, SrvLink)
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 {
		t.Errorf("FlushNeigh deleted %d entries after srv talked to rtr, want ≥1", n)
	}
}

// checkOffloads checks that link has the offloads Linux gives a veth
// (on), or none of them.
func checkOffloads(t *testing.T, l *Lab, ns Namespace, link string, on bool) {
	t.Helper()
	got := offloadsOn(t, l, ns, link)
	if on {
		for _, want := range []string{"gso", "sg", "tso", "tx-checksum"} {
			if !slices.Contains(got, want) {
				t.Errorf("%s/%s: offloads on %v, want %s among them (the kernel's default)", ns, link, got, want)
			}
		}
	} else if len(got) != 0 {
		t.Errorf("%s/%s: offloads still on: %v", ns, link, got)
	}
}

// offloadsOn lists the offloads (by legacy ethtool get command) still on.
func offloadsOn(t *testing.T, l *Lab, ns Namespace, link string) []string {
	t.Helper()
	var on []string
	err := l.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for name, cmd := range map[string]uint32{"tx-checksum": unix.ETHTOOL_GTXCSUM, "sg": unix.ETHTOOL_GSG, "tso": unix.ETHTOOL_GTSO, "gso": unix.ETHTOOL_GGSO, "gro": unix.ETHTOOL_GGRO} {
			v := ethtoolValue{cmd: cmd}
			var ifr ifreqPtr
			copy(ifr.name[:], link)
			ifr.data = unsafe.Pointer(&v)
			_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
			runtime.KeepAlive(&v)
			if errno != 0 {
				return fmt.Errorf("ethtool get %s: %w", name, errno)
			}
			if v.data != 0 {
				on = append(on, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(on)
	return on
}

func TestIntegrationLabFailureCleansUp(t *testing.T) {
	RequirePrivileges(t)
	steps := []string{"create namespace nic", "configure namespace host", "veth wire0-srv0", "addresses", "link up host0", "routes", "wait ready srv0"}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			var seen *Lab
			injected := errors.New("injected failure")
			hit := false
			_, err := newLab(context.Background(), nil, func(l *Lab, s string) error {
				seen = l
				if s == step {
					hit = true
					return injected
				}
				return nil
			})
			if !hit {
				t.Fatalf("step %q never ran", step)
			}
			if !errors.Is(err, injected) {
				t.Fatalf("newLab error = %v, want the injected one", err)
			}
			if !strings.Contains(err.Error(), step) {
				t.Errorf("error %q does not name the step %q", err, step)
			}
			for _, ns := range []Namespace{Srv, NIC, Host, Router} {
				if name := "sbn-" + seen.ID + "-" + ns.String(); namedExists(name) {
					t.Errorf("namespace %s left behind", name)
				}
			}
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var seen *Lab
		_, err := newLab(ctx, nil, func(l *Lab, s string) error {
			seen = l
			if s == "create namespace nic" {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		for _, ns := range []Namespace{Srv, NIC, Host} {
			if name := "sbn-" + seen.ID + "-" + ns.String(); namedExists(name) {
				t.Errorf("namespace %s left behind", name)
			}
		}
	})
}

func TestIntegrationLabCloseAfterExternalDelete(t *testing.T) {
	l := NewForTest(t, &Options{Router: true})
	// Something (a crashed test, an operator) already removed one namespace.
	if err := deleteNamed(l.NamespaceName(Srv)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, ns := range l.Namespaces() {
		if namedExists(l.NamespaceName(ns)) {
			t.Errorf("namespace %s still mounted", l.NamespaceName(ns))
		}
	}
	if err := l.Do(Srv, func() error { return nil }); err == nil {
		t.Error("Do after Close succeeded")
	}
}

func TestIntegrationTwoLabs(t *testing.T) {
	a := NewForTest(t, nil)
	b := NewForTest(t, nil)
	if a.ID == b.ID {
		t.Fatalf("two labs share ID %s", a.ID)
	}
	if err := a.SetLinkDown(Srv, SrvLink); err != nil {
		t.Fatal(err)
	}
	ia, err := a.Interface(Srv, SrvLink)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := b.Interface(Srv, SrvLink)
	if err != nil {
		t.Fatal(err)
	}
	if ia.Flags&net.FlagUp != 0 || ib.Flags&net.FlagUp == 0 {
		t.Errorf("after SetLinkDown on lab a: a srv0 flags %v, b srv0 flags %v", ia.Flags, ib.Flags)
	}
	if err := a.SetLinkUp(Srv, SrvLink); err != nil {
		t.Fatal(err)
	}
	if ia, _ = a.Interface(Srv, SrvLink); ia.Flags&net.FlagUp == 0 {
		t.Error("SetLinkUp did not bring srv0 up")
	}
}

func TestIntegrationDoStaysInNamespace(t *testing.T) {
	l := NewForTest(t, nil)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	tests := []struct {
		ns      Namespace
		link    string
		present bool
	}{
		{Srv, SrvLink, true}, {Srv, HostLink, false},
		{NIC, WireLink, true}, {NIC, SrvLink, false},
		{Host, HostLink, true}, {Host, WireLink, false},
	}
	for _, tt := range tests {
		err := l.Do(tt.ns, func() error {
			_, err := net.InterfaceByName(tt.link)
			return err
		})
		if (err == nil) != tt.present {
			t.Errorf("Do(%v) InterfaceByName(%s) err = %v, want present=%t", tt.ns, tt.link, err, tt.present)
		}
	}
	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !before.Equal(after) {
		t.Error("the calling thread changed namespace")
	}
	if err := l.Do(Router, func() error { return nil }); err == nil {
		t.Error("Do(Router) on a lab without a router succeeded")
	}
	want := errors.New("from fn")
	if err := l.Do(Host, func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
}

func TestIntegrationPrivileged(t *testing.T) {
	RequirePrivileges(t)
	if err := Privileged(); err != nil {
		t.Fatal(err)
	}
}

func TestIntegrationAddVeth(t *testing.T) {
	l := NewForTest(t, &Options{MTU: 2000})
	if err := l.AddVeth(NIC, "xa0", NIC, "xb0"); err != nil {
		t.Fatal(err)
	}
	if err := l.AddVeth(Host, "xa1", Srv, "xb1"); err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct {
		ns   Namespace
		name string
	}{{NIC, "xa0"}, {NIC, "xb0"}, {Host, "xa1"}, {Srv, "xb1"}} {
		ifi, err := l.Interface(e.ns, e.name)
		if err != nil {
			t.Fatal(err)
		}
		if ifi.MTU != 2000 || ifi.Flags&net.FlagUp == 0 {
			t.Errorf("%s/%s: mtu %d flags %v", e.ns, e.name, ifi.MTU, ifi.Flags)
		}
		checkOffloads(t, l, e.ns, e.name, true)
	}
	if err := l.AddVeth(NIC, "xa0", NIC, "xc0"); err == nil {
		t.Error("AddVeth with a name already in use succeeded")
	}
}
