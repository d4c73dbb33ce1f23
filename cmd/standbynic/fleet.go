package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/standbynic/standbynic/fleet"
)

// runFleet is `standbynic fleet`: many sleeping devices against a real
// MQTT broker (or the simulation), one shard of them, and its report;
// `standbynic fleet merge` adds shard reports up.
func runFleet(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	if len(args) > 0 && args[0] == "merge" {
		return runFleetMerge(stdout, stderr, args[1:])
	}
	fs := newFlagSet("fleet", stderr, "--broker ADDR:PORT | --sim  [--devices N] [--shard i/N] [--out DIR] [flags]",
		"Run N emulated sleeping devices (this shard's part of them) against a real MQTT 3.1.1\n"+
			"broker: each device a host power model with its own source address, its own NIC slots\n"+
			"and M channels (MQTT connections), drawn from a seeded distribution. Prints live\n"+
			"progress every second and writes report.md, report.json, latency.svg and timeline.svg.\n"+
			"Shards (--shard i/N, or --shard-count N with i from $JOB_COMPLETION_INDEX) split the\n"+
			"devices deterministically; 'standbynic fleet merge -out DIR shard*/report.json' adds\n"+
			"their reports up exactly. See docs/fleet.md.")
	def := fleet.DefaultBehaviour()
	devices := newIntFlag(fs, "devices", 100, 1, fleet.MaxDevices, "devices in the whole fleet (all shards)")
	shardS := fs.String("shard", "", "this process's shard i/N (default 0/1)")
	shardCount := newIntFlag(fs, "shard-count", 0, 0, fleet.MaxShards, "shards N, the index i from $JOB_COMPLETION_INDEX (Kubernetes Indexed Job); 0: use --shard")
	seed := fs.Uint64("seed", 1, "seed of the devices' behaviour")
	channels := newIntFlag(fs, "channels", def.Channels, 1, fleet.MaxChannels, "channels (MQTT connections) per device")
	kaMin := newDurationFlag(fs, "keepalive-min", def.KeepAliveMin, time.Second, time.Hour, false, "shortest keep-alive interval")
	kaMax := newDurationFlag(fs, "keepalive-max", def.KeepAliveMax, time.Second, time.Hour, false, "longest keep-alive interval")
	pushEvery := newDurationFlag(fs, "push-every", def.PushEvery, 100*time.Millisecond, 24*time.Hour, true, "mean time between pushes to a device")
	slots := fs.String("hw-slots", fmt.Sprintf("%d-%d", def.HardwareSlotsMin, def.HardwareSlotsMax), "NIC slots per device, uniform in MIN-MAX (0-0: all software)")
	maintEvery := newDurationFlag(fs, "maintenance-every", def.MaintenanceEvery, time.Second, 24*time.Hour, true, "Doze maintenance window period")
	maintFor := newDurationFlag(fs, "maintenance-for", def.MaintenanceFor, 0, time.Hour, false, "Doze maintenance window length")
	hold := newDurationFlag(fs, "wake-hold", def.WakeHold, 0, time.Hour, false, "time a device stays awake after a wake")
	duration := newDurationFlag(fs, "duration", time.Minute, time.Second, 168*time.Hour, false, "run time after every channel connected")
	broker := fs.String("broker", "", "MQTT broker address:port or name:port (plain TCP); with --protocol line the push server's stream listener")
	protocol := newChoiceFlag(fs, "protocol", fleet.ProtocolMQTT, []string{fleet.ProtocolMQTT, fleet.ProtocolLine}, "channel protocol: MQTT 3.1.1, or the reference push server's line stream")
	pushAPI := fs.String("push-api", "", "the push server's HTTP API address:port (--protocol line)")
	sources := fs.String("sources", "", "IPv4 prefix of the devices' source addresses: device i dials from prefix+1+i (e.g. 127.1.0.0/16); empty: the system's choice")
	sim := fs.Bool("sim", false, "simulate on a virtual clock, no network")
	workers := newIntFlag(fs, "connect-workers", 64, 1, 4096, "concurrent connects")
	timeout := newDurationFlag(fs, "timeout", 2*time.Minute, time.Second, time.Hour, false, "bound of the connect phase and of the final probe")
	out := fs.String("out", "fleet-report", "report folder; {shard} is replaced by the shard index")
	quiet := fs.Bool("quiet", false, "no live progress")
	if code, done := parse(fs, args); done {
		return code
	}
	cfg := &fleet.Config{Devices: *devices, Seed: *seed, Behaviour: def, Duration: *duration, Sim: *sim,
		ConnectWorkers: *workers, Timeout: *timeout}
	cfg.Channels, cfg.KeepAliveMin, cfg.KeepAliveMax, cfg.PushEvery = *channels, *kaMin, *kaMax, *pushEvery
	cfg.MaintenanceEvery, cfg.MaintenanceFor, cfg.WakeHold = *maintEvery, *maintFor, *hold
	lo, hi, ok := strings.Cut(*slots, "-")
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil {
		return usageError(fs, "--hw-slots %q: want MIN-MAX", *slots)
	}
	cfg.HardwareSlotsMin, cfg.HardwareSlotsMax = a, b
	switch {
	case *shardCount > 0 && *shardS != "":
		return usageError(fs, "--shard and --shard-count: give one")
	case *shardCount > 0:
		idx := os.Getenv("JOB_COMPLETION_INDEX")
		i, err := strconv.Atoi(idx)
		if err != nil {
			return usageError(fs, "--shard-count: $JOB_COMPLETION_INDEX %q is not an index", idx)
		}
		cfg.Shard = fleet.Shard{Index: i, Count: *shardCount}
	case *shardS != "":
		sh, err := fleet.ParseShard(*shardS)
		if err != nil {
			return usageError(fs, "--shard: %v", err)
		}
		cfg.Shard = sh
	}
	if *broker != "" {
		ap, err := netip.ParseAddrPort(*broker)
		if err != nil {
			// A name (a Kubernetes Service): resolved once, here.
			host, port, err2 := net.SplitHostPort(*broker)
			p, err3 := strconv.ParseUint(port, 10, 16)
			if err2 != nil || err3 != nil || p == 0 {
				return usageError(fs, "--broker %q: want address:port or name:port", *broker)
			}
			ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
			if err != nil || len(ips) == 0 {
				fmt.Fprintf(stderr, "standbynic fleet: --broker %q: %v\n", *broker, err)
				return exitFailure
			}
			ap = netip.AddrPortFrom(ips[0], uint16(p))
		}
		cfg.Broker = ap
	}
	cfg.Protocol = *protocol
	if *pushAPI != "" {
		ap, err := netip.ParseAddrPort(*pushAPI)
		if err != nil {
			return usageError(fs, "--push-api %q: want address:port", *pushAPI)
		}
		cfg.PushAPI = ap
	}
	if *sources != "" {
		p, err := netip.ParsePrefix(*sources)
		if err != nil {
			return usageError(fs, "--sources %q: want an IPv4 prefix", *sources)
		}
		cfg.Sources = p
	}
	if *out == "" {
		return usageError(fs, "--out: empty folder name")
	}
	dir := strings.ReplaceAll(*out, "{shard}", strconv.Itoa(cfg.Shard.Index))
	if !*quiet {
		cfg.Progress = func(p fleet.Progress) {
			fmt.Fprintf(stderr, "fleet %6.0fs  connected %d/%d  asleep %d/%d  wakes %d  pushes %d/%d  keep-alives nic %d host %d\n",
				p.Elapsed.Seconds(), p.Connected, p.Channels, p.Asleep, p.Devices, p.Wakes, p.Delivered, p.Published, p.KeepAlivesNIC, p.KeepAlivesHost)
		}
	}
	e, err := fleet.New(cfg)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	r, err := e.Run(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "standbynic fleet: %v\n", err)
		return exitFailure
	}
	r.Command = "standbynic fleet " + strings.Join(args, " ")
	if err := r.Write(dir); err != nil {
		fmt.Fprintf(stderr, "standbynic fleet: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "shard %s: %d devices, %d channels; survival %.4f, lost %d; report in %s\n",
		cfg.Shard, r.ShardDevices, r.Channels, r.Survival(), r.Lost(), dir)
	return exitOK
}

