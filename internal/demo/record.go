package demo

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// books is what the demo saw: pushes and their delivery, the NIC's slots
// and what they did, its wake events. Times are on the run's timeline.
//
// Lock order: books.mu → the device's locks (the slot poller reads slot
// counters with mu held, so a slot re-armed meanwhile is never mistaken
// for the old one). Nothing the device calls back takes mu: wake events
// arrive through a queue.
type books struct {
	tl  *timeline
	dev *nic.Device

	mu      sync.Mutex
	changed chan struct{} // closed at every delivery
	seq     uint64
	pushes  map[uint64]*pushRecord // by seq
	order   []uint64               // push seqs in the order sent
	byConn  map[netip.AddrPort]string
	armed   map[int]*armedSlot // NIC slot → what guards it now
	last    map[int]string     // NIC slot → channel of its last arming
	resets  map[string]int     // resets the server raised, by channel
	nicWake map[string]uint64  // NIC wake events by reason
	// unexplained lists NIC wakes no push or reset accounts for.
	unexplained []string
	slotTotals  offload.Counters
	armCount    map[string]int // hardware armings by channel
	// coalesced counts frames the NIC held for software channels without
	// a wake; coalSeen is the device's counter at the last sample (it
	// restarts when the last filter goes).
	coalesced, coalSeen uint64
}

// pushRecord is one push the server sent.
type pushRecord struct {
	seq       uint64 // the demo's number
	id        uint64 // the server's message id
	channel   string
	sent      time.Duration
	delivered time.Duration // -1 until delivered
	// wake is the time of the NIC wake that carried it (-1 when none).
	wake time.Duration
	// asleep: the host was not awake when the server pushed.
	asleep bool
}

// armedSlot is a hardware slot the host armed.
type armedSlot struct {
	channel string
	kind    offload.Kind
	seen    offload.Counters
}

func newBooks(tl *timeline, dev *nic.Device) *books {
	return &books{
		tl: tl, dev: dev, changed: make(chan struct{}),
		pushes: map[uint64]*pushRecord{}, byConn: map[netip.AddrPort]string{},
		armed: map[int]*armedSlot{}, last: map[int]string{}, resets: map[string]int{},
		nicWake: map[string]uint64{}, armCount: map[string]int{},
	}
}

// connect records which channel a local TCP endpoint belongs to.
func (b *books) connect(local netip.AddrPort, channel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.byConn[local] = channel
}

// pushing records a push before the server writes it (the NIC may wake
// on it before Push returns) and returns its demo sequence number, which
// the payload carries so the app's task can name it.
func (b *books) pushing(channel string, asleep bool) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	b.pushes[b.seq] = &pushRecord{seq: b.seq, channel: channel, sent: b.tl.since(), delivered: -1, wake: -1, asleep: asleep}
	b.order = append(b.order, b.seq)
	return b.seq
}

// pushed sets the server's message id of push seq.
func (b *books) pushed(seq, id uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.pushes[seq]; p != nil {
		p.id = id
	}
}

// unpush forgets push seq: the server could not write it.
func (b *books) unpush(seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.pushes, seq)
	b.order = slices.DeleteFunc(b.order, func(s uint64) bool { return s == seq })
}

// delivered records that the app's task got push seq; it returns a copy
// of the record, or nil for an unknown or repeated one.
func (b *books) delivered(seq uint64) *pushRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pushes[seq]
	if p == nil || p.delivered >= 0 {
		return nil
	}
	p.delivered = b.tl.since()
	cp := *p
	b.notifyLocked()
	return &cp
}

// undelivered returns the pushes not delivered yet, and a channel closed
// at the next delivery.
func (b *books) undelivered() (int, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, p := range b.pushes {
		if p.delivered < 0 {
			n++
		}
	}
	return n, b.changed
}

func (b *books) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *books) resetting(channel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.resets[channel]++
}

// nicWakeEvent accounts one wake event of the device: its reason, the
// channel of its slot, and whether a push or a reset explains it.
func (b *books) nicWakeEvent(ev nic.WakeEvent, at time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nicWake[ev.Reason.String()]++
	if ev.Slot == 0 {
		if ev.Reason != nic.WakeHost {
			b.unexplained = append(b.unexplained, fmt.Sprintf("%s wake without a slot", ev.Reason))
		}
		return
	}
	ch := b.last[int(ev.Slot)]
	if s := b.armed[int(ev.Slot)]; s != nil {
		ch = s.channel
	}
	explained := false
	switch ev.Reason {
	case nic.WakeData:
		for _, id := range b.order {
			p := b.pushes[id]
			if p.channel == ch && p.sent <= at && (p.delivered < 0 || p.delivered >= at) {
				explained = true
				if p.wake < 0 {
					p.wake = at
				}
			}
		}
	case nic.WakeRST, nic.WakeFIN:
		explained = b.resets[ch] > 0
	}
	if !explained {
		b.unexplained = append(b.unexplained, fmt.Sprintf("%s wake of slot %d (%s) at %s", ev.Reason, ev.Slot, ch, formatOffset(at)))
	}
}

