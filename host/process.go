package host

// Real processes as the host's suspended tasks (issue 14): a program held
// by procfreeze is frozen when the host enters standby, each of its TCP
// connections becomes a channel whose transport only guards the socket
// (guardTransport: the app reads and writes its own data, the host never
// posts a receive on it), and the process is thawed when a packet for it
// wakes the host, or for a window on a software wake.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/procfreeze"
	"github.com/standbynic/standbynic/slotmgr"
)

// ErrGuardOnly says a process channel's transport was asked to read or
// write: the app does that itself through its own fd.
var ErrGuardOnly = errors.New("guard-only transport: the process reads and writes its own socket")

// ProcessEndpoint says how a process's connections to one remote endpoint
// are kept alive while the process is frozen.
type ProcessEndpoint struct {
	// Remote matches a connection's remote end: address and port, only a
	// port (invalid Addr), or nothing (the zero value matches every
	// connection). The first matching endpoint wins.
	Remote netip.AddrPort
	// KeepAlive is the NIC keep-alive (KeepAliveConfig.Kind: tcp-probe,
	// websocket, payload, mqtt); KeepAliveDefault picks by port: 1883 the
	// MQTT preset, anything else TCP probes.
	KeepAlive KeepAliveConfig
	// Interval is the keep-alive interval; 0: ProcessConfig.Interval.
	Interval time.Duration
	// KeepAbsorbed puts the replies the NIC absorbed into the receive
	// queue for the app to read (byte-exact with the wire). By default
	// they are advanced past: read off through the duplicate before the
	// app is thawed, so it never sees replies to keep-alives it did not
	// send (an MQTT client's unsolicited PINGRESP).
	KeepAbsorbed bool
}

// ProcessConfig is a process the host holds in standby.
type ProcessConfig struct {
	// Name is the app name in the slot pool and the channel ids'
	// prefix ("<name>/<fd>"): 1–32 of [a-z0-9_-].
	Name string
	// Process is the program, started by procfreeze.Run or adopted by
	// procfreeze.Adopt; the caller closes it after the host.
	Process *procfreeze.Process
	// Endpoints choose each connection's keep-alive (see ProcessEndpoint).
	Endpoints []ProcessEndpoint
	// Interval is the keep-alive interval of connections whose endpoint
	// names none (within the pool's bounds).
	Interval time.Duration
	// Priority is the channels' slot priority.
	Priority int
	// ThawWindow is how long the process runs after a software wake (its
	// busy connections' keep-alives, coalesced with the host's other
	// software wakes): it sends its own keep-alives then. 0: 200 ms; at
	// most 1 minute.
	ThawWindow time.Duration
}

// DefaultThawWindow is ProcessConfig.ThawWindow when 0.
const DefaultThawWindow = 200 * time.Millisecond

// ProcessStats are a process app's counters.
type ProcessStats struct {
	Mode           procfreeze.Mode
	Freezes, Thaws uint64
	// FreezeErrors counts the standby entries the process could not be
	// frozen at (it ran on through the standby).
	FreezeErrors uint64
	// Hardware and Software count the connections given to a NIC slot
	// request (idle ones) and kept on software (busy ones), summed over
	// the standby entries.
	Hardware, Software uint64
	// SkippedAbsorbed counts the absorbed reply bytes advanced past.
	SkippedAbsorbed uint64
	// WindowThaws counts the thaws for a software wake's window.
	WindowThaws uint64
	// LastWakeLatency is the time from the wake packet on the wire to the
	// process being runnable again (its thaw confirmed), at the last
	// packet wake; MaxWakeLatency the largest.
	LastWakeLatency, MaxWakeLatency time.Duration
	// Notes say, per connection, what the last standby entry did with
	// it (and why one was not offloaded).
	Notes []string
	// Frozen says the process is frozen now.
	Frozen bool
}

// ProcessApp is a process the host holds.
type ProcessApp struct {
	h     *Host
	cfg   ProcessConfig
	ivs   []time.Duration // per endpoint, resolved
	proc  *procfreeze.Process
	stats ProcessStats // guarded by h.mu
	// Guarded by h.mu.
	frozen     bool
	chans      []*Channel
	socks      []*procfreeze.Socket
	wantWindow bool
	closed     bool
}

