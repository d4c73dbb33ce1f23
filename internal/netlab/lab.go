package netlab

import (
	"fmt"
	"net/netip"
)

// Namespace names one of a lab's network namespaces. The zero value is
// invalid.
type Namespace uint8

// The lab's namespaces.
const (
	_      Namespace = iota
	Srv              // the network side: the push server
	NIC              // the emulated adapter: no addresses
	Host             // the host runtime
	Router           // optional router between nic and srv
)

func (n Namespace) String() string {
	switch n {
	case Srv:
		return "srv"
	case NIC:
		return "nic"
	case Host:
		return "host"
	case Router:
		return "rtr"
	}
	return fmt.Sprintf("Namespace(%d)", uint8(n))
}

// Interface names inside the lab's namespaces. They are fixed because every
// namespace is private to its lab.
const (
	SrvLink       = "srv0"   // in Srv, the network's end of the wire
	WireLink      = "wire0"  // in NIC, the wire port
	HostPortLink  = "hport0" // in NIC, the host port
	HostLink      = "host0"  // in Host, the host's interface
	RouterNICLink = "rtr0"   // in Router, towards nic
	RouterSrvLink = "rtr1"   // in Router, towards srv
)

// DefaultMTU is the MTU of every veth when Options.MTU is 0.
const DefaultMTU = 1500

// Options configures a lab. The zero value is a three-namespace lab with
// 1500-byte MTU and the veths' offloads as Linux creates them (checksum
// offload, scatter-gather, TSO and GSO on).
type Options struct {
	// MTU of every veth, 68–65535; 0 means DefaultMTU.
	MTU int
	// Router puts a router namespace between nic and srv (see the package
	// doc for its addresses).
	Router bool
	// DisableOffloads turns TX checksum offload, scatter-gather, TSO, GSO
	// and GRO off on every veth, so packet sockets see only complete wire
	// frames (valid checksums, at most MTU bytes). Off by default: the lab
	// is what a user's links are.
	DisableOffloads bool
}

// Addresses of a lab. The zero netip.Addr means "not in this topology".
type Addresses struct {
	Srv4, Srv6   netip.Addr // srv0
	Host4, Host6 netip.Addr // host0
	// Gateway4/6 is the router's address on the host's side (Router only).
	Gateway4, Gateway6 netip.Addr
	// Bits of the prefixes the addresses above are configured with.
	Bits4, Bits6 int
}

var (
	srvDirect4  = netip.MustParseAddr("198.18.0.1")
	hostAddr4   = netip.MustParseAddr("198.18.0.2")
	srvDirect6  = netip.MustParseAddr("2001:2::1")
	hostAddr6   = netip.MustParseAddr("2001:2::2")
	rtrNear4    = netip.MustParseAddr("198.18.0.1")
	rtrNear6    = netip.MustParseAddr("2001:2::1")
	rtrFar4     = netip.MustParseAddr("198.18.1.1")
	rtrFar6     = netip.MustParseAddr("2001:2:0:1::1")
	srvRouted4  = netip.MustParseAddr("198.18.1.2")
	srvRouted6  = netip.MustParseAddr("2001:2:0:1::2")
	hostNet4    = netip.MustParsePrefix("198.18.0.0/24")
	hostNet6    = netip.MustParsePrefix("2001:2::/64")
	prefixBits4 = 24
	prefixBits6 = 64
)

func addressesFor(router bool) Addresses {
	a := Addresses{Host4: hostAddr4, Host6: hostAddr6, Bits4: prefixBits4, Bits6: prefixBits6}
	if router {
		a.Srv4, a.Srv6 = srvRouted4, srvRouted6
		a.Gateway4, a.Gateway6 = rtrNear4, rtrNear6
	} else {
		a.Srv4, a.Srv6 = srvDirect4, srvDirect6
	}
	return a
}

func (o *Options) mtu() (int, error) {
	if o == nil || o.MTU == 0 {
		return DefaultMTU, nil
	}
	if o.MTU < 68 || o.MTU > 65535 {
		return 0, fmt.Errorf("mtu %d out of range 68–65535", o.MTU)
	}
	return o.MTU, nil
}
