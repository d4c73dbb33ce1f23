//go:build linux

package host

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// skipAbsorbed reads off, through the duplicate, exactly the absorbed
// bytes the hand-back put at the head of the receive queue (the socket was
// idle when frozen, so nothing is before them), checking they are them.
func (g *guardTransport) skipAbsorbed() (int, error) {
	g.mu.Lock()
	want := g.absorbed
	g.absorbed = nil
	g.mu.Unlock()
	if len(want) == 0 || g.s.Conn == nil {
		return 0, nil
	}
	raw, err := g.s.Conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	buf := make([]byte, len(want))
	got := 0
	var rerr error
	deadline := time.Now().Add(time.Second)
	for got < len(want) && rerr == nil {
		cerr := raw.Control(func(fd uintptr) {
			n, _, err := unix.Recvfrom(int(fd), buf[got:], unix.MSG_DONTWAIT)
			switch {
			case err == unix.EAGAIN || err == unix.EINTR:
				if time.Now().After(deadline) {
					rerr = fmt.Errorf("skip absorbed: %d of %d bytes in the queue", got, len(want))
				}
			case err != nil:
				rerr = fmt.Errorf("skip absorbed: %w", err)
			case n == 0:
				rerr = errors.New("skip absorbed: end of stream")
			default:
				got += n
			}
		})
		if cerr != nil {
			return got, cerr
		}
	}
	if rerr != nil {
		return got, rerr
	}
	if string(buf) != string(want) {
		return got, fmt.Errorf("skip absorbed: the queue held %x, the NIC absorbed %x", buf, want)
	}
	return got, nil
}

// userTimeout reads conn's TCP_USER_TIMEOUT.
func userTimeout(conn *net.TCPConn) (time.Duration, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var ms int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		ms, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil {
		return 0, err
	}
	return time.Duration(ms) * time.Millisecond, gerr
}
