package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/standbynic/standbynic/nic"
)

// Receive modes of the wire port (--wire-rx).
const (
	wireRxBatch     = "batch"     // TPACKET_V3 ring
	wireRxImmediate = "immediate" // TPACKET_V2 ring, nic.PortConfig.Immediate
)

const (
	defaultControlPath = "/run/standbynic/nic.sock"
	maxSunPath         = 107 // bytes of a Unix socket path (sun_path less its NUL)
	maxFaultDelay      = 10 * time.Second
)

// nicFlags are the parsed flags of the nic command.
type nicFlags struct {
	wire, host   string
	wireRx       string // receive mode of the wire port: wireRxBatch or wireRxImmediate
	slots        int
	control      string
	controlGroup string
	hostMAC      [6]byte
	hostMACSet   bool
	hostAddrs    []netip.Addr
	wirePcap     string
	wakePcap     string
	faults       nic.Faults
	ctlRead      time.Duration // control API: request read timeout
	ctlConns     int           // control API: connections open at once
	logger       *slog.Logger
	controlGID   int // -1: none
	nsOffloads   int
	profile      string // firmware profile name (nicprofile.go)
}

// parseNICFlags parses and validates the nic command's flags; on failure
// it returns the exit code to use (the error already printed).
func parseNICFlags(stderr io.Writer, args []string) (*nicFlags, int, bool) {
	fs := newFlagSet("nic", stderr, "--wire IF --host IF [flags]",
		`Run the emulated connected-standby NIC as a bump in the wire between two
existing interfaces: --wire towards the network, --host towards the host. It
opens an AF_PACKET port on each (promiscuous), forwards frames while the host is
awake (D0), guards the host's connections with hardware keep-alive slots while it
sleeps (D3), and serves its control API on a Unix socket. It keeps only
CAP_NET_RAW and CAP_NET_ADMIN (and sets no_new_privs) before opening anything,
and runs until SIGINT or SIGTERM.`)
	f := &nicFlags{controlGID: -1}
	fs.StringVar(&f.wire, "wire", "", "`IF`: the interface towards the network (required)")
	fs.StringVar(&f.host, "host", "", "`IF`: the interface towards the host (required)")
	wireRx := newChoiceFlag(fs, "wire-rx", wireRxBatch, []string{wireRxBatch, wireRxImmediate},
		"receive mode of the wire port: batch (TPACKET_V3 ring: frames handed over in blocks, a lone frame up to 1 ms late) or immediate (TPACKET_V2 ring: each frame as it arrives, for the lowest wake latency, at more CPU per frame)")
	slots := newIntFlag(fs, "slots", nic.DefaultSlots, 1, nic.MaxSlots, "hardware keep-alive slots")
	prof := newProfileFlag(fs) // firmware profile (nicprofile.go)
	fs.StringVar(&f.control, "control", defaultControlPath, "`PATH` of the control API's Unix socket (its directory is created, mode 0755)")
	fs.StringVar(&f.controlGroup, "control-group", "", "`GROUP` (name or number) whose members may use the control socket (socket mode 0660; default: root only, 0600)")
	fs.Var(&macFlag{&f.hostMAC, &f.hostMACSet}, "host-mac", "the host's MAC address, used in ARP/NS answers while it sleeps (required with --host-addr)")
	fs.Var(&addrsFlag{&f.hostAddrs, nic.MaxARPOffloads + nic.MaxNSOffloads}, "host-addr",
		fmt.Sprintf("an IP address of the host the NIC answers ARP (IPv4, at most %d) or neighbour solicitations (IPv6, at most %d) for while it sleeps; repeatable", nic.MaxARPOffloads, nic.MaxNSOffloads))
	fs.StringVar(&f.wirePcap, "wire-pcap", "", "write every frame of the wire port, both directions, to the pcap `FILE` (nanosecond timestamps)")
	fs.StringVar(&f.wakePcap, "wake-pcap", "", "write the saved wake packets to the pcap `FILE`")
	loss := newProbFlag(fs, "loss", "wire fault: probability that a frame is dropped")
	dup := newProbFlag(fs, "dup", "wire fault: probability that a frame is duplicated")
	reorder := newProbFlag(fs, "reorder", "wire fault: probability that a frame is held back behind the next --reorder-depth frames (the one explicit reordering fault)")
	reorderDepth := newIntFlag(fs, "reorder-depth", 1, 1, nic.MaxReorderDepth, "wire fault: how many later frames overtake a frame --reorder holds back")
	corrupt := newProbFlag(fs, "corrupt", "wire fault: probability that one byte of a frame is flipped")
	delay := newDurationFlag(fs, "delay", 0, 0, maxFaultDelay, true, "wire fault: delay of every frame")
	jitter := newDurationFlag(fs, "jitter", 0, 0, maxFaultDelay, true, "wire fault: the delay varies uniformly by ± this much (never below 0); frames keep their order (FIFO, as on a real link: a frame never leaves before the one ahead of it)")
	ctlRead := newDurationFlag(fs, "control-read-timeout", nic.DefaultReadTimeout, time.Millisecond, nic.MaxReadTimeout, false, "control API: bound on reading a request's headers and body (a slow client is cut off)")
	ctlConns := newIntFlag(fs, "control-max-conns", nic.DefaultMaxConns, 1, nic.MaxMaxConns, "control API: connections open at once (more are refused)")
	seed := fs.Uint64("seed", 1, "`N`: seed of the fault generators (a run is reproducible for a seed and a frame sequence)")
	lf := addLogFlags(fs)
	if code, done := parse(fs, args); done {
		return nil, code, true
	}
	f.slots = *slots
	f.profile = *prof
	if f.profile != "generic" && !flagSet(fs, "slots") {
		f.slots = 0 // the profile's slot count
	}
	f.wireRx = *wireRx
	f.faults = nic.Faults{Seed: *seed, Loss: *loss, Duplicate: *dup, Reorder: *reorder, Corrupt: *corrupt, Delay: *delay, Jitter: *jitter, ReorderDepth: *reorderDepth}
	f.ctlRead, f.ctlConns = *ctlRead, *ctlConns
	f.logger = lf.logger(stderr)

	for _, l := range []struct{ flag, name string }{{"wire", f.wire}, {"host", f.host}} {
		if l.name == "" {
			return nil, usageError(fs, "-%s is required", l.flag), true
		}
		if err := checkIfName(l.name); err != nil {
			return nil, usageError(fs, "-%s %q: %v", l.flag, l.name, err), true
		}
	}
	if f.wire == f.host {
		return nil, usageError(fs, "-wire and -host name the same interface %q", f.wire), true
	}
	if f.control == "" {
		return nil, usageError(fs, "-control: empty path"), true
	}
	if len(f.control) > maxSunPath {
		return nil, usageError(fs, "-control: path of %d bytes, longer than the %d a Unix socket allows", len(f.control), maxSunPath), true
	}
	if *jitter > 0 && *delay == 0 {
		return nil, usageError(fs, "-jitter %v needs a -delay", *jitter), true
	}
	var n4, n6 int
	for _, a := range f.hostAddrs {
		if a.Is4() {
			n4++
		} else {
			n6++
		}
	}
	switch {
	case n4 > nic.MaxARPOffloads:
		return nil, usageError(fs, "-host-addr: %d IPv4 addresses, at most %d (ARP offloads)", n4, nic.MaxARPOffloads), true
	case n6 > nic.MaxNSOffloads:
		return nil, usageError(fs, "-host-addr: %d IPv6 addresses, at most %d (NS offloads)", n6, nic.MaxNSOffloads), true
	case len(f.hostAddrs) > 0 && !f.hostMACSet:
		return nil, usageError(fs, "-host-addr needs -host-mac: the NIC answers ARP/NS with the host's MAC"), true
	}
	f.nsOffloads = max(n6, nic.MinNSOffloads)
	if f.controlGroup != "" {
		gid, err := lookupGroup(f.controlGroup)
		if err != nil {
			return nil, usageError(fs, "-control-group %q: %v", f.controlGroup, err), true
		}
		f.controlGID = gid
	}
	return f, 0, false
}

