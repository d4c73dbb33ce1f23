package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/slotmgr"
)

// Config configures a Host. Zero fields take their defaults.
type Config struct {
	// Clock is the host's time (default SystemClock). With a NIC it must
	// be the NIC's clock too: snapshots carry times on it.
	Clock Clock
	// NIC is the connected-standby adapter; nil means none: every channel
	// is kept alive by the host's own wakes.
	NIC NIC
	// Pool is the slot policy; HardwareSlots 0 takes the NIC's slot count
	// (slotmgr's default without a NIC).
	Pool *slotmgr.Config
	// Planner tunes the coalescing of software keep-alives (nil:
	// coalescing with slotmgr.DefaultTolerance).
	Planner *slotmgr.PlannerConfig
	// ResumeLatency is the modelled time from a wake to the host running.
	ResumeLatency time.Duration
	// Power is the energy model.
	Power Power
	// PushCheckInterval, when positive, wakes the host at that interval
	// while software channels exist, to collect their pushes.
	PushCheckInterval time.Duration
	// WakeHold bounds how long, after a hardware wake, the host stays
	// awake waiting for the woken channel's message or disconnection
	// (default 2 s).
	WakeHold time.Duration
	// SoftwareWakeHold is how long a software wake stays awake to collect
	// pushes of software channels (default 0).
	SoftwareWakeHold time.Duration
	// IdleWait bounds, in real time, the wait at standby entry for a
	// hardware channel's socket to drain (unacknowledged bytes); default
	// 1 s. Kernel queues drain in real time whatever the Clock.
	IdleWait time.Duration
	// HardwareRetryInterval and HardwareRetryCount tune the NIC's
	// keep-alive retries (default Interval/4 and 3).
	HardwareRetryInterval time.Duration
	HardwareRetryCount    int
	// ReconnectMin and ReconnectMax bound the reconnect schedule of a
	// channel that lost its transport: the first retry after ReconnectMin
	// (default 500 ms), each next one after twice the last, at most
	// ReconnectMax (default 5 min), each ±ReconnectJitter (default 0.2;
	// negative: none) at random.
	ReconnectMin, ReconnectMax time.Duration
	ReconnectJitter            float64
	// OnTaskStart, if set, is called on a task's goroutine just before
	// the task runs (benchmarks measure wake latency with it).
	OnTaskStart func(*TaskInstance)
	// Logger receives the host's logs (default: discard).
	Logger *slog.Logger
}

// Errors.
var (
	ErrClosed       = errors.New("host closed")
	ErrNoTransport  = errors.New("channel has no transport")
	ErrChannelGone  = errors.New("channel closed")
	ErrHasTransport = errors.New("channel already has a live transport")
)

// Host is the sleeping host: power states, channels, tasks. Its methods
// are safe for concurrent use.
//
// Goroutines: the state machine (run), one posted receive per channel
// transport, and one per running task; Close stops and waits for all.
//
// Lock: mu guards everything below it; the NIC and socket calls of the
// state machine are made with mu held (they do not call back).
type Host struct {
	cfg   Config
	clock Clock
	nic   NIC
	log   *slog.Logger
	pool  *slotmgr.Pool
	power Power

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}

	closeOnce sync.Once

	mu      sync.Mutex
	closed  bool
	state   State
	target  State // Awake (user) or Standby (background cycles)
	since   time.Duration
	chans   map[string]*Channel
	order   []*Channel // creation order
	seq     uint64
	tasks   map[string]TaskFunc
	pending []pendingTask
	running int

	planner   *slotmgr.Planner
	shadow    *slotmgr.Planner // every channel: the all-software host
	shadowAt  time.Duration
	shadowOn  bool // the shadow host is asleep
	pushCheck time.Duration

	holdUntil time.Duration
	holdFixed bool              // holdUntil holds whatever arrives (software wakes)
	expect    map[*Channel]bool // channels whose wake message is awaited

	wakeReason WakeReason
	lastWake   nic.WakeEvent

	// quietPolls counts the real-time polls of the wait for the
	// channels' sockets to be quiet before standby; polling says one is
	// scheduled.
	quietPolls int
	polling    bool

	// The NIC watch (nicwatch.go): watch is Config.NIC as a NICWatcher
	// (nil when it is not one); nicDown says the NIC is lost, nicBackC
	// is closed when it is back; nicRestarts the Restarts last seen.
	watch       NICWatcher
	nicDown     bool
	nicBackC    <-chan struct{}
	nicRestarts uint64

	procs []*ProcessApp // real processes held (process.go)

	stats   Stats
	changed chan struct{}
	syncs   []chan struct{} // closed once the state machine has nothing in flight
}

