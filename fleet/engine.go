package fleet

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"time"
)

// Wake reasons of a device's host.
const (
	WakeKeepAlive   = iota // a software channel's keep-alive was due
	WakePush               // a push on a hardware channel (the NIC woke it)
	WakeMaintenance        // a Doze maintenance window
	numReasons
)

var reasonNames = [numReasons]string{"keepalive", "push", "maintenance"}

// Event kinds of the engine's queue.
const (
	evKeepAlive = iota // idx: a channel
	evPush             // idx: a device; publish its next push
	evMaint            // idx: a device; a maintenance window opens
	evSleep            // idx: a device; its hold may have passed
	evSample           // the timeline
)

type event struct {
	at   time.Duration
	idx  int32
	kind uint8
}

type events []event

func (q events) Len() int           { return len(q) }
func (q events) Less(i, j int) bool { return q[i].at < q[j].at }
func (q events) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *events) Push(x any)        { *q = append(*q, x.(event)) }
func (q *events) Pop() any          { o := *q; e := o[len(o)-1]; *q = o[:len(o)-1]; return e }
func (e *Engine) schedule(ev event) { heap.Push(&e.q, ev) }
func (e *Engine) next() (event, bool) {
	if len(e.q) == 0 {
		return event{}, false
	}
	return e.q[0], true
}

// device is one emulated device's host model: its power state and the
// stream its behaviour is drawn from. Its counters are the engine's.
type device struct {
	rng        rand.PCG
	awakeUntil time.Duration // > now: awake
	awakeSince time.Duration
	hw         uint8 // its first hw channels have NIC slots
	awake      bool
	first      int32 // index of its first channel
	nch        uint8
	held       []held // pushes held for a software channel while asleep
}

type held struct{ at, arrived time.Duration }

// channel is one of a device's connections.
type channel struct {
	interval time.Duration
	due      time.Duration // its next keep-alive
	dev      int32
	alive    bool
	probed   bool
	conn     net.Conn
}

// Engine runs one shard of a fleet.
type Engine struct {
	cfg     Config
	mu      sync.Mutex // guards everything below
	now     time.Duration
	q       events
	devs    []device
	chans   []channel
	globals []int // global index of each device
	c       Counters
	lat     Histogram
	samples []Sample
	start   time.Time
	ending  bool
	closed  bool
	wire    wire
	// ms0, rss0: memory before the devices existed (New).
	ms0  runtime.MemStats
	rss0 int64
}

// wire carries a device's traffic: a real broker, or the simulation.
type wire interface {
	keepAlive(e *Engine, ch int)
	publish(e *Engine, ch int, at time.Duration, kind byte)
}

// Progress is the live state of a run.
type Progress struct {
	Elapsed                       time.Duration
	Devices, Channels             int
	Connected, Asleep             int
	Wakes                         uint64
	Published, Delivered          uint64
	KeepAlivesNIC, KeepAlivesHost uint64
}

// New validates cfg and lays out this shard's devices (no connection yet).
func New(cfg *Config) (*Engine, error) {
	if cfg == nil {
		return nil, fmt.Errorf("fleet: nil config")
	}
	c := *cfg
	c.Shard = c.Shard.norm()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if c.ConnectWorkers == 0 {
		c.ConnectWorkers = 64
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Minute
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = time.Second
	}
	if c.SampleEvery == 0 {
		c.SampleEvery = max(c.Duration/60, time.Second)
	}
	e := &Engine{cfg: c}
	runtime.GC()
	runtime.ReadMemStats(&e.ms0)
	e.rss0 = rssBytes()
	n := 0
	for i := c.Shard.Index; i < c.Devices; i += c.Shard.Count {
		n++
	}
	e.devs = make([]device, n)
	e.globals = make([]int, 0, n)
	e.chans = make([]channel, 0, n*c.Channels)
	b := &c.Behaviour
	for k := range e.devs {
		g := c.Shard.Index + k*c.Shard.Count
		e.globals = append(e.globals, g)
		d := &e.devs[k]
		d.rng = *rand.NewPCG(c.Seed, uint64(g))
		d.first = int32(len(e.chans))
		d.nch = uint8(c.Channels)
		d.hw = uint8(b.HardwareSlotsMin + d.intn(b.HardwareSlotsMax-b.HardwareSlotsMin+1))
		lo, hi := int(b.KeepAliveMin/time.Second), int(b.KeepAliveMax/time.Second)
		for j := 0; j < c.Channels; j++ {
			iv := time.Duration(lo+d.intn(hi-lo+1)) * time.Second
			e.chans = append(e.chans, channel{interval: iv, dev: int32(k)})
		}
	}
	return e, nil
}

func (d *device) intn(n int) int { return int(d.rng.Uint64() % uint64(n)) }

// uniform returns a duration uniform in [0, d).
func (d *device) uniform(v time.Duration) time.Duration {
	if v <= 0 {
		return 0
	}
	return time.Duration(d.rng.Uint64() % uint64(v))
}

// exp returns an exponential duration of mean m.
func (d *device) exp(m time.Duration) time.Duration {
	u := float64(d.rng.Uint64()>>11) / (1 << 53)
	return max(time.Duration(-math.Log1p(-u)*float64(m)), time.Millisecond)
}

