//go:build !linux

package nic

import (
	"fmt"
	"net"
	"runtime"
)

// peerCred is not implemented off Linux: every connection then has
// unknown credentials and may use only the public endpoints.
func peerCred(net.Conn) (*Cred, error) {
	return nil, fmt.Errorf("peer credentials: not implemented on %s", runtime.GOOS)
}
