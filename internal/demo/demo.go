package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/pushserver"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/profile"
	"github.com/standbynic/standbynic/slotmgr"
)

// Host and NIC settings of the demo.
const (
	resumeLatency    = 20 * time.Millisecond  // modelled resume time
	wakeHold         = 500 * time.Millisecond // awake after a hardware wake
	softwareWakeHold = 300 * time.Millisecond // awake after a software wake
	wireDelay        = time.Millisecond       // the wire's latency, each way
	wireJitter       = 200 * time.Microsecond
	pollInterval     = 50 * time.Millisecond // slot counters → timeline
	flushWait        = 2 * time.Second       // an app's FlushTransport
	dialWait         = 10 * time.Second
	resetWait        = 3 * time.Second // for the host to sleep before the reset
)

// File names in the out folder.
const (
	WirePcapName = "wire.pcap"
	WakePcapName = "wake.pcap"
)

// Errors of Run.
var (
	// ErrLost is returned by Run when a push was not delivered.
	ErrLost = errors.New("pushes lost")
	// ErrInterrupted is returned by Run when its context ended (the
	// command's SIGINT or SIGTERM) before the scenario and its drain were
	// over; the summary then covers the run so far.
	ErrInterrupted = errors.New("interrupted")
)

// Run builds the lab, runs the scenario and returns its summary, which it
// also prints to w after the timeline. It needs CAP_NET_ADMIN and
// CAP_NET_RAW (and CAP_SYS_ADMIN for the namespaces); see Launch for the
// unprivileged path. The error wraps ErrLost when a push was lost; the
// summary is complete then. When ctx ends the scenario stops where it
// is: Run prints the summary of the run so far (Summary.Interrupted, the
// pushes not delivered yet counted as pending, not lost), removes the
// lab and returns an error wrapping ErrInterrupted; interrupted during
// setup, it returns no summary.
//
// Errors carry no "demo:" prefix: the caller names the command (Launch
// writes "standbynic demo: ").
func Run(ctx context.Context, opts Options, w io.Writer) (Summary, error) {
	if err := opts.Validate(); err != nil {
		return Summary{}, err
	}
	opts = opts.withDefaults(time.Now())
	r := &runner{opts: opts, w: w, clock: nic.BootClock(), chans: map[string]*channel{}}
	defer r.close()
	if err := r.setup(ctx); err != nil {
		if ctx.Err() != nil {
			return Summary{}, fmt.Errorf("%w during setup: %w", ErrInterrupted, err)
		}
		return Summary{}, err
	}
	if err := r.play(ctx); err != nil && ctx.Err() == nil {
		return Summary{}, err
	}
	sum, err := r.finish(ctx)
	if err != nil {
		return sum, err
	}
	if werr := sum.Write(w); werr != nil {
		return sum, fmt.Errorf("write summary: %w", werr)
	}
	if sum.Interrupted {
		return sum, fmt.Errorf("%w after %v of the %v scenario: %d of %d pushes delivered, %d pending",
			ErrInterrupted, sum.Elapsed.Round(time.Millisecond), sum.Duration, sum.Pushes()-sum.Pending(), sum.Pushes(), sum.Pending())
	}
	if lost := sum.Lost(); lost > 0 {
		return sum, fmt.Errorf("%d of %d pushes: %w", lost, sum.Pushes(), ErrLost)
	}
	return sum, nil
}

// runner is one run: the lab and everything in it.
type runner struct {
	opts  Options
	w     io.Writer
	clock interface{ Now() time.Duration }

	tl                 *timeline
	lab                *netlab.Lab
	srv                *pushserver.Server
	dev                *nic.Device
	devp               atomic.Pointer[nic.Device] // dev, for the capture's goroutine
	wire               *wireWatch
	h                  *host.Host
	b                  *books
	wireF, wakeF       *os.File
	wirePath, wakePath string

	wakeq   chan nic.WakeEvent
	stop    chan struct{}
	wg      sync.WaitGroup
	stopped bool

	mu    sync.Mutex
	chans map[string]*channel
	start time.Duration // the host fell asleep, on the timeline
}

// channel is one sample app's channel.
type channel struct {
	app       app
	ch        *host.Channel
	firstSlot slotmgr.Kind
}