// AddProcess registers a process with the host: from the next standby
// entry on, it is frozen with the host and its connections are guarded.
func (h *Host) AddProcess(cfg ProcessConfig) (*ProcessApp, error) {
	if cfg.Process == nil {
		return nil, errors.New("add process: nil process")
	}
	if err := checkProcessName(cfg.Name); err != nil {
		return nil, fmt.Errorf("add process: name %q: %w", cfg.Name, err)
	}
	switch {
	case cfg.ThawWindow < 0 || cfg.ThawWindow > time.Minute:
		return nil, fmt.Errorf("add process %s: thaw window %v out of range 0–1m", cfg.Name, cfg.ThawWindow)
	case cfg.ThawWindow == 0:
		cfg.ThawWindow = DefaultThawWindow
	}
	if cfg.Interval < offload.MinInterval || cfg.Interval > offload.MaxInterval {
		return nil, fmt.Errorf("add process %s: interval %v out of range %v–%v", cfg.Name, cfg.Interval, offload.MinInterval, offload.MaxInterval)
	}
	pa := &ProcessApp{h: h, cfg: cfg, proc: cfg.Process}
	for i, ep := range cfg.Endpoints {
		iv := ep.Interval
		if iv == 0 {
			iv = cfg.Interval
		}
		if iv < offload.MinInterval || iv > offload.MaxInterval {
			return nil, fmt.Errorf("add process %s: endpoints[%d].interval %v out of range %v–%v", cfg.Name, i, iv, offload.MinInterval, offload.MaxInterval)
		}
		if _, err := processNICKeepAlive(ep); err != nil {
			return nil, fmt.Errorf("add process %s: endpoints[%d].keepalive: %w", cfg.Name, i, err)
		}
		pa.ivs = append(pa.ivs, iv)
	}
	pa.stats.Mode = cfg.Process.Mode()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("add process %s: %w", cfg.Name, ErrClosed)
	}
	for _, o := range h.procs {
		if o.cfg.Name == cfg.Name {
			return nil, fmt.Errorf("add process %s: name already used", cfg.Name)
		}
		if o.proc == cfg.Process {
			return nil, fmt.Errorf("add process %s: process already held as %s", cfg.Name, o.cfg.Name)
		}
	}
	h.procs = append(h.procs, pa)
	return pa, nil
}

func checkProcessName(s string) error {
	if s == "" || len(s) > 32 {
		return fmt.Errorf("%d bytes, want 1–32", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("byte %d is %q, want [a-z0-9_-]", i, c)
		}
	}
	return nil
}

// Stats returns the app's counters.
func (pa *ProcessApp) Stats() ProcessStats {
	pa.h.mu.Lock()
	defer pa.h.mu.Unlock()
	st := pa.stats
	st.Notes = slices.Clone(st.Notes)
	for _, ch := range pa.chans {
		if n := ch.note; n != "" {
			// Why a connection given a hardware slot request was not armed
			// (not idle in time, TCP_REPAIR refused: CAP_NET_ADMIN, …).
			st.Notes = append(st.Notes, ch.id+": kept on software: "+n)
		}
	}
	st.Frozen = pa.frozen
	return st
}

// Channels returns the channels guarding the process's connections now
// (none while it runs).
func (pa *ProcessApp) Channels() []*Channel {
	pa.h.mu.Lock()
	defer pa.h.mu.Unlock()
	return slices.Clone(pa.chans)
}

// endpoint returns the index of the first endpoint matching remote, or -1.
func (pa *ProcessApp) endpoint(remote netip.AddrPort) int {
	for i, ep := range pa.cfg.Endpoints {
		if ep.Remote.Addr().IsValid() && ep.Remote.Addr().Unmap() != remote.Addr().Unmap() {
			continue
		}
		if ep.Remote.Port() != 0 && ep.Remote.Port() != remote.Port() {
			continue
		}
		return i
	}
	return -1
}

// processNICKeepAlive is the NIC keep-alive of an endpoint: its own, or by
// port (1883: MQTT's PINGREQ/PINGRESP, else TCP probes).
func processNICKeepAlive(ep ProcessEndpoint) (NICKeepAlive, error) {
	k := ep.KeepAlive
	kind := k.Kind
	if kind == KeepAliveDefault {
		kind = KeepAliveTCPProbe
		if ep.Remote.Port() == 1883 {
			kind = KeepAliveMQTT
		}
	}
	switch kind {
	case KeepAliveTCPProbe:
		return NICKeepAlive{Kind: offload.KindTCPProbe, Probe: k.Probe, Level: LevelTCP}, nil
	case KeepAliveMQTT:
		return NICKeepAlive{Kind: offload.KindPayload, Level: LevelApp,
			Payload: offload.PayloadSpec{Request: mqttPingreq, Reply: mqttPingresp}}, nil
	case KeepAlivePayload:
		if len(k.Request) == 0 || len(k.Reply) == 0 {
			return NICKeepAlive{}, errors.New("payload keep-alive needs a request and a reply")
		}
		return NICKeepAlive{Kind: offload.KindPayload, Level: LevelApp,
			Payload: offload.PayloadSpec{Request: k.Request, Reply: k.Reply, ReplyMask: k.ReplyMask}}, nil
	case KeepAliveWebSocket:
		mode := k.WSMode
		if mode == 0 {
			mode = offload.WSPing
		}
		if mode == offload.WSResponder {
			return NICKeepAlive{Kind: offload.KindWebSocket, Probe: k.Probe, WebSocket: offload.WebSocketSpec{Mode: mode}, Level: LevelApp}, nil
		}
		return NICKeepAlive{Kind: offload.KindWebSocket, WebSocket: offload.WebSocketSpec{Mode: mode, Payload: nicPingPayload}, Level: LevelApp}, nil
	}
	return NICKeepAlive{}, fmt.Errorf("keep-alive kind %v", kind)
}

