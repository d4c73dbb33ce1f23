package slotmgr

import (
	"errors"
	"fmt"
	"time"
)

// PlannerConfig tunes a Planner.
type PlannerConfig struct {
	// Tolerance is how early a software keep-alive may be sent so that it
	// shares a host wake with another one. A channel's own tolerance is
	// min(Tolerance, Interval/2), so every keep-alive advances its channel
	// by at least half an interval. 0 with Coalesce set means
	// DefaultTolerance.
	Tolerance time.Duration
	// Coalesce enables shared wakes. Off, every channel runs on its own
	// timer (the baseline): a wake serves only the channels due at that
	// very instant.
	Coalesce bool
}

// DefaultTolerance is the coalescing window when PlannerConfig.Tolerance is 0.
const DefaultTolerance = 30 * time.Second

// PlannerCounters are a Planner's books.
type PlannerCounters struct {
	Wakes      uint64 // Wake calls that served at least one keep-alive
	KeepAlives uint64 // keep-alives served
	Early      uint64 // keep-alives served before they were due (coalesced)
	Late       uint64 // keep-alives served after they were due (the host woke late)
	EarlyTotal time.Duration
	LateTotal  time.Duration
}

// ErrPlannerChannel is wrapped by Planner errors about a channel.
var ErrPlannerChannel = errors.New("planner channel")

type planned struct {
	id       string
	interval time.Duration
	tol      time.Duration
	last     time.Duration // last keep-alive (or the moment it was added)
}

func (c *planned) due() time.Duration { return c.last + c.interval }

// Planner plans the host's own wakes for the keep-alives of software
// channels. Pure and not safe for concurrent use: the host runtime owns it.
// Time is the caller's: every method takes the moment it runs at.
//
// Coalescing is earliest-deadline interval stabbing: the next wake is at
// the earliest due keep-alive, and it serves every channel due within that
// channel's tolerance after it. No channel is ever served later than
// last+interval as long as the host wakes when NextWake says.
type Planner struct {
	cfg      PlannerConfig
	chans    []planned
	index    map[string]int
	buf      []string
	counters PlannerCounters
}

// NewPlanner returns an empty planner; nil cfg means coalescing with
// DefaultTolerance.
func NewPlanner(cfg *PlannerConfig) (*Planner, error) {
	c := PlannerConfig{Coalesce: true}
	if cfg != nil {
		c = *cfg
	}
	if c.Tolerance < 0 {
		return nil, fmt.Errorf("new planner: %w: Tolerance %v below 0", ErrInvalidConfig, c.Tolerance)
	}
	if c.Coalesce && c.Tolerance == 0 {
		c.Tolerance = DefaultTolerance
	}
	if !c.Coalesce {
		c.Tolerance = 0
	}
	return &Planner{cfg: c, index: make(map[string]int)}, nil
}

// Add starts planning keep-alives for channel every interval, the last one
// having been sent at last.
func (p *Planner) Add(channel string, interval, last time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("planner add %s: %w: interval %v not positive", channel, ErrPlannerChannel, interval)
	}
	if _, ok := p.index[channel]; ok {
		return fmt.Errorf("planner add %s: %w: already planned", channel, ErrPlannerChannel)
	}
	tol := min(p.cfg.Tolerance, interval/2)
	p.index[channel] = len(p.chans)
	p.chans = append(p.chans, planned{id: channel, interval: interval, tol: tol, last: last})
	return nil
}

// Remove stops planning channel (it was promoted to hardware, released or
// disconnected); it reports whether channel was planned.
func (p *Planner) Remove(channel string) bool {
	i, ok := p.index[channel]
	if !ok {
		return false
	}
	last := len(p.chans) - 1
	if i != last {
		p.chans[i] = p.chans[last]
		p.index[p.chans[i].id] = i
	}
	p.chans[last] = planned{}
	p.chans = p.chans[:last]
	delete(p.index, channel)
	return true
}

// Touch records a keep-alive of channel sent at "at" outside a planned
// wake (traffic on the channel counts as one). It does not count a wake.
func (p *Planner) Touch(channel string, at time.Duration) bool {
	i, ok := p.index[channel]
	if ok && at > p.chans[i].last {
		p.chans[i].last = at
	}
	return ok
}

// Due returns when channel's next keep-alive is due (its last one plus its
// interval), and false when channel is not planned.
func (p *Planner) Due(channel string) (time.Duration, bool) {
	i, ok := p.index[channel]
	if !ok {
		return 0, false
	}
	return p.chans[i].due(), true
}

// Len returns the number of planned channels.
func (p *Planner) Len() int { return len(p.chans) }

// NextWake returns when the host must next wake for keep-alives (never
// before now) and the channels that wake will serve, in the order they were
// added (modulo removals). It changes nothing; the slice is the planner's
// and valid until its next call. With no channel it returns (-1, nil).
func (p *Planner) NextWake(now time.Duration) (at time.Duration, channels []string) {
	if len(p.chans) == 0 {
		return -1, nil
	}
	at = p.chans[0].due()
	for i := 1; i < len(p.chans); i++ {
		at = min(at, p.chans[i].due())
	}
	at = max(at, now)
	return at, p.collect(at)
}

// collect fills the buffer with the channels a wake at "at" serves.
func (p *Planner) collect(at time.Duration) []string {
	p.buf = p.buf[:0]
	for i := range p.chans {
		c := &p.chans[i]
		if c.due() <= at+c.tol {
			p.buf = append(p.buf, c.id)
		}
	}
	return p.buf
}

// Wake records that the host is awake at "at" and sends the keep-alives of
// every channel due within its tolerance: it returns them (the planner's
// slice, valid until its next call) and counts them. A wake that serves
// none (the host woke for something else) is not counted.
func (p *Planner) Wake(at time.Duration) []string {
	served := p.collect(at)
	if len(served) == 0 {
		return served
	}
	p.counters.Wakes++
	for i := range p.chans {
		c := &p.chans[i]
		due := c.due()
		if due > at+c.tol {
			continue
		}
		p.counters.KeepAlives++
		switch {
		case due > at:
			p.counters.Early++
			p.counters.EarlyTotal += due - at
		case due < at:
			p.counters.Late++
			p.counters.LateTotal += at - due
		}
		c.last = at
	}
	return served
}

// RunUntil makes every wake the planner asks for from from until before
// end, as a host that wakes for nothing else would, and returns how many
// it made and when the last one was (from when none).
func (p *Planner) RunUntil(from, end time.Duration) (wakes int, last time.Duration) {
	last = from
	for {
		at, served := p.NextWake(last)
		if len(served) == 0 || at >= end {
			return wakes, last
		}
		p.Wake(at)
		wakes++
		last = at
	}
}

// Counters returns the planner's books.
func (p *Planner) Counters() PlannerCounters { return p.counters }