// Run connects the shard's channels (unless Sim), runs Duration, probes
// every channel through the broker, and returns the shard's report.
func (e *Engine) Run(ctx context.Context) (*Report, error) {
	ms0, rss0 := &e.ms0, e.rss0
	wallStart := time.Now()
	var rw *realWire
	if e.cfg.Sim {
		e.wire = simWire{}
	} else {
		var err error
		if rw, err = connect(ctx, e); err != nil {
			return nil, err
		}
		defer e.closeConns(rw)
		e.wire = rw
	}
	var ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	rss1 := rssBytes()
	e.c.ChannelsConnected = uint64(e.countAlive())

	e.mu.Lock()
	e.start = time.Now()
	e.initSchedule()
	e.mu.Unlock()
	if err := e.loop(ctx); err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.ending = true
	e.finishLocked()
	e.mu.Unlock()
	if rw != nil {
		rw.probe(ctx, e)
	} else {
		e.mu.Lock()
		for i := range e.chans {
			if e.chans[i].alive {
				e.c.ProbesSent++
				e.c.ProbesReceived++
			}
		}
		e.mu.Unlock()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.reportLocked()
	r.Wall = time.Since(wallStart).Seconds()
	heapB := float64(ms1.HeapInuse+ms1.StackInuse) - float64(ms0.HeapInuse+ms0.StackInuse)
	r.Memory = Memory{
		Devices:        len(e.devs),
		HeapStackBytes: max(heapB, 0),
		RSSBytes:       max(float64(rss1)-float64(rss0), 0),
		Goroutines:     runtime.NumGoroutine(),
	}
	return r, nil
}

func (e *Engine) countAlive() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for i := range e.chans {
		if e.chans[i].alive || e.cfg.Sim {
			e.chans[i].alive = true
			n++
		}
	}
	return n
}

// initSchedule draws every device's first events.
func (e *Engine) initSchedule() {
	b := &e.cfg.Behaviour
	e.q = make(events, 0, len(e.chans)+3*len(e.devs))
	for k := range e.devs {
		d := &e.devs[k]
		for j := d.first; j < d.first+int32(d.nch); j++ {
			ch := &e.chans[j]
			ch.due = d.uniform(ch.interval) + time.Millisecond
			e.q = append(e.q, event{ch.due, j, evKeepAlive})
		}
		if b.PushEvery > 0 {
			e.q = append(e.q, event{d.exp(b.PushEvery), int32(k), evPush})
		}
		if b.MaintenanceEvery > 0 {
			e.q = append(e.q, event{d.uniform(b.MaintenanceEvery), int32(k), evMaint})
		}
	}
	e.q = append(e.q, event{0, 0, evSample})
	heap.Init(&e.q)
}