// New starts a host, awake.
func New(cfg *Config) (*Host, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Clock == nil {
		c.Clock = SystemClock()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.WakeHold <= 0 {
		c.WakeHold = 2 * time.Second
	}
	if c.IdleWait <= 0 {
		c.IdleWait = time.Second
	}
	if c.HardwareRetryCount <= 0 {
		c.HardwareRetryCount = 3
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = DefaultReconnectMax
	}
	if c.ReconnectJitter == 0 {
		c.ReconnectJitter = DefaultReconnectJitter
	}
	if c.ReconnectMax < c.ReconnectMin || c.ReconnectJitter >= 1 {
		return nil, fmt.Errorf("new host: reconnect schedule %v..%v ±%v: want min ≤ max and jitter below 1", c.ReconnectMin, c.ReconnectMax, c.ReconnectJitter)
	}
	if c.ResumeLatency < 0 || c.PushCheckInterval < 0 || c.SoftwareWakeHold < 0 {
		return nil, errors.New("new host: negative duration in config")
	}
	var pc slotmgr.Config
	if c.Pool != nil {
		pc = *c.Pool
	}
	if pc.HardwareSlots == 0 && c.NIC != nil {
		pc.HardwareSlots = min(c.NIC.Capabilities().Slots, slotmgr.MaxHardwareSlots)
	}
	pool, err := slotmgr.New(&pc, c.Clock)
	if err != nil {
		return nil, fmt.Errorf("new host: %w", err)
	}
	planner, err := slotmgr.NewPlanner(c.Planner)
	if err != nil {
		return nil, fmt.Errorf("new host: %w", err)
	}
	shadow, _ := slotmgr.NewPlanner(c.Planner)
	ctx, cancel := context.WithCancel(context.Background())
	h := &Host{
		cfg:     c,
		clock:   c.Clock,
		nic:     c.NIC,
		log:     c.Logger,
		pool:    pool,
		power:   c.Power.withDefaults(),
		ctx:     ctx,
		cancel:  cancel,
		kick:    make(chan struct{}, 1),
		state:   Awake,
		target:  Awake,
		chans:   map[string]*Channel{},
		tasks:   map[string]TaskFunc{},
		planner: planner,
		shadow:  shadow,
		expect:  map[*Channel]bool{},
		changed: make(chan struct{}),
	}
	if w, ok := c.NIC.(NICWatcher); ok {
		h.watch = w
		h.nicRestarts = w.Health().Restarts
		h.startLeaseLocked()
	}
	h.since = h.clock.Now()
	h.shadowAt = h.since
	h.stats.State = Awake
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.run()
	}()
	return h, nil
}

// Pool returns the host's slot pool.
func (h *Host) Pool() *slotmgr.Pool { return h.pool }

// Clock returns the host's clock.
func (h *Host) Clock() Clock { return h.clock }

// State returns the current power state.
func (h *Host) State() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state
}

// Stats returns the books, with time and energy accounted up to now.
func (h *Host) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.statsLocked()
}

