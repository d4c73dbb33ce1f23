package host

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/slotmgr"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// ErrNoNIC says a hardware channel was kept alive by the host because
// there is no NIC to arm.
var ErrNoNIC = errors.New("no NIC")

// enterStandbyLocked quiesces the channels, arms the NIC's slots for the
// hardware ones, plans the software ones, and puts the NIC to sleep.
func (h *Host) enterStandbyLocked() {
	h.procFreezeLocked() // before the pool stops giving software slots
	h.setStateLocked(EnteringStandby)
	if h.nic != nil {
		// Drop wake events of the last cycle: they were handled.
	drain:
		for {
			select {
			case <-h.nic.Wakes():
			default:
				break drain
			}
		}
	}
	live := h.liveChannelsLocked()
	for _, ch := range live {
		ch.note = ""
		ch.lastSlot = 0
		if ch.status != slotmgr.HardwareSlotAllocated {
			continue
		}
		if err := h.armLocked(ch); err != nil {
			if h.nicDown {
				// Kept alive by the host while the NIC is away; the
				// NIC's loss said what it did to the connection.
				ch.note = err.Error()
				h.stats.StayedSoftware++
				continue
			}
			ch.note = err.Error()
			h.stats.StayedSoftware++
			h.log.Debug("hardware channel stays software", "channel", ch.id, "why", err)
			continue
		}
		if !ch.transport.NICKeepAlive().HostAppKeepAlive {
			h.planner.Remove(ch.id)
		}
		// else: the slot guards the TCP connection only (TLS); the
		// app's keep-alive inside TLS stays on the host's own wakes.
	}
	if h.nic != nil && !h.nicDown {
		// The channels the host keeps alive itself: the NIC holds their
		// frames, without a wake, until the host's next wake.
		for _, ch := range live {
			if ch.slot == 0 {
				h.coalesceLocked(ch)
			}
		}
		if err := h.nic.Sleep(); err != nil {
			h.log.Warn("nic sleep failed; staying awake", "err", err)
			h.handBackLocked()
			if h.watch != nil && !h.watch.Health().Up {
				// The NIC is lost: its nic-lost wake follows; the host
				// sleeps without it meanwhile and arms again when it is
				// back.
				h.nicDown = true
				h.nicBackC = h.watch.Back()
				h.setStateLocked(Awake)
				h.kickLocked()
				return
			}
			h.target = Awake
			h.setStateLocked(Awake)
			return
		}
		h.checkFrozenLocked()
	}
	if h.cfg.PushCheckInterval > 0 {
		h.pushCheck = h.clock.Now() + h.cfg.PushCheckInterval
	}
	h.setStateLocked(Standby)
}

