//go:build !linux

package demo

import (
	"context"
	"errors"
	"io"
	"runtime"
)

var errNotLinux = errors.New("not implemented on " + runtime.GOOS + ": the demo needs Linux network namespaces")

func reexecInUserNamespace(ctx context.Context, argv []string, stdout, stderr io.Writer) (int, error) {
	return 0, errNotLinux
}

func enterUserNamespace() error { return errNotLinux }

func effectiveCaps() (uint64, bool) { return 0, false }