func (r *runner) setup(ctx context.Context) error {
	o := r.opts
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return fmt.Errorf("out folder: %w", err)
	}
	r.wirePath, r.wakePath = filepath.Join(o.OutDir, WirePcapName), filepath.Join(o.OutDir, WakePcapName)
	var err error
	if r.wireF, err = os.Create(r.wirePath); err != nil {
		return fmt.Errorf("wire pcap: %w", err)
	}
	if r.wakeF, err = os.Create(r.wakePath); err != nil {
		return fmt.Errorf("wake pcap: %w", err)
	}
	r.tl = newTimeline(r.w, o.Quiet, r.clock.Now)
	r.stop = make(chan struct{})
	wall0, boot0 := time.Now(), r.clock.Now()
	r.wire = newWireWatch(r.wireF, func(ts time.Time) time.Duration { return boot0 + ts.Sub(wall0) - r.tl.start },
		func() nic.PowerState {
			if d := r.devp.Load(); d != nil {
				return d.State()
			}
			return nic.D0
		})

	r.lab, err = netlab.New(ctx, nil)
	if err != nil {
		return err
	}
	a := r.lab.Addr
	r.tl.add("lab", "namespaces %s, %s, %s: %s %v ⇄ %s [NIC] %s ⇄ %s %v",
		r.lab.NamespaceName(netlab.Srv), r.lab.NamespaceName(netlab.NIC), r.lab.NamespaceName(netlab.Host),
		netlab.SrvLink, a.Srv4, netlab.WireLink, netlab.HostPortLink, netlab.HostLink, a.Host4)

	srvAddr := netip.AddrPortFrom(a.Srv4, 0).String()
	if err := r.lab.Do(netlab.Srv, func() error {
		var err error
		r.srv, err = pushserver.New(&pushserver.Config{TCPAddr: srvAddr, WSAddr: srvAddr, HTTPAddr: srvAddr})
		return err
	}); err != nil {
		return fmt.Errorf("push server: %w", err)
	}
	r.tl.add("server", "push server in %s: tcp %v, websocket %s, http %v",
		netlab.Srv, r.srv.TCPAddr(), r.srv.WSURL(), r.srv.HTTPAddr())

	if err := r.startNIC(); err != nil {
		return err
	}
	r.b = newBooks(r.tl, r.dev, r.wire)
	r.h, err = host.New(&host.Config{
		NIC:              &recordingNIC{NIC: r.dev, b: r.b},
		Pool:             &slotmgr.Config{IntervalUnit: time.Second, MinInterval: 1, MaxInterval: 3600},
		ResumeLatency:    resumeLatency,
		WakeHold:         wakeHold,
		SoftwareWakeHold: softwareWakeHold,
	})
	if err != nil {
		return err
	}
	for name, fn := range map[string]host.TaskFunc{"push": r.pushTask, "keepalive": r.keepAliveTask, "reset": r.resetTask} {
		if err := r.h.RegisterTask(name, fn); err != nil {
			return err
		}
	}
	for _, ap := range sampleApps {
		if err := r.open(ctx, ap); err != nil {
			return fmt.Errorf("channel %s: %w", ap.Channel, err)
		}
	}
	return nil
}

func (r *runner) startNIC() error {
	o := r.opts
	ifi, err := r.lab.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		return err
	}
	var wire, hport nic.Port
	if err := r.lab.Do(netlab.NIC, func() error {
		var err error
		if wire, err = nic.OpenPacketPort(netlab.WireLink, nil); err != nil {
			return err
		}
		if hport, err = nic.OpenPacketPort(netlab.HostPortLink, nil); err != nil {
			wire.Close()
			return err
		}
		return nil
	}); err != nil {
		return fmt.Errorf("nic ports: %w", err)
	}
	r.wakeq = make(chan nic.WakeEvent, 256)
	var prof *profile.Profile
	if o.Profile != "" {
		p, err := profile.Lookup(o.Profile)
		if err != nil {
			return err
		}
		p = p.Scaled(ProfileScale)
		prof = &p
	}
	r.dev, err = nic.New(&nic.Config{
		Profile: prof,
		Wire:    wire, Host: hport,
		MAC:          [6]byte(ifi.HardwareAddr),
		Addrs:        []netip.Addr{r.lab.Addr.Host4, r.lab.Addr.Host6},
		Capabilities: nic.Capabilities{Slots: o.Slots},
		Faults:       nic.Faults{Seed: o.Seed, Loss: o.Loss, Delay: wireDelay, Jitter: wireJitter},
		WirePcap:     r.wire,
		WakePcap:     r.wakeF,
		OnWake: func(ev nic.WakeEvent) {
			select {
			case r.wakeq <- ev:
			default:
			}
		},
	})
	if err != nil {
		wire.Close()
		hport.Close()
		return fmt.Errorf("nic: %w", err)
	}
	r.devp.Store(r.dev)
	r.tl.add("nic", "NIC between %s and %s: %d hardware slots; wire delay %v ± %v, loss %g%% (seed %d)",
		netlab.WireLink, netlab.HostPortLink, r.dev.Capabilities().Slots, wireDelay, wireJitter, 100*o.Loss, o.Seed)
	if prof != nil {
		r.tl.add("nic", "firmware profile %s (%s), its times divided by %d like the demo's intervals: requests it cannot honour are refused with its own codes and the channel stays on a software slot",
			o.Profile, prof.Part, ProfileScale)
	}
	return nil
}

