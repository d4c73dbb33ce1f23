package main

import (
	"context"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/standbynic/standbynic/internal/demo"
	"github.com/standbynic/standbynic/profile"
	"github.com/standbynic/standbynic/slotmgr"
)

// runDemo is `standbynic demo`: flags only; internal/demo does the rest.
func runDemo(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	fs := newFlagSet("demo", stderr, "[flags]",
		`Build a lab of three network namespaces (push server | emulated NIC | host),
start six sample apps (voip, chat, social over WebSocket; mail, news, weather over
TCP) that all ask for a hardware keep-alive slot, put the host to sleep and play a
scripted scenario: keep-alives, server Pings, pushes on hardware and software
channels, one server reset. Prints a live timeline and a summary table, and writes
wire.pcap (every frame the NIC saw on the wire) and wake.pcap (the saved wake
packets) to the output folder.

As root it builds the lab itself; as a normal user it re-runs itself inside a new
user+network namespace when the kernel allows unprivileged user namespaces, and
otherwise names the missing capabilities (CAP_NET_ADMIN, CAP_NET_RAW,
CAP_SYS_ADMIN).

Ctrl-C (SIGINT) or SIGTERM stops the scenario where it is: the summary of the run
so far is printed (pushes delivered, and pending: not delivered yet), the lab is
removed, and the demo exits 130.

Exit codes: 0 every push delivered, 1 a push lost or a failure, 2 bad flags,
130 interrupted (SIGINT or SIGTERM; partial summary printed).`)
	dur := newDurationFlag(fs, "duration", demo.DefaultDuration, demo.MinDuration, demo.MaxDuration, false,
		"length of the scripted scenario while the host sleeps (setup and a final drain of up to 15s come on top)")
	slots := newIntFlag(fs, "slots", demo.DefaultSlots, 1, slotmgr.MaxHardwareSlots, "hardware keep-alive slots of the NIC (the apps open 6 channels)")
	seed := fs.Uint64("seed", demo.DefaultSeed, "seed of the scenario's random times and of the wire's fault injection (0 means 1)")
	loss := newProbFlag(fs, "loss", "probability that the wire drops a frame, each direction, at most 0.2")
	out := fs.String("out", "", "output folder `DIR` for the pcap files, created if missing (default ./standbynic-demo-<timestamp>)")
	quiet := fs.Bool("quiet", false, "omit the live timeline; print the summary only")
	prof := fs.String("profile", "", "firmware `PROFILE` the NIC runs ("+strings.Join(profile.Names(), ", ")+"; default generic), its times divided by 10 like the demo's intervals; its slot count unless --slots is given (docs/profiles.md)")
	if code, done := parse(fs, args); done {
		return code
	}
	opts := demo.Options{Duration: *dur, Slots: *slots, Seed: *seed, Loss: *loss, OutDir: *out, Quiet: *quiet, Profile: *prof}
	if *prof != "" && !flagSet(fs, "slots") {
		opts.Slots = 0 // the profile's
	}
	if err := opts.Validate(); err != nil {
		return usageError(fs, "%v", err)
	}
	// `standbynic demo | head` must not kill the demo on its next line
	// (SIGPIPE) with its namespaces and veths still up: the timeline's
	// writes fail instead, and the run ends and cleans up as usual.
	signal.Ignore(syscall.SIGPIPE)
	argv := append([]string{"demo"}, args...)
	if opts.OutDir == "" {
		// A re-run in a user namespace writes to the same folder.
		opts.OutDir = demo.DefaultOutDir(time.Now())
		argv = append(argv, "--out", opts.OutDir)
	}
	return demo.Launch(ctx, opts, argv, stdout, stderr)
}
