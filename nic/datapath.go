package nic

import (
	"encoding/binary"
	"time"

	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// rxCtx is the scratch state of one receiving goroutine. Nothing on the
// per-frame path allocates: frames are decoded into f, forwarded frames
// are collected in fwd with their virtio_net_hdrs in hdrs (pointing into
// the port's read buffers) and written in one batch, replies are built in
// reply, segments of GSO frames cut in software in seg (segs: a batch of
// them), a GSO frame's headers copied for decoding into head.
type rxCtx struct {
	f     wp.Frame
	r     wp.Result
	fwd   [][]byte
	hdrs  []VnetHdr
	one   [1][]byte
	reply []byte
	seg   []byte
	segs  [][]byte
	sg    segmenter
	head  [headCopyLen]byte
	// The state of one rxWire call for its whole frames, and the port
	// (with its counters: frames, bytes, errors) finish writes to.
	rxTime time.Time
	out    Port
	outCnt [3]counterID
}

// headCopyLen bounds the headers of a GSO frame the learning path decodes.
const headCopyLen = 256

func newRxCtx(batch int) *rxCtx {
	return &rxCtx{
		fwd:   make([][]byte, 0, batch),
		hdrs:  make([]VnetHdr, 0, batch),
		reply: make([]byte, replyBufLen),
		seg:   make([]byte, 2*MaxGSOFrame),
		segs:  make([][]byte, 0, maxWriteSegs),
	}
}

// maxWriteSegs is the most software segments written in one batch.
const maxWriteSegs = 64

// forward queues frame (with h) for the other port; the caller flushes.
func (rx *rxCtx) forward(frame []byte, h *VnetHdr) {
	rx.fwd = append(rx.fwd, frame)
	rx.hdrs = append(rx.hdrs, *h)
}

func (rx *rxCtx) full() bool { return len(rx.fwd) == cap(rx.fwd) }

func (rx *rxCtx) reset() {
	clear(rx.fwd)
	rx.fwd = rx.fwd[:0]
	rx.hdrs = rx.hdrs[:0]
}

var wholeHdr VnetHdr

// fromWire handles one frame read from the wire port.
func (d *Device) fromWire(rx *rxCtx, pkt *Packet) {
	if !d.checkVnet(pkt) {
		return
	}
	frame, h := pkt.Frame(), &pkt.Vnet
	if d.wireIn != nil {
		// Faults first, on whole frames: each comes back through
		// rxWireFaulted, now or when its delay is over.
		d.finish(rx, frame, h, toWireIn)
		d.kickHeld()
		return
	}
	d.rxWire(rx, frame, h, pkt.Time)
}

// sink is where finish hands whole frames.
type sink uint8

const (
	toWireIn   sink = iota // the wire-in fault injector
	toWireOut              // the wire-out fault injector
	toDatapath             // the D3 / waking datapath (rxWireWhole)
	toPort                 // rx.out, a port without headers, in batches
)

// finish hands out frame as whole frames to sink: as it is when h says
// it is whole; with its partial checksum completed in place; or cut into
// its segments (in rx.seg). verified tells the datapath the L4 checksum
// needs no check (the kernel verified it, or finish made it). A frame
// whose header does not match it is dropped and counted.
func (d *Device) finish(rx *rxCtx, frame []byte, h *VnetHdr, to sink) {
	switch {
	case h.Whole():
		d.emit(rx, to, frame, h.Flags&VnetDataValid != 0)
	case !h.IsGSO():
		if completeCsum(frame, h) != nil {
			d.cnt.inc(cVnetDroppedBad)
			return
		}
		d.cnt.inc(cVnetSwCsum)
		d.emit(rx, to, frame, true)
	default:
		if rx.sg.init(frame, h) != nil || rx.sg.segLen() > len(rx.seg) {
			d.cnt.inc(cVnetDroppedBad)
			return
		}
		d.cnt.inc(cVnetSwGSO)
		off := 0
		for {
			if to == toPort && (off+rx.sg.segLen() > len(rx.seg) || len(rx.segs) == cap(rx.segs)) {
				d.flushSegments(rx)
				off = 0
			}
			n := rx.sg.next(rx.seg[off:])
			if n == 0 {
				break
			}
			d.cnt.inc(cVnetSwSegments)
			if to == toPort {
				// Packed behind the previous ones, written in batches.
				rx.segs = append(rx.segs, rx.seg[off:off+n:off+n])
				off += n
				continue
			}
			d.emit(rx, to, rx.seg[:n], true)
		}
		if to == toPort {
			d.flushSegments(rx)
		}
	}
}

// emit hands one whole frame to sink.
func (d *Device) emit(rx *rxCtx, to sink, frame []byte, verified bool) {
	switch to {
	case toWireIn:
		d.wireIn.apply(frame, d.clock.Now())
	case toWireOut:
		d.wireOut.apply(frame, d.clock.Now())
	case toDatapath:
		d.rxWireWhole(rx, frame, verified)
	case toPort:
		rx.one[0] = frame
		d.writeFrames(rx.out, nil, rx.one[:], nil, rx.outCnt[0], rx.outCnt[1], rx.outCnt[2])
		rx.one[0] = nil
	}
}

// flushSegments writes the software segments packed in rx.seg.
func (d *Device) flushSegments(rx *rxCtx) {
	if len(rx.segs) == 0 {
		return
	}
	d.writeFrames(rx.out, nil, rx.segs, nil, rx.outCnt[0], rx.outCnt[1], rx.outCnt[2])
	clear(rx.segs)
	rx.segs = rx.segs[:0]
}

// checkVnet drops (and counts) a received frame that cannot be finished
// or passed on: a super-frame cut by a short buffer, or a GRO frame whose
// headers do not parse; it turns a GRO frame into the TSO form.
func (d *Device) checkVnet(pkt *Packet) bool {
	h := &pkt.Vnet
	if h.Whole() {
		return true
	}
	if pkt.Truncated {
		d.cnt.inc(cVnetDroppedTruncated)
		return false
	}
	if h.IsGSO() && !h.NeedsCsum() {
		if normalizeGSO(pkt.Frame(), h) != nil {
			d.cnt.inc(cVnetDroppedBad)
			return false
		}
		d.cnt.inc(cVnetRxGRO)
	}
	return true
}

// rxWireFaulted is the wire-in fault injector's output; it runs with the
// injector's lock held (from the reader or the timer loop), which also
// guards faultRx.
func (d *Device) rxWireFaulted(frame []byte) {
	rx := d.faultRx
	d.rxWire(rx, frame, &wholeHdr, time.Now())
	d.flushHost(rx)
}

// rxWire runs the datapath on one wire frame, as the NIC sees it.
func (d *Device) rxWire(rx *rxCtx, frame []byte, h *VnetHdr, rxTime time.Time) {
	d.cnt.frame(cRxFrames, cRxBytes, len(frame))
	d.countVnet(h)
	d.wirePcap.capture(frame)
	switch PowerState(d.state.Load()) {
	case D0, Arming:
		d.learn(rx, frame, h, false)
		rx.forward(frame, h)
		if rx.full() {
			d.flushHost(rx)
		}
	case D3, Waking:
		// Looked into: whole frames only, each handled with the state
		// of its time (a segment may wake the host). The D0 frames of
		// this batch go first: finish may reuse rx.seg for them.
		d.flushHost(rx)
		rx.rxTime = rxTime
		d.finish(rx, frame, h, toDatapath)
	}
}

// rxWireWhole is rxWire on a whole frame in D3 or waking.
func (d *Device) rxWireWhole(rx *rxCtx, frame []byte, verified bool) {
	switch PowerState(d.state.Load()) {
	case D3:
		d.d3(rx, frame, verified, rx.rxTime)
	case Waking:
		d.waking(rx, frame, verified, rx.rxTime)
	default: // resumed since: the host takes it
		rx.forward(frame, &wholeHdr)
	}
	if len(rx.fwd) > 0 && len(frame) > 0 && &frame[0] == &rx.seg[0] {
		d.flushHost(rx) // the next segment reuses rx.seg
	} else if rx.full() {
		d.flushHost(rx)
	}
}

// countVnet counts a received frame's offload state.
func (d *Device) countVnet(h *VnetHdr) {
	if h.IsGSO() {
		d.cnt.inc(cVnetRxGSO)
	}
	if h.NeedsCsum() {
		d.cnt.inc(cVnetRxCsumPartial)
	}
}

// fromHost handles one frame read from the host port.
func (d *Device) fromHost(rx *rxCtx, pkt *Packet) {
	if !d.checkVnet(pkt) {
		return
	}
	frame, h := pkt.Frame(), &pkt.Vnet
	d.cnt.frame(cHostRxFrames, cHostRxBytes, len(frame))
	d.countVnet(h)
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
	d.learn(rx, frame, h, true)
	rx.forward(frame, h)
	if rx.full() {
		d.flushWire(rx)
	}
}

// learn feeds a D0 frame to the tracked connections. A GSO frame's
// headers are decoded from a copy whose IP length says "headers only"
// (the super-frame's may be 0 or beyond what Decode reads), and its
// payload length is the frame's remainder.
func (d *Device) learn(rx *rxCtx, frame []byte, h *VnetHdr, fromHost bool) {
	t := d.tracks.Load()
	if len(t.m) == 0 {
		return
	}
	payload := -1
	if h.IsGSO() {
		n, pl, ok := gsoHeaders(rx.head[:], frame, h)
		if !ok {
			return
		}
		frame, payload = rx.head[:n], pl
	}
	rx.f.Decode(frame, wp.DecodeOptions{})
	if t.learn(&rx.f, payload, fromHost, d.clock.Now()) {
		d.cnt.inc(cLearnSegments)
	}
}

// flushHost writes the collected frames to the host port.
func (d *Device) flushHost(rx *rxCtx) {
	if len(rx.fwd) == 0 {
		return
	}
	d.cnt.add(cD0Forwarded, uint64(len(rx.fwd)))
	d.writeVnet(rx, d.host, d.hostOff, rx.fwd, rx.hdrs, cHostTxFrames, cHostTxBytes, cHostTxErrors)
	rx.reset()
}

// writeHost writes whole frames to the host port.
func (d *Device) writeHost(frames [][]byte) {
	d.writeFrames(d.host, nil, frames, nil, cHostTxFrames, cHostTxBytes, cHostTxErrors)
}

// writeVnet writes frames with their headers to p: as they are when p
// carries headers (op non-nil), else as whole frames, finished in
// software (finish) in batches.
func (d *Device) writeVnet(rx *rxCtx, p Port, op OffloadPort, frames [][]byte, hdrs []VnetHdr, cFrames, cBytes, cErrors counterID) {
	if op != nil {
		d.writeFrames(p, op, frames, hdrs, cFrames, cBytes, cErrors)
		return
	}
	start := 0
	for i := range frames {
		if hdrs[i].Whole() {
			continue
		}
		d.writeFrames(p, nil, frames[start:i], nil, cFrames, cBytes, cErrors)
		start = i + 1
		rx.out, rx.outCnt = p, [3]counterID{cFrames, cBytes, cErrors}
		d.finish(rx, frames[i], &hdrs[i], toPort)
	}
	d.writeFrames(p, nil, frames[start:], nil, cFrames, cBytes, cErrors)
}

// writeFrames writes frames to p (with hdrs through op when op is not
// nil), skipping a frame the port refuses. The frames are counted before
// they are written, so whoever sees one on the other side of the link
// sees it counted; a refused frame (or, once p is closed, every unwritten
// one) is taken back out of the count and counted as an error.
func (d *Device) writeFrames(p Port, op OffloadPort, frames [][]byte, hdrs []VnetHdr, cFrames, cBytes, cErrors counterID) {
	for _, f := range frames {
		d.cnt.frame(cFrames, cBytes, len(f))
	}
	for len(frames) > 0 {
		var n int
		var err error
		if op != nil {
			n, err = op.WriteBatchVnet(frames, hdrs)
		} else {
			n, err = p.WriteBatch(frames)
		}
		if err == nil || n >= len(frames) {
			return
		}
		d.cnt.inc(cErrors)
		if !d.txErrLogged.Swap(true) {
			d.log.Warn("port write failed", "port", p.Name(), "err", err)
		}
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
		if op != nil {
			hdrs = hdrs[n+1:]
		}
	}
}

// flushWire sends the collected frames to the wire port.
func (d *Device) flushWire(rx *rxCtx) {
	if len(rx.fwd) == 0 {
		return
	}
	d.cnt.add(cD0Forwarded, uint64(len(rx.fwd)))
	if d.wireOut != nil {
		for i, f := range rx.fwd {
			d.finish(rx, f, &rx.hdrs[i], toWireOut)
		}
		d.kickHeld()
	} else {
		for _, f := range rx.fwd {
			d.wirePcap.capture(f)
		}
		d.writeVnet(rx, d.wire, d.wireOff, rx.fwd, rx.hdrs, cTxFrames, cTxBytes, cTxErrors)
	}
	rx.reset()
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
	d.writeFrames(d.wire, nil, frames, nil, cTxFrames, cTxBytes, cTxErrors)
}

// d3 classifies one wire frame while the host sleeps: answer ARP/NS for
// the host, run slot frames through the offload engine, wake on extra
// patterns, drop everything else by reason. Nothing reaches the host
// unless it wakes.
func (d *Device) d3(rx *rxCtx, frame []byte, verified bool, rxTime time.Time) {
	d.cnt.inc(cD3RxFrames)
	f := &rx.f
	switch decodeWhole(f, frame, verified) {
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
	d.xdpRefresh(se.id) // absorbed bytes may have moved RCV.NXT, a Pong SND.NXT
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
func (d *Device) waking(rx *rxCtx, frame []byte, verified bool, rxTime time.Time) {
	f := &rx.f
	if decodeWhole(f, frame, verified) == wp.OK && !f.Fragment {
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
	rx.forward(frame, &wholeHdr)
	if rx.full() {
		d.flushHost(rx)
	}
}

// decodeWhole decodes a whole frame with checksum verification; when
// verified (the kernel checked the L4 checksum, or the device just
// computed it) only the IPv4 header checksum is checked.
func decodeWhole(f *wp.Frame, frame []byte, verified bool) wp.Status {
	if !verified {
		return f.Decode(frame, wp.DecodeOptions{VerifyChecksums: true})
	}
	st := f.Decode(frame, wp.DecodeOptions{})
	if f.EtherType == wp.EtherTypeIPv4 && f.L4Off > f.L3Off && (st == wp.OK || st == wp.Unknown) {
		if wp.Fold(wp.Sum(frame[f.L3Off:f.L4Off], 0)) != 0xffff {
			f.Status = wp.BadIPChecksum
			return wp.BadIPChecksum
		}
	}
	return st
}

// gsoHeaders copies the headers of the TCP GSO frame into dst with the IP
// length set to cover only them, and returns their length and the
// frame's payload length; ok is false for a frame that is not TCP or
// whose headers do not fit dst.
func gsoHeaders(dst, frame []byte, h *VnetHdr) (n, payload int, ok bool) {
	l3, et := l3Offset(frame)
	l4 := int(h.CsumStart)
	switch {
	case h.GSOType&^GSOECN != GSOTCPv4 && h.GSOType&^GSOECN != GSOTCPv6:
		return 0, 0, false
	case l3 == 0 || l4 < l3+20 || len(frame) < l4+20:
		return 0, 0, false
	}
	n = l4 + int(frame[l4+12]>>4)*4
	if n < l4+20 || n > len(frame) || n > len(dst) {
		return 0, 0, false
	}
	copy(dst, frame[:n])
	switch et {
	case wp.EtherTypeIPv4:
		binary.BigEndian.PutUint16(dst[l3+2:], uint16(n-l3))
	case wp.EtherTypeIPv6:
		if l4 < l3+40 {
			return 0, 0, false
		}
		binary.BigEndian.PutUint16(dst[l3+4:], uint16(n-l3-40))
	default:
		return 0, 0, false
	}
	return n, len(frame) - n, true
}

// raiseWake reports a wake: it moves D3 to waking, saves the packet and
// sends the event. It never blocks.
func (d *Device) raiseWake(ev WakeEvent, frame []byte, rxTime time.Time) {
	if d.transition(D3, Waking) {
		// Every later wire frame is for the host now: let them all in
		// (the XDP fast path passes all at once, its link is closed by
		// the timer loop: xdppath.go).
		d.passAllXDP()
		d.detachSocketFilter()
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
	d.kickXDPDetach()
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
