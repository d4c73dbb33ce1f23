//go:build linux

package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted.
const netnsDir = "/run/netns"

// reexecInUserNamespace runs this program again with argv in a new user,
// mount and network namespace, the caller's uid and gid mapped to root.
// It returns the child's exit code, or an error when the child could not
// be started (the kernel refused the namespaces).
func reexecInUserNamespace(ctx context.Context, argv []string, stdout, stderr io.Writer) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, argv...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWNET,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
		Pdeathsig:                  syscall.SIGKILL,
	}
	// On cancellation the child tears its lab down like an interrupted
	// run does.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		switch {
		case errors.Is(err, unix.ENOSPC):
			err = fmt.Errorf("%w (the user namespace limit user.max_user_namespaces is reached or 0)", err)
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			err = fmt.Errorf("%w (the kernel forbids unprivileged user namespaces)", err)
		}
		return 0, fmt.Errorf("new user namespace: %w", err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return ExitFailed, nil
	}
	return 0, nil
}

// enterUserNamespace prepares the re-executed child: its mount namespace
// is made private, and a fresh tmpfs is mounted where named network
// namespaces live, since the host's /run/netns belongs to the real root.
func enterUserNamespace() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", os.NewSyscallError("mount", err))
	}
	target := netnsDir
	if _, err := os.Stat(netnsDir); err != nil {
		target = "/run" // cannot create /run/netns on the host's /run
	}
	if err := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", target, os.NewSyscallError("mount", err))
	}
	return nil
}

// effectiveCaps returns the process's effective capability set, read
// from /proc/self/status.
func effectiveCaps() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n, err == nil
		}
	}
	return 0, false
}