// loop runs the queue until Duration: on the virtual clock (Sim) or in
// real time.
func (e *Engine) loop(ctx context.Context) error {
	end := e.cfg.Duration
	nextProgress := time.Duration(0)
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		e.mu.Lock()
		if !e.cfg.Sim {
			e.now = min(time.Since(e.start), end)
		}
		for {
			ev, ok := e.next()
			if !ok || ev.at > end {
				break
			}
			if !e.cfg.Sim && ev.at > e.now {
				break
			}
			heap.Pop(&e.q)
			if e.cfg.Sim {
				e.now = ev.at
			}
			e.handle(ev)
		}
		if e.cfg.Sim {
			e.now = end
		}
		now := e.now
		var p Progress
		report := e.cfg.Progress != nil && (now >= nextProgress || now >= end)
		if report {
			p = e.progressLocked()
			nextProgress = now + e.cfg.ProgressEvery
		}
		e.mu.Unlock()
		if report && !e.cfg.Sim {
			e.cfg.Progress(p)
		}
		if now >= end {
			if report && e.cfg.Sim {
				e.cfg.Progress(p)
			}
			return nil
		}
		tick.Reset(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			return fmt.Errorf("fleet: run: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func (e *Engine) progressLocked() Progress {
	p := Progress{Elapsed: e.now, Devices: len(e.devs), Channels: len(e.chans),
		Published: e.c.Published, Delivered: e.c.Delivered,
		KeepAlivesNIC: e.c.KeepAlivesNIC, KeepAlivesHost: e.c.KeepAlivesHost}
	for i := range e.chans {
		if e.chans[i].alive {
			p.Connected++
		}
	}
	for i := range e.devs {
		if !e.devs[i].awake {
			p.Asleep++
		}
	}
	for _, w := range e.c.Wakes {
		p.Wakes += w
	}
	return p
}

// handle runs one due event at e.now.
func (e *Engine) handle(ev event) {
	b := &e.cfg.Behaviour
	now := e.now
	switch ev.kind {
	case evKeepAlive:
		ch := &e.chans[ev.idx]
		if ch.due != ev.at || !ch.alive {
			return // served early by a coalesced wake, or gone
		}
		d := &e.devs[ch.dev]
		hw := ev.idx-d.first < int32(d.hw)
		switch {
		case e.isAwake(d):
			e.sendKeepAlive(ev.idx, false)
		case hw:
			e.sendKeepAlive(ev.idx, true)
		default:
			e.wake(ch.dev, WakeKeepAlive, b.WakeHold)
			e.coalesce(ch.dev)
		}
	case evPush:
		d := &e.devs[ev.idx]
		j := d.first + int32(d.intn(int(d.nch)))
		if e.chans[j].alive {
			e.c.Published++
			e.wire.publish(e, int(j), now, kindPush)
		} else {
			e.c.PushesToDead++
		}
		e.schedule(event{now + d.exp(b.PushEvery), ev.idx, evPush})
	case evMaint:
		e.wake(ev.idx, WakeMaintenance, b.MaintenanceFor)
		e.schedule(event{now + b.MaintenanceEvery, ev.idx, evMaint})
	case evSleep:
		d := &e.devs[ev.idx]
		if d.awake && now >= d.awakeUntil {
			d.awake = false
			e.c.AwakeNanos += uint64(now - d.awakeSince)
		}
	case evSample:
		e.sampleLocked()
		e.schedule(event{now + e.cfg.SampleEvery, 0, evSample})
	}
}

func (e *Engine) isAwake(d *device) bool { return d.awake }

// sendKeepAlive sends channel j's keep-alive now (by the NIC or by the
// host) and schedules its next.
func (e *Engine) sendKeepAlive(j int32, nic bool) {
	ch := &e.chans[j]
	if nic {
		e.c.KeepAlivesNIC++
	} else {
		e.c.KeepAlivesHost++
	}
	e.wire.keepAlive(e, int(j))
	ch.due = e.now + ch.interval
	e.schedule(event{ch.due, j, evKeepAlive})
}

// coalesce serves, on a software wake of device k, every software channel
// of it due within the tolerance.
func (e *Engine) coalesce(k int32) {
	d := &e.devs[k]
	for j := d.first + int32(d.hw); j < d.first+int32(d.nch); j++ {
		ch := &e.chans[j]
		if ch.alive && ch.due-e.now <= time.Duration(e.cfg.Tolerance*float64(ch.interval)) {
			e.sendKeepAlive(j, false)
		}
	}
}

// wake wakes device k for reason (counted only when it was asleep) and
// holds it awake at least hold; held pushes are delivered.
func (e *Engine) wake(k int32, reason int, hold time.Duration) {
	d := &e.devs[k]
	now := e.now
	at := now
	if !d.awake {
		e.c.Wakes[reason]++
		e.c.Resumes++
		d.awake = true
		d.awakeSince = now
		at = now + e.cfg.ResumeLatency
	}
	if until := now + hold; until > d.awakeUntil {
		d.awakeUntil = until
		e.schedule(event{until, k, evSleep})
	}
	for _, h := range d.held {
		e.deliver(h.at, at)
	}
	d.held = d.held[:0]
}

func (e *Engine) deliver(published, at time.Duration) {
	e.c.Delivered++
	e.lat.Add(at - published)
}

// arrive is a push (published at the engine time pub) reaching channel j
// at e.now: delivered, or waking its device, or held.
func (e *Engine) arrive(j int, pub time.Duration, kind byte) {
	ch := &e.chans[j]
	if kind == kindProbe {
		if !ch.probed {
			ch.probed = true
			e.c.ProbesReceived++
		}
		return
	}
	if e.ending {
		e.deliver(pub, e.now)
		return
	}
	d := &e.devs[ch.dev]
	switch {
	case d.awake:
		e.deliver(pub, e.now)
	case int32(j)-d.first < int32(d.hw):
		e.wake(ch.dev, WakePush, e.cfg.WakeHold)
		e.deliver(pub, e.now+e.cfg.ResumeLatency)
	default:
		e.c.PushesHeld++
		d.held = append(d.held, held{pub, e.now})
	}
}

// finishLocked ends the run at Duration: awake time is closed, and the
// pushes still held are delivered (the user wakes every device).
func (e *Engine) finishLocked() {
	for k := range e.devs {
		d := &e.devs[k]
		if d.awake {
			e.c.AwakeNanos += uint64(e.now - d.awakeSince)
		}
		for _, h := range d.held {
			e.c.DeliveredAtEnd++
			e.deliver(h.at, e.now)
		}
		d.held = nil
	}
	e.sampleLocked()
}

func (e *Engine) sampleLocked() {
	p := e.progressLocked()
	e.samples = append(e.samples, Sample{
		At: e.now.Seconds(), Connected: uint64(p.Connected), Asleep: uint64(p.Asleep), Wakes: p.Wakes,
		Delivered: p.Delivered, KeepAlives: p.KeepAlivesNIC + p.KeepAlivesHost,
	})
}

// simWire is the network of a Sim run: pushes arrive when published, every
// keep-alive is answered.
type simWire struct{}

func (simWire) keepAlive(e *Engine, ch int) { e.c.KeepAliveAnswers++ }
func (simWire) publish(e *Engine, ch int, at time.Duration, kind byte) {
	e.arrive(ch, at, kind)
}
