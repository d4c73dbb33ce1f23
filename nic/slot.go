package nic

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// SlotID names an armed hardware slot. IDs run from 1 to
// Capabilities.Slots; the zero value is invalid.
type SlotID int

// SlotConfig is what the host hands the device to guard one connection.
type SlotConfig struct {
	// Pattern identifies the connection (the host's end is Local).
	Pattern wp.TCPConn
	// Spec is the keep-alive to run.
	Spec offload.Spec
	// Snapshot is the connection's TCP state, read with TCP_REPAIR.
	Snapshot offload.Snapshot
	// Owner names who armed the slot (an app, a channel), for logs.
	Owner string
}

// ErrArmed is matched (errors.Is) by the refusal to arm a connection a
// slot already guards; the error is an *ArmedError naming the slot.
var ErrArmed = errors.New("connection already armed")

// ArmedError is Arm's refusal of a connection that is already armed.
type ArmedError struct {
	// Slot is the slot guarding the connection.
	Slot SlotID
	Conn wp.TCPConn
}

func (e *ArmedError) Error() string {
	return fmt.Sprintf("arm slot: %v: %v→%v vlan %d is armed in slot %d", ErrArmed, e.Conn.Local, e.Conn.Remote, e.Conn.VLAN, e.Slot)
}

// Unwrap makes errors.Is(err, ErrArmed) hold.
func (e *ArmedError) Unwrap() error { return ErrArmed }

// slotPatternID marks the pattern IDs the device gives slot patterns;
// extra wake patterns may not use IDs with this bit.
const slotPatternID = 1 << 31

// slotEntry is one armed slot.
type slotEntry struct {
	id    SlotID
	cfg   SlotConfig
	armed time.Duration
	cnt   slotCounters
	seen  offload.Counters // the engine's counters at the last drop; guarded by engMu
}

// d3Table is the immutable classification table of the D3 datapath,
// swapped whole with atomic.Pointer whenever slots or patterns change.
type d3Table struct {
	matcher *wp.Matcher // nil: nothing armed
	// bySlotIndex maps a matched pattern index below len(bySlotIndex) to
	// its slot; indices past it are extra wake patterns.
	bySlotIndex []*slotEntry
	byID        map[SlotID]*slotEntry
	// conn4 holds the slots' connections without their VLAN, to tell a
	// frame on the wrong VLAN from one that matches nothing.
	conn4    map[connKey]struct{}
	patterns []wp.Pattern // as compiled: slot patterns, then extras
	// coal is the coalescing filters (coalesce.go), carried from table
	// to table; nil when none was ever added.
	coal *coalesceSet
}

// classify matches f. It returns the slot the frame belongs to, or the
// extra pattern it matched (ok), allocation-free.
func (t *d3Table) classify(f *wp.Frame, r *wp.Result) (se *slotEntry, patternID uint32, ok bool) {
	if t.matcher == nil || !t.matcher.Match(f, r) {
		return nil, 0, false
	}
	if r.Index < len(t.bySlotIndex) {
		return t.bySlotIndex[r.Index], 0, true
	}
	return nil, r.Pattern.ID, true
}

// wrongVLAN reports whether f is a TCP segment of an armed slot's
// connection on another VLAN.
func (t *d3Table) wrongVLAN(f *wp.Frame) bool {
	if len(t.conn4) == 0 || !f.IsTCP() {
		return false
	}
	k := connKey{local: netip.AddrPortFrom(f.DstIP, f.DstPort), remote: netip.AddrPortFrom(f.SrcIP, f.SrcPort)}
	_, ok := t.conn4[k]
	return ok
}

// buildTable compiles the table for slots (by ID order) and extra
// patterns. Called with d.mu held.
func (d *Device) buildTable(slots map[SlotID]*slotEntry, extras []wp.Pattern) (*d3Table, error) {
	t := &d3Table{byID: make(map[SlotID]*slotEntry, len(slots)), conn4: make(map[connKey]struct{}, len(slots)), coal: d.table.Load().coal}
	for id := SlotID(1); int(id) <= d.caps.Slots; id++ {
		se, ok := slots[id]
		if !ok {
			continue
		}
		t.byID[id] = se
		t.bySlotIndex = append(t.bySlotIndex, se)
		t.patterns = append(t.patterns, wp.Pattern{ID: slotPatternID | uint32(id), Priority: 255, Kind: wp.KindTCPConn, Conn: se.cfg.Pattern})
		t.conn4[connKey{local: se.cfg.Pattern.Local, remote: se.cfg.Pattern.Remote}] = struct{}{}
	}
	t.patterns = append(t.patterns, extras...)
	if len(t.patterns) == 0 {
		return t, nil
	}
	m, err := wp.Compile(t.patterns, d.pcaps)
	if err != nil {
		return nil, err
	}
	t.matcher = m
	return t, nil
}