func (h *Host) statsLocked() Stats {
	now := h.clock.Now()
	h.advanceShadowLocked(now)
	st := h.stats
	st.State = h.state
	st.TimeIn[h.state] += now - h.since
	st.EnergyMJ = h.power.energy(st.AwakeTime(), st.TimeIn[Standby], st.Resumes)
	// The all-software host sleeps when this one does and wakes for every
	// coalesced keep-alive of every channel (SoftwareOnlyWakes, each
	// costing Power.SoftwareWake awake), for the user and for push
	// checks; its pushes are collected on those wakes.
	extra := time.Duration(st.SoftwareOnlyWakes) * h.power.SoftwareWake
	resumes := st.SoftwareOnlyWakes + st.Wakes[WakeUser] + st.Wakes[WakeSoftwarePushCheck] + st.Wakes[WakeReconnect]
	st.SoftwareOnlyMJ = h.power.energy(st.AwakeTime()+extra, max(st.TimeIn[Standby]-extra, 0), resumes)
	return st
}

// advanceShadowLocked runs the all-software planner up to now: while the
// host sleeps, each of its wakes counts.
func (h *Host) advanceShadowLocked(now time.Duration) {
	wakes, _ := h.shadow.RunUntil(h.shadowAt, now+1) // wakes at now included
	if h.shadowOn {
		h.stats.SoftwareOnlyWakes += uint64(wakes)
	}
	h.shadowAt = max(h.shadowAt, now)
}

// LastWake returns the NIC's last wake event that woke the host (zero
// before the first): its RxTime is when the wake packet reached the
// wire port.
func (h *Host) LastWake() nic.WakeEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastWake
}

// PlannerCounters returns the software keep-alive planner's books.
func (h *Host) PlannerCounters() slotmgr.PlannerCounters {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.planner.Counters()
}

// Changed returns a channel closed at the next change of state, stats or
// channel; tests and callers wait on it with a deadline.
func (h *Host) Changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

// Wait blocks until cond holds for the host, ctx ends or the host closes.
// cond runs with the host's lock held: it must not call the host.
func (h *Host) Wait(ctx context.Context, cond func(st *Stats) bool) error {
	for {
		h.mu.Lock()
		st := h.statsLocked()
		ok, ch, closed := cond(&st), h.changed, h.closed
		h.mu.Unlock()
		if ok {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (h *Host) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *Host) kickLocked() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
	h.notifyLocked()
}

// setStateLocked moves the power state, counting the transition and the
// time spent in the state left.
func (h *Host) setStateLocked(to State) {
	now := h.clock.Now()
	h.advanceShadowLocked(now)
	h.stats.TimeIn[h.state] += now - h.since
	h.stats.Transitions[h.state][to]++
	h.log.Debug("host state", "from", h.state, "to", to)
	h.state, h.since = to, now
	h.shadowOn = to == Standby
	var sys slotmgr.SystemState
	switch to {
	case Awake:
		sys = slotmgr.Awake
	case EnteringStandby:
		sys = slotmgr.EnteringStandby
	case Standby, Resuming:
		sys = slotmgr.Standby
	}
	h.pool.SetSystemState(sys)
	h.notifyLocked()
}

// Standby asks the host to sleep (the user turned the screen off): it
// enters standby as soon as no task runs, and returns to it after every
// background wake. It returns once the host is in standby.
func (h *Host) Standby(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	h.target = Standby
	h.kickLocked()
	h.mu.Unlock()
	return h.waitState(ctx, Standby)
}

// Wake wakes the host for the user (WakeUser) and keeps it awake until
// the next Standby. It returns once the host is awake.
func (h *Host) Wake(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	h.target = Awake
	if h.state == Standby {
		h.beginResumeLocked(WakeUser)
	}
	h.kickLocked()
	h.mu.Unlock()
	return h.waitState(ctx, Awake)
}

func (h *Host) waitState(ctx context.Context, s State) error {
	return h.Wait(ctx, func(st *Stats) bool { return st.State == s })
}

// Reset raises a system reset event (FastUserSwitched, LowPowerExit,
// QuietHoursExit, ApplicationRestart) on every channel: each channel's
// reset task runs.
func (h *Host) Reset(reason ResetReason) error {
	if reason == 0 || reason >= numResetReason || reason == ResetTransportDisconnected {
		return fmt.Errorf("reset: invalid reason %v", reason)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	for _, ch := range h.order {
		if !ch.closed {
			ch.resets++
			ch.lastReset = reason
			h.fireLocked(ch, TriggerReset, reason)
		}
	}
	return nil
}

// Close stops the host: it closes every channel's transport, hands back
// any frozen socket, stops the state machine and waits for every
// goroutine (tasks get a cancelled context). Close is idempotent.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		if h.nic != nil && (h.state == Standby || h.state == Resuming) {
			if h.state == Standby && !h.nicDown {
				h.nic.Wake() // an error says a frame woke it already
			}
			h.handBackLocked()
		}
		h.procCloseLocked()
		for _, ch := range h.order {
			h.closeChannelLocked(ch)
		}
		h.notifyLocked()
		h.mu.Unlock()
		h.cancel()
		h.wg.Wait()
		h.pool.Close()
	})
	return nil
}