// open creates ap's channel, connects its transport and says hello.
func (r *runner) open(ctx context.Context, ap app) error {
	ch, err := r.h.NewChannel(ap.Channel, ap.Interval, slotmgr.RequestHardwareSlot, ap.Channel, ap.Priority)
	if err != nil {
		return err
	}
	if err := errors.Join(ch.SetPushTask("push"), ch.SetKeepAliveTask("keepalive"), ch.SetResetTask("reset")); err != nil {
		return err
	}
	r.mu.Lock()
	r.chans[ap.Channel] = &channel{app: ap, ch: ch}
	r.mu.Unlock()
	if err := r.connect(ctx, ap, ch); err != nil {
		return err
	}
	st, err := ch.WaitForPushEnabled()
	if err != nil {
		return err
	}
	pl := ch.Placement()
	why := ""
	if pl.Reason != "" {
		why = " (" + withoutPoolIndex(pl.Reason) + ")"
	}
	r.tl.add("channel", "%-7s %-9s prio %d, keep-alive every %v: hardware slot requested → %v%s",
		ap.Channel, transportName(ap.Transport), ap.Priority, ap.Interval, st, why)
	return nil
}

// connect dials ap's transport from the host namespace, gives it to the
// channel (the NIC starts learning the connection) and says hello, so the
// NIC sees segments both ways before the host sleeps.
func (r *runner) connect(ctx context.Context, ap app, ch *host.Channel) error {
	ctx, cancel := context.WithTimeout(ctx, dialWait)
	defer cancel()
	var t host.Transport
	switch ap.Transport {
	case host.KindStream:
		c, err := r.lab.DialTCP(ctx, netlab.Host, r.srv.TCPAddr().String())
		if err != nil {
			return err
		}
		s, err := host.NewStream(c, nil)
		if err != nil {
			c.Close()
			return err
		}
		t = s
	case host.KindWebSocket:
		d := &websocket.Dialer{
			HandshakeTimeout: dialWait,
			NetDialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return r.lab.DialTCP(ctx, netlab.Host, addr)
			},
		}
		ws, err := host.DialWebSocket(ctx, d, r.srv.WSURL())
		if err != nil {
			return err
		}
		t = ws
	default:
		return fmt.Errorf("transport %v", ap.Transport)
	}
	if la, ok := t.Conn().LocalAddr().(*net.TCPAddr); ok {
		ap := la.AddrPort()
		r.b.connect(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ch.ID())
	}
	if err := ch.UsingTransport(t); err != nil {
		t.Close()
		return err
	}
	if err := t.Write([]byte("hello " + ap.Channel)); err != nil {
		return err
	}
	return r.srv.WaitConnected(ctx, ap.Channel)
}

func transportName(k host.TransportKind) string {
	if k == host.KindStream {
		return "tcp"
	}
	return k.String()
}

// channelOf returns the demo channel named name.
func (r *runner) channelOf(name string) *channel {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chans[name]
}