// armLocked freezes ch's socket and arms a NIC slot for it.
func (h *Host) armLocked(ch *Channel) error {
	if h.nic == nil {
		return fmt.Errorf("arm: %w", ErrNoNIC)
	}
	if h.nicDown {
		return errNICAway
	}
	conn := ch.transport.Conn()
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.IdleWait)
	err := waitSent(ctx, conn)
	cancel()
	if err != nil {
		return fmt.Errorf("arm: %w", Idle(conn))
	}
	g := gateOf(ch.transport)
	if g != nil {
		g.hold()
	}
	fz, st, err := Freeze(conn)
	if err != nil {
		g.releaseIf()
		return fmt.Errorf("arm: %w", err)
	}
	c := wp.TCPConn{Local: st.Local, Remote: st.Remote}
	learned, ok := h.nic.Learned(c)
	if !learnedFresh(learned, ok, st) {
		// The NIC has not seen the connection as the kernel has it (it
		// was tracked after its last segment, or the NIC absorbed bytes
		// in the last standby). Leaving repair mode sends a window probe;
		// the peer's answer, forwarded by the NIC, teaches it the MACs,
		// the peer's TSval and RCV.NXT. Then freeze again.
		if err := fz.Abort(); err != nil {
			g.releaseIf()
			return fmt.Errorf("arm: %w", err)
		}
		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.IdleWait)
		learned, ok = waitLearned(ctx, h.nic, c, learned.SegmentsIn, st)
		cancel()
		if !learnedFresh(learned, ok, st) {
			g.releaseIf()
			return fmt.Errorf("arm: the NIC has not seen the connection (in %d, out %d segments)", learned.SegmentsIn, learned.SegmentsOut)
		}
		fz, st, err = Freeze(conn)
		if err != nil {
			g.releaseIf()
			return fmt.Errorf("arm: %w", err)
		}
		learned, ok = h.nic.Learned(c)
		if !learnedFresh(learned, ok, st) {
			fz.Abort()
			g.releaseIf()
			return errors.New("arm: the connection moved while it was frozen")
		}
	}
	snap, err := snapshotOf(st, learned, h.clock.Now())
	if err != nil {
		fz.Abort()
		g.releaseIf()
		return fmt.Errorf("arm: %w", err)
	}
	now := h.clock.Now()
	spec := h.specFor(ch, now)
	slot, err := h.nic.Arm(nic.SlotConfig{Pattern: c, Spec: spec, Snapshot: snap, Owner: ch.app + "/" + ch.id})
	if err != nil {
		fz.Abort()
		g.releaseIf()
		return fmt.Errorf("arm: %w", err)
	}
	ch.frozen, ch.slot, ch.lastSlot = fz, slot, slot
	ch.faultNote, ch.blindSlot = "", 0
	ch.armRcvNxt = st.RcvNxt
	ch.armedAt = now
	ch.armLast = now + spec.FirstDue - spec.Interval
	h.stats.Armed++
	return nil
}

// learnedFresh reports whether what the NIC learned of a connection
// matches the kernel's frozen state: both directions seen, the MACs
// known, the peer's next sequence number the socket's RCV.NXT, and
// timestamps seen when the connection uses them (TS.Recent comes from
// the NIC).
func learnedFresh(l nic.Learned, ok bool, st TCPState) bool {
	var zero [6]byte
	return ok && l.SeenIn && l.SeenOut && l.LocalMAC != zero && l.RemoteMAC != zero &&
		l.RcvNxt == st.RcvNxt && (!st.Timestamps || l.HasTS)
}

// waitLearned polls the NIC until it saw a new segment of the peer with
// RCV.NXT at st's, or ctx ends; it returns the last view.
func waitLearned(ctx context.Context, n NIC, c wp.TCPConn, in uint64, st TCPState) (nic.Learned, bool) {
	delay := 200 * time.Microsecond
	for {
		l, ok := n.Learned(c)
		if ok && l.SegmentsIn > in && learnedFresh(l, ok, st) {
			return l, ok
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return l, ok
		case <-t.C:
		}
		delay = min(delay*2, 10*time.Millisecond)
	}
}

// checkFrozenLocked runs once the NIC sleeps: data (or a FIN) the NIC
// forwarded to a socket between its freeze and the NIC's sleep made the
// slot's snapshot stale (the kernel processed it, even in repair mode).
// The NIC learned it (its RCV.NXT moved past the snapshot's); such a
// channel is taken back at once and kept alive by the host this time. A
// bare ACK (the peer's answer to the last thaw's window probe) changes
// no sequence number and is harmless.
func (h *Host) checkFrozenLocked() {
	for _, ch := range h.order {
		if ch.slot == 0 {
			continue
		}
		l, ok := h.nic.Learned(connOf(ch.transport.Conn()))
		if ok && l.RcvNxt == ch.armRcvNxt {
			continue
		}
		h.takeBackLocked(ch, h.clock.Now())
		ch.note = "a segment reached the socket while it was being frozen"
		h.stats.StayedSoftware++
		h.coalesceLocked(ch)
	}
}

