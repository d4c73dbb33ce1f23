//go:build !linux

package host

import (
	"errors"
	"net"
	"time"
)

func (g *guardTransport) skipAbsorbed() (int, error) {
	return 0, errors.New("not implemented on this GOOS")
}

func userTimeout(*net.TCPConn) (time.Duration, error) {
	return 0, errors.New("not implemented on this GOOS")
}
