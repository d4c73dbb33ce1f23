package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/standbynic/standbynic/internal/netlab"
)

// Exit codes of Launch.
const (
	ExitOK     = 0 // every push delivered
	ExitFailed = 1 // a push lost, a missing privilege, a runtime failure
	// ExitInterrupted: the context ended (SIGINT or SIGTERM, Ctrl-C)
	// before the run was over; the partial summary was printed and the
	// lab removed. 130 is what a shell reports for a program Ctrl-C
	// killed (128 + SIGINT).
	ExitInterrupted = 130
)

// childEnv marks the process Launch re-executed inside a new user
// namespace.
const childEnv = "STANDBYNIC_DEMO_USERNS"

// Launch runs the demo the way the command does, and returns the exit
// code. As root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW) it runs the
// demo in this process. Without those privileges it re-executes this
// program with argv (the arguments that lead back here, e.g. "demo",
// "--duration", "20s") inside a new user, mount and network namespace,
// where it is root over namespaces it creates; when the kernel refuses
// that, it says which privileges are missing and returns ExitFailed.
//
// Launch is the one layer that prefixes errors with "standbynic demo: ";
// Run's errors carry no prefix of their own.
func Launch(ctx context.Context, opts Options, argv []string, stdout, stderr io.Writer) int {
	if err := opts.Validate(); err != nil {
		fmt.Fprintf(stderr, "standbynic demo: %v\n", err)
		return ExitFailed
	}
	child := os.Getenv(childEnv) != ""
	if child {
		if err := enterUserNamespace(); err != nil {
			fmt.Fprintf(stderr, "standbynic demo: inside the user namespace: %v\n", err)
			return ExitFailed
		}
	}
	err := netlab.Privileged()
	switch {
	case err == nil:
	case errors.Is(err, os.ErrPermission) && !child:
		code, rerr := reexecInUserNamespace(ctx, argv, stdout, stderr)
		if rerr == nil {
			return code
		}
		fmt.Fprintf(stderr, "standbynic demo: %s\n", missingPrivileges(err, rerr))
		return ExitFailed
	case errors.Is(err, os.ErrPermission):
		fmt.Fprintf(stderr, "standbynic demo: %s\n", missingPrivileges(err, errors.New("already inside a user namespace the kernel gave no capabilities to")))
		return ExitFailed
	default:
		fmt.Fprintf(stderr, "standbynic demo: cannot build the lab: %v\n", err)
		return ExitFailed
	}
	if child {
		fmt.Fprintf(stdout, "running inside a new user+network namespace (unprivileged user)\n")
	}
	sum, err := Run(ctx, opts, stdout)
	if errors.Is(err, ErrInterrupted) {
		fmt.Fprintf(stderr, "standbynic demo: %v\n", err)
		if sum.OutDir != "" {
			fmt.Fprintf(stdout, "captures (up to the interruption) written to %s\n", sum.OutDir)
		}
		return ExitInterrupted
	}
	if err != nil {
		fmt.Fprintf(stderr, "standbynic demo: %v\n", err)
		return ExitFailed
	}
	fmt.Fprintf(stdout, "captures written to %s\n", sum.OutDir)
	return ExitOK
}

// Capability bits (linux/capability.h).
const (
	capNetAdmin = 12
	capNetRaw   = 13
	capSysAdmin = 21
)

// missingPrivileges says which capabilities the process lacks and why
// the user-namespace route did not work.
func missingPrivileges(probe, userns error) string {
	var missing []string
	eff, ok := effectiveCaps()
	for _, c := range []struct {
		bit  uint
		name string
	}{{capNetAdmin, "CAP_NET_ADMIN"}, {capNetRaw, "CAP_NET_RAW"}, {capSysAdmin, "CAP_SYS_ADMIN"}} {
		if !ok || eff&(1<<c.bit) == 0 {
			missing = append(missing, c.name)
		}
	}
	if len(missing) == 0 {
		missing = []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}
	}
	return fmt.Sprintf("missing privilege %s (network namespaces, veth pairs and packet sockets need CAP_NET_ADMIN and CAP_NET_RAW; "+
		"creating the namespaces needs CAP_SYS_ADMIN): %v; "+
		"running unprivileged inside a new user namespace failed too: %v; "+
		"run it as root (sudo), or allow unprivileged user namespaces "+
		"(sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0)",
		strings.Join(missing, ", "), probe, userns)
}