// slotByID returns an armed slot without locking (the datapath's view).
func (d *Device) slotByID(id SlotID) *slotEntry { return d.table.Load().byID[id] }

// Arm takes over a connection in a hardware slot: the engine starts its
// keep-alives, and in D3 its frames are classified by the engine. It
// fails with an *ArmedError (ErrArmed) when a slot already guards the
// connection, with ErrNoSlot when every slot is in use, and with an error naming
// the limit when the wake-pattern limits are exceeded; nothing armed
// before is affected by a failure.
func (d *Device) Arm(s SlotConfig) (SlotID, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.State() == Closed {
		return 0, fmt.Errorf("arm slot: %w: device closed", ErrState)
	}
	for id, se := range d.slots {
		if se.cfg.Pattern == s.Pattern {
			return 0, &ArmedError{Slot: id, Conn: s.Pattern}
		}
	}
	if err := d.admitLocked(&s); err != nil { // firmware profile hook (profile.go)
		return 0, err
	}
	if len(d.slots) >= d.caps.Slots {
		return 0, fmt.Errorf("arm slot: %w (%d of %d): %w", ErrNoSlot, len(d.slots), d.caps.Slots, ErrLimit)
	}
	p, sn := s.Pattern, s.Snapshot
	if p.Local != sn.Local || p.Remote != sn.Remote || p.VLAN != sn.VLAN {
		return 0, fmt.Errorf("arm slot: pattern %v→%v vlan %d does not match the snapshot's %v→%v vlan %d",
			p.Remote, p.Local, p.VLAN, sn.Remote, sn.Local, sn.VLAN)
	}
	var id SlotID
	for i := SlotID(1); int(i) <= d.caps.Slots; i++ {
		if _, used := d.slots[i]; !used {
			id = i
			break
		}
	}
	se := &slotEntry{id: id, cfg: s, armed: d.clock.Now()}
	next := make(map[SlotID]*slotEntry, len(d.slots)+1)
	for k, v := range d.slots {
		next[k] = v
	}
	next[id] = se
	t, err := d.buildTable(next, d.patterns)
	if err != nil {
		return 0, fmt.Errorf("arm slot %d: %w", id, err)
	}
	d.engMu.Lock()
	err = d.eng.Arm(offload.SlotID(id), s.Snapshot, s.Spec)
	d.engMu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("arm slot %d: %w", id, err)
	}
	if err := d.installTable(t); err != nil {
		d.engMu.Lock()
		d.eng.Disarm(offload.SlotID(id))
		d.engMu.Unlock()
		return 0, fmt.Errorf("arm slot %d: %w", id, err)
	}
	d.slots = next
	d.kickTimer()
	d.log.Info("slot armed", "slot", id, "owner", s.Owner, "local", p.Local, "remote", p.Remote)
	return id, nil
}

// Disarm releases a slot and returns its final report: state, status,
// counters, the books of the stream bytes it sent and absorbed, and the
// sequence state the host thaws with.
func (d *Device) Disarm(id SlotID) (offload.Report, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.slots[id]; !ok {
		return offload.Report{}, fmt.Errorf("disarm slot %d: %w", id, ErrUnknownSlot)
	}
	next := make(map[SlotID]*slotEntry, len(d.slots))
	for k, v := range d.slots {
		if k != id {
			next[k] = v
		}
	}
	t, err := d.buildTable(next, d.patterns)
	if err != nil { // cannot happen: a subset of a compiled set
		return offload.Report{}, fmt.Errorf("disarm slot %d: %w", id, err)
	}
	if err := d.installTable(t); err != nil {
		d.log.Warn("prefilter update failed", "err", err)
	}
	d.engMu.Lock()
	d.xdpSyncLocked() // its replies absorbed in XDP belong in the report
	r, err := d.eng.Disarm(offload.SlotID(id))
	d.engMu.Unlock()
	d.slots = next
	if err != nil {
		return r, fmt.Errorf("disarm slot %d: %w", id, err)
	}
	return r, nil
}

