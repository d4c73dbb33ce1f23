//go:build !linux

package host

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
)

var errRepairUnsupported = fmt.Errorf("tcp repair not implemented on %s: %w", runtime.GOOS, errors.ErrUnsupported)

func repairIdle(syscall.RawConn) error { return errRepairUnsupported }

func repairFreeze(syscall.RawConn) (TCPState, bool, error) {
	return TCPState{}, false, errRepairUnsupported
}

func repairThaw(syscall.RawConn, bool, []byte, []byte) error { return errRepairUnsupported }

func repairAbort(syscall.RawConn, bool) error { return errRepairUnsupported }