// poll reports what the armed slots and the coalescing filters did
// since the last poll.
func (b *books) poll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, s := range b.armed {
		_, _, c, ok := b.dev.SlotState(nic.SlotID(id))
		if ok {
			b.advanceLocked(id, s, c)
		}
	}
	b.sampleCoalescingLocked()
}

// sampleCoalescingLocked accounts the frames held by the coalescing
// filters since the last sample.
func (b *books) sampleCoalescingLocked() {
	var v uint64
	for _, c := range b.dev.CoalescingCounters() {
		if c.Name == "d3_rx_coalesced" {
			v = c.Value
		}
	}
	n := v
	if v >= b.coalSeen {
		n = v - b.coalSeen
	}
	b.coalSeen = v
	if n > 0 {
		b.coalesced += n
		b.tl.add("nic", "%d frame(s) for a software channel held by the NIC, host not woken", n)
	}
}

// advanceLocked reports and accounts the growth of slot id's counters
// from s.seen to c.
func (b *books) advanceLocked(id int, s *armedSlot, c offload.Counters) {
	d := offload.Counters{
		KeepalivesSent:  c.KeepalivesSent - s.seen.KeepalivesSent,
		Retries:         c.Retries - s.seen.Retries,
		RepliesAbsorbed: c.RepliesAbsorbed - s.seen.RepliesAbsorbed,
		ACKsAbsorbed:    c.ACKsAbsorbed - s.seen.ACKsAbsorbed,
		PingsAnswered:   c.PingsAnswered - s.seen.PingsAnswered,
	}
	s.seen = c
	what := "TCP keep-alive probe"
	if s.kind == offload.KindWebSocket {
		what = "WebSocket Ping"
	}
	name := fmt.Sprintf("slot %d %-7s", id, s.channel)
	for range d.KeepalivesSent {
		b.tl.add("nic", "%s %s sent by the NIC", name, what)
	}
	for range d.Retries {
		b.tl.add("nic", "%s %s re-sent (no reply yet)", name, what)
	}
	for range d.RepliesAbsorbed {
		b.tl.add("nic", "%s keep-alive reply absorbed, host asleep", name)
	}
	for range d.PingsAnswered {
		b.tl.add("nic", "%s server Ping answered with a Pong by the NIC, host asleep", name)
	}
	t := &b.slotTotals
	t.KeepalivesSent += d.KeepalivesSent
	t.Retries += d.Retries
	t.RepliesAbsorbed += d.RepliesAbsorbed
	t.ACKsAbsorbed += d.ACKsAbsorbed
	t.PingsAnswered += d.PingsAnswered
}

// recordingNIC is the host's NIC: the device, with every arming and
// disarming noted in the books.
type recordingNIC struct {
	host.NIC
	b *books
}

// Arm implements host.NIC.Arm.
func (r *recordingNIC) Arm(s nic.SlotConfig) (nic.SlotID, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	id, err := r.NIC.Arm(s)
	if err != nil {
		return id, err
	}
	ch := b.byConn[s.Pattern.Local]
	if ch == "" {
		ch = s.Pattern.Local.String()
	}
	b.armed[int(id)] = &armedSlot{channel: ch, kind: s.Spec.Kind}
	b.last[int(id)] = ch
	b.armCount[ch]++
	return id, nil
}

// Disarm implements host.NIC.Disarm.
func (r *recordingNIC) Disarm(id nic.SlotID) (offload.Report, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	rep, err := r.NIC.Disarm(id)
	if s := b.armed[int(id)]; s != nil {
		if err == nil {
			b.advanceLocked(int(id), s, rep.Counters)
		}
		delete(b.armed, int(id))
	}
	return rep, err
}

// RemoveCoalescing implements host.NIC.RemoveCoalescing: the frames the
// filters held are counted before the last one goes (the device's
// counter restarts then).
func (r *recordingNIC) RemoveCoalescing(c wp.TCPConn) error {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sampleCoalescingLocked()
	err := r.NIC.RemoveCoalescing(c)
	b.coalSeen = 0
	for _, c := range b.dev.CoalescingCounters() {
		if c.Name == "d3_rx_coalesced" {
			b.coalSeen = c.Value
		}
	}
	return err
}

var _ host.NIC = (*recordingNIC)(nil)