// runFleetMerge is `standbynic fleet merge`.
func runFleetMerge(stdout, stderr io.Writer, args []string) int {
	fs := newFlagSet("fleet merge", stderr, "[--out DIR] [--partial] REPORT.json|DIR...",
		"Add shard reports of one fleet (same seed, size, behaviour and duration) into one\n"+
			"report: totals, the push latency histogram and the timeline add exactly. A folder\n"+
			"argument stands for every */report.json in it.")
	out := fs.String("out", "fleet-merged", "merged report folder")
	partial := fs.Bool("partial", false, "accept shards that do not cover the whole fleet")
	if err := fs.Parse(args); err != nil {
		if code, done := parse(fs, args); done { // prints the help or the error
			return code
		}
		return exitUsage
	}
	var paths []string
	for _, a := range fs.Args() {
		if st, err := os.Stat(a); err == nil && st.IsDir() {
			m, _ := filepath.Glob(filepath.Join(a, "*", "report.json"))
			paths = append(paths, m...)
			continue
		}
		paths = append(paths, a)
	}
	if len(paths) == 0 {
		return usageError(fs, "no report given")
	}
	var rs []*fleet.Report
	for _, p := range paths {
		r, err := fleet.ReadReport(p)
		if err != nil {
			fmt.Fprintf(stderr, "standbynic fleet merge: %v\n", err)
			return exitFailure
		}
		rs = append(rs, r)
	}
	m, err := fleet.Merge(rs...)
	if err != nil {
		fmt.Fprintf(stderr, "standbynic fleet merge: %v\n", err)
		return exitFailure
	}
	if !m.Complete() && !*partial {
		fmt.Fprintf(stderr, "standbynic fleet merge: the shards cover %d of %d devices (--partial to accept)\n", m.ShardDevices, m.Devices)
		return exitFailure
	}
	m.Command = "standbynic fleet merge " + strings.Join(args, " ")
	if err := m.Write(*out); err != nil {
		fmt.Fprintf(stderr, "standbynic fleet merge: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "merged %d shards (%d of %d devices) into %s\n", len(rs), m.ShardDevices, m.Devices, *out)
	return exitOK
}
