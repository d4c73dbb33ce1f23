package demo

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
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
	tl   *timeline
	dev  *nic.Device
	wire *wireWatch

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
	coalAt              time.Duration // the last sample
	windowProbes        uint64        // the host kernel's, seen on the wire
	// pending lists the NIC events the counters showed whose frames the
	// capture has not shown yet (see resolveLocked).
	pending []pendingEvent
}

// pendingEvent is a NIC event the counters reported, to be stamped with
// the capture time of its frame.
type pendingEvent struct {
	mark  mark
	held  bool           // a frame held for a software channel (no mark)
	local netip.AddrPort // the connection
	text  string
	// seen is when the counters showed the event; notBefore is the
	// sample before it (the frame cannot be older).
	seen, notBefore time.Duration
	tries           int
}

// captureSlack allows for the capture time of a frame the NIC sends
// coming after its counter moved (the wire's delay and jitter).
const captureSlack = wireDelay + wireJitter + 5*time.Millisecond

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
	local   netip.AddrPort
	seen    offload.Counters
	seenAt  time.Duration // when seen was read (the arming at first)
}

func newBooks(tl *timeline, dev *nic.Device, wire *wireWatch) *books {
	return &books{
		tl: tl, dev: dev, wire: wire, changed: make(chan struct{}),
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
	b.wire.watch(local, channel)
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

// slotList names the armed slots, by NIC slot ID: "slot 1 voip, slot 2
// chat".
func (b *books) slotList() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(b.armed)) {
		parts = append(parts, fmt.Sprintf("slot %d %s", id, b.armed[id].channel))
	}
	return orNone(strings.Join(parts, ", "))
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
	b.resolveLocked(false)
	b.windowProbesLocked(b.tl.since() - 3*pollInterval)
}

// probeGroup is how close window probes are to be reported as one (the
// host thaws its sockets one after the other).
const probeGroup = 20 * time.Millisecond

// windowProbesLocked reports the host kernel's window probes the capture
// showed: a socket leaving TCP_REPAIR (thawed at a wake, or unfrozen
// while the host arms it to let the NIC see the peer) sends one, a
// zero-length segment one byte before its SND.UNA, which Wireshark
// labels "TCP Keep-Alive" and the peer answers with a duplicate ACK.
func (b *books) windowProbesLocked(settled time.Duration) {
	ps := b.wire.takeProbes(settled)
	for i := 0; i < len(ps); {
		j, names := i, []string{}
		for ; j < len(ps) && ps[j].at-ps[i].at <= probeGroup; j++ {
			if !slices.Contains(names, ps[j].channel) {
				names = append(names, ps[j].channel)
			}
		}
		b.windowProbes += uint64(j - i)
		what := "a window probe from the host's kernel as the socket left TCP_REPAIR"
		if len(names) > 1 {
			what = "a window probe each from the host's kernel as the sockets left TCP_REPAIR"
		}
		b.tl.addAt(ps[i].at, "wire", fmt.Sprintf("%s: %s (tshark: TCP Keep-Alive, answered by a Dup ACK)", strings.Join(names, ", "), what))
		i = j
	}
}

// flush stamps every pending event, with its frame's time when the
// capture has it by now (call after the device closed its capture).
func (b *books) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.resolveLocked(true)
	b.windowProbesLocked(math.MaxInt64)
}

// resolveLocked stamps the pending events whose frames the capture has
// shown with the frames' times. An event still without its frame waits
// one more sample (the capture runs a little behind the counters), then,
// or when final, it is stamped with the time the counters showed it.
func (b *books) resolveLocked(final bool) {
	keep := b.pending[:0]
	for _, p := range b.pending {
		var at time.Duration
		var ok bool
		text := p.text
		if p.held {
			var h heldFrame
			if h, ok = b.wire.takeHeld(p.notBefore); ok {
				at, text = h.at, fmt.Sprintf("%-7s frame held by the NIC for the software channel, host not woken", h.channel)
				if h.again {
					text += " (a retransmission: no ACK while the host sleeps)"
				}
			}
		} else {
			at, ok = b.wire.take(p.local, p.mark, p.notBefore)
		}
		switch {
		case ok:
			b.tl.addAt(at, "nic", text)
		case final || p.tries > 0:
			b.tl.addAt(p.seen, "nic", text)
		default:
			p.tries++
			keep = append(keep, p)
		}
	}
	clear(b.pending[len(keep):])
	b.pending = keep
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
	now := b.tl.since()
	b.coalesced += n
	for range n {
		b.pending = append(b.pending, pendingEvent{held: true, text: "frame held by the NIC for a software channel, host not woken",
			seen: now, notBefore: b.coalAt - captureSlack})
	}
	b.coalAt = now
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
	now := b.tl.since()
	notBefore := s.seenAt - captureSlack
	s.seen, s.seenAt = c, now
	what := "TCP keep-alive probe"
	if s.kind == offload.KindWebSocket {
		what = "WebSocket Ping"
	}
	name := fmt.Sprintf("slot %d %-7s", id, s.channel)
	add := func(n uint64, m mark, text string) {
		for range n {
			b.pending = append(b.pending, pendingEvent{mark: m, local: s.local, text: name + " " + text, seen: now, notBefore: notBefore})
		}
	}
	add(d.KeepalivesSent, markProbe, what+" sent by the NIC")
	add(d.Retries, markProbe, what+" re-sent (no reply yet)")
	add(d.RepliesAbsorbed, markReply, "keep-alive reply absorbed, host asleep")
	add(d.PingsAnswered, markPong, "server Ping answered with a Pong by the NIC, host asleep")
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
	at := b.tl.since()
	id, err := r.NIC.Arm(s)
	if err != nil {
		return id, err
	}
	local := s.Pattern.Local
	ch := b.byConn[local]
	if ch == "" {
		ch = local.String()
	}
	b.wire.armed(local, s.Spec.Kind, s.Snapshot, at)
	b.armed[int(id)] = &armedSlot{channel: ch, kind: s.Spec.Kind, local: local, seenAt: at}
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
		b.wire.disarmed(s.local, b.tl.since())
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