// pushTask is every app's PushNotification task: it takes the queued
// messages, notes each push delivered, and acknowledges it.
func (r *runner) pushTask(ctx context.Context, ti *host.TaskInstance) {
	name := ti.Channel.ID()
	for {
		m, ok := ti.Receive()
		if !ok {
			break
		}
		id, seq, ok := parsePush(string(m.Data))
		if !ok {
			continue
		}
		if p := r.b.delivered(seq); p != nil {
			how := "host was awake"
			switch {
			case p.wake >= 0:
				how = fmt.Sprintf("the NIC woke the host %s after the push", formatLatency(p.wake-p.sent))
			case p.asleep:
				how = "held until the host's next wake"
			}
			r.tl.add("deliver", "%-7s push #%d delivered to the app in %s (%s)", name, id, formatLatency(p.delivered-p.sent), how)
		}
		if err := ti.Channel.Send([]byte("ack " + strconv.FormatUint(id, 10))); err != nil {
			r.tl.add("app", "%-7s ack #%d not sent: %v", name, id, err)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, flushWait)
	defer cancel()
	ti.Channel.FlushTransport(fctx)
}

// parsePush reads "push <id> <seq> <text>".
func parsePush(s string) (id, seq uint64, ok bool) {
	f := strings.SplitN(s, " ", 4)
	if len(f) < 3 || f[0] != "push" {
		return 0, 0, false
	}
	id, err1 := strconv.ParseUint(f[1], 10, 64)
	seq, err2 := strconv.ParseUint(f[2], 10, 64)
	return id, seq, err1 == nil && err2 == nil
}

// keepAliveTask is the KeepAlive task of the TCP apps: the app writes its
// own keep-alive line — on a software slot at every keep-alive, on a
// hardware slot when the host is awake anyway as the NIC's next one falls
// due (the NIC takes the schedule on from there at the next standby).
func (r *runner) keepAliveTask(ctx context.Context, ti *host.TaskInstance) {
	if err := ti.Channel.Send([]byte("ka")); err != nil {
		r.tl.add("app", "%-7s keep-alive not sent: %v", ti.Channel.ID(), err)
		return
	}
	slot := "software slot"
	if ti.Channel.Status() == slotmgr.HardwareSlotAllocated {
		slot = "hardware slot, host awake as it fell due"
	}
	r.tl.add("app", "%-7s keep-alive line sent by the app's task (%s)", ti.Channel.ID(), slot)
	fctx, cancel := context.WithTimeout(ctx, flushWait)
	defer cancel()
	ti.Channel.FlushTransport(fctx)
}

// resetTask is every app's reset task: after the loss of its transport
// the app reconnects the same channel on a new one.
func (r *runner) resetTask(ctx context.Context, ti *host.TaskInstance) {
	name := ti.Channel.ID()
	if ti.Reset != host.ResetTransportDisconnected {
		r.tl.add("reset", "%-7s %v", name, ti.Reset)
		return
	}
	cause := "?"
	if err := ti.Channel.DisconnectCause(); err != nil {
		cause = err.Error()
	}
	r.tl.add("reset", "%-7s transport disconnected (%s); the app reconnects", name, cause)
	c := r.channelOf(name)
	if c == nil {
		return
	}
	if err := r.connect(ctx, c.app, ti.Channel); err != nil {
		r.tl.add("reset", "%-7s reconnect failed: %v", name, err)
		return
	}
	st, _ := ti.Channel.WaitForPushEnabled()
	pl := ti.Channel.Placement()
	why := ""
	if pl.Reason != "" {
		why = " (" + withoutPoolIndex(pl.Reason) + ")"
	}
	r.tl.add("channel", "%-7s reconnected → %v%s", name, st, why)
}

// play puts the host to sleep and runs the script.
func (r *runner) play(ctx context.Context) error {
	r.tl.add("host", "the user turns the screen off: host enters standby")
	sctx, cancel := context.WithTimeout(ctx, dialWait)
	err := r.h.Standby(sctx)
	cancel()
	if err != nil {
		return fmt.Errorf("standby: %w", err)
	}
	var hw, sw []string
	for _, ap := range sampleApps {
		c := r.channelOf(ap.Channel)
		c.firstSlot = c.ch.Placement().Kind
		if c.ch.Armed() {
			hw = append(hw, ap.Channel)
		} else {
			sw = append(sw, ap.Channel)
		}
	}
	r.tl.add("host", "asleep: NIC guards %s in hardware slots (%s); host keeps %s alive itself",
		orNone(strings.Join(hw, ", ")), r.b.slotList(), orNone(strings.Join(sw, ", ")))
	for _, ap := range sampleApps {
		// A hardware channel the NIC did not take (a firmware profile's
		// refusal, a connection not yet learned) says why.
		if c := r.channelOf(ap.Channel); !c.ch.Armed() {
			if note := c.ch.Note(); note != "" {
				r.tl.add("host", "%-7s kept by the host: %s", ap.Channel, note)
			}
		}
	}
	r.start = r.tl.since()
	r.wg.Add(3)
	go func() { defer r.wg.Done(); r.processWakes() }()
	go func() { defer r.wg.Done(); r.pollSlots() }()
	go func() { defer r.wg.Done(); r.watchHost() }()

	steps := script(r.opts.Duration, r.opts.Seed, sampleApps)
	for _, s := range append(steps, step{At: r.opts.Duration}) {
		if err := r.sleepUntil(ctx, r.start+s.At); err != nil {
			return err
		}
		r.do(s)
	}
	return nil
}

// sleepUntil waits until the timeline reaches at, or ctx ends.
func (r *runner) sleepUntil(ctx context.Context, at time.Duration) error {
	d := at - r.tl.since()
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// do performs one step of the script.
func (r *runner) do(s step) {
	c := r.channelOf(s.Channel)
	switch s.Kind {
	case stepPush:
		if ch, ok := r.srv.Channel(s.Channel); !ok || !ch.Connected {
			r.tl.add("server", "%-7s push skipped: not connected", s.Channel)
			return
		}
		kind := c.ch.Placement().Kind
		seq := r.b.pushing(s.Channel, r.h.State() != host.Awake)
		id, err := r.srv.Push(s.Channel, fmt.Sprintf("%d %s", seq, c.app.Payload))
		if err != nil && id == 0 {
			r.b.unpush(seq)
			r.tl.add("server", "%-7s push not sent: %v", s.Channel, err)
			return
		}
		r.b.pushed(seq, id)
		r.tl.add("server", "%-7s push #%d %q (%v slot)", s.Channel, id, c.app.Payload, kind)
		if err != nil {
			r.tl.add("server", "%-7s push #%d write: %v", s.Channel, id, err)
		}
	case stepPing:
		payload := "ping-" + strconv.FormatInt(int64(s.At/time.Millisecond), 10)
		if err := r.srv.Ping(s.Channel, payload); err != nil {
			r.tl.add("server", "%-7s Ping not sent: %v", s.Channel, err)
			return
		}
		r.tl.add("server", "%-7s WebSocket Ping %q", s.Channel, payload)
	case stepReset:
		// Reset a sleeping host's connection, so the NIC sees the RST.
		wctx, cancel := context.WithTimeout(context.Background(), resetWait)
		r.h.Wait(wctx, func(st *host.Stats) bool { return st.State == host.Standby })
		cancel()
		r.b.resetting(s.Channel)
		if err := r.srv.Reset(s.Channel); err != nil {
			r.tl.add("server", "%-7s reset failed: %v", s.Channel, err)
			return
		}
		r.tl.add("server", "%-7s connection reset by the server (RST)", s.Channel)
	default:
		r.tl.add("host", "scenario over after %v", r.opts.Duration)
	}
}

// processWakes accounts the device's wake events.
func (r *runner) processWakes() {
	for {
		select {
		case <-r.stop:
			return
		case ev := <-r.wakeq:
			at := ev.At - r.tl.start
			r.b.nicWakeEvent(ev, at)
			if ev.Reason == nic.WakeHost {
				continue // the host's own wake: reported by watchHost
			}
			r.b.mu.Lock()
			ch := r.b.last[int(ev.Slot)]
			r.b.mu.Unlock()
			r.tl.addAt(at, "wake", fmt.Sprintf("NIC wakes the host: %s on slot %d (%s), wake packet saved", ev.Reason, ev.Slot, ch))
		}
	}
}

// pollSlots reports the hardware slots' keep-alive work as it happens.
func (r *runner) pollSlots() {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.b.poll()
		}
	}
}

