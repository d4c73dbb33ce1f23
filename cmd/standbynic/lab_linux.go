package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// execInNamespace replaces this process with argv, run in the network
// namespace mounted at path, as `ip netns exec` does: this thread enters
// the namespace, then a private mount namespace in which /sys is the
// namespace's own sysfs, then execve. It returns only on failure.
func execInNamespace(path string, argv []string) error {
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	if !filepath.IsAbs(bin) {
		if bin, err = filepath.Abs(bin); err != nil {
			return err
		}
	}
	runtime.LockOSThread() // never unlocked: the thread is replaced or the process exits
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		unix.Close(fd)
		return fmt.Errorf("enter %s: %w", path, os.NewSyscallError("setns", err))
	}
	unix.Close(fd)
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return os.NewSyscallError("unshare mount namespace", err)
	}
	if err := unix.Mount("", "/", "none", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return os.NewSyscallError("mount --make-rslave /", err)
	}
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		return os.NewSyscallError("umount /sys", err)
	}
	if err := unix.Mount(filepath.Base(path), "/sys", "sysfs", 0, ""); err != nil {
		return os.NewSyscallError("mount sysfs on /sys", err)
	}
	return fmt.Errorf("exec %s: %w", bin, syscall.Exec(bin, argv, os.Environ()))
}
