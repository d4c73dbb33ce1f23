package slotmgr

import (
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"sync"
	"time"
)

// Clock is the pool's source of time (CLOCK_BOOTTIME semantics); it stamps
// events. It has offload.Clock's method set, so any offload.Clock is one;
// it is declared here so that slotmgr builds without offload.
type Clock interface {
	Now() time.Duration
}

// ErrNotPermitted is returned by Permit when the app cannot be admitted.
var ErrNotPermitted = errors.New("app not permitted")

// Result is the placement of one channel.
type Result struct {
	Channel string
	App     string
	Status  Status
	Kind    Kind   // NoSlot unless Status is Software/HardwareSlotAllocated
	Slot    int    // index within its kind; -1 with NoSlot
	Reason  string // why it fell back, failed, moved or disconnected; "" otherwise
}

// Counters are the pool's books. Every field but the gauges only grows.
type Counters struct {
	Requests           uint64 // well-formed requests and reconnects placed
	Invalid            uint64 // malformed requests (error returned)
	HardwareAllocated  uint64 // placements on a hardware slot (promotions not included)
	SoftwareAllocated  uint64 // placements on a software slot, fallbacks included
	Fallbacks          uint64 // hardware requested, software allocated
	PolicyErrors       uint64
	SystemErrors       uint64
	ServiceUnavailable uint64
	Promotions         uint64
	Evictions          uint64
	Releases           uint64
	Disconnects        uint64
	Reconnects         uint64
	Events             uint64 // events queued

	Channels      int // gauge: channels in the pool, disconnected ones included
	HardwareInUse int // gauge
	SoftwareInUse int // gauge
}

type channel struct {
	req    Request
	seq    uint64 // admission order: smaller is older
	status Status
	kind   Kind
	slot   int
	reason string
}

func (c *channel) result() Result {
	return Result{Channel: c.req.Channel, App: c.req.App, Status: c.status, Kind: c.kind, Slot: c.slot, Reason: c.reason}
}

// waitsForHardware reports whether c asked for hardware and sits on software.
func (c *channel) waitsForHardware() bool {
	return c.kind == Software && c.req.Resource == RequestHardwareSlot
}

// outranks reports whether c wins a slot over d: higher priority, then the
// older request.
func (c *channel) outranks(d *channel) bool {
	if c.req.Priority != d.req.Priority {
		return c.req.Priority > d.req.Priority
	}
	return c.seq < d.seq
}

type app struct {
	channels int // channels held, disconnected ones included
	hardware int // hardware slots held
}

// Pool places control channels on the NIC's N hardware slots or on
// unbounded software slots, under the policy of its Config. It is safe for
// concurrent use. See the package documentation for the flow.
type Pool struct {
	cfg   Config
	clock Clock

	mu       sync.Mutex
	closed   bool
	state    SystemState
	seq      uint64
	channels map[string]*channel
	hw       []*channel // len N; nil is free
	hwFree   uint64     // bit i set: hardware slot i free
	sw       []*channel // software slot i; nil is free
	apps     map[string]*app
	order    []string // admitted apps, in order of admission
	counters Counters
	events   []Event
	notify   chan struct{}
}

// New returns an awake pool with cfg's policy (nil: the defaults) that
// stamps events with clock.
func New(cfg *Config, clock Clock) (*Pool, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("new pool: %w", err)
	}
	if clock == nil {
		return nil, errors.New("new pool: nil clock")
	}
	p := &Pool{
		cfg:      c,
		clock:    clock,
		state:    Awake,
		channels: make(map[string]*channel),
		hw:       make([]*channel, c.HardwareSlots),
		hwFree:   ^uint64(0) >> (64 - c.HardwareSlots),
		apps:     make(map[string]*app),
		notify:   make(chan struct{}, 1),
	}
	for _, a := range c.Apps {
		p.admit(a)
	}
	return p, nil
}

// Config returns the pool's config with defaults filled in.
func (p *Pool) Config() Config {
	c := p.cfg
	c.Apps = append([]string(nil), c.Apps...)
	return c
}

func (p *Pool) admit(name string) *app {
	a := &app{}
	p.apps[name] = a
	p.order = append(p.order, name)
	return a
}