// checkIfName checks a Linux interface name: 1–15 bytes, no '/', ':' or
// white space.
func checkIfName(s string) error {
	switch {
	case len(s) > 15:
		return errors.New("longer than 15 bytes (IFNAMSIZ)")
	case s == "." || s == "..", strings.ContainsAny(s, "/: \t\n"):
		return errors.New("not a valid interface name")
	}
	return nil
}

// lookupGroup returns the gid of a group name or number.
func lookupGroup(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 1<<31-2 {
			return 0, errors.New("gid out of range")
		}
		return n, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, errors.New("no such group")
	}
	return strconv.Atoi(g.Gid)
}

func runNIC(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	f, code, done := parseNICFlags(stderr, args)
	if done {
		return code
	}
	log := f.logger
	if err := dropCapabilities(log, f.controlGID); err != nil {
		log.Error("nic", "err", err)
		return exitFailure
	}
	if err := serveNIC(ctx, f); err != nil {
		log.Error("nic", "err", err)
		return exitFailure
	}
	return exitOK
}

// serveNIC opens the ports and the pcap files, runs the device and its
// control API until ctx ends, then closes everything.
func serveNIC(ctx context.Context, f *nicFlags) (err error) {
	log := f.logger
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if cerr := closers[i](); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	var wirePcap, wakePcap io.Writer
	for _, p := range []struct {
		name string
		w    *io.Writer
	}{{f.wirePcap, &wirePcap}, {f.wakePcap, &wakePcap}} {
		if p.name == "" {
			continue
		}
		file, err := os.OpenFile(p.name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
		if err != nil {
			return fmt.Errorf("pcap: %w", err)
		}
		closers = append(closers, file.Close)
		*p.w = file
	}
	ports := make([]nic.Port, 2)
	for i, name := range []string{f.wire, f.host} {
		var cfg *nic.PortConfig
		if i == 0 && f.wireRx == wireRxImmediate {
			cfg = &nic.PortConfig{Immediate: true}
		}
		p, err := nic.OpenPacketPort(name, cfg)
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return fmt.Errorf("open port %s (needs CAP_NET_RAW and CAP_NET_ADMIN): %w", name, err)
			}
			return fmt.Errorf("open port %s: %w", name, err)
		}
		ports[i] = p
	}
	// Wake events reach the control API's hub synchronously (OnWake, so
	// none is lost to a full channel), and the log through Wakes().
	hub := nic.NewWakeHub(0)
	dev, err := nic.New(&nic.Config{
		Wire: ports[0], Host: ports[1],
		MAC: f.hostMAC, Addrs: f.hostAddrs,
		Capabilities: nic.Capabilities{Slots: f.slots, NSOffloads: f.nsOffloads},
		Profile:      nicProfile(f.profile),
		Faults:       f.faults,
		WirePcap:     wirePcap, WakePcap: wakePcap,
		Logger: log.With("component", "nic"),
		OnWake: hub.Publish,
	})
	if err != nil {
		ports[0].Close()
		ports[1].Close()
		return err
	}
	// The device closes the ports; the pcap files close after it.
	closers = append(closers, dev.Close)
	wakeLog := newWakeLogger(log, dev.Wakes())
	closers = append(closers, wakeLog.close)

	ccfg := &nic.ControlConfig{Hub: hub, Logger: log.With("component", "control"), ReadTimeout: f.ctlRead, MaxConns: f.ctlConns}
	mode, gid := os.FileMode(0o600), -1
	if f.controlGID >= 0 {
		ccfg.Group, mode, gid = f.controlGID, 0o660, f.controlGID
	}
	cs := nic.NewControlServer(dev, ccfg)
	closers = append(closers, cs.Close)
	if err := os.MkdirAll(filepath.Dir(f.control), 0o755); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := cs.ListenUnix(f.control, mode, gid); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}

	log.Info("nic running", "wire", f.wire, "wire_rx", f.wireRx, "host", f.host, "slots", f.slots, "control", f.control,
		"host_mac", hwString(f.hostMAC, f.hostMACSet), "host_addrs", f.hostAddrs, "faults", f.faults.Enabled())
	<-ctx.Done()
	log.Info("nic stopping", "cause", context.Cause(ctx))
	return nil
}

func hwString(mac [6]byte, set bool) string {
	if !set {
		return ""
	}
	return net.HardwareAddr(mac[:]).String()
}

// wakeLogger logs the device's wake events from Wakes(), off the datapath.
type wakeLogger struct {
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func newWakeLogger(log *slog.Logger, wakes <-chan nic.WakeEvent) *wakeLogger {
	w := &wakeLogger{stop: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for {
			select {
			case ev := <-wakes:
				log.Info("wake", "reason", ev.Reason.String(), "slot", int(ev.Slot), "pattern", ev.Pattern, "packet_len", ev.Len)
			case <-w.stop:
				return
			}
		}
	}()
	return w
}

// close stops the logger. It is idempotent.
func (w *wakeLogger) close() error {
	w.once.Do(func() {
		close(w.stop)
		w.wg.Wait()
	})
	return nil
}
