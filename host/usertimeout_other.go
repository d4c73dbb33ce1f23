//go:build !linux

package host

import (
	"net"
	"time"
)

// setUserTimeout is a no-op where TCP_USER_TIMEOUT is not supported: a
// dead peer of a channel the host keeps alive itself is then found only
// when the kernel gives up retransmitting.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }
