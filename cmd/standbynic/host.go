package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/slotmgr"
)

const (
	taskPush  = "push"
	taskReset = "reset"
	maxRun    = 365 * 24 * time.Hour
)

func runHost(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	fs := newFlagSet("host", stderr, "--nic SOCKET --config FILE [flags]",
		`Run the host runtime: the channels of the config file (JSON; schema in
docs/cli.md) connect to their servers — the push server, an MQTT broker
(mqtt://, mqtts://), a WebSocket server (ws://, wss://) or a TCP service
(tcp://, line or raw) — take hardware slots on the NIC (through its control
socket) or software slots, and the host goes to standby; it wakes for pushes,
resets and software keep-alives, logs every message (and acknowledges the push
server's with "ack <id>"), reconnects a channel whose connection was lost (one
attempt per reconnect wake, with backoff), and goes back to
sleep. It logs every wake and, on exit, prints per channel its slot and pushes,
the wakes by reason and the energy estimate against an all-software host.`)
	nicPath := fs.String("nic", "", `the NIC daemon's control socket `+"`SOCKET`"+`, or "none" for a host without a NIC (every channel kept alive by the host's own wakes) (required)`)
	cfgPath := fs.String("config", "", "the JSON `FILE` of apps and channels (required)")
	runFor := newDurationFlag(fs, "duration", 0, time.Second, maxRun, true, "run this long, then exit")
	dialTimeout := newDurationFlag(fs, "dial-timeout", 5*time.Second, 100*time.Millisecond, time.Minute, false, "bound on each connection to the NIC or the push server")
	var procFlags []processConfig
	for _, pf := range []struct {
		name, usage string
		adopt       bool
	}{
		{"run", "start `NAME=COMMAND LINE` (split at spaces) as a process app: frozen with the host in a cgroup of its own, its TCP connections guarded by NIC slots (repeatable; the config's \"processes\" take more options)", false},
		{"adopt", "adopt the running process `NAME=PID` as a process app (repeatable): frozen with the host, given back to its own cgroup at exit", true},
	} {
		fs.Func(pf.name, pf.usage, func(s string) error {
			pc, err := parseProcessFlag(s, pf.adopt)
			if err == nil {
				procFlags = append(procFlags, pc)
			}
			return err
		})
	}
	lf := addLogFlags(fs)
	leaseF := addLeaseFlags(fs)
	if code, done := parse(fs, args); done {
		return code
	}
	switch {
	case *nicPath == "":
		return usageError(fs, `-nic is required (a socket path, or "none")`)
	case *cfgPath == "":
		return usageError(fs, "-config is required")
	case *nicPath != "none" && len(*nicPath) > maxSunPath:
		return usageError(fs, "-nic: path of %d bytes, longer than the %d a Unix socket allows", len(*nicPath), maxSunPath)
	}
	lease, err := leaseF.lease(*cfgPath)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	data, err := readConfigFile(*cfgPath)
	if err != nil {
		return usageError(fs, "-config: %v", err)
	}
	cfg, err := loadHostConfigWith(data, procFlags)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s: %v\n", fs.Name(), *cfgPath, strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return exitUsage
	}
	log := lf.logger(stderr)
	if *runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *runFor)
		defer cancel()
	}
	if err := serveHost(ctx, stdout, log, cfg, *nicPath, *dialTimeout, lease); err != nil {
		log.Error("host", "err", err)
		return exitFailure
	}
	return exitOK
}

// readConfigFile reads at most maxConfigBytes+1 bytes of path.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
}

// hostApps is the host command's apps: it dials the channels' transports and
// runs their tasks.
type hostApps struct {
	h           *host.Host
	cfg         *hostConfig
	log         *slog.Logger
	dialTimeout time.Duration
	chans       map[string]*channelConfig // by id; read-only after setup

	mu     sync.Mutex
	pushes map[string]int // pushes received, by channel
	acks   map[string]int // acknowledgments sent (line channels)
	redial map[string]int // reconnections after a reset
	tries  map[string]int // dial attempts since the transport was lost
}

// serveHost runs the host until ctx ends.
func serveHost(ctx context.Context, stdout io.Writer, log *slog.Logger, cfg *hostConfig, nicPath string, dialTimeout time.Duration, lease *nicLease) (err error) {
	hc := cfg.hostRuntime()
	hc.Logger = log.With("component", "host")
	if nicPath != "none" {
		n, closeNIC, err := dialNIC(nicPath, log, lease)
		if err != nil {
			return fmt.Errorf("nic %s: %w", nicPath, err)
		}
		defer closeNIC()
		hc.NIC = n
		log.Info("nic connected", "socket", nicPath, "slots", n.Capabilities().Slots)
	}
	h, err := host.New(&hc)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := h.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	a := &hostApps{h: h, cfg: cfg, log: log, dialTimeout: dialTimeout, chans: map[string]*channelConfig{},
		pushes: map[string]int{}, acks: map[string]int{}, redial: map[string]int{}, tries: map[string]int{}}
	if err := h.RegisterTask(taskPush, a.push); err != nil {
		return err
	}
	if err := h.RegisterTask(taskReset, a.reset); err != nil {
		return err
	}
	procs, papps, err := startProcesses(ctx, log, h, cfg)
	if err != nil {
		return err
	}
	defer func() {
		// After h.Close (deferred above runs later: close h first here),
		// which thaws them.
		h.Close()
		logProcessBooks(log, papps, cfg.Processes)
		for _, p := range procs {
			if cerr := p.Close(); cerr != nil {
				log.Warn("process release", "pid", p.PID(), "err", cerr)
			}
		}
	}()
	var order []*host.Channel
	for _, app := range cfg.Apps {
		for i := range app.Channels {
			cc := &app.Channels[i]
			ch, err := a.open(ctx, app, cc)
			if err != nil {
				return fmt.Errorf("channel %s: %w", cc.ID, err)
			}
			order = append(order, ch)
		}
	}
	if !cfg.Host.StayAwake {
		if err := h.Standby(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("standby: %w", err)
		}
		log.Info("host in standby")
	}
	a.watch(ctx)
	// The books are read once every task has ended: Close waits for them.
	rows := a.channelRows(order)
	for _, r := range rows {
		st := r.stats
		log.Info("channel books", "channel", r.id, "protocol", r.protocol, "keepalive_level", st.KeepAliveLevel,
			"messages", st.Transport.Messages, "consumed_replies", st.Transport.ConsumedReplies,
			"absorbed_replies", st.Transport.AbsorbedReplies, "host_keepalives", st.Transport.KeepAlives,
			"nic_sent", st.NICSent, "nic_absorbed", st.NICAbsorbed,
			"reconnect_attempts", st.ReconnectAttempts, "reconnects", st.Reconnects)
	}
	if err := h.Close(); err != nil {
		return err
	}
	a.summary(stdout, rows)
	return nil
}

// open creates a channel, binds its tasks and gives it its transport.
func (a *hostApps) open(ctx context.Context, app appConfig, cc *channelConfig) (*host.Channel, error) {
	prio := app.Priority
	if cc.Priority != nil {
		prio = *cc.Priority
	}
	ch, err := a.h.NewChannel(cc.ID, a.cfg.interval(cc), cc.resource(), app.Name, prio)
	if err != nil {
		return nil, err
	}
	a.chans[cc.ID] = cc
	if err := ch.SetPushTask(taskPush); err != nil {
		return nil, err
	}
	if err := ch.SetResetTask(taskReset); err != nil {
		return nil, err
	}
	t, err := a.dial(ctx, cc)
	if err != nil {
		return nil, err
	}
	if err := ch.UsingTransport(t); err != nil {
		t.Close()
		return nil, err
	}
	st, err := ch.WaitForPushEnabled()
	if err != nil {
		return nil, err
	}
	d, _ := a.cfg.dialConfig(cc)
	a.log.Info("channel", "id", cc.ID, "app", app.Name, "transport", cc.transportName(), "protocol", t.Protocol().String(),
		"endpoint", d.Endpoint.String(), "keepalive_level", t.NICKeepAlive().Level, "requested", cc.resource().String(),
		"status", st.String(), "interval", a.cfg.interval(cc))
	a.logSession(cc.ID, t)
	return ch, nil
}

// logSession logs what an MQTT session negotiated.
func (a *hostApps) logSession(id string, t host.Transport) {
	m, ok := t.(*host.MQTT)
	if !ok {
		return
	}
	in := m.Info()
	a.log.Info("mqtt session", "channel", id, "version", in.Version, "client_id", in.ClientID, "keepalive", in.KeepAlive,
		"session_present", in.SessionPresent, "granted", hex.EncodeToString(in.Granted), "nic_interval_max", t.NICKeepAlive().MaxInterval)
}

// dial connects a channel to its server and runs the protocol's
// handshake (line: hello; websocket: the upgrade; mqtt: CONNECT,
// SUBSCRIBE).
func (a *hostApps) dial(ctx context.Context, cc *channelConfig) (host.Transport, error) {
	ctx, cancel := context.WithTimeout(ctx, a.dialTimeout)
	defer cancel()
	d, errs := a.cfg.dialConfig(cc)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s", errs[0].field, errs[0].msg) // validated away
	}
	t, err := host.Dial(ctx, &d)
	if err != nil {
		return nil, err
	}
	if cc.pushServer() && d.Protocol == host.ProtocolWebSocket {
		// The push server speaks its lines in WebSocket messages too.
		if err := t.Write([]byte("hello " + cc.ID)); err != nil {
			t.Close()
			return nil, fmt.Errorf("hello: %w", err)
		}
	}
	return t, nil
}

// parsePush splits "push <id> <payload>"; the payload may be empty.
func parsePush(s string) (id uint64, payload string, ok bool) {
	rest, ok := strings.CutPrefix(s, "push ")
	if !ok {
		return 0, "", false
	}
	ids, payload, _ := strings.Cut(rest, " ")
	id, err := strconv.ParseUint(ids, 10, 64)
	if err != nil || id == 0 {
		return 0, "", false
	}
	return id, payload, true
}

// maxLoggedPayload bounds the payload bytes a push's log line carries.
const maxLoggedPayload = 512

// push is the PushNotification task: it logs every queued message; on a
// line channel it acknowledges "push <id> <payload>" with "ack <id>" and
// flushes the acknowledgments before the host may sleep again. MQTT
// messages carry their topic (a QoS 1 PUBLISH was acknowledged by the
// codec); raw and WebSocket messages are bytes.
func (a *hostApps) push(ctx context.Context, ti *host.TaskInstance) {
	ch := ti.Channel
	line := false
	for {
		m, ok := ti.Receive()
		if !ok {
			break
		}
		if proto := ch.Stats().Protocol; proto != host.ProtocolLine && !a.chans[ch.ID()].pushServer() {
			a.mu.Lock()
			a.pushes[ch.ID()]++
			a.mu.Unlock()
			attrs := []any{"channel", ch.ID()}
			if m.Topic != "" {
				attrs = append(attrs, "topic", m.Topic, "qos", int(m.QoS))
			}
			data := m.Data
			if len(data) > maxLoggedPayload {
				data = data[:maxLoggedPayload]
			}
			attrs = append(attrs, "bytes", len(m.Data), "payload", truncate(string(m.Data), 80), "hex", hex.EncodeToString(data))
			a.log.Info("push", attrs...)
			continue
		}
		line = true
		id, payload, ok := parsePush(string(m.Data))
		if !ok {
			a.log.Warn("unexpected message", "channel", ch.ID(), "message", truncate(string(m.Data), 80))
			continue
		}
		a.mu.Lock()
		a.pushes[ch.ID()]++
		a.mu.Unlock()
		a.log.Info("push", "channel", ch.ID(), "id", id, "payload", truncate(payload, 80))
		if err := ch.Send([]byte("ack " + strconv.FormatUint(id, 10))); err != nil {
			a.log.Warn("ack", "channel", ch.ID(), "id", id, "err", err)
			continue
		}
		a.mu.Lock()
		a.acks[ch.ID()]++
		a.mu.Unlock()
	}
	if !line {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, a.dialTimeout)
	defer cancel()
	if err := ch.FlushTransport(fctx); err != nil && ctx.Err() == nil && !errors.Is(err, host.ErrNoTransport) {
		a.log.Warn("flush", "channel", ch.ID(), "err", err)
	}
}

// reset is the reset task. After the loss of the transport it makes one
// dial attempt: on failure the host schedules the next one (its own
// "reconnect" wake, with a doubling backoff and jitter: host.reconnect_min
// and host.reconnect_max) and runs the task again then. Other resets are
// logged.
func (a *hostApps) reset(ctx context.Context, ti *host.TaskInstance) {
	ch := ti.Channel
	a.log.Info("reset", "channel", ch.ID(), "reason", ti.Reset.String(), "cause", errString(ch.DisconnectCause()))
	if ti.Reset != host.ResetTransportDisconnected || ch.Status() != slotmgr.TransportDisconnected {
		return
	}
	cc := a.chans[ch.ID()]
	a.mu.Lock()
	a.tries[ch.ID()]++
	attempt := a.tries[ch.ID()]
	a.mu.Unlock()
	t, err := a.dial(ctx, cc)
	if err == nil {
		if err = ch.UsingTransport(t); err == nil {
			a.logSession(ch.ID(), t)
			st, _ := ch.WaitForPushEnabled()
			a.mu.Lock()
			a.redial[ch.ID()]++
			a.tries[ch.ID()] = 0
			a.mu.Unlock()
			a.log.Info("reconnected", "channel", ch.ID(), "status", st.String(), "attempts", attempt)
			return
		}
		t.Close()
	}
	if ctx.Err() != nil || errors.Is(err, host.ErrChannelGone) || errors.Is(err, host.ErrClosed) || errors.Is(err, host.ErrHasTransport) {
		return
	}
	a.log.Warn("reconnect", "channel", ch.ID(), "attempt", attempt, "err", err)
}

// wakeReasons lists the host's wake reasons in order.
var wakeReasons = []host.WakeReason{host.WakeHardwarePush, host.WakeHardwareReset, host.WakeKeepAliveTimeout,
	host.WakeSoftwareKeepAlive, host.WakeSoftwarePushCheck, host.WakeReconnect, host.WakeNICLost, host.WakeUser}

// watch logs every wake and state change until ctx ends.
func (a *hostApps) watch(ctx context.Context) {
	prev := a.h.Stats()
	for {
		changed := a.h.Changed()
		st := a.h.Stats()
		for _, r := range wakeReasons {
			if n := st.Wake(r); n > prev.Wake(r) {
				a.log.Info("wake", "reason", r.String(), "count", n)
			}
		}
		if st.State != prev.State {
			a.log.Debug("state", "from", prev.State.String(), "to", st.State.String())
		}
		prev = st
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// channelRow is a channel's line of the summary.
type channelRow struct {
	id, app, transport string
	requested          string
	status             string
	protocol, endpoint string
	stats              host.ChannelStats
	note               string
}

// channelRows reads the channels' placement at the end of the run.
func (a *hostApps) channelRows(chans []*host.Channel) []channelRow {
	rows := make([]channelRow, len(chans))
	for i, ch := range chans {
		cc := a.chans[ch.ID()]
		d, _ := a.cfg.dialConfig(cc)
		rows[i] = channelRow{id: ch.ID(), app: ch.App(), transport: cc.transportName(), requested: cc.resource().String(),
			status: ch.Status().String(), endpoint: d.Endpoint.String(), protocol: d.Protocol.String(), stats: ch.Stats(), note: ch.Note()}
		if rows[i].stats.KeepAliveLevel == "" {
			rows[i].stats.KeepAliveLevel = "-"
		}
		if rows[i].note == "" {
			rows[i].note = "-"
		}
	}
	return rows
}

// summary prints the books: per channel, then wakes and energy. The host is
// closed: its tasks have ended.
func (a *hostApps) summary(w io.Writer, rows []channelRow) {
	st := a.h.Stats()
	a.mu.Lock()
	defer a.mu.Unlock()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tAPP\tTRANSPORT\tREQUESTED\tSTATUS\tPUSHES\tACKS\tRECONNECTS\tPROTOCOL\tKEEPALIVE\tREPLIES\tNIC-SENT\tNIC-ABSORBED\tENDPOINT\tNOTE")
	for _, r := range rows {
		st := r.stats
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", r.id, r.app, r.transport, r.requested, r.status,
			a.pushes[r.id], a.acks[r.id], a.redial[r.id], r.protocol, st.KeepAliveLevel, st.Transport.ConsumedReplies,
			st.NICSent, st.NICAbsorbed, r.endpoint, r.note)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nwakes: %d", st.Resumes)
	for _, r := range wakeReasons {
		if n := st.Wake(r); n > 0 {
			fmt.Fprintf(w, ", %s %d", r, n)
		}
	}
	fmt.Fprintf(w, "\nslots armed: %d, hand-backs: %d (errors %d), keep-alives sent by the host: %d\n", st.Armed, st.HandBacks, st.HandBackErrors, st.KeepAlives)
	fmt.Fprintf(w, "energy: %.1f mJ; an all-software host: %.1f mJ with %d wakes\n", st.EnergyMJ, st.SoftwareOnlyMJ, st.SoftwareOnlyWakes)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
