package nic

import (
	"time"

	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// rxCtx is the scratch state of one receiving goroutine. Nothing on the
// per-frame path allocates: frames are decoded into f, forwarded frames
// are collected in fwd (pointing into the port's read buffers) and
// written in one batch, replies are built in reply.
type rxCtx struct {
	f     wp.Frame
	r     wp.Result
	fwd   [][]byte
	one   [1][]byte
	reply []byte
}

// fromWire handles one frame read from the wire port.
func (d *Device) fromWire(rx *rxCtx, frame []byte, rxTime time.Time) {
	if d.wireIn != nil {
		// Faults first: the frame comes back through rxWireFaulted, now
		// or when its delay is over.
		d.wireIn.apply(frame, d.clock.Now())
		d.kickHeld()
		return
	}
	d.rxWire(rx, frame, rxTime)
}

// rxWireFaulted is the wire-in fault injector's output; it runs with the
// injector's lock held (from the reader or the timer loop), which also
// guards faultRx.
func (d *Device) rxWireFaulted(frame []byte) {
	rx := &d.faultRx
	d.rxWire(rx, frame, time.Now())
	d.flushHost(rx)
}

// rxWire runs the datapath on one wire frame, as the NIC sees it.
func (d *Device) rxWire(rx *rxCtx, frame []byte, rxTime time.Time) {
	d.cnt.frame(cRxFrames, cRxBytes, len(frame))
	d.wirePcap.capture(frame)
	switch PowerState(d.state.Load()) {
	case D0, Arming:
		d.learn(rx, frame, false)
		rx.fwd = append(rx.fwd, frame)
		if len(rx.fwd) == cap(rx.fwd) {
			d.flushHost(rx)
		}
	case D3:
		d.d3(rx, frame, rxTime)
	case Waking:
		d.waking(rx, frame, rxTime)
	}
}

// fromHost handles one frame read from the host port.
func (d *Device) fromHost(rx *rxCtx, frame []byte) {
	d.cnt.frame(cHostRxFrames, cHostRxBytes, len(frame))
	switch PowerState(d.state.Load()) {
	case D0, Arming:
	case Waking:
		d.cnt.inc(cWakingHostForwarded)
	case D3:
		// A sleeping host does not transmit.
		d.cnt.inc(cD3HostTxDropped)
		return
	default:
		return
	}
	d.learn(rx, frame, true)
	rx.fwd = append(rx.fwd, frame)
	if len(rx.fwd) == cap(rx.fwd) {
		d.flushWire(rx)
	}
}

// learn feeds a D0 frame to the tracked connections.
func (d *Device) learn(rx *rxCtx, frame []byte, fromHost bool) {
	t := d.tracks.Load()
	if len(t.m) == 0 {
		return
	}
	rx.f.Decode(frame, wp.DecodeOptions{})
	if t.learn(&rx.f, fromHost, d.clock.Now()) {
		d.cnt.inc(cLearnSegments)
	}
}

// flushHost writes the collected frames to the host port.
func (d *Device) flushHost(rx *rxCtx) {
	if len(rx.fwd) == 0 {
		return
	}
	d.cnt.add(cD0Forwarded, uint64(len(rx.fwd)))
	d.writeHost(rx.fwd)
	clear(rx.fwd)
	rx.fwd = rx.fwd[:0]
}

// writeHost writes frames to the host port.
func (d *Device) writeHost(frames [][]byte) {
	d.writeFrames(d.host, frames, cHostTxFrames, cHostTxBytes, cHostTxErrors)
}

// writeFrames writes frames to p, skipping a frame the port refuses. The
// frames are counted before they are written, so whoever sees one on the
// other side of the link sees it counted; a refused frame (or, once p is
// closed, every unwritten one) is taken back out of the count and counted
// as an error.
func (d *Device) writeFrames(p Port, frames [][]byte, cFrames, cBytes, cErrors counterID) {
	for _, f := range frames {
		d.cnt.frame(cFrames, cBytes, len(f))
	}
	for len(frames) > 0 {
		n, err := p.WriteBatch(frames)
		if err == nil || n >= len(frames) {
			return
		}
		d.cnt.inc(cErrors)
		unsent := frames[n : n+1]
		if isClosed(err) {
			unsent = frames[n:]
		}
		for _, f := range unsent {
			d.cnt.unframe(cFrames, cBytes, len(f))
		}
		if isClosed(err) {
			return
		}
		frames = frames[n+1:]
	}
}

// flushWire sends the collected frames to the wire port.
func (d *Device) flushWire(rx *rxCtx) {
	if len(rx.fwd) == 0 {
		return
	}
	d.cnt.add(cD0Forwarded, uint64(len(rx.fwd)))
	if d.wireOut != nil {
		now := d.clock.Now()
		for _, f := range rx.fwd {
			d.wireOut.apply(f, now)
		}
		d.kickHeld()
	} else {
		d.writeWire(rx.fwd)
	}
	clear(rx.fwd)
	rx.fwd = rx.fwd[:0]
}

// sendWire sends one frame the device produced (a reply) to the wire.
func (d *Device) sendWire(one *[1][]byte, frame []byte) {
	if d.wireOut != nil {
		d.wireOut.apply(frame, d.clock.Now())
		d.kickHeld()
		return
	}
	one[0] = frame
	d.writeWire(one[:])
	one[0] = nil
}

// kickHeld wakes the timer loop when the faults may have held a frame,
// so it sleeps until the frame is due rather than the next keep-alive.
func (d *Device) kickHeld() {
	if d.faultsHold {
		d.kickTimer()
	}
}

// sendWireOne is the engine transmit queue's output.
func (d *Device) sendWireOne(frame []byte) { d.sendWire(&d.txOne, frame) }

// txWireRaw is the wire-out fault injector's output (its lock held).
func (d *Device) txWireRaw(frame []byte) {
	d.faultOne[0] = frame
	d.writeWire(d.faultOne[:])
	d.faultOne[0] = nil
}

// writeWire writes frames to the wire port, capturing them.
func (d *Device) writeWire(frames [][]byte) {
	for _, f := range frames {
		d.wirePcap.capture(f)
	}
	d.writeFrames(d.wire, frames, cTxFrames, cTxBytes, cTxErrors)
}

// d3 classifies one wire frame while the host sleeps: answer ARP/NS for
// the host, run slot frames through the offload engine, wake on extra
// patterns, drop everything else by reason. Nothing reaches the host
// unless it wakes.
func (d *Device) d3(rx *rxCtx, frame []byte, rxTime time.Time) {
	d.cnt.inc(cD3RxFrames)
	f := &rx.f
	switch f.Decode(frame, wp.DecodeOptions{VerifyChecksums: true}) {
	case wp.OK, wp.Unknown:
	case wp.BadIPChecksum, wp.BadTCPChecksum:
		d.cnt.inc(cD3RxDroppedBadCsum)
		return
	default:
		d.cnt.inc(cD3RxDroppedMalformed)
		return
	}
	if d.offloadNeighbour(rx) {
		return
	}
	if f.Fragment {
		d.cnt.inc(cD3RxDroppedFragment)
		return
	}
	tab := d.table.Load()
	se, pid, ok := tab.classify(f, &rx.r)
	switch {
	case se != nil:
		if d.receive(se, f, rxTime) == offload.Wake {
			d.toHostAfterWake(rx, frame)
		}
	case ok:
		d.cnt.inc(cD3WakesPattern)
		d.raiseWake(WakeEvent{Reason: WakePattern, Pattern: pid}, frame, rxTime)
		d.toHostAfterWake(rx, frame)
	case tab.wrongVLAN(f):
		d.cnt.inc(cD3RxDroppedWrongVLAN)
	case d.coalesce(rx, tab, frame):
		// Held for the host's next wake (coalesce.go).
	default:
		d.cnt.inc(cD3RxDroppedNoMatch)
	}
}

// offloadNeighbour answers an ARP request or a neighbour solicitation
// for the host; it reports whether the frame was consumed (answered or
// dropped as an invalid solicitation).
func (d *Device) offloadNeighbour(rx *rxCtx) bool {
	f := &rx.f
	switch f.EtherType {
	case wp.EtherTypeARP:
		if f.Status != wp.OK || !d.addrs.isARPRequestFor(f) {
			return false
		}
		n := d.addrs.arpReply(rx.reply, f)
		// Counted before it leaves: whoever sees the reply sees the count.
		d.cnt.inc(cD3ArpReplies)
		d.sendWire(&rx.one, rx.reply[:n])
		return true
	case wp.EtherTypeIPv6:
		switch d.addrs.checkNS(f) {
		case nsValid:
			n := d.addrs.naReply(rx.reply, f)
			d.cnt.inc(cD3NsReplies)
			d.sendWire(&rx.one, rx.reply[:n])
			return true
		case nsBadChecksum:
			d.cnt.inc(cD3RxDroppedBadCsum)
			return true
		case nsInvalid:
			d.cnt.inc(cD3RxDroppedMalformed)
			return true
		}
	}
	return false
}

// receive runs a slot's frame through the engine and counts the verdict.
func (d *Device) receive(se *slotEntry, f *wp.Frame, rxTime time.Time) offload.Verdict {
	se.cnt.inc(sRxFrames)
	d.engMu.Lock()
	d.out.rxTime = rxTime
	v := d.eng.Receive(offload.SlotID(se.id), f, &d.out)
	// The drop reason is in the engine's counters: read them only when
	// the frame was not simply absorbed, and compare with what was seen
	// last time (se.seen, guarded by engMu).
	before, after := se.seen, se.seen
	if v != offload.Absorb && v != offload.Wake {
		_, _, after, _ = d.eng.State(offload.SlotID(se.id))
		se.seen = after
	}
	d.engMu.Unlock()
	if v == offload.Answer {
		d.cnt.inc(cD3TxAnswers)
	}
	switch {
	case v == offload.Wake:
		se.cnt.inc(sWakes)
	case after.DroppedPAWS > before.DroppedPAWS:
		d.dropSlot(se, cD3RxDroppedPAWS)
	case after.DroppedOutOfWindow > before.DroppedOutOfWindow, after.DroppedBadACK > before.DroppedBadACK:
		d.dropSlot(se, cD3RxDroppedOutOfWindow)
	case v == offload.Drop || after.DroppedOther > before.DroppedOther:
		d.dropSlot(se, cD3RxDroppedSlot)
	default: // absorbed, possibly answered (an ACK, a Pong)
		d.cnt.inc(cD3RxAbsorbed)
		se.cnt.inc(sRxAbsorbed)
	}
	return v
}

func (d *Device) dropSlot(se *slotEntry, reason counterID) {
	d.cnt.inc(reason)
	se.cnt.inc(sRxDropped)
}

// waking handles a wire frame between a wake and Resume: armed slots keep
// absorbing their keep-alive replies; ARP/NS are still answered;
// everything else is kept for the host.
func (d *Device) waking(rx *rxCtx, frame []byte, rxTime time.Time) {
	f := &rx.f
	if f.Decode(frame, wp.DecodeOptions{VerifyChecksums: true}) == wp.OK && !f.Fragment {
		if d.offloadNeighbour(rx) {
			return
		}
		if se, _, _ := d.table.Load().classify(f, &rx.r); se != nil {
			if d.receive(se, f, rxTime) != offload.Wake {
				return
			}
		}
	}
	d.toHostAfterWake(rx, frame)
}

// toHostAfterWake keeps frame for the host: in the post-wake buffer while
// waking, or straight to the host if Resume already ran.
func (d *Device) toHostAfterWake(rx *rxCtx, frame []byte) {
	d.post.mu.Lock()
	if PowerState(d.state.Load()) == Waking {
		if d.post.push(frame) {
			d.cnt.inc(cPostwakeBuffered)
		} else {
			d.cnt.inc(cPostwakeDroppedOverflow)
		}
		d.post.mu.Unlock()
		return
	}
	d.post.mu.Unlock()
	rx.fwd = append(rx.fwd, frame)
	if len(rx.fwd) == cap(rx.fwd) {
		d.flushHost(rx)
	}
}

// raiseWake reports a wake: it moves D3 to waking, saves the packet and
// sends the event. It never blocks.
func (d *Device) raiseWake(ev WakeEvent, frame []byte, rxTime time.Time) {
	if d.transition(D3, Waking) {
		// Every later wire frame is for the host now: let them all in.
		d.detachPrefilter()
	}
	d.cnt.inc(cD3Wakes)
	ev.At = d.clock.Now()
	if frame != nil {
		ev.RxTime = rxTime
		ev.Len = len(frame)
		ev.Packet = append([]byte(nil), frame[:min(len(frame), d.caps.WakePacketSave)]...)
		d.wakePcap.capture(frame)
	}
	d.log.Info("wake", "reason", ev.Reason, "slot", ev.Slot, "pattern", ev.Pattern, "len", ev.Len)
	select {
	case d.wakes <- ev:
	default:
		d.cnt.inc(cWakeEventsDropped)
	}
	if d.onWake != nil {
		d.onWake(ev)
	}
}

// engineOutput is the engine's Output: frames go through the transmit
// queue (never blocking the engine), wakes to raiseWake. It is used with
// engMu held, which guards rxTime.
type engineOutput struct {
	d      *Device
	rxTime time.Time
}

// Send implements offload.Output.Send.
func (o *engineOutput) Send(frame []byte) {
	o.d.cnt.inc(cD3EngineTxFrames)
	o.d.txq.push(frame)
}

// Wake implements offload.Output.Wake.
func (o *engineOutput) Wake(ev offload.Event) {
	if se := o.d.slotByID(SlotID(ev.Slot)); se != nil && ev.Frame == nil {
		se.cnt.inc(sWakes)
	}
	o.d.raiseWake(WakeEvent{Reason: wakeReasonOf(ev.Reason), Slot: SlotID(ev.Slot)}, ev.Frame, o.rxTime)
}
