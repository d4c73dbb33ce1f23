package host

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout sets TCP_USER_TIMEOUT on conn: the kernel aborts the
// connection (ETIMEDOUT on the next read) when bytes it sent stay
// unacknowledged for d (tcp_retransmit_timer, tcp_write_timeout), the
// host's own keep-alives included.
func setUserTimeout(conn *net.TCPConn, d time.Duration) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	ms := int(min(d.Milliseconds(), 1<<31-1))
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)
	}); err != nil {
		return err
	}
	return serr
}
