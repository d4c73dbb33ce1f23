package nic

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/standbynic/standbynic/nic/xdp"
)

var _ xdpAttacher = (*packetPort)(nil)

// attachXDP attaches prog to the port's link in the network namespace of
// the port's socket (SIOCGSKNS), which need not be the caller's: the
// attach runs on a thread of its own switched into that namespace.
func (p *packetPort) attachXDP(prog *xdp.Program) error {
	p.smu.Lock()
	if p.closed.Load() {
		p.smu.Unlock()
		return fmt.Errorf("attach xdp to %s: %w", p.name, os.ErrClosed)
	}
	nsfd, err := unix.IoctlRetInt(p.fd, unix.SIOCGSKNS)
	p.smu.Unlock()
	if err != nil {
		return fmt.Errorf("attach xdp to %s: %w (%w)", p.name, xdp.ErrUnsupported, os.NewSyscallError("ioctl SIOCGSKNS", err))
	}
	defer unix.Close(nsfd)
	done := make(chan error, 1)
	go func() { // owned here: it ends before attachXDP returns
		runtime.LockOSThread()
		done <- attachInNetns(nsfd, p.ifindex, prog)
	}()
	if err := <-done; err != nil {
		return fmt.Errorf("attach xdp to %s: %w", p.name, err)
	}
	return nil
}

// attachInNetns runs on a locked thread: it enters nsfd, attaches and
// goes back. A thread that cannot go back stays locked and dies with its
// goroutine.
func attachInNetns(nsfd, ifindex int, prog *xdp.Program) error {
	cur, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("open netns", err)
	}
	defer unix.Close(cur)
	if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%w (%w)", xdp.ErrUnsupported, os.NewSyscallError("setns", err))
	}
	err = prog.Attach(ifindex)
	if unix.Setns(cur, unix.CLONE_NEWNET) == nil {
		runtime.UnlockOSThread()
	}
	return err
}
