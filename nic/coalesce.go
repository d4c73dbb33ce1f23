package nic

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// Receive packet coalescing, after NDIS 6.30 (built for connected
// standby): the host registers a coalescing filter for each connection it
// keeps alive itself (a software slot). In D3 a wire frame of such a
// connection neither wakes the host nor is dropped: it is held in the
// post-wake buffer, in arrival order, and delivered at the next Resume,
// after the host's next wake (its own timer: Wake, then Resume). Held
// frames are bounded: at most half the post-wake buffer
// (Capabilities.PostWakeFrames/2, at least 1), so the frames that follow
// a wake always find room; beyond it a frame is dropped and counted
// (d3_rx_coalesce_dropped) and the peer retransmits it. A frame of an
// armed slot's connection is the slot's, whatever the filters say.
//
// The filters live in the immutable D3 table (d3Table.coal) and are
// carried from table to table, so the datapath reads them without a lock;
// their counters are shared by every table of the device.
//
// Counters (CoalescingCounters):
//
//	d3_rx_coalesced          frames held for the host without a wake
//	d3_rx_coalesce_dropped   frames of a filter dropped: the hold was full
//	coalesce_filters         filters registered now

// MaxCoalescingFilters bounds the coalescing filters of a device.
const MaxCoalescingFilters = 4096

// ErrUnknownFilter is returned by RemoveCoalescing for a connection with
// no coalescing filter.
var ErrUnknownFilter = errors.New("no coalescing filter for the connection")

// coalesceSet is an immutable set of coalescing filters.
type coalesceSet struct {
	conns map[connKey]struct{}
	list  []wp.TCPConn // registration order
	cnt   *coalesceCounters
}

type coalesceCounters struct {
	coalesced atomic.Uint64
	dropped   atomic.Uint64
}

// has reports whether f is a TCP segment of a filtered connection. It
// allocates nothing; a nil set has no filter.
func (s *coalesceSet) has(f *wp.Frame) bool {
	if s == nil || len(s.conns) == 0 || !f.IsTCP() {
		return false
	}
	k := connKey{local: netip.AddrPortFrom(f.DstIP, f.DstPort), remote: netip.AddrPortFrom(f.SrcIP, f.SrcPort), vlan: frameVLAN(f)}
	_, ok := s.conns[k]
	return ok
}

// prefilterPatterns returns the patterns the kernel prefilter must let
// through for t: the table's patterns, then one connection pattern per
// coalescing filter (the matcher never sees those).
func (t *d3Table) prefilterPatterns() []wp.Pattern {
	if t.coal == nil || len(t.coal.list) == 0 {
		return t.patterns
	}
	out := make([]wp.Pattern, 0, len(t.patterns)+len(t.coal.list))
	out = append(out, t.patterns...)
	for _, c := range t.coal.list {
		out = append(out, wp.Pattern{Kind: wp.KindTCPConn, Conn: c})
	}
	return out
}

// AddCoalescing registers a coalescing filter for a connection (the
// host's end is Local): in D3 its frames are held for the host without a
// wake and delivered at the next Resume. Adding a registered connection
// is a no-op.
func (d *Device) AddCoalescing(c wp.TCPConn) error {
	if !c.Local.IsValid() || !c.Remote.IsValid() || c.Local.Addr().Is4() != c.Remote.Addr().Is4() {
		return fmt.Errorf("add coalescing %v→%v: invalid endpoints", c.Remote, c.Local)
	}
	if c.VLAN > 4095 {
		return fmt.Errorf("add coalescing %v→%v: %w", c.Remote, c.Local, limitError("vlan", c.VLAN, "must be 0–4095"))
	}
	c.Local = netip.AddrPortFrom(c.Local.Addr().Unmap(), c.Local.Port())
	c.Remote = netip.AddrPortFrom(c.Remote.Addr().Unmap(), c.Remote.Port())
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.State() == Closed {
		return fmt.Errorf("add coalescing %v→%v: %w: device closed", c.Remote, c.Local, ErrState)
	}
	cur := d.table.Load().coal
	if cur != nil {
		if _, ok := cur.conns[keyOf(c)]; ok {
			return nil
		}
		if len(cur.list) >= MaxCoalescingFilters {
			return fmt.Errorf("add coalescing %v→%v: %w", c.Remote, c.Local,
				limitError("coalescing filters", len(cur.list)+1, fmt.Sprintf("at most %d", MaxCoalescingFilters)))
		}
	}
	next := &coalesceSet{conns: map[connKey]struct{}{keyOf(c): {}}}
	if cur != nil {
		next.cnt = cur.cnt
		for k := range cur.conns {
			next.conns[k] = struct{}{}
		}
		next.list = append(next.list, cur.list...)
	} else {
		next.cnt = &coalesceCounters{}
	}
	next.list = append(next.list, c)
	if err := d.installCoalescing(next); err != nil {
		return fmt.Errorf("add coalescing %v→%v: %w", c.Remote, c.Local, err)
	}
	return nil
}

