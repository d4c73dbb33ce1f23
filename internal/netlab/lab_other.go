//go:build !linux

package netlab

import (
	"context"
	"fmt"
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
