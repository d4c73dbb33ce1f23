//go:build linux

package procfreeze

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// diagEntry is what sock_diag says of one TCP socket.
type diagEntry struct {
	state         uint8
	local, remote netip.AddrPort
	rq, wq        uint32
}

// Sockets lists every socket fd of the frozen process (every process of
// its cgroup; a socket shared by several is listed once) and takes a
// duplicate of each ESTABLISHED TCP socket. One that is not idle —
// sock_diag's queues not empty, or idle (when not nil; host.Idle checks
// unsent, unacked segments and unread exactly) failing — carries ErrBusy
// beside its duplicate (it cannot be offloaded, but the host still keeps
// it alive on software and has its NIC hold its frames). The others carry
// Err and no duplicate.
//
// The Sockets stay open until their Close, Thaw or Close of the Process.
func (p *Process) Sockets(idle func(*net.TCPConn) error) ([]*Socket, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if !p.frozen {
		return nil, fmt.Errorf("procfreeze: sockets of %d: %w", p.pid, ErrNotFrozen)
	}
	pids, err := p.procs()
	if err != nil {
		return nil, fmt.Errorf("procfreeze: sockets of %d: %w", p.pid, err)
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("procfreeze: sockets of %d: %w", p.pid, ErrExited)
	}
	var out []*Socket
	seen := map[uint64]bool{}
	diags := map[string]map[uint64]diagEntry{} // by netns identity
	for _, pid := range pids {
		fds, err := socketFDs(pid)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("procfreeze: sockets of %d: %w", pid, err)
		}
		if len(fds) == 0 {
			continue
		}
		diag, err := diagFor(pid, diags)
		if err != nil {
			return nil, fmt.Errorf("procfreeze: sockets of %d: %w", pid, err)
		}
		for _, f := range fds {
			if seen[f.inode] {
				continue
			}
			seen[f.inode] = true
			s := &Socket{PID: pid, FD: f.fd, Inode: f.inode, p: p, closed: true}
			out = append(out, s)
			d, ok := diag[f.inode]
			if !ok {
				s.Err = ErrNotTCP
				continue
			}
			s.State, s.Local, s.Remote, s.RecvQ, s.SendQ = d.state, d.local, d.remote, d.rq, d.wq
			if d.state != TCPEstablished {
				s.Err = fmt.Errorf("%w: %s", ErrNotEstablished, TCPStateName(d.state))
				continue
			}
			if err := p.take(s, pid); err != nil {
				s.Err = err
				continue
			}
			switch {
			case d.rq != 0 || d.wq != 0:
				s.Err = fmt.Errorf("%w: %d bytes unread, %d unsent or unacknowledged", ErrBusy, d.rq, d.wq)
			case idle != nil:
				if err := idle(s.Conn); err != nil {
					s.Err = fmt.Errorf("%w: %w", ErrBusy, err)
				}
			}
		}
	}
	return out, nil
}

// take duplicates s's fd from pid and wraps it.
func (p *Process) take(s *Socket, pid int) error {
	pidfd := p.pidfd
	if pid != p.pid {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return fmt.Errorf("pidfd_open %d: %w", pid, os.NewSyscallError("pidfd_open", err))
		}
		defer unix.Close(fd)
		pidfd = fd
	}
	fd, err := unix.PidfdGetfd(pidfd, s.FD, 0)
	if err != nil {
		if err == unix.EPERM {
			return fmt.Errorf("pidfd_getfd %d fd %d needs CAP_SYS_PTRACE over the process: %w", pid, s.FD, os.NewSyscallError("pidfd_getfd", err))
		}
		return fmt.Errorf("pidfd_getfd %d fd %d: %w", pid, s.FD, os.NewSyscallError("pidfd_getfd", err))
	}
	// The fd number may have been reused for another socket between the
	// /proc read and now (the process is frozen, but another process of a
	// shared fd table is not ours to assume): check the inode.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != s.Inode {
		unix.Close(fd)
		return fmt.Errorf("pid %d fd %d: no longer socket:[%d]", pid, s.FD, s.Inode)
	}
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("pid %d fd %d: %w", pid, s.FD, os.NewSyscallError("fcntl F_GETFL", err))
	}
	f := os.NewFile(uintptr(fd), "socket:["+strconv.FormatUint(s.Inode, 10)+"]")
	c, err := net.FileConn(f) // dups again; closes nothing of ours
	f.Close()
	if err != nil {
		restoreFlags(fd, flags)
		return fmt.Errorf("pid %d fd %d: %w", pid, s.FD, err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return fmt.Errorf("pid %d fd %d: %w (a %T)", pid, s.FD, ErrNotTCP, c)
	}
	s.Conn, s.flags, s.closed = tc, flags, false
	if p.socks == nil {
		p.socks = map[*Socket]struct{}{}
	}
	p.socks[s] = struct{}{}
	return nil
}

func restoreFlags(fd, flags int) {
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags)
}

// Close restores the socket's file status flags and closes the duplicate;
// the process's socket stays open. It is idempotent.
func (s *Socket) Close() error {
	if s.p == nil {
		return nil
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return s.closeLocked()
}

func (s *Socket) closeLocked() error {
	if s.closed {
		return nil
	}
	s.closed = true
	delete(s.p.socks, s)
	var ferr error
	if raw, err := s.Conn.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			_, ferr = unix.FcntlInt(fd, unix.F_SETFL, s.flags)
		})
	}
	err := s.Conn.Close()
	if ferr != nil {
		return fmt.Errorf("procfreeze: restore flags of pid %d fd %d: %w", s.PID, s.FD, os.NewSyscallError("fcntl F_SETFL", ferr))
	}
	return err
}

func (p *Process) closeSocketsLocked() {
	for s := range p.socks {
		_ = s.closeLocked()
	}
}

type sockFD struct {
	fd    int
	inode uint64
}

// socketFDs lists pid's fds that are sockets, by fd number.
func socketFDs(pid int) ([]sockFD, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []sockFD
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := parseSocketLink(target); ok {
			out = append(out, sockFD{n, ino})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].fd < out[j].fd })
	return out, nil
}

// diagFor returns the TCP sockets of pid's network namespace by inode,
// dumping them once per namespace.
func diagFor(pid int, cache map[string]map[uint64]diagEntry) (map[uint64]diagEntry, error) {
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	id, err := os.Readlink(path)
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	if d, ok := cache[id]; ok {
		return d, nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag in %s: %w", id, err)
	}
	defer h.Close()
	d := map[uint64]diagEntry{}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		// A dump interrupted by a change in the table is retried: the
		// process is frozen, so its own sockets do not change.
		var socks []*netlink.Socket
		for try := 0; ; try++ {
			socks, err = h.SocketDiagTCP(fam)
			if err == nil || (errors.Is(err, netlink.ErrDumpInterrupted) && try < 5) {
				if err == nil {
					break
				}
				continue
			}
			return nil, fmt.Errorf("sock_diag tcp family %d: %w", fam, err)
		}
		for _, s := range socks {
			d[uint64(s.INode)] = diagEntry{
				state:  s.State,
				local:  addrPort(s.ID.Source, s.ID.SourcePort),
				remote: addrPort(s.ID.Destination, s.ID.DestinationPort),
				rq:     s.RQueue,
				wq:     s.WQueue,
			}
		}
	}
	cache[id] = d
	return d, nil
}

func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}
