package nic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peerCred reads the credentials of the process at the other end of a
// Unix socket as the kernel recorded them at connect time: SO_PEERCRED
// (pid, uid, primary gid) and SO_PEERGROUPS (supplementary groups, Linux
// 4.13+; nil when the kernel does not report them).
func peerCred(c net.Conn) (*Cred, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("peer credentials: %T is not a socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *Cred
	var opErr error
	err = raw.Control(func(fd uintptr) {
		u, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			opErr = os.NewSyscallError("getsockopt SO_PEERCRED", err)
			return
		}
		cred = &Cred{PID: u.Pid, UID: u.Uid, GID: u.Gid}
		cred.Groups, _ = peerGroups(int(fd))
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	return cred, nil
}

// peerGroups reads SO_PEERGROUPS: an array of gid_t in host byte order.
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]byte, 64*4)
	for range 2 {
		l := uint32(len(buf))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
		switch {
		case errno == unix.ERANGE && int(l) > len(buf):
			buf = make([]byte, l)
			continue
		case errno != 0:
			return nil, os.NewSyscallError("getsockopt SO_PEERGROUPS", errno)
		}
		gs := make([]uint32, 0, l/4)
		for i := 0; i+4 <= int(l); i += 4 {
			gs = append(gs, binary.NativeEndian.Uint32(buf[i:]))
		}
		return gs, nil
	}
	return nil, errors.New("getsockopt SO_PEERGROUPS: group list keeps growing")
}