// procFreezeLocked runs first at every standby entry: each process app
// that runs is frozen, and each of its established TCP connections gets a
// channel (idle: a hardware slot request; busy: software, its frames held
// by the NIC, the process thawed for a window at its keep-alives).
func (h *Host) procFreezeLocked() {
	now := h.clock.Now()
	for _, pa := range h.procs {
		if pa.closed {
			continue
		}
		if pa.frozen {
			// Still frozen since the last entry (a wake of other channels):
			// its channels are armed again. Bytes that reached a socket while
			// the host was awake make it busy: its keep-alive is then due at
			// once, so the host wakes and thaws the process to read them.
			for _, ch := range pa.chans {
				var ni *NotIdleError
				if errors.As(Idle(ch.transport.Conn()), &ni) && ni.Queues.Unread > 0 {
					h.planner.Remove(ch.id)
					h.planner.Add(ch.id, ch.interval, now-ch.interval)
				}
			}
			continue
		}
		pa.stats.Notes = pa.stats.Notes[:0]
		if err := pa.proc.Freeze(h.ctx); err != nil {
			if errors.Is(err, procfreeze.ErrExited) || errors.Is(err, procfreeze.ErrClosed) {
				pa.closed = true
				pa.stats.Notes = append(pa.stats.Notes, "exited: "+err.Error())
				h.log.Info("process gone; no longer held", "process", pa.cfg.Name, "err", err)
				continue
			}
			pa.stats.FreezeErrors++
			pa.stats.Notes = append(pa.stats.Notes, "not frozen: "+err.Error())
			h.log.Warn("process not frozen", "process", pa.cfg.Name, "err", err)
			continue
		}
		pa.frozen = true
		pa.stats.Freezes++
		socks, err := pa.proc.Sockets(Idle)
		if err != nil {
			// Its connections cannot be guarded: it is not held this time.
			pa.stats.Notes = append(pa.stats.Notes, "sockets: "+err.Error()+"; left running")
			h.log.Warn("process sockets; left running", "process", pa.cfg.Name, "err", err)
			if err := pa.proc.Thaw(h.ctx); err != nil {
				h.log.Warn("process thaw", "process", pa.cfg.Name, "err", err)
			} else {
				pa.frozen = false
			}
			continue
		}
		pa.socks = socks
		for _, s := range socks {
			if s.Conn == nil {
				if s.State != 0 { // a TCP socket; others are not the NIC's business
					pa.stats.Notes = append(pa.stats.Notes, s.String())
				}
				continue
			}
			i := pa.endpoint(s.Remote)
			ep, iv := ProcessEndpoint{Remote: s.Remote}, pa.cfg.Interval
			if i >= 0 {
				ep, iv = pa.cfg.Endpoints[i], pa.ivs[i]
				if !ep.Remote.IsValid() || ep.Remote.Port() == 0 {
					ep.Remote = s.Remote // the port preset looks at the real one
				}
			}
			nka, _ := processNICKeepAlive(ep)
			res := slotmgr.RequestHardwareSlot
			if s.Err != nil {
				res = slotmgr.RequestSoftwareSlot
			}
			id := pa.cfg.Name + "/" + strconv.Itoa(s.PID) + "/" + strconv.Itoa(s.FD)
			ch, err := h.newChannelLocked(id, iv, res, pa.cfg.Name, pa.cfg.Priority)
			if err == nil && !ch.status.Allocated() && res == slotmgr.RequestHardwareSlot {
				// No hardware slot by policy: the host keeps it alive.
				pa.stats.Notes = append(pa.stats.Notes, s.String()+": hardware refused: "+ch.status.String())
				ch, err = h.newChannelLocked(id, iv, slotmgr.RequestSoftwareSlot, pa.cfg.Name, pa.cfg.Priority)
			}
			if err != nil || !ch.status.Allocated() {
				why := ch.statusNote(err)
				pa.stats.Notes = append(pa.stats.Notes, s.String()+": no channel: "+why)
				continue
			}
			gt := &guardTransport{s: s, nka: nka, keep: ep.KeepAbsorbed, pa: pa, done: make(chan struct{})}
			// attachLocked sets TCP_USER_TIMEOUT on the socket, which is the
			// app's: the app's own value is put back at the thaw.
			gt.userTimeout, gt.userTimeoutErr = userTimeout(s.Conn)
			h.attachLocked(ch, gt)
			if s.Err != nil {
				// Busy: kept alive by the process itself at the window thaws.
				pa.stats.Software++
				pa.stats.Notes = append(pa.stats.Notes, s.String()+": software")
			} else {
				if ch.status == slotmgr.HardwareSlotAllocated && h.nic != nil && !h.nicDown {
					// The app's last keep-alive may be up to an interval
					// old: the NIC's first is due at once.
					h.planner.Remove(id)
					h.planner.Add(id, iv, now-iv)
				}
				pa.stats.Hardware++
				pa.stats.Notes = append(pa.stats.Notes, s.String()+": "+nka.Level+" keep-alive "+nka.Kind.String())
			}
			pa.chans = append(pa.chans, ch)
		}
		h.log.Debug("process frozen", "process", pa.cfg.Name, "pid", pa.proc.PID(), "mode", pa.proc.Mode().String(),
			"channels", len(pa.chans), "notes", pa.stats.Notes)
	}
}

