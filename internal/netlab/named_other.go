//go:build !linux

package netlab

import (
	"context"
	"time"
)

// NewNamed returns an error: labs need Linux.
func NewNamed(ctx context.Context, name string, opts *Options) (*Lab, error) {
	return nil, errUnsupported
}

// OpenNamed returns an error: labs need Linux.
func OpenNamed(name string) (*Lab, error) { return nil, errUnsupported }

// Release does nothing.
func (l *Lab) Release() {}

// NamedNamespacePath returns "".
func NamedNamespacePath(name string, r Namespace) string { return "" }

// NamedExists reports false.
func NamedExists(name string) bool { return false }

// NamespacePIDs returns an error: labs need Linux.
func NamespacePIDs(path string) ([]int, error) { return nil, errUnsupported }

// DeleteNamed returns an error: labs need Linux.
func DeleteNamed(ctx context.Context, name string, grace time.Duration) ([]int, error) {
	return nil, errUnsupported
}

// Masquerade returns an error: labs need Linux.
func (l *Lab) Masquerade(established time.Duration) error { return errUnsupported }

// NATTimeout returns an error: labs need Linux.
func (l *Lab) NATTimeout() (time.Duration, error) { return 0, errUnsupported }