// coalesceLocked registers ch's NIC coalescing filter.
func (h *Host) coalesceLocked(ch *Channel) {
	if ch.coalesced || h.nic == nil || h.nicDown || ch.transport == nil {
		return
	}
	if err := h.nic.AddCoalescing(connOf(ch.transport.Conn())); err != nil {
		h.log.Debug("coalescing filter", "channel", ch.id, "err", err)
		return
	}
	ch.coalesced = true
}

// uncoalesceLocked removes ch's NIC coalescing filter.
func (h *Host) uncoalesceLocked(ch *Channel) {
	if !ch.coalesced || h.nic == nil || ch.transport == nil {
		return
	}
	ch.coalesced = false
	if h.nicDown {
		return // gone with the NIC, or removed when it is back
	}
	if err := h.nic.RemoveCoalescing(connOf(ch.transport.Conn())); err != nil {
		h.log.Debug("remove coalescing filter", "channel", ch.id, "err", err)
	}
}

// snapshotOf builds the offload engine's snapshot from the kernel's state
// and what the NIC learned (MACs, TS.Recent).
func snapshotOf(st TCPState, l nic.Learned, now time.Duration) (offload.Snapshot, error) {
	s := offload.Snapshot{
		LocalMAC:  l.LocalMAC,
		RemoteMAC: l.RemoteMAC,
		Local:     st.Local,
		Remote:    st.Remote,
		SndNxt:    st.SndNxt,
		RcvNxt:    st.RcvNxt,
		SndWnd:    st.Window.SndWnd,
		SndWScale: st.SndWScale,
		RcvWScale: st.RcvWScale,
		TTL:       st.TTL,
		TOS:       st.TOS,
	}
	// Keep the right edge of the window the socket advertised (see the
	// notes in repair.go): window = RcvWup + RcvWnd - RCV.NXT.
	s.RcvWnd = st.Window.RcvWup + st.Window.RcvWnd - st.RcvNxt
	if limit := uint32(0xffff) << st.RcvWScale; s.RcvWnd > limit {
		s.RcvWnd = limit
	}
	mss := st.SndMSS
	if mss == 0 || (st.MSS != 0 && st.MSS < mss) {
		mss = st.MSS
	}
	s.MSS = uint16(min(mss, 0xffff))
	if st.Timestamps {
		rate := uint32(1000)
		if st.UsecTimestamps {
			rate = 1_000_000
		}
		s.Timestamps = offload.Timestamps{Enabled: true, Val: st.TSVal, At: now, Rate: rate, Recent: st.TSRecent}
		if l.HasTS {
			s.Timestamps.Recent = l.TSRecent
		}
	}
	if err := s.Validate(); err != nil {
		return offload.Snapshot{}, err
	}
	return s, nil
}

// specFor returns the NIC keep-alive of ch, armed at now: what its
// transport asks for (Transport.NICKeepAlive): TCP probes (line and raw
// by default, every TLS channel), the WebSocket keep-alive (ping, pong,
// responder), a payload keep-alive (MQTT's PINGREQ/PINGRESP preset, or
// the app's request and reply). The first keep-alive is due when the host's plan has the
// channel's next one (FirstDue, at least minFirstDue, at most an
// Interval), so the schedule runs on across standby entries.
func (h *Host) specFor(ch *Channel, now time.Duration) offload.Spec {
	iv := ch.interval
	due, ok := h.planner.Due(ch.id)
	if !ok {
		due = now + iv
	}
	first := min(max(due-now, minFirstDue), iv)
	retry := h.cfg.HardwareRetryInterval
	if retry <= 0 {
		retry = iv / 4
	}
	retry = min(max(retry, offload.MinRetryInterval), iv)
	k := ch.transport.NICKeepAlive()
	s := offload.Spec{
		Kind:          k.Kind,
		Interval:      iv,
		FirstDue:      first,
		RetryInterval: retry,
		RetryCount:    h.cfg.HardwareRetryCount,
		Probe:         k.Probe,
	}
	switch k.Kind {
	case offload.KindPayload:
		s.Payload = k.Payload
	case offload.KindWebSocket:
		s.WebSocket = k.WebSocket
	case 0:
		s.Kind = offload.KindTCPProbe
	}
	return s
}