// run is the state machine.
func (h *Host) run() {
	var (
		wakeT, resumeT, holdT Timer
		wakeAt, holdAt        time.Duration = -1, -1
		wakeC, resumeC, holdC <-chan struct{}
		poolC                 = h.pool.Notify()
		nicC                  <-chan nic.WakeEvent
	)
	if h.nic != nil {
		nicC = h.nic.Wakes()
	}
	stop := func(t Timer) {
		if t != nil {
			t.Stop()
		}
	}
	defer func() { stop(wakeT); stop(resumeT); stop(holdT) }()
	resumePending := false
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return
		}
		h.stepLocked()
		now := h.clock.Now()
		// The software wake timer runs only in standby.
		next := time.Duration(-1)
		switch h.state {
		case Standby:
			next = h.nextSoftwareWakeLocked(now)
		case Awake:
			next = h.nextReconnectLocked() // stepLocked serves it
		}
		if next != wakeAt {
			stop(wakeT)
			wakeT, wakeC, wakeAt = nil, nil, next
			if next >= 0 {
				wakeT = h.clock.NewTimer(next - now)
				wakeC = wakeT.C()
			}
		}
		if h.state == Resuming && !resumePending {
			resumePending = true
			resumeT = h.clock.NewTimer(h.cfg.ResumeLatency)
			resumeC = resumeT.C()
		}
		want := time.Duration(-1)
		if h.state == Awake && h.target == Standby && h.holdUntil > now {
			want = h.holdUntil
		}
		if want != holdAt {
			stop(holdT)
			holdT, holdC, holdAt = nil, nil, want
			if want >= 0 {
				holdT = h.clock.NewTimer(want - now)
				holdC = holdT.C()
			}
		}
		backC := h.nicBackC
		if len(h.syncs) > 0 && len(h.kick) == 0 && len(wakeC) == 0 && len(resumeC) == 0 && len(holdC) == 0 && len(nicC) == 0 {
			for _, c := range h.syncs {
				close(c)
			}
			h.syncs = nil
		}
		h.mu.Unlock()

		select {
		case <-h.ctx.Done():
			return
		case <-h.kick:
		case _, ok := <-poolC:
			if !ok {
				poolC = nil
			}
			h.mu.Lock()
			h.poolEventsLocked()
			h.mu.Unlock()
		case w := <-nicC:
			h.mu.Lock()
			h.nicWakeLocked(w)
			h.mu.Unlock()
		case <-backC:
			h.mu.Lock()
			h.nicBackLocked()
			h.mu.Unlock()
		case <-wakeC:
			wakeT, wakeC, wakeAt = nil, nil, -1
			h.mu.Lock()
			if h.state == Standby {
				now := h.clock.Now()
				at, served := h.planner.NextWake(now)
				r := WakeSoftwarePushCheck
				if rc := h.nextReconnectLocked(); rc >= 0 && rc <= now {
					r = WakeReconnect
				}
				if len(served) > 0 && at <= now {
					r = WakeSoftwareKeepAlive
				}
				h.beginResumeLocked(r)
			}
			h.mu.Unlock()
		case <-resumeC:
			resumeT, resumeC, resumePending = nil, nil, false
			h.mu.Lock()
			if h.state == Resuming {
				h.finishResumeLocked()
			}
			h.mu.Unlock()
		case <-holdC:
			holdT, holdC, holdAt = nil, nil, -1
			h.mu.Lock()
			if h.clock.Now() >= h.holdUntil {
				clear(h.expect)
			}
			h.mu.Unlock()
		}
	}
}