// permitted returns the app's books, admitting it when registration is
// open and there is room; nil when the app is not permitted. Admission is
// only recorded when commit is set.
func (p *Pool) permitted(name string, commit bool) (*app, bool) {
	if a, ok := p.apps[name]; ok {
		return a, true
	}
	if len(p.cfg.Apps) > 0 || len(p.order) >= p.cfg.PermittedApps {
		return nil, false
	}
	if commit {
		return p.admit(name), true
	}
	return &app{}, true
}

// Permit admits app explicitly, in order of registration. It returns an
// error wrapping ErrNotPermitted when the config lists the permitted apps
// and app is not among them, or when PermittedApps apps are already in.
func (p *Pool) Permit(app string) error {
	if err := validateApp(app); err != nil {
		return fmt.Errorf("permit: %w: App %v", ErrInvalidRequest, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("permit %s: %w", app, ErrClosed)
	}
	if _, ok := p.permitted(app, true); !ok {
		return fmt.Errorf("permit %s: %w (%d/%d apps admitted)", app, ErrNotPermitted, len(p.order), p.cfg.PermittedApps)
	}
	return nil
}

// Permitted returns the admitted apps in order of admission.
func (p *Pool) Permitted() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.order...)
}

// SetSystemState tells the pool the host's power state. While it is not
// Awake, software slots are refused with ServiceUnavailable.
func (p *Pool) SetSystemState(s SystemState) error {
	if s < Awake || s > Standby {
		return fmt.Errorf("set system state: invalid state %d", s)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = s
	return nil
}

// SystemState returns the state last set (Awake initially).
func (p *Pool) SystemState() SystemState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// Request places a new channel. A malformed request, a channel id already
// in the pool, or a closed pool is an error. Every policy outcome is a
// Result: HardwareSlotAllocated, SoftwareSlotAllocated (with a Reason when
// hardware was asked for), PolicyError, SystemError (strict mode, pool
// full) or ServiceUnavailable (software while not awake). Only allocated
// channels stay in the pool.
func (p *Pool) Request(req Request) (Result, error) {
	if err := req.Validate(); err != nil {
		p.mu.Lock()
		p.counters.Invalid++
		p.mu.Unlock()
		return Result{}, fmt.Errorf("request: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Result{}, fmt.Errorf("request %s: %w", req.Channel, ErrClosed)
	}
	if _, ok := p.channels[req.Channel]; ok {
		return Result{}, fmt.Errorf("request %s: %w", req.Channel, ErrChannelExists)
	}
	p.seq++
	c := &channel{req: req, seq: p.seq, slot: -1}
	p.place(c, true)
	if c.status.Allocated() {
		p.channels[req.Channel] = c
		p.apps[req.App].channels++
	}
	p.gauges()
	return c.result(), nil
}

// Reconnect places again a channel that MarkDisconnected left without a
// slot, as if it were requested anew with its original request and age.
// On failure the channel stays disconnected and the Result says why.
func (p *Pool) Reconnect(channel string) (Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Result{}, fmt.Errorf("reconnect %s: %w", channel, ErrClosed)
	}
	c, ok := p.channels[channel]
	if !ok {
		return Result{}, fmt.Errorf("reconnect %s: %w", channel, ErrUnknownChannel)
	}
	if c.status != TransportDisconnected {
		return Result{}, fmt.Errorf("reconnect %s: %w (%v)", channel, ErrNotDisconnected, c.status)
	}
	p.counters.Reconnects++
	p.place(c, false)
	res := c.result()
	if !c.status.Allocated() {
		c.status, c.kind, c.slot = TransportDisconnected, NoSlot, -1
	}
	p.gauges()
	return res, nil
}

// place decides c's slot under the policy and records it; fresh is set
// for a new channel (its app and channel quota not yet charged).
func (p *Pool) place(c *channel, fresh bool) {
	p.counters.Requests++
	req := &c.req
	fail := func(s Status, reason string) {
		c.status, c.kind, c.slot, c.reason = s, NoSlot, -1, reason
		switch s {
		case PolicyError:
			p.counters.PolicyErrors++
		case SystemError:
			p.counters.SystemErrors++
		case ServiceUnavailable:
			p.counters.ServiceUnavailable++
		}
	}
	a, ok := p.permitted(req.App, false)
	if !ok {
		fail(PolicyError, fmt.Sprintf("app %s not permitted", req.App))
		return
	}
	if q := p.cfg.AppChannelQuota; fresh && q > 0 && a.channels >= q {
		fail(PolicyError, fmt.Sprintf("quota %d reached for app %s", q, req.App))
		return
	}
	unit := p.cfg.IntervalUnit
	if lo := time.Duration(p.cfg.MinInterval) * unit; req.Interval < lo {
		fail(PolicyError, fmt.Sprintf("interval %s below minimum %s", formatInterval(req.Interval, unit), formatInterval(lo, unit)))
		return
	}
	if hi := time.Duration(p.cfg.MaxInterval) * unit; req.Interval > hi {
		fail(PolicyError, fmt.Sprintf("interval %s above maximum %s", formatInterval(req.Interval, unit), formatInterval(hi, unit)))
		return
	}
	reason := ""
	if req.Resource == RequestHardwareSlot {
		if q := p.cfg.AppHardwareQuota; q > 0 && a.hardware >= q {
			fail(PolicyError, fmt.Sprintf("hardware quota %d reached for app %s", q, req.App))
			return
		}
		if p.hwFree == 0 {
			if v := p.victim(); v != nil && c.outranks(v) {
				p.evict(v, c)
			}
		}
		if p.hwFree != 0 {
			a, _ = p.permitted(req.App, true)
			p.takeHardware(c, a, bits.TrailingZeros64(p.hwFree))
			c.status, c.reason = HardwareSlotAllocated, ""
			p.counters.HardwareAllocated++
			return
		}
		reason = fmt.Sprintf("hardware pool full (%d/%d)", len(p.hw), len(p.hw))
		if p.cfg.Strict {
			fail(SystemError, reason)
			return
		}
	}
	if p.state != Awake {
		if reason != "" {
			reason += "; "
		}
		fail(ServiceUnavailable, reason+"no software slot while "+p.state.String())
		return
	}
	p.permitted(req.App, true)
	p.takeSoftware(c)
	c.status, c.reason = SoftwareSlotAllocated, reason
	p.counters.SoftwareAllocated++
	if req.Resource == RequestHardwareSlot {
		p.counters.Fallbacks++
	}
}

// victim returns the hardware holder that loses first: the lowest
// priority, then the youngest request.
func (p *Pool) victim() *channel {
	var v *channel
	for _, h := range p.hw {
		if h != nil && (v == nil || v.outranks(h)) {
			v = h
		}
	}
	return v
}

// evict moves v from its hardware slot to a software slot for by.
func (p *Pool) evict(v, by *channel) {
	slot := v.slot
	p.freeSlot(v)
	p.takeSoftware(v)
	v.status = SoftwareSlotAllocated
	v.reason = fmt.Sprintf("evicted from hardware slot %d by channel %s (priority %d > %d)", slot, by.req.Channel, by.req.Priority, v.req.Priority)
	p.counters.Evictions++
	p.emit(Evicted, v, Hardware)
}

// promote offers hardware slot i, just freed by from, to the
// highest-ranked software channel that asked for hardware and whose app is
// under its hardware quota.
func (p *Pool) promote(from string) {
	for p.hwFree != 0 {
		var best *channel
		for _, c := range p.sw {
			if c == nil || !c.waitsForHardware() {
				continue
			}
			if q := p.cfg.AppHardwareQuota; q > 0 && p.apps[c.req.App].hardware >= q {
				continue
			}
			if best == nil || c.outranks(best) {
				best = c
			}
		}
		if best == nil {
			return
		}
		i := bits.TrailingZeros64(p.hwFree)
		p.freeSlot(best)
		p.takeHardware(best, p.apps[best.req.App], i)
		best.status = HardwareSlotAllocated
		best.reason = fmt.Sprintf("promoted to hardware slot %d freed by channel %s", i, from)
		p.counters.Promotions++
		p.emit(Promoted, best, Software)
	}
}

func (p *Pool) takeHardware(c *channel, a *app, i int) {
	p.hwFree &^= 1 << i
	p.hw[i] = c
	c.kind, c.slot = Hardware, i
	a.hardware++
}

func (p *Pool) takeSoftware(c *channel) {
	i := 0
	for i < len(p.sw) && p.sw[i] != nil {
		i++
	}
	if i == len(p.sw) {
		p.sw = append(p.sw, nil)
	}
	p.sw[i] = c
	c.kind, c.slot = Software, i
}

// freeSlot frees c's slot, whatever its kind, and leaves c with none.
func (p *Pool) freeSlot(c *channel) {
	switch c.kind {
	case Hardware:
		p.hw[c.slot] = nil
		p.hwFree |= 1 << c.slot
		p.apps[c.req.App].hardware--
	case Software:
		p.sw[c.slot] = nil
		for n := len(p.sw); n > 0 && p.sw[n-1] == nil; n-- {
			p.sw = p.sw[:n-1]
		}
	}
	c.kind, c.slot = NoSlot, -1
}

// Release removes a channel from the pool. A hardware slot it frees is
// offered to the highest-ranked software channel that asked for hardware
// (a Promoted event).
func (p *Pool) Release(channel string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("release %s: %w", channel, ErrClosed)
	}
	c, ok := p.channels[channel]
	if !ok {
		return fmt.Errorf("release %s: %w", channel, ErrUnknownChannel)
	}
	wasHW := c.kind == Hardware
	p.freeSlot(c)
	delete(p.channels, channel)
	p.apps[c.req.App].channels--
	p.counters.Releases++
	if wasHW {
		p.promote(channel)
	}
	p.gauges()
	return nil
}

