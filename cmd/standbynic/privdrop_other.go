//go:build !linux

package main

import (
	"errors"
	"log/slog"
	"runtime"
)

// dropCapabilities is Linux-only: capabilities are a Linux concept.
func dropCapabilities(*slog.Logger, int) error {
	return errors.New("drop capabilities: not implemented on " + runtime.GOOS)
}
