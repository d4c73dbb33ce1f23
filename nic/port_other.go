//go:build !linux

package nic

import (
	"fmt"
	"runtime"
)

// OpenPacketPort is implemented on Linux only.
func OpenPacketPort(ifname string, cfg *PortConfig) (Port, error) {
	return nil, fmt.Errorf("open packet port %s: not implemented on %s", ifname, runtime.GOOS)
}