// statusNote says why a channel request failed.
func (ch *Channel) statusNote(err error) string {
	if err != nil {
		return err.Error()
	}
	if ch == nil {
		return "no channel"
	}
	return ch.status.String()
}

// newChannelLocked is NewChannel with h.mu held.
func (h *Host) newChannelLocked(id string, iv time.Duration, resource slotmgr.ResourceType, app string, priority int) (*Channel, error) {
	if _, ok := h.chans[id]; ok {
		return nil, fmt.Errorf("new channel %s: %w", id, slotmgr.ErrChannelExists)
	}
	res, err := h.pool.Request(slotmgr.Request{Channel: id, App: app, Resource: resource, Interval: iv, Priority: priority})
	if err != nil {
		return nil, fmt.Errorf("new channel: %w", err)
	}
	h.seq++
	ch := &Channel{h: h, id: id, app: app, resource: resource, priority: priority, seq: h.seq,
		interval: iv, result: res, status: res.Status, reconnectAt: -1}
	if res.Status.Allocated() {
		h.chans[id] = ch
		h.order = append(h.order, ch)
	}
	h.notifyLocked()
	return ch, nil
}

// procWakeLocked runs when the host is awake again, after the hand-back
// (every socket out of TCP_REPAIR, byte-exact) and the software
// keep-alives: a process whose connection woke the host, or all of them
// on a user or other wake, is thawed at once; on a software wake, a
// process whose busy connection's keep-alive was due is thawed for its
// window. A process whose connections were only handed back (a software
// wake of other channels) stays frozen; its channels are armed again at
// the next entry.
func (h *Host) procWakeLocked() {
	for _, pa := range h.procs {
		if !pa.frozen {
			continue
		}
		thaw, window := false, false
		switch h.wakeReason {
		case WakeHardwarePush, WakeHardwareReset, WakeKeepAliveTimeout, WakePattern:
			ch := h.channelBySlotLocked(h.lastWake.Slot)
			thaw = ch == nil || slices.Contains(pa.chans, ch)
		case WakeSoftwareKeepAlive, WakeSoftwarePushCheck, WakeReconnect:
			thaw, window = pa.wantWindow, pa.wantWindow
		default:
			thaw = true
		}
		if len(pa.chans) == 0 {
			thaw = true // nothing of it is guarded: it runs at every wake
		}
		if !thaw {
			continue
		}
		pa.thawLocked(window)
	}
}