// watchHost reports the host's wakes and sleeps, its software
// keep-alives, and the channels' placement changes.
func (r *runner) watchHost() {
	prev := r.h.Stats()
	events := map[string]int{}
	awakeAt := time.Duration(-1)
	slots := r.b.slotList()
	for {
		changed := r.h.Changed()
		st := r.h.Stats()
		now := r.tl.since()
		for _, reason := range hostWakeOrder {
			n := st.Wake(reason) - prev.Wake(reason)
			for range n {
				switch reason {
				case host.WakeSoftwareKeepAlive, host.WakeSoftwarePushCheck:
					r.tl.add("wake", "host wakes on its own timer (%s)", reason)
				default:
					r.tl.add("host", "resumes (%s), resume latency %v", reason, resumeLatency)
				}
			}
		}
		if n := st.KeepAlives - prev.KeepAlives; n > 0 {
			r.tl.add("host", "%d keep-alive(s) due: sent by the host while awake", n)
		}
		if st.State != prev.State {
			switch {
			case st.State == host.Awake && awakeAt < 0:
				awakeAt = now
			case st.State == host.Standby && awakeAt >= 0:
				moved := ""
				if l := r.b.slotList(); l != slots {
					moved, slots = "; NIC slots now "+l, l
				}
				r.tl.add("host", "back to standby after %s awake%s", formatLatency(now-awakeAt), moved)
				awakeAt = -1
			}
		}
		prev = st
		for _, ap := range sampleApps {
			c := r.channelOf(ap.Channel)
			evs := c.ch.Events()
			for _, e := range evs[min(events[ap.Channel], len(evs)):] {
				why := ""
				if e.Reason != "" {
					why = ": " + withoutPoolIndex(e.Reason)
				}
				r.tl.add("slots", "%-7s %s, %v → %v%s", ap.Channel, e.Kind, e.From, e.To, why)
			}
			events[ap.Channel] = len(evs)
		}
		select {
		case <-r.stop:
			return
		case <-changed:
		}
	}
}