// Slots returns the armed slots' IDs in order.
func (d *Device) Slots() []SlotID {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := make([]SlotID, 0, len(d.slots))
	for id := SlotID(1); int(id) <= d.caps.Slots; id++ {
		if _, ok := d.slots[id]; ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// SlotState returns the engine's view of a slot.
func (d *Device) SlotState(id SlotID) (offload.State, offload.Status, offload.Counters, bool) {
	d.engMu.Lock()
	defer d.engMu.Unlock()
	d.xdpSyncLocked()
	return d.eng.State(offload.SlotID(id))
}

// AddWakePattern adds an extra wake pattern (bitmap, magic packet, TCP
// SYN); a frame matching it in D3 wakes the host with reason pattern and
// the pattern's ID. IDs must be unique and below 2^31.
func (d *Device) AddWakePattern(p wp.Pattern) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p.ID&slotPatternID != 0 {
		return fmt.Errorf("add wake pattern %d: %w", p.ID, limitError("pattern id", p.ID, "must be below 2^31"))
	}
	if p.Kind == wp.KindTCPConn {
		return fmt.Errorf("add wake pattern %d: connection patterns are armed as slots (Arm)", p.ID)
	}
	for _, q := range d.patterns {
		if q.ID == p.ID {
			return fmt.Errorf("add wake pattern %d: id already in use", p.ID)
		}
	}
	extras := append(append([]wp.Pattern(nil), d.patterns...), p)
	t, err := d.buildTable(d.slots, extras)
	if err != nil {
		return fmt.Errorf("add wake pattern %d: %w", p.ID, err)
	}
	if err := d.installTable(t); err != nil {
		return fmt.Errorf("add wake pattern %d: %w", p.ID, err)
	}
	d.patterns = extras
	return nil
}

// RemoveWakePattern removes the extra wake pattern with the given ID.
func (d *Device) RemoveWakePattern(id uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	extras := make([]wp.Pattern, 0, len(d.patterns))
	for _, q := range d.patterns {
		if q.ID != id {
			extras = append(extras, q)
		}
	}
	if len(extras) == len(d.patterns) {
		return fmt.Errorf("remove wake pattern %d: no such pattern", id)
	}
	t, err := d.buildTable(d.slots, extras)
	if err != nil {
		return fmt.Errorf("remove wake pattern %d: %w", id, err)
	}
	if err := d.installTable(t); err != nil {
		return fmt.Errorf("remove wake pattern %d: %w", id, err)
	}
	d.patterns = extras
	return nil
}

// installTable swaps the datapath table in; while asleep it first
// re-attaches the kernel prefilter compiled from the same patterns, so
// the kernel never drops a frame the new table would take. Called with
// d.mu held.
func (d *Device) installTable(t *d3Table) error {
	if s := d.State(); s == D3 || s == Arming {
		if err := d.attachPrefilter(t); err != nil {
			return err
		}
		if s := d.State(); s != D3 && s != Arming {
			// Woken meanwhile: the wake detached the filter first.
			d.detachPrefilter()
		}
	}
	d.table.Store(t)
	return nil
}

// attachPrefilter compiles t's patterns plus the ARP/NS offloads to a
// classic-BPF program and attaches it to the wire port.
func (d *Device) attachPrefilter(t *d3Table) error {
	if d.noBPF {
		return nil
	}
	prog, info, err := d.prefilter(t.prefilterPatterns())
	if err != nil {
		return fmt.Errorf("compile prefilter: %w", err)
	}
	if err := d.wire.SetFilter(prog); err != nil {
		return fmt.Errorf("attach prefilter: %w", err)
	}
	d.filter.Store(&info)
	// The XDP fast path in front of it, when configured and possible
	// (xdppath.go); the socket filter stays as the fallback and superset.
	d.attachXDP(t)
	return nil
}

// detachPrefilter takes the prefilter off the wire port, if there is one:
// the XDP fast path first, then the socket filter.
func (d *Device) detachPrefilter() {
	d.detachXDP()
	d.detachSocketFilter()
}

// detachSocketFilter takes the classic-BPF socket filter off the wire
// port. A wake calls it alone, after passAllXDP (xdppath.go).
func (d *Device) detachSocketFilter() {
	if d.noBPF {
		return
	}
	d.filter.Store(nil)
	if err := d.wire.SetFilter(nil); err != nil {
		d.log.Warn("detach prefilter failed", "err", err)
	}
}

func (d *Device) appendSlotCounters(out []Counter, se *slotEntry) []Counter {
	out = se.cnt.appendTo(out, se.id)
	_, _, c, ok := d.SlotState(se.id)
	if !ok {
		return out
	}
	for _, e := range []struct {
		name string
		v    uint64
	}{
		{"keepalives_sent", c.KeepalivesSent},
		{"retries", c.Retries},
		{"replies_absorbed", c.RepliesAbsorbed},
		{"acks_absorbed", c.ACKsAbsorbed},
		{"pings_answered", c.PingsAnswered},
		{"acks_sent", c.ACKsSent},
		{"challenge_acks", c.ChallengeACKs},
		{"peer_keepalives_answered", c.PeerKeepalivesAnswered},
		{"dropped_out_of_window", c.DroppedOutOfWindow},
		{"dropped_paws", c.DroppedPAWS},
		{"dropped_bad_ack", c.DroppedBadACK},
		{"dropped_other", c.DroppedOther},
		{"buffered", c.Buffered},
		{"transitions", c.Transitions},
	} {
		out = append(out, Counter{Name: fmt.Sprintf("slot%d_%s", se.id, e.name), Value: e.v})
	}
	return out
}

var errNotTracked = errors.New("connection not tracked")

// Track registers a connection whose TCP state the device learns from the
// segments it forwards in D0 (see Learned).
func (d *Device) Track(c wp.TCPConn) error {
	if !c.Local.IsValid() || !c.Remote.IsValid() {
		return fmt.Errorf("track %v→%v: invalid endpoint", c.Local, c.Remote)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.tracks.Load()
	next := &trackTable{m: make(map[connKey]*tracked, len(old.m)+1)}
	for k, v := range old.m {
		next.m[k] = v
	}
	k := keyOf(c)
	if _, ok := next.m[k]; !ok {
		next.m[k] = &tracked{l: Learned{Conn: c, SndWScale: -1, RcvWScale: -1}}
	}
	d.tracks.Store(next)
	return nil
}

// Untrack stops learning a connection.
func (d *Device) Untrack(c wp.TCPConn) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.tracks.Load()
	k := keyOf(c)
	if _, ok := old.m[k]; !ok {
		return fmt.Errorf("untrack %v→%v: %w", c.Local, c.Remote, errNotTracked)
	}
	next := &trackTable{m: make(map[connKey]*tracked, len(old.m))}
	for kk, v := range old.m {
		if kk != k {
			next.m[kk] = v
		}
	}
	d.tracks.Store(next)
	return nil
}

// Learned returns what the device learned about a tracked connection, and
// false when it is not tracked.
func (d *Device) Learned(c wp.TCPConn) (Learned, bool) {
	tr := d.tracks.Load().m[keyOf(c)]
	if tr == nil {
		return Learned{}, false
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.l, true
}

// Snapshot returns the learned state as an offload snapshot: what the
// device can know from the wire (sequence numbers, windows scaled by the
// shifts seen in the SYNs, timestamps, TTL/TOS, MACs). The host fills what
// it does not see (the timestamp clock rate) from its own TCP_REPAIR
// snapshot.
func (l Learned) Snapshot() offload.Snapshot {
	s := offload.Snapshot{
		LocalMAC: l.LocalMAC, RemoteMAC: l.RemoteMAC, VLAN: l.Conn.VLAN,
		Local: l.Conn.Local, Remote: l.Conn.Remote,
		SndNxt: l.SndNxt, RcvNxt: l.RcvNxt,
		SndWnd: uint32(l.SndWnd), RcvWnd: uint32(l.RcvWnd),
		TTL: l.TTL, TOS: l.TOS, MSS: l.MSS,
	}
	if l.SndWScale >= 0 {
		s.SndWScale = uint8(l.SndWScale)
		s.SndWnd <<= s.SndWScale
	}
	if l.RcvWScale >= 0 {
		s.RcvWScale = uint8(l.RcvWScale)
		s.RcvWnd <<= s.RcvWScale
	}
	if l.HasTS {
		s.Timestamps = offload.Timestamps{Enabled: true, Val: l.HostTSval, At: l.HostTSAt, Recent: l.TSRecent}
	}
	return s
}
