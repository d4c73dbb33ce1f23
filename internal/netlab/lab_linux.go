//go:build linux

package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named namespaces are bind-mounted (as by `ip netns`).
const netnsDir = "/var/run/netns"

// Lab is a running topology. Its methods are safe for concurrent use.
type Lab struct {
	// ID is the lab's unique 8-hex-digit tag; namespace names are
	// "sbn-<ID>-<role>".
	ID string
	// Addr holds the addresses configured in srv and host.
	Addr Addresses

	router          bool
	mtu             int
	disableOffloads bool

	ns [Router + 1]netns.NsHandle // by Namespace; 0 when absent

	mu      sync.Mutex // serialises netlink requests per lab
	handles [Router + 1]*netlink.Handle

	closeOnce sync.Once
	closeErr  error
}

// New builds a lab. It checks ctx between steps; on any failure it removes
// everything it built and returns the error.
func New(ctx context.Context, opts *Options) (*Lab, error) {
	return newLab(ctx, opts, nil)
}

// newLab is New with a hook called after each named step (with the lab being built); a hook error makes
// the step fail (tests use it to exercise the failure path).
func newLab(ctx context.Context, opts *Options, hook func(l *Lab, step string) error) (_ *Lab, err error) {
	if opts == nil {
		opts = &Options{}
	}
	mtu, err := opts.mtu()
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	id, err := newID()
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	l := &Lab{ID: id, Addr: addressesFor(opts.Router), router: opts.Router, mtu: mtu, disableOffloads: opts.DisableOffloads}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("netlab: %w", err), l.Close())
		}
	}()
	step := func(name string, f func() error) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if hook != nil {
			if err := hook(l, name); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	}

	roles := l.Namespaces()
	for _, r := range roles {
		if err := step("create namespace "+r.String(), func() error { return l.createNS(r) }); err != nil {
			return nil, err
		}
	}
	for _, r := range roles {
		if err := step("configure namespace "+r.String(), func() error { return l.prepareNS(r) }); err != nil {
			return nil, err
		}
	}
	type pair struct {
		ns       Namespace
		name     string
		peerNS   Namespace
		peerName string
	}
	pairs := []pair{{NIC, HostPortLink, Host, HostLink}}
	if l.router {
		pairs = append(pairs, pair{NIC, WireLink, Router, RouterNICLink}, pair{Router, RouterSrvLink, Srv, SrvLink})
	} else {
		pairs = append(pairs, pair{NIC, WireLink, Srv, SrvLink})
	}
	for _, p := range pairs {
		if err := step("veth "+p.name+"-"+p.peerName, func() error {
			return l.addVeth(p.ns, p.name, p.peerNS, p.peerName)
		}); err != nil {
			return nil, err
		}
	}
	if err := step("addresses", l.configureAddresses); err != nil {
		return nil, err
	}
	if opts.DisableOffloads {
		for _, p := range pairs {
			for _, e := range [][2]any{{p.ns, p.name}, {p.peerNS, p.peerName}} {
				ns, name := e[0].(Namespace), e[1].(string)
				if err := step("offloads "+name, func() error { return l.offloadsOff(ns, name) }); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, p := range pairs {
		for _, e := range [][2]any{{p.ns, p.name}, {p.peerNS, p.peerName}} {
			ns, name := e[0].(Namespace), e[1].(string)
			if err := step("link up "+name, func() error { return l.SetLinkUp(ns, name) }); err != nil {
				return nil, err
			}
		}
	}
	if err := step("routes", l.configureRoutes); err != nil {
		return nil, err
	}
	for _, p := range pairs {
		for _, e := range [][2]any{{p.ns, p.name}, {p.peerNS, p.peerName}} {
			ns, name := e[0].(Namespace), e[1].(string)
			if err := step("wait ready "+name, func() error { return l.WaitLinkReady(ctx, ns, name) }); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// linkReadyTimeout bounds WaitLinkReady when ctx has no earlier deadline.
const linkReadyTimeout = 10 * time.Second

// WaitLinkReady waits until link in ns is operationally up, or ctx ends
// (at most 10 s). After a link (or its veth peer) comes up the kernel
// activates its transmit queue asynchronously (linkwatch); until then
// frames sent on it are dropped silently. The kernel announces the link
// (RTM_NEWLINK) only after activating it, so a link reported up here
// carries frames.
func (l *Lab) WaitLinkReady(ctx context.Context, ns Namespace, link string) error {
	if ns == 0 || ns > Router || l.ns[ns] == 0 {
		return fmt.Errorf("netlab: namespace %v not in lab %s", ns, l.ID)
	}
	ctx, cancel := context.WithTimeout(ctx, linkReadyTimeout)
	defer cancel()
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	h := l.ns[ns]
	var subErr error
	var errOnce sync.Once
	failed := make(chan struct{})
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		Namespace:    &h,
		ListExisting: true,
		ErrorCallback: func(err error) {
			errOnce.Do(func() { subErr = err; close(failed) })
		},
	})
	if err != nil {
		return fmt.Errorf("netlab: %s/%s: subscribe to link updates: %w", ns, link, err)
	}
	state := "unknown"
	for {
		select {
		case u, ok := <-updates:
			if !ok {
				return fmt.Errorf("netlab: %s/%s: link updates ended", ns, link)
			}
			a := u.Attrs()
			if a == nil || a.Name != link {
				continue
			}
			if a.OperState == netlink.OperUp {
				return nil
			}
			state = a.OperState.String()
		case <-failed:
			return fmt.Errorf("netlab: %s/%s: link updates: %w", ns, link, subErr)
		case <-ctx.Done():
			return fmt.Errorf("netlab: %s/%s not ready (operstate %s): %w", ns, link, state, ctx.Err())
		}
	}
}

func newID() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lab id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Namespaces lists the lab's namespaces in creation order.
func (l *Lab) Namespaces() []Namespace {
	if l.router {
		return []Namespace{Srv, NIC, Host, Router}
	}
	return []Namespace{Srv, NIC, Host}
}

// NamespaceName returns the name of ns as listed by `ip netns`, or "" if
// the lab has no such namespace.
func (l *Lab) NamespaceName(ns Namespace) string {
	if ns == 0 || ns > Router || (ns == Router && !l.router) {
		return ""
	}
	return "sbn-" + l.ID + "-" + ns.String()
}

// NamespacePath returns the bind-mount path of ns ("" if absent).
func (l *Lab) NamespacePath(ns Namespace) string {
	name := l.NamespaceName(ns)
	if name == "" {
		return ""
	}
	return filepath.Join(netnsDir, name)
}

// MTU returns the MTU of the lab's veths.
func (l *Lab) MTU() int { return l.mtu }

// createNS creates the named namespace for r without moving the calling
// goroutine's thread: the work runs on a locked, throw-away thread.
func (l *Lab) createNS(r Namespace) error {
	name := l.NamespaceName(r)
	type result struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			ch <- result{-1, err}
			return // thread stays locked and is discarded
		}
		defer origin.Close()
		h, err := netns.NewNamed(name)
		if err != nil {
			// NewNamed may have switched the thread before failing.
			if netns.Set(origin) == nil {
				runtime.UnlockOSThread()
			}
			ch <- result{-1, err}
			return
		}
		if netns.Set(origin) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{h, nil}
	}()
	res := <-ch
	if res.err != nil {
		return res.err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ns[r] = res.h
	hd, err := netlink.NewHandleAt(res.h)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	l.handles[r] = hd
	return nil
}

// sysctl writes value to /proc/sys/<key> inside ns.
func (l *Lab) sysctl(ns Namespace, key, value string) error {
	return l.Do(ns, func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	})
}

// prepareNS sets the namespace's sysctls (before any veth exists, so the
// "default" entries apply to them) and brings lo up.
func (l *Lab) prepareNS(r Namespace) error {
	var kv [][2]string
	switch r {
	case NIC:
		kv = [][2]string{
			{"net/ipv6/conf/all/disable_ipv6", "1"},
			{"net/ipv6/conf/default/disable_ipv6", "1"},
		}
	case Router:
		kv = [][2]string{
			{"net/ipv6/conf/default/accept_dad", "0"},
			{"net/ipv6/conf/all/forwarding", "1"},
			{"net/ipv4/ip_forward", "1"},
		}
	default:
		kv = [][2]string{
			{"net/ipv6/conf/default/accept_dad", "0"},
			{"net/ipv6/conf/default/router_solicitations", "0"},
		}
	}
	for _, e := range kv {
		if err := l.sysctl(r, e[0], e[1]); err != nil {
			return err
		}
	}
	return l.SetLinkUp(r, "lo")
}

func (l *Lab) handle(ns Namespace) (*netlink.Handle, error) {
	if ns == 0 || ns > Router || l.handles[ns] == nil {
		return nil, fmt.Errorf("namespace %v not in lab %s", ns, l.ID)
	}
	return l.handles[ns], nil
}

// addVeth creates name in ns with its peer peerName placed directly in
// peerNS.
func (l *Lab) addVeth(ns Namespace, name string, peerNS Namespace, peerName string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, err := l.handle(ns)
	if err != nil {
		return err
	}
	if _, err := l.handle(peerNS); err != nil {
		return err
	}
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, MTU: l.mtu},
		PeerName:      peerName,
		PeerNamespace: netlink.NsFd(l.ns[peerNS]),
	}
	if err := h.LinkAdd(v); err != nil {
		return err
	}
	return nil
}