// finish wakes the host for the user, waits for the pushes still on
// their way, and closes everything to read the books. Once ctx has ended
// (an interrupted run) it skips the wake and the waits: the summary is
// the run so far, and the host hands its slots back as it closes.
func (r *runner) finish(ctx context.Context) (Summary, error) {
	var elapsed time.Duration // of the scenario: 0 before the host slept
	if r.start > 0 {
		elapsed = min(r.tl.since()-r.start, r.opts.Duration)
	}
	if ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, dialWait)
		err := r.h.Wake(wctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			return Summary{}, fmt.Errorf("wake: %w", err)
		}
	}
	if ctx.Err() == nil {
		r.tl.add("host", "the user wakes the host; waiting up to %v for pushes in flight", r.opts.Drain)
		r.drain(ctx)
	}
	if ctx.Err() == nil {
		r.waitAcks(ctx)
	}
	interrupted := ctx.Err() != nil
	if interrupted {
		n, _ := r.b.undelivered()
		r.tl.add("host", "interrupted after %v of the %v scenario: %d push(es) not delivered yet; removing the lab",
			elapsed.Round(time.Millisecond), r.opts.Duration, n)
	}

	sum := Summary{
		Duration: r.opts.Duration, Slots: r.dev.Capabilities().Slots, Seed: r.opts.Seed,
		Interrupted: interrupted, Elapsed: elapsed,
		HostWakes: map[string]uint64{}, OutDir: r.opts.OutDir, WirePcap: r.wirePath, WakePcap: r.wakePath,
	}
	st := r.h.Stats()
	for _, reason := range hostWakeOrder {
		if n := st.Wake(reason); n > 0 {
			sum.HostWakes[reason.String()] = n
		}
	}
	sum.EnergyMJ, sum.SoftwareOnlyMJ, sum.SoftwareKeepAlives = st.EnergyMJ, st.SoftwareOnlyMJ, st.KeepAlives

	// Stop the reporters, then the host (it hands back anything armed),
	// then the device (it flushes the pcaps).
	r.stopReporters()
	r.b.poll()
	r.h.Close()
	r.dev.Close()
	r.b.flush()

	r.b.mu.Lock()
	sum.NICWakes = maps.Clone(r.b.nicWake)
	sum.Coalesced = r.b.coalesced
	sum.WindowProbes = r.b.windowProbes
	sum.Unexplained = slices.Clone(r.b.unexplained)
	t := r.b.slotTotals
	sum.KeepAlivesSent, sum.KeepAliveRetries, sum.RepliesAbsorbed, sum.ACKsAbsorbed, sum.PingsAnswered =
		t.KeepalivesSent, t.Retries, t.RepliesAbsorbed, t.ACKsAbsorbed, t.PingsAnswered
	for _, ap := range sampleApps {
		c := r.chans[ap.Channel]
		cs := ChannelSummary{
			Name: ap.Channel, Transport: transportName(ap.Transport), Priority: ap.Priority, Interval: ap.Interval,
			Slot: c.firstSlot.String(), FinalSlot: c.ch.Placement().Kind.String(), Armed: r.b.armCount[ap.Channel],
		}
		cs.Resets, _ = c.ch.Resets()
		var lat []time.Duration
		for _, seq := range r.b.order {
			p := r.b.pushes[seq]
			if p.channel != ap.Channel {
				continue
			}
			cs.Sent++
			if p.delivered >= 0 {
				cs.Delivered++
				lat = append(lat, p.delivered-p.sent)
			}
		}
		cs.P50, cs.Max = percentile(lat, 0.5), percentile(lat, 1)
		if sc, ok := r.srv.Channel(ap.Channel); ok {
			cs.Acked = len(sc.Acked)
		}
		sum.Channels = append(sum.Channels, cs)
	}
	r.b.mu.Unlock()
	r.tl.close()

	var errs []error
	for _, f := range []*os.File{r.wireF, r.wakeF} {
		if err := f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	r.wireF, r.wakeF = nil, nil
	var err1, err2 error
	sum.WireFrames, err1 = countPcap(r.wirePath)
	sum.WakePackets, err2 = countPcap(r.wakePath)
	if err := errors.Join(append(errs, err1, err2)...); err != nil {
		return sum, fmt.Errorf("pcaps: %w", err)
	}
	return sum, nil
}

