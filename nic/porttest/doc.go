// Package porttest provides an in-memory pipe implementation of nic.Port
// for unit tests, and TestPort, the contract suite every nic.Port must
// pass, so the same test runs on a fake port or on a veth pair.
//
// The pipe mirrors the AF_PACKET port on a veth pair: a bounded receive
// queue per end (frames that do not fit are dropped and counted in
// RxDropped, as the kernel counts ring overflows), the classic-BPF filter
// run by golang.org/x/net/bpf's VM on the frame with its outermost VLAN tag
// removed (as the kernel shows it to packet sockets; the VM knows no
// ancillary loads except the length, so a program using SKF_AD_VLAN_TAG is
// refused by SetFilter), frames the sender wrote never returned to it, and
// frames written while the peer is closed lost silently, like a veth whose
// peer is down. It starts no goroutine.
//
// The package is used from tests only, but its non-test files do not import
// "testing" (the architecture forbids it for product packages): TestPort
// is generic over the few *testing.T methods it calls.
package porttest