// thawLocked gives the process its connections back and thaws it.
func (pa *ProcessApp) thawLocked(window bool) {
	h := pa.h
	pa.wantWindow = false
	for _, ch := range pa.chans {
		if gt, ok := ch.transport.(*guardTransport); ok {
			if !gt.keep {
				n, err := gt.skipAbsorbed()
				pa.stats.SkippedAbsorbed += uint64(n)
				if err != nil {
					h.log.Warn("process hand-back", "channel", ch.id, "err", err)
					pa.stats.Notes = append(pa.stats.Notes, ch.id+": "+err.Error())
				}
			}
			if gt.userTimeoutErr == nil {
				_ = setUserTimeout(gt.s.Conn, gt.userTimeout)
			}
		}
		h.closeChannelLocked(ch)
		h.order = slices.DeleteFunc(h.order, func(c *Channel) bool { return c == ch })
	}
	pa.chans, pa.socks = nil, nil
	err := pa.proc.Thaw(h.ctx) // closes the duplicates, restoring their flags
	pa.frozen = false
	if err != nil {
		pa.stats.Notes = append(pa.stats.Notes, "thaw: "+err.Error())
		h.log.Warn("process thaw", "process", pa.cfg.Name, "err", err)
		return
	}
	pa.stats.Thaws++
	h.log.Debug("process thawed", "process", pa.cfg.Name, "pid", pa.proc.PID(), "window", window)
	// The process runs at least its window before the host sleeps again
	// (and freezes it): to send its keep-alives, or to read its push.
	h.holdUntil = max(h.holdUntil, h.clock.Now()+pa.cfg.ThawWindow)
	h.holdFixed = true
	if window {
		pa.stats.WindowThaws++
		return
	}
	if rx := h.lastWake.RxTime; !rx.IsZero() {
		d := time.Since(rx)
		pa.stats.LastWakeLatency = d
		pa.stats.MaxWakeLatency = max(pa.stats.MaxWakeLatency, d)
	}
}

// procCloseLocked releases every process app at the host's Close: their
// channels were handed back; the processes are thawed.
func (h *Host) procCloseLocked() {
	for _, pa := range h.procs {
		if pa.frozen {
			pa.thawLocked(false)
		}
		pa.closed = true
	}
}

// guardTransport is a process channel's transport: it only lends the
// host the duplicate of the app's socket to freeze, arm and thaw. The
// host's posted receive never reads it (Read waits for Close), and the
// host's keep-alive on a software wake is the app's own, sent by thawing
// the process for its window.
type guardTransport struct {
	s    *procfreeze.Socket
	nka  NICKeepAlive
	keep bool
	pa   *ProcessApp

	userTimeout    time.Duration // the app's TCP_USER_TIMEOUT
	userTimeoutErr error

	mu       sync.Mutex
	absorbed []byte // the last hand-back's absorbed bytes, to skip
	sent     uint64
	kas      uint64
	once     sync.Once
	done     chan struct{}
}

var _ Transport = (*guardTransport)(nil)

// Kind implements Transport.Kind.
func (g *guardTransport) Kind() TransportKind { return KindStream }

// Conn implements Transport.Conn: the duplicate.
func (g *guardTransport) Conn() *net.TCPConn { return g.s.Conn }

// Protocol implements Transport.Protocol.
func (g *guardTransport) Protocol() Protocol {
	if g.nka.Kind == offload.KindPayload && string(g.nka.Payload.Request) == string(mqttPingreq) {
		return ProtocolMQTT
	}
	if g.nka.Kind == offload.KindWebSocket {
		return ProtocolWebSocket
	}
	return ProtocolRaw
}

// Read implements Transport.Read: it never reads; it returns when the
// transport is closed.
func (g *guardTransport) Read() (Message, error) {
	<-g.done
	return Message{}, net.ErrClosed
}

// Write implements Transport.Write: ErrGuardOnly.
func (g *guardTransport) Write(p []byte) error { return ErrGuardOnly }

// KeepAlive implements Transport.KeepAlive: the process sends its own, in
// the window of the thaw this asks for.
func (g *guardTransport) KeepAlive() (bool, error) {
	g.mu.Lock()
	g.kas++
	g.mu.Unlock()
	g.pa.wantWindow = true // h.mu is held by the caller (serveKeepAlivesLocked)
	return true, nil
}

// HandBack implements Transport.HandBack.
func (g *guardTransport) HandBack(sent, absorbed []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sent += uint64(len(sent))
	g.absorbed = append(g.absorbed, absorbed...)
}

// NICKeepAlive implements Transport.NICKeepAlive.
func (g *guardTransport) NICKeepAlive() NICKeepAlive { return g.nka }

// Stats implements Transport.Stats.
func (g *guardTransport) Stats() TransportStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return TransportStats{KeepAlives: g.kas}
}

// Close implements Transport.Close: it ends Read; the duplicate is the
// process's to close (at its thaw), the app's socket stays open.
func (g *guardTransport) Close() error {
	g.once.Do(func() { close(g.done) })
	return nil
}