// RemoveCoalescing removes a connection's coalescing filter; frames it
// already held stay held until Resume.
func (d *Device) RemoveCoalescing(c wp.TCPConn) error {
	c.Local = netip.AddrPortFrom(c.Local.Addr().Unmap(), c.Local.Port())
	c.Remote = netip.AddrPortFrom(c.Remote.Addr().Unmap(), c.Remote.Port())
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.table.Load().coal
	k := keyOf(c)
	if cur == nil {
		return fmt.Errorf("remove coalescing %v→%v: %w", c.Remote, c.Local, ErrUnknownFilter)
	}
	if _, ok := cur.conns[k]; !ok {
		return fmt.Errorf("remove coalescing %v→%v: %w", c.Remote, c.Local, ErrUnknownFilter)
	}
	next := &coalesceSet{conns: make(map[connKey]struct{}, len(cur.conns)), cnt: cur.cnt}
	for _, x := range cur.list {
		if keyOf(x) != k {
			next.conns[keyOf(x)] = struct{}{}
			next.list = append(next.list, x)
		}
	}
	if err := d.installCoalescing(next); err != nil {
		return fmt.Errorf("remove coalescing %v→%v: %w", c.Remote, c.Local, err)
	}
	return nil
}

// installCoalescing swaps in a table with the filters of s. Called with
// d.mu held.
func (d *Device) installCoalescing(s *coalesceSet) error {
	t, err := d.buildTable(d.slots, d.patterns)
	if err != nil {
		return err
	}
	t.coal = s
	return d.installTable(t)
}

// Coalescing returns the connections with a coalescing filter, in
// registration order.
func (d *Device) Coalescing() []wp.TCPConn {
	s := d.table.Load().coal
	if s == nil {
		return nil
	}
	return append([]wp.TCPConn(nil), s.list...)
}

// CoalescingCounters returns the coalescing counters (see the names
// above), in a stable order.
func (d *Device) CoalescingCounters() []Counter {
	s := d.table.Load().coal
	var held, dropped uint64
	var n int
	if s != nil {
		held, dropped, n = s.cnt.coalesced.Load(), s.cnt.dropped.Load(), len(s.list)
	}
	return []Counter{
		{Name: "d3_rx_coalesced", Value: held},
		{Name: "d3_rx_coalesce_dropped", Value: dropped},
		{Name: "coalesce_filters", Value: uint64(n)},
	}
}

// coalesceLimit is the number of frames the coalescing filters may hold.
func (d *Device) coalesceLimit() int { return max(1, d.caps.PostWakeFrames/2) }

// coalesce holds a D3 frame of a filtered connection for the host; it
// reports false when no filter matches f (the caller drops the frame).
// It allocates nothing once the post-wake buffer's storage exists.
func (d *Device) coalesce(rx *rxCtx, tab *d3Table, frame []byte) bool {
	s := tab.coal
	if !s.has(&rx.f) {
		return false
	}
	d.post.mu.Lock()
	switch PowerState(d.state.Load()) {
	case D3:
		// In D3 the post-wake buffer holds only coalesced frames: Resume
		// emptied it, and nothing else is kept before a wake.
		if d.post.n < d.coalesceLimit() && d.post.push(frame) {
			s.cnt.coalesced.Add(1)
		} else {
			s.cnt.dropped.Add(1)
		}
	case Waking:
		// Woken since the frame was read: it follows the wake's frames.
		if d.post.push(frame) {
			s.cnt.coalesced.Add(1)
			d.cnt.inc(cPostwakeBuffered)
		} else {
			s.cnt.dropped.Add(1)
		}
	default:
		// Resumed since: the host is awake and takes it now.
		d.post.mu.Unlock()
		rx.fwd = append(rx.fwd, frame)
		if len(rx.fwd) == cap(rx.fwd) {
			d.flushHost(rx)
		}
		return true
	}
	d.post.mu.Unlock()
	return true
}
