//go:build linux

package netlab

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// probe performs what New and a packet port do with the least state: it
// creates a named namespace, opens an AF_PACKET socket inside it, and
// deletes the namespace.
func probe() error {
	id, err := newID()
	if err != nil {
		return err
	}
	l := &Lab{ID: id}
	defer l.Close()
	if err := l.createNS(Srv); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	err = l.Do(Srv, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socket AF_PACKET", err)
		}
		return unix.Close(fd)
	})
	if err != nil {
		return err
	}
	return l.Close()
}