// MarkDisconnected records that the channel's transport is gone: its status
// becomes TransportDisconnected, its slot is freed (a hardware slot may
// promote another channel) and a Disconnected event is queued. The channel
// stays in the pool until Release, or until Reconnect places it again.
func (p *Pool) MarkDisconnected(channel, reason string) (Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Result{}, fmt.Errorf("mark disconnected %s: %w", channel, ErrClosed)
	}
	c, ok := p.channels[channel]
	if !ok {
		return Result{}, fmt.Errorf("mark disconnected %s: %w", channel, ErrUnknownChannel)
	}
	if c.status == TransportDisconnected {
		return c.result(), nil
	}
	from := c.kind
	p.freeSlot(c)
	c.status = TransportDisconnected
	c.reason = "transport disconnected"
	if reason != "" {
		c.reason += ": " + reason
	}
	p.counters.Disconnects++
	p.emit(Disconnected, c, from)
	if from == Hardware {
		p.promote(channel)
	}
	p.gauges()
	return c.result(), nil
}

// Lookup returns the channel's current placement.
func (p *Pool) Lookup(channel string) (Result, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.channels[channel]
	if !ok {
		return Result{}, false
	}
	return c.result(), true
}

// Channels appends every channel's placement to dst, oldest request first.
func (p *Pool) Channels(dst []Result) []Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := make([]*channel, 0, len(p.channels))
	for _, c := range p.channels {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].seq < cs[j].seq })
	for _, c := range cs {
		dst = append(dst, c.result())
	}
	return dst
}