// handBackLocked takes every armed channel back from the NIC, byte-exact,
// removes the coalescing filters, then resumes the NIC so it delivers
// what it held: Disarm → Thaw → Resume, so no frame reaches a frozen
// socket.
func (h *Host) handBackLocked() {
	now := h.clock.Now()
	for _, ch := range h.order {
		if ch.slot != 0 {
			h.takeBackLocked(ch, now)
		}
	}
	for _, ch := range h.order {
		h.uncoalesceLocked(ch)
	}
	if h.nicDown {
		return
	}
	if err := h.nic.Resume(); err != nil {
		h.log.Warn("nic resume failed", "err", err)
	}
}

// takeBackLocked disarms ch's slot and thaws its socket with the slot's
// books.
func (h *Host) takeBackLocked(ch *Channel, now time.Duration) {
	slot := ch.slot
	var rep offload.Report
	var err error
	if h.nicDown && !h.watch.Health().Up {
		// Known unreachable (a hung daemon would hold every call for
		// its timeout): no books now; a stale slot is read when the
		// NIC is back (nicwatch.go).
		err = errNICUnreachable
	} else {
		rep, err = h.nic.Disarm(slot)
	}
	ch.slot = 0
	fz := ch.frozen
	ch.frozen = nil
	if err != nil {
		// The NIC is lost, or lost the slot: no books (nicwatch.go).
		h.blindThawLocked(ch, slot, fz, err, now)
		gateOf(ch.transport).releaseIf()
		return
	}
	if err == nil {
		// The transport learns what the NIC did before the reader can
		// read it: the Thaw wakes the reader on the absorbed bytes, and
		// the Pings among them were answered already.
		ch.transport.HandBack(rep.Books.Sent, rep.Books.Absorbed)
		err = fz.Thaw(rep.Books.Sent, rep.Books.Absorbed)
	}
	gateOf(ch.transport).releaseIf()
	if err != nil {
		h.stats.HandBackErrors++
		h.log.Warn("hand back failed", "channel", ch.id, "err", err)
		fz.Abort()
		// The kernel's view may be behind the wire: the connection
		// cannot be trusted. Its reader sees the close and disconnects.
		ch.transport.Close()
		return
	}
	h.stats.HandBacks++
	ch.nicSent += uint64(len(rep.Books.Sent))
	ch.nicAbsorbed += uint64(len(rep.Books.Absorbed))
	if !ch.closed && ch.status != slotmgr.TransportDisconnected && !ch.transport.NICKeepAlive().HostAppKeepAlive {
		// The schedule goes on from the slot's last keep-alive, or, when
		// it sent none, from where the slot's first one was due (the
		// host serves it at this wake if that time has passed). A report
		// without a LastKeepAlive in the slot's lifetime (a NIC that does
		// not carry it) counts as none sent: the host's keep-alive comes
		// early, never late.
		last := ch.armLast
		if rep.Counters.KeepalivesSent > 0 && rep.LastKeepAlive > ch.armedAt && rep.LastKeepAlive <= h.clock.Now() {
			last = rep.LastKeepAlive
		}
		h.planner.Remove(ch.id)
		h.planner.Add(ch.id, ch.interval, last)
	}
	if rep.State == offload.StateDead {
		// The peer stopped answering: the connection is gone.
		ch.transport.Close()
	}
}

// minFirstDue is the least time from arming a slot to its first
// keep-alive (Spec.FirstDue, whose 0 would mean a whole Interval): a
// keep-alive overdue at standby entry goes out this soon.
const minFirstDue = offload.MinRetryInterval