// AddVeth adds a veth pair to the lab: name in ns, peerName in peerNS
// (which may be ns itself), with the lab's MTU and offload setting, both
// ends up. It has no addresses; it goes away with the namespaces.
func (l *Lab) AddVeth(ns Namespace, name string, peerNS Namespace, peerName string) error {
	if err := l.addVeth(ns, name, peerNS, peerName); err != nil {
		return fmt.Errorf("netlab: veth %s/%s-%s/%s: %w", ns, name, peerNS, peerName, err)
	}
	for _, e := range []struct {
		ns   Namespace
		name string
	}{{ns, name}, {peerNS, peerName}} {
		if l.disableOffloads {
			if err := l.offloadsOff(e.ns, e.name); err != nil {
				return fmt.Errorf("netlab: %w", err)
			}
		}
		if err := l.SetLinkUp(e.ns, e.name); err != nil {
			return err
		}
	}
	for _, e := range []struct {
		ns   Namespace
		name string
	}{{ns, name}, {peerNS, peerName}} {
		if err := l.WaitLinkReady(context.Background(), e.ns, e.name); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) addAddr(ns Namespace, link string, a netip.Addr, bits int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, err := l.handle(ns)
	if err != nil {
		return err
	}
	lk, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("%s/%s: %w", ns, link, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}}
	if a.Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(lk, addr); err != nil {
		return fmt.Errorf("%s/%s %v: %w", ns, link, a, err)
	}
	return nil
}

