//go:build !linux

package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
)

var errUnsupported = fmt.Errorf("netlab: not implemented on %s", runtime.GOOS)

// Lab is a running topology (Linux only).
type Lab struct {
	ID   string
	Addr Addresses
}

// New returns an error: labs need Linux network namespaces.
func New(ctx context.Context, opts *Options) (*Lab, error) { return nil, errUnsupported }

// Close does nothing.
func (l *Lab) Close() error { return nil }

func probe() error { return errUnsupported }

// The methods below exist so that code using a Lab builds everywhere; New
// never returns a Lab here, so they only report that labs need Linux.

// WaitLinkReady returns an error: labs need Linux.
func (l *Lab) WaitLinkReady(ctx context.Context, ns Namespace, link string) error {
	return errUnsupported
}

// Namespaces returns nil.
func (l *Lab) Namespaces() []Namespace { return nil }

// NamespaceName returns "".
func (l *Lab) NamespaceName(ns Namespace) string { return "" }

// NamespacePath returns "".
func (l *Lab) NamespacePath(ns Namespace) string { return "" }

// MTU returns 0.
func (l *Lab) MTU() int { return 0 }

// AddVeth returns an error: labs need Linux.
func (l *Lab) AddVeth(ns Namespace, name string, peerNS Namespace, peerName string) error {
	return errUnsupported
}

// Do returns an error: labs need Linux.
func (l *Lab) Do(ns Namespace, fn func() error) error { return errUnsupported }

// ListenTCP returns an error: labs need Linux.
func (l *Lab) ListenTCP(ns Namespace, addr string) (*net.TCPListener, error) {
	return nil, errUnsupported
}

// DialTCP returns an error: labs need Linux.
func (l *Lab) DialTCP(ctx context.Context, ns Namespace, addr string) (*net.TCPConn, error) {
	return nil, errUnsupported
}

// Interface returns an error: labs need Linux.
func (l *Lab) Interface(ns Namespace, name string) (*net.Interface, error) {
	return nil, errUnsupported
}

// Addrs returns an error: labs need Linux.
func (l *Lab) Addrs(ns Namespace, link string) ([]netip.Prefix, error) {
	return nil, errUnsupported
}

// Links returns an error: labs need Linux.
func (l *Lab) Links(ns Namespace) ([]string, error) { return nil, errUnsupported }

// SetLinkUp returns an error: labs need Linux.
func (l *Lab) SetLinkUp(ns Namespace, name string) error { return errUnsupported }

// SetLinkDown returns an error: labs need Linux.
func (l *Lab) SetLinkDown(ns Namespace, name string) error { return errUnsupported }

// FlushNeigh returns an error: labs need Linux.
func (l *Lab) FlushNeigh(ns Namespace, link string) (int, error) { return 0, errUnsupported }