// Counters returns a snapshot of the books.
func (p *Pool) Counters() Counters {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counters
}

func (p *Pool) gauges() {
	p.counters.Channels = len(p.channels)
	p.counters.HardwareInUse = len(p.hw) - bits.OnesCount64(p.hwFree)
	n := 0
	for _, c := range p.sw {
		if c != nil {
			n++
		}
	}
	p.counters.SoftwareInUse = n
}

// emit queues an event for c's owner and signals Notify.
func (p *Pool) emit(k EventKind, c *channel, from Kind) {
	p.events = append(p.events, Event{
		Kind: k, Channel: c.req.Channel, App: c.req.App,
		From: from, To: c.kind, Slot: c.slot, Reason: c.reason, At: p.clock.Now(),
	})
	p.counters.Events++
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// Notify returns a channel that receives a value whenever events are
// queued (one value may stand for many), and is closed by Close.
func (p *Pool) Notify() <-chan struct{} { return p.notify }

// DrainEvents appends the queued events to dst, oldest first, and empties
// the queue. The queue is unbounded: no event is ever dropped.
func (p *Pool) DrainEvents(dst []Event) []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	dst = append(dst, p.events...)
	clear(p.events)
	p.events = p.events[:0]
	return dst
}

// Close stops the pool: later calls that change it return ErrClosed, and
// Notify's channel is closed. Queued events can still be drained. Close is
// idempotent.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.notify)
	}
	return nil
}
