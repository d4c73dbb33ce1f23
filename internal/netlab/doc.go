// Package netlab builds the lab topology of standbynic — network namespaces
// joined by veth pairs with addresses from 198.18.0.0/15 — and tears it
// down. It also gates privileged tests. Product packages must not import it
// (internal/archtest enforces this); their _test.go files may.
//
// # Topology
//
//	netns srv               netns nic (no IP, IPv6 off)              netns host
//	srv0 198.18.0.1/24 ──veth── wire0        hport0 ──veth── host0 198.18.0.2/24
//	     2001:2::1/64                                              2001:2::2/64
//
// With Options.Router a router namespace sits between nic and srv:
//
//	nic wire0 ──veth── rtr0 198.18.0.1/24 [rtr] rtr1 198.18.1.1/24 ──veth── srv0 198.18.1.2/24
//	                        2001:2::1/64          2001:2:0:1::1/64                2001:2:0:1::2/64
//
// and host0 routes everything through 198.18.0.1 / 2001:2::1, srv0 routes
// 198.18.0.0/24 and 2001:2::/64 back through rtr1. The router forwards
// (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding) without translation.
//
// Namespaces are named "sbn-<8 hex>-<role>" and bind-mounted under
// /var/run/netns (so `ip netns exec sbn-…-srv …` works while debugging).
// Every veth is created from a netlink handle bound to one of the lab's own
// namespaces, with the peer placed directly into its target namespace
// (IFLA_NET_NS_FD): the interfaces never exist in the root namespace, so
// their fixed names (srv0, wire0, hport0, host0, rtr0, rtr1) cannot collide
// between parallel labs and the root namespace's links, addresses and routes
// are never touched. Global IPv6 addresses carry IFA_F_NODAD and
// accept_dad is 0 in srv, host and rtr, so addresses work at once. The nic
// namespace has IPv6 disabled: the bump in the wire sends nothing of its own.
//
// The veths keep the offloads Linux gives them (TX checksum offload,
// scatter-gather, TSO, GSO on), as a user's links do: a packet socket in
// the nic namespace reads GSO super-frames of up to 64 KB with partial
// checksums, which nic's ports carry with their virtio_net_hdr. With
// Options.DisableOffloads, TX checksum offload, scatter-gather, TSO, GSO
// and GRO are turned off on every veth, so every frame is a complete wire
// frame (valid checksums, at most MTU bytes).
//
// # NAT
//
// The router namespace routes; Lab.Masquerade makes it a NAT: an nftables
// table (inet standbynic_nat) masquerading everything that leaves rtr1,
// with the router namespace's own conntrack TCP established-timeout (the
// "NAT drops idle flows" scenario; the root namespace's value is
// untouched). Tests that need a silent middlebox can also use SetLinkDown
// on rtr1.
//
// # Named labs
//
// NewNamed builds a lab whose namespaces (sbn-NAME-role in /run/netns)
// outlive the process; OpenNamed finds it again, Release lets go of it
// without removing it, DeleteNamed ends the processes inside and removes
// it. `standbynic lab` is built on them.
//
// # Lifecycle
//
// New builds everything or nothing: a failure at any step removes what was
// built. Close is idempotent, deletes the named namespaces and closes the
// lab's handles; the kernel then destroys each namespace (and its veths) once
// the last socket created inside it is closed. NewForTest registers Close
// with t.Cleanup, so teardown runs when a test fails.
//
// # Threads
//
// Do runs a function on a fresh goroutine locked to its OS thread, switched
// into the namespace; the thread is switched back and unlocked afterwards,
// or discarded by the runtime if switching back fails. The calling
// goroutine's thread never changes namespace. Sockets created inside fn stay
// in the namespace after Do returns.
package netlab
