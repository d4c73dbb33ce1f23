package procfreeze

import (
	"fmt"
	"net"
	"net/netip"
)

// TCP states as sock_diag reports them (include/net/tcp_states.h).
const (
	TCPEstablished = 1
	TCPListen      = 10
)

var tcpStateNames = [...]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
	12: "NEW_SYN_RECV", 13: "BOUND_INACTIVE",
}

// TCPStateName names a sock_diag TCP state.
func TCPStateName(s uint8) string {
	if int(s) < len(tcpStateNames) && tcpStateNames[s] != "" {
		return tcpStateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// Socket is one socket fd of a frozen process, as Process.Sockets found
// it. Conn is standbynic's duplicate of the process's fd
// (pidfd_getfd): the same kernel socket, so TCP_REPAIR set or cleared
// through it is set or cleared for the app, and bytes put into its queues
// are the app's. The process's own fd is never touched.
//
// The duplicate shares the process's open file description, and Go makes
// it non-blocking: Close (and Process.Thaw, which closes every Socket)
// puts the original file status flags back before the app runs again.
type Socket struct {
	PID   int    // the process holding it
	FD    int    // its fd number in that process
	Inode uint64 // the socket's inode (socket:[N])

	// From sock_diag (zero when not a TCP socket of the process's
	// network namespace).
	State         uint8 // TCPEstablished, TCPListen …
	Local, Remote netip.AddrPort
	RecvQ, SendQ  uint32 // unread; unsent + unacknowledged (bytes)

	// Conn is the duplicate: set for every ESTABLISHED TCP socket it
	// could take, busy ones included.
	Conn *net.TCPConn
	// Err says why the connection cannot be offloaded: ErrBusy (wrapping
	// the idle check's error; Conn is set), ErrNotTCP, ErrNotEstablished,
	// or the error taking it (pidfd_getfd needs CAP_SYS_PTRACE over the
	// process), these three without Conn.
	Err error

	p      *Process
	flags  int
	closed bool
}

func (s *Socket) String() string {
	st := "not tcp"
	if s.State != 0 {
		st = fmt.Sprintf("%v %v→%v recv-q %d send-q %d", TCPStateName(s.State), s.Local, s.Remote, s.RecvQ, s.SendQ)
	}
	if s.Err != nil {
		return fmt.Sprintf("pid %d fd %d socket:[%d] %s: %v", s.PID, s.FD, s.Inode, st, s.Err)
	}
	return fmt.Sprintf("pid %d fd %d socket:[%d] %s", s.PID, s.FD, s.Inode, st)
}