func (l *Lab) configureAddresses() error {
	type entry struct {
		ns   Namespace
		link string
		a    netip.Addr
	}
	es := []entry{
		{Host, HostLink, l.Addr.Host4}, {Host, HostLink, l.Addr.Host6},
		{Srv, SrvLink, l.Addr.Srv4}, {Srv, SrvLink, l.Addr.Srv6},
	}
	if l.router {
		es = append(es,
			entry{Router, RouterNICLink, rtrNear4}, entry{Router, RouterNICLink, rtrNear6},
			entry{Router, RouterSrvLink, rtrFar4}, entry{Router, RouterSrvLink, rtrFar6})
	}
	for _, e := range es {
		bits := prefixBits4
		if e.a.Is6() {
			bits = prefixBits6
		}
		if err := l.addAddr(e.ns, e.link, e.a, bits); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) configureRoutes() error {
	if !l.router {
		return nil // both ends share 198.18.0.0/24 and 2001:2::/64
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	add := func(ns Namespace, link string, dst netip.Prefix, gw netip.Addr) error {
		h, err := l.handle(ns)
		if err != nil {
			return err
		}
		lk, err := h.LinkByName(link)
		if err != nil {
			return err
		}
		r := &netlink.Route{LinkIndex: lk.Attrs().Index, Gw: gw.AsSlice()}
		if dst.IsValid() {
			r.Dst = &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())}
		} else if gw.Is6() {
			r.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		} else {
			r.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("%s route %v via %v: %w", ns, r.Dst, gw, err)
		}
		return nil
	}
	for _, e := range []struct {
		ns   Namespace
		link string
		dst  netip.Prefix
		gw   netip.Addr
	}{
		{Host, HostLink, netip.Prefix{}, rtrNear4},
		{Host, HostLink, netip.Prefix{}, rtrNear6},
		{Srv, SrvLink, hostNet4, rtrFar4},
		{Srv, SrvLink, hostNet6, rtrFar6},
	} {
		if err := add(e.ns, e.link, e.dst, e.gw); err != nil {
			return err
		}
	}
	return nil
}

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqPtr is struct ifreq with the ifr_data member.
type ifreqPtr struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

