package netlab

import (
	"context"
	"errors"
	"os"
	"sync"
)

// TB is the part of testing.TB the test helpers below use. It is declared
// here so that netlab, which the standbynic binary links for `standbynic
// lab`, does not import package testing; a *testing.T or *testing.B
// satisfies it.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
}

var (
	privOnce sync.Once
	privErr  error
)

// Privileged reports whether this process can build labs: it creates a
// named namespace, opens a packet socket inside it and deletes it. The
// result is computed once. A permission failure satisfies
// errors.Is(err, os.ErrPermission).
func Privileged() error {
	privOnce.Do(func() { privErr = probe() })
	return privErr
}

// RequirePrivileges skips t when the process lacks the capabilities a lab
// needs (CAP_SYS_ADMIN for namespaces, CAP_NET_ADMIN, CAP_NET_RAW), and
// fails it on any other error from the probe.
func RequirePrivileges(t TB) {
	t.Helper()
	err := Privileged()
	switch {
	case err == nil:
	case errors.Is(err, os.ErrPermission):
		t.Skipf("netlab: needs CAP_NET_ADMIN and CAP_NET_RAW (and CAP_SYS_ADMIN for network namespaces): %v", err)
	default:
		t.Fatalf("netlab: privilege probe: %v", err)
	}
}

// NewForTest gates t with RequirePrivileges, builds a lab and registers its
// Close with t.Cleanup (it runs when the test fails too).
func NewForTest(t TB, opts *Options) *Lab {
	t.Helper()
	RequirePrivileges(t)
	l, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("netlab: %v", err)
		}
	})
	return l
}
