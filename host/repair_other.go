//go:build !linux

package host

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
)

var errRepairUnsupported = fmt.Errorf("tcp repair not implemented on %s: %w", runtime.GOOS, errors.ErrUnsupported)

func idle(syscall.RawConn) error { return errRepairUnsupported }

func freeze(syscall.RawConn) (TCPState, bool, error) { return TCPState{}, false, errRepairUnsupported }

func thaw(syscall.RawConn, bool, []byte, []byte) error { return errRepairUnsupported }

func abort(syscall.RawConn, bool) error { return errRepairUnsupported }