// stepLocked does what the state calls for: run pending tasks and serve
// due keep-alives when awake, go back to standby when nothing holds the
// host awake.
func (h *Host) stepLocked() {
	if h.state != Awake {
		return
	}
	now := h.clock.Now()
	h.serveKeepAlivesLocked(now, false)
	h.dueReconnectsLocked(now)
	h.runPendingLocked()
	if h.target != Standby || h.running > 0 || len(h.pending) > 0 {
		return
	}
	// A hardware wake holds the host until the woken channel's message
	// (or disconnection) arrived, at most WakeHold; a software wake holds
	// it SoftwareWakeHold.
	if now < h.holdUntil && (h.holdFixed || len(h.expect) > 0) {
		return
	}
	if !h.quietLocked() {
		return // polled again shortly (pollQuietLocked)
	}
	clear(h.expect)
	h.enterStandbyLocked()
}

// quietPoll is the real-time period of the quiet check's polls; the
// number of polls is bounded by Config.IdleWait.
const quietPoll = 2 * time.Millisecond

// quietLocked reports whether every channel's socket is quiet: nothing
// unsent or unacknowledged (a keep-alive or a reply just written) and
// nothing unread (a message the posted receive has not taken yet, such as
// frames the NIC just delivered at Resume). A host that slept with bytes
// in flight would strand them: the NIC drops what a sleeping host sends,
// a hardware channel's socket cannot be frozen with unread bytes, and a
// message read after the entry waits for the next wake. When a socket is
// busy it schedules a poll and reports false, at most IdleWait/quietPoll
// times in a row; then it gives up waiting (the entry proceeds and says
// why per channel).
func (h *Host) quietLocked() bool {
	busy := false
	for _, ch := range h.liveChannelsLocked() {
		err := Idle(ch.transport.Conn())
		var ni *NotIdleError
		if errors.As(err, &ni) {
			busy = true
			break
		}
	}
	if !busy || h.quietPolls >= int(h.cfg.IdleWait/quietPoll) {
		h.quietPolls = 0
		return true
	}
	h.quietPolls++
	if !h.polling {
		h.polling = true
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			t := time.NewTimer(quietPoll)
			defer t.Stop()
			select {
			case <-h.ctx.Done():
			case <-t.C:
			}
			h.mu.Lock()
			h.polling = false
			h.kickLocked()
			h.mu.Unlock()
		}()
	}
	return false
}

// nextSoftwareWakeLocked returns when the host must wake on its own
// (keep-alives, push checks), or -1.
func (h *Host) nextSoftwareWakeLocked(now time.Duration) time.Duration {
	at, served := h.planner.NextWake(now)
	if len(served) == 0 {
		at = -1
	}
	if h.cfg.PushCheckInterval > 0 && h.planner.Len() > 0 {
		pc := max(h.pushCheck, now)
		if at < 0 || pc < at {
			at = pc
		}
	}
	if rc := h.nextReconnectLocked(); rc >= 0 && (at < 0 || rc < at) {
		at = max(rc, now)
	}
	return at
}

// serveKeepAlivesLocked sends the software keep-alives due now (within
// the planner's tolerance when the host woke for them).
func (h *Host) serveKeepAlivesLocked(now time.Duration, woke bool) {
	at, served := h.planner.NextWake(now)
	if len(served) == 0 || (at > now && !woke) {
		return
	}
	defer h.notifyLocked()
	for _, id := range h.planner.Wake(now) {
		ch := h.chans[id]
		if ch == nil || ch.transport == nil {
			continue
		}
		h.stats.KeepAlives++
		if ch.lastSlot != 0 && ch.transport.NICKeepAlive().HostAppKeepAlive {
			h.stats.TLSAppKeepAlives++
		}
		sent, err := ch.transport.KeepAlive()
		if err != nil {
			h.log.Debug("keep-alive", "channel", id, "err", err)
			continue
		}
		if !sent {
			h.fireLocked(ch, TriggerKeepAlive, 0)
		}
	}
}