// offloadsOff turns off TX checksum, SG, TSO, GSO and GRO on link (the
// legacy ethtool ioctls; an unsupported feature is not an error).
func (l *Lab) offloadsOff(ns Namespace, link string) error {
	return l.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		defer unix.Close(fd)
		for _, cmd := range []uint32{unix.ETHTOOL_STSO, unix.ETHTOOL_SGSO, unix.ETHTOOL_SGRO, unix.ETHTOOL_SSG, unix.ETHTOOL_STXCSUM} {
			v := ethtoolValue{cmd: cmd}
			var ifr ifreqPtr
			copy(ifr.name[:], link)
			ifr.data = unsafe.Pointer(&v)
			_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
			runtime.KeepAlive(&v)
			if errno != 0 && errno != unix.EOPNOTSUPP {
				return fmt.Errorf("%s: ethtool 0x%x: %w", link, cmd, os.NewSyscallError("ioctl", errno))
			}
		}
		return nil
	})
}

// Do runs fn on an OS thread switched into ns and returns its error. fn runs
// on a fresh goroutine (so it must not call t.FailNow/t.Fatal); sockets it
// creates stay in ns. The caller's thread never changes namespace.
func (l *Lab) Do(ns Namespace, fn func() error) error {
	if ns == 0 || ns > Router || l.ns[ns] == 0 {
		return fmt.Errorf("netlab: namespace %v not in lab %s", ns, l.ID)
	}
	target := l.ns[ns]
	type result struct {
		err   error
		panic any
		ok    bool
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			ch <- result{err: fmt.Errorf("netlab: current namespace: %w", err)}
			return // locked thread exits with the goroutine
		}
		defer origin.Close()
		if err := netns.Set(target); err != nil {
			ch <- result{err: fmt.Errorf("netlab: enter %v: %w", ns, err)}
			return
		}
		res := result{}
		func() {
			defer func() {
				if !res.ok {
					res.panic = recover()
				}
			}()
			res.err = fn()
			res.ok = true
		}()
		if netns.Set(origin) == nil {
			runtime.UnlockOSThread()
		}
		ch <- res
	}()
	res := <-ch
	if !res.ok && res.panic != nil {
		panic(res.panic)
	}
	return res.err
}