// drain waits up to Options.Drain for the pushes not delivered yet, or
// until ctx ends.
func (r *runner) drain(ctx context.Context) {
	deadline := time.NewTimer(r.opts.Drain)
	defer deadline.Stop()
	for {
		n, changed := r.b.undelivered()
		if n == 0 {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			r.tl.add("host", "%d push(es) still undelivered after %v", n, r.opts.Drain)
			return
		case <-ctx.Done():
			return
		}
	}
}

// waitAcks waits a little for the acks the apps wrote to reach the
// server.
func (r *runner) waitAcks(ctx context.Context) {
	actx, cancel := context.WithTimeout(ctx, flushWait)
	defer cancel()
	r.b.mu.Lock()
	var acks []*pushRecord
	for _, p := range r.b.pushes {
		if p.delivered >= 0 {
			acks = append(acks, p)
		}
	}
	r.b.mu.Unlock()
	for _, p := range acks {
		r.srv.WaitAcked(actx, p.channel, p.id)
	}
}

// stopReporters stops the timeline's goroutines; it is idempotent.
func (r *runner) stopReporters() {
	if r.stop != nil && !r.stopped {
		r.stopped = true
		close(r.stop)
	}
	r.wg.Wait()
}

// close tears everything down, whatever state the run reached.
func (r *runner) close() {
	r.stopReporters()
	if r.h != nil {
		r.h.Close()
	}
	if r.dev != nil {
		r.dev.Close()
	}
	if r.srv != nil {
		r.srv.Close()
	}
	if r.lab != nil {
		r.lab.Close()
	}
	if r.tl != nil {
		r.tl.close()
	}
	for _, f := range []*os.File{r.wireF, r.wakeF} {
		if f != nil {
			f.Close()
		}
	}
}

// poolSlot matches the slot pool's own index of a hardware slot in a
// slotmgr reason ("promoted to hardware slot 2 freed by channel mail").
var poolSlot = regexp.MustCompile(`(to |from )?hardware slot \d+`)

// withoutPoolIndex rewrites a slotmgr reason without the pool's slot
// index: the timeline numbers hardware slots one way, the NIC's slot IDs
// (see the package doc), and the pool's 0-based index of the slot it
// reserves is not that number.
func withoutPoolIndex(reason string) string {
	return poolSlot.ReplaceAllStringFunc(reason, func(m string) string {
		switch {
		case strings.HasPrefix(m, "to "):
			return "to the hardware slot"
		case strings.HasPrefix(m, "from "):
			return "from its hardware slot"
		}
		return "a hardware slot"
	})
}
