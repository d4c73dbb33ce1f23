// Command standbynic runs the connected-standby NIC emulator: the demo, and the
// daemons it is made of (the NIC, the host, the push server). See docs/cli.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0 // done, or help asked for
	exitFailure = 1 // a runtime failure: a link, a socket, a peer
	exitUsage   = 2 // bad command line or configuration
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Stdout, os.Stderr, os.Args[1:])
	stop()
	os.Exit(code)
}

// commands lists the subcommands for the top-level usage, in order.
var commands = []struct{ name, summary string }{
	{"demo", "build a lab, run a scripted standby scenario, print a timeline and a summary"},
	{"nic", "run the emulated NIC on two existing interfaces, with its control socket"},
	{"host", "run the host runtime: apps and channels from a config file, through a NIC"},
	{"push-server", "run the reference push server (TCP and WebSocket channels, HTTP API)"},
	{"lab", "build a lab (srv | nic | host namespaces) for the daemons, print their command lines; down, status, exec"},
	{"bench", "measure standbynic beside what it replaces and write a report folder"},
	{"fleet", "run many sleeping devices against a real MQTT broker (one shard), or merge shard reports"},
	{"version", "print the version"},
}

// run is the whole program: it dispatches args[0] to a subcommand and
// returns the exit code. ctx ends on SIGINT/SIGTERM.
func run(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "demo":
		return runDemo(ctx, stdout, stderr, args[1:])
	case "lab":
		return runLab(ctx, stdout, stderr, args[1:])
	case "bench":
		return runBench(ctx, stdout, stderr, args[1:])
	case "nic":
		return runNIC(ctx, stdout, stderr, args[1:])
	case "host":
		return runHost(ctx, stdout, stderr, args[1:])
	case "push-server":
		return runPushServer(ctx, stdout, stderr, args[1:])
	case "fleet":
		return runFleet(ctx, stdout, stderr, args[1:])
	case "version":
		return runVersion(stdout, stderr, args[1:])
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "standbynic: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, "usage: standbynic <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'standbynic <command> -h' for a command's flags, their units and defaults.\n")
	fmt.Fprint(w, "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.\n")
}

func runVersion(stdout, stderr io.Writer, args []string) int {
	fs := newFlagSet("version", stderr, "", "Print the module version, the Go version and the VCS revision.")
	if code, done := parse(fs, args); done {
		return code
	}
	fmt.Fprintln(stdout, versionString())
	return exitOK
}

// versionString returns "standbynic <module version> <go version> [<vcs
// revision>[-dirty]]" from the build info.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "standbynic (devel)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	s := "standbynic " + v + " " + bi.GoVersion
	var rev, dirty string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " " + rev + dirty
	}
	return s
}