// ListenTCP listens on addr ("198.18.0.1:0", "[2001:2::1]:0") inside ns.
func (l *Lab) ListenTCP(ns Namespace, addr string) (*net.TCPListener, error) {
	var ln net.Listener
	err := l.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// DialTCP connects to addr from inside ns.
func (l *Lab) DialTCP(ctx context.Context, ns Namespace, addr string) (*net.TCPConn, error) {
	var c net.Conn
	err := l.Do(ns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// Interface returns the interface name in ns (index, MAC, MTU, flags).
func (l *Lab) Interface(ns Namespace, name string) (*net.Interface, error) {
	var ifi *net.Interface
	err := l.Do(ns, func() error {
		var err error
		ifi, err = net.InterfaceByName(name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: %s/%s: %w", ns, name, err)
	}
	return ifi, nil
}

// Addrs returns the addresses on link in ns (both families, including the
// kernel's IPv6 link-local address), as prefixes.
func (l *Lab) Addrs(ns Namespace, link string) ([]netip.Prefix, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, err := l.handle(ns)
	if err != nil {
		return nil, err
	}
	lk, err := h.LinkByName(link)
	if err != nil {
		return nil, fmt.Errorf("netlab: %s/%s: %w", ns, link, err)
	}
	as, err := h.AddrList(lk, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("netlab: %s/%s addresses: %w", ns, link, err)
	}
	out := make([]netip.Prefix, 0, len(as))
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

// Links returns the names of the links in ns.
func (l *Lab) Links(ns Namespace) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, err := l.handle(ns)
	if err != nil {
		return nil, err
	}
	lks, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("netlab: %s links: %w", ns, err)
	}
	out := make([]string, len(lks))
	for i, lk := range lks {
		out[i] = lk.Attrs().Name
	}
	return out, nil
}

func (l *Lab) setLink(ns Namespace, name string, up bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, err := l.handle(ns)
	if err != nil {
		return err
	}
	lk, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("netlab: %s/%s: %w", ns, name, err)
	}
	if up {
		err = h.LinkSetUp(lk)
	} else {
		err = h.LinkSetDown(lk)
	}
	if err != nil {
		return fmt.Errorf("netlab: %s/%s up=%t: %w", ns, name, up, err)
	}
	return nil
}

// SetLinkUp sets link name in ns administratively up.
func (l *Lab) SetLinkUp(ns Namespace, name string) error { return l.setLink(ns, name, true) }

// SetLinkDown sets link name in ns administratively down (the peer loses
// carrier).
func (l *Lab) SetLinkDown(ns Namespace, name string) error { return l.setLink(ns, name, false) }

// FlushNeigh deletes the dynamic neighbour (ARP and NDP) entries on link in
// ns, as `ip neigh flush dev link` does; permanent and NOARP entries stay.
// It returns how many entries it deleted.
func (l *Lab) FlushNeigh(ns Namespace, link string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, err := l.handle(ns)
	if err != nil {
		return 0, err
	}
	lk, err := h.LinkByName(link)
	if err != nil {
		return 0, fmt.Errorf("netlab: %s/%s: %w", ns, link, err)
	}
	ns4, err := h.NeighList(lk.Attrs().Index, netlink.FAMILY_ALL)
	if err != nil {
		return 0, fmt.Errorf("netlab: %s/%s neighbours: %w", ns, link, err)
	}
	n := 0
	for i := range ns4 {
		e := &ns4[i]
		if e.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
			continue
		}
		if err := h.NeighDel(e); err != nil && !errors.Is(err, unix.ENOENT) {
			return n, fmt.Errorf("netlab: %s/%s delete neighbour %v: %w", ns, link, e.IP, err)
		}
		n++
	}
	return n, nil
}

// Close deletes the lab's namespaces and closes its handles. It is
// idempotent and safe to call on a partly built lab; it attempts every
// deletion and returns the errors joined.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		var errs []error
		for r := Srv; r <= Router; r++ {
			if h := l.handles[r]; h != nil {
				h.Close()
				l.handles[r] = nil
			}
			if h := l.ns[r]; h != 0 {
				if err := h.Close(); err != nil {
					errs = append(errs, fmt.Errorf("close %v handle: %w", r, err))
				}
				l.ns[r] = 0
				if err := deleteNamed(l.NamespaceName(r)); err != nil {
					errs = append(errs, fmt.Errorf("delete namespace %s: %w", l.NamespaceName(r), err))
				}
			}
		}
		if len(errs) > 0 {
			l.closeErr = fmt.Errorf("netlab: close lab %s: %w", l.ID, errors.Join(errs...))
		}
	})
	return l.closeErr
}

// deleteNamed unmounts and removes a named namespace; one already gone is
// not an error.
func deleteNamed(name string) error {
	p := filepath.Join(netnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return os.NewSyscallError("umount", err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// namedExists reports whether the named namespace is mounted.
func namedExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}