// beginResumeLocked leaves standby for reason r.
func (h *Host) beginResumeLocked(r WakeReason) {
	h.stats.Wakes[r]++
	h.stats.Resumes++
	h.wakeReason = r
	h.setStateLocked(Resuming)
	if h.nic != nil && !h.nicDown && r != WakeNICLost && r != WakeHardwarePush && r != WakeHardwareReset && r != WakeKeepAliveTimeout && r != WakePattern {
		// The host wakes on its own: the NIC must leave D3 too, so
		// that Resume delivers what it holds (coalesced frames).
		if err := h.nic.Wake(); err != nil {
			h.log.Debug("nic wake", "err", err) // woken already by a frame
		}
	}
	if h.cfg.ResumeLatency == 0 {
		h.finishResumeLocked()
	}
}

// finishResumeLocked runs when the resume latency has passed: the
// hardware channels are taken back, the NIC resumes, the host is awake.
func (h *Host) finishResumeLocked() {
	if h.nic != nil {
		h.handBackLocked()
	}
	h.setStateLocked(Awake)
	defer h.procWakeLocked() // after the software keep-alives below
	now := h.clock.Now()
	if h.cfg.PushCheckInterval > 0 {
		h.pushCheck = now + h.cfg.PushCheckInterval
	}
	h.holdFixed = false
	switch h.wakeReason {
	case WakeHardwarePush, WakeHardwareReset:
		h.holdUntil = now + h.cfg.WakeHold
		if ch := h.channelBySlotLocked(h.lastWake.Slot); ch != nil {
			h.expect[ch] = true
		}
	case WakeSoftwareKeepAlive, WakeSoftwarePushCheck:
		h.holdUntil = now + h.cfg.SoftwareWakeHold
		h.holdFixed = true
	default:
		h.holdUntil = now
	}
	h.serveKeepAlivesLocked(now, true)
	h.dueReconnectsLocked(now)
	h.runPendingLocked()
	h.kickLocked()
}

func (h *Host) nicWakeLocked(w nic.WakeEvent) {
	if w.Reason == nic.WakeNICLost {
		h.nicLostLocked()
		return
	}
	if h.state != Standby || w.Reason == nic.WakeHost {
		return // the host's own wake, a slot being handed back, or stale
	}
	h.lastWake = w
	r := WakeKeepAliveTimeout // timeouts, books or buffer full
	switch w.Reason {
	case nic.WakeData:
		r = WakeHardwarePush
	case nic.WakeFIN, nic.WakeRST:
		r = WakeHardwareReset
	case nic.WakePattern:
		r = WakePattern
	}
	h.beginResumeLocked(r)
}

func (h *Host) channelBySlotLocked(slot nic.SlotID) *Channel {
	if slot == 0 {
		return nil
	}
	for _, ch := range h.order {
		if ch.slot == slot || ch.lastSlot == slot {
			return ch
		}
	}
	return nil
}

// poolEventsLocked applies placement changes (promotion, eviction,
// disconnection) to the channels.
func (h *Host) poolEventsLocked() {
	for _, ev := range h.pool.DrainEvents(nil) {
		ch := h.chans[ev.Channel]
		if ch == nil {
			continue
		}
		if res, ok := h.pool.Lookup(ev.Channel); ok {
			ch.result = res
			ch.status = res.Status
		}
		ch.events = append(ch.events, ev)
		h.log.Debug("placement", "channel", ev.Channel, "event", ev.Kind, "reason", ev.Reason)
	}
	h.notifyLocked()
}

// sortedChannels returns the live channels with a transport, oldest
// first.
func (h *Host) liveChannelsLocked() []*Channel {
	out := make([]*Channel, 0, len(h.order))
	for _, ch := range h.order {
		if !ch.closed && ch.transport != nil && ch.status != slotmgr.TransportDisconnected {
			out = append(out, ch)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}
