package offload

import (
	"bytes"
	"time"

	"github.com/standbynic/standbynic/wakepattern"
)

// Receive classifies frame f, which the matcher attributed to slot id (f
// was decoded with wakepattern's Frame.Decode), acts on it and returns the
// verdict. The checks follow RFC 9293 §3.10.7.4 in its order, hardened by
// RFC 5961 and RFC 7323:
//
//  1. RST: exactly at RCV.NXT → Wake (ReasonRST); elsewhere in the window →
//     rate-limited challenge ACK; outside → Drop.
//  2. SYN → rate-limited challenge ACK.
//  3. PAWS: TSval older than TS.Recent → Drop (and a rate-limited ACK).
//  4. Sequence not acceptable: the peer's own keep-alive probe (SEQ =
//     RCV.NXT−1, at most one byte, ACK = SND.NXT) → Answer with the ACK
//     its stack expects, counted as PeerKeepalivesAnswered, status
//     unchanged; anything else (outside the window, old duplicates) →
//     Drop with at most one ACK per Config.ACKInterval. Both answers
//     share that rate limit, as Linux's tcp_invalid_ratelimit.
//  5. No ACK flag → Drop; ACK of unsent data or too old → Drop with a
//     rate-limited ACK.
//  6. At RCV.NXT: a pure ACK is absorbed (the exact keep-alive ACK, SEQ =
//     RCV.NXT and ACK = SND.NXT, counts as the reply); the expected reply
//     bytes (PINGRESP, a Pong, a server Ping) are absorbed, recorded in the
//     books, and answered (ACK or Pong); anything else — data, FIN, data
//     past a hole — wakes the host with the frame.
//
// A woken or dead slot returns Wake for every frame (without a new
// event), so the caller buffers it for the host. Receive allocates nothing.
func (e *Engine) Receive(id SlotID, f *wakepattern.Frame, out Output) Verdict {
	i, ok := e.index[id]
	if !ok {
		e.stats.UnknownSlot++
		return Drop
	}
	e.stats.FramesReceived++
	s := e.slotAt(i)
	if s.state == StateDead || s.state == StateWoken {
		return Wake
	}
	if !f.IsTCP() || !s.owns(f) {
		s.counters.DroppedOther++
		return Drop
	}
	now := e.clock.Now()
	if e.cfg.Firmware.DropOnly {
		return e.dropOnly(s, i, f, now, out)
	}
	flags, seq := f.TCPFlags, f.Seq
	fin := flags&wakepattern.TCPFlagFIN != 0

	if flags&wakepattern.TCPFlagRST != 0 {
		switch {
		case seq == s.rcvNxt:
			s.status = StatusDataWaiting
			e.wake(s, i, StateWoken, ReasonRST, f.Raw, now, out)
			return Wake
		case seqInWindow(seq, s.rcvNxt, s.rcvWnd):
			s.status = StatusUnexpectedFlags
			return e.challengeACK(s, now, out)
		}
		s.status = StatusBadSeq
		s.counters.DroppedOutOfWindow++
		return Drop
	}
	if flags&wakepattern.TCPFlagSYN != 0 {
		s.status = StatusUnexpectedFlags
		return e.challengeACK(s, now, out)
	}
	if s.has(flagTS) && f.HasTS && tsLT(f.TSval, s.tsRecent) {
		s.status = StatusBadSeq
		s.counters.DroppedPAWS++
		return e.dupACK(s, now, out)
	}
	segLen := uint32(f.PayloadLen)
	if fin {
		segLen++
	}
	if !s.acceptable(seq, segLen) {
		if s.peerKeepAlive(f, seq) {
			// The peer's own RFC 1122 keep-alive: answered with the
			// ACK its stack expects (SEQ = SND.NXT, ACK = RCV.NXT), as
			// the host's kernel would; the connection is healthy.
			if e.dupACK(s, now, out) == Drop {
				return Drop // rate-limited, as Linux limits its answers
			}
			s.counters.ACKsSent--
			s.counters.PeerKeepalivesAnswered++
			return Answer
		}
		s.status = StatusBadSeq
		s.counters.DroppedOutOfWindow++
		return e.dupACK(s, now, out)
	}
	if flags&wakepattern.TCPFlagACK == 0 {
		s.status = StatusUnexpectedFlags
		if e.cfg.Firmware.ACKFlagStatus {
			s.status = StatusNoACKFlag
		}
		s.counters.DroppedOther++
		return Drop
	}
	ack := f.Ack
	if seqGT(ack, s.sndNxt) || seqLT(ack, s.sndUna-s.sndWnd) {
		s.status = StatusBadACK
		s.counters.DroppedBadACK++
		return e.dupACK(s, now, out)
	}
	if seqGT(ack, s.sndUna) {
		s.sndUna = ack
	}
	if w := uint32(f.Window) << s.sndWScale; w > s.sndWnd {
		s.sndWnd = w
	}
	if s.has(flagTS) && f.HasTS && seqLEQ(seq, s.rcvNxt) {
		s.tsRecent = f.TSval
	}

	data := f.Payload()
	if seqGT(seq, s.rcvNxt) {
		if len(data) > 0 || fin {
			// Past a hole: what fills it is data for the host too.
			s.status = StatusDataWaiting
			e.wake(s, i, StateWoken, ReasonData, f.Raw, now, out)
			return Wake
		}
	} else if seqLT(seq, s.rcvNxt) {
		data = data[s.rcvNxt-seq:] // a retransmission that runs past RCV.NXT
	}
	switch {
	case len(data) == 0 && !fin:
		return e.pureACK(s, i, seq, ack)
	case len(data) == 0:
		s.status = StatusDataWaiting
		e.wake(s, i, StateWoken, ReasonFIN, f.Raw, now, out)
		return Wake
	case fin || s.kind == KindTCPProbe || e.cfg.Firmware.EndOnData:
		s.status = StatusDataWaiting
		e.wake(s, i, StateWoken, ReasonData, f.Raw, now, out)
		return Wake
	case s.kind == KindPayload:
		return e.payloadReply(s, i, f, data, now, out)
	}
	return e.wsReply(s, i, f, data, now, out)
}

// peerKeepAlive reports whether f, which is not acceptable at seq, is the
// peer's RFC 1122 keep-alive probe: an ACK of exactly what the slot sent
// (SND.NXT) with SEQ = RCV.NXT−1 and no more than one garbage byte, no
// FIN.
func (s *slot) peerKeepAlive(f *wakepattern.Frame, seq uint32) bool {
	return seq == s.rcvNxt-1 && f.PayloadLen <= 1 &&
		f.TCPFlags&(wakepattern.TCPFlagFIN|wakepattern.TCPFlagSYN|wakepattern.TCPFlagRST) == 0 &&
		f.TCPFlags&wakepattern.TCPFlagACK != 0 && f.Ack == s.sndNxt
}

// owns reports whether f is a segment of s's connection from the peer.
func (s *slot) owns(f *wakepattern.Frame) bool {
	t := s.hdr[s.l4Off:]
	if f.SrcPort != uint16(t[2])<<8|uint16(t[3]) || f.DstPort != uint16(t[0])<<8|uint16(t[1]) {
		return false
	}
	ip := s.hdr[s.l3Off:]
	if s.has(flagIPv6) {
		return f.SrcIP.Is6() && f.SrcIP.As16() == [16]byte(ip[24:40]) && f.DstIP.As16() == [16]byte(ip[8:24])
	}
	return f.SrcIP.Is4() && f.SrcIP.As4() == [4]byte(ip[16:20]) && f.DstIP.As4() == [4]byte(ip[12:16])
}

// acceptable is RFC 9293's segment acceptability test on RCV.NXT and
// RCV.WND for a segment of segLen sequence numbers at seq.
func (s *slot) acceptable(seq, segLen uint32) bool {
	if segLen == 0 {
		if s.rcvWnd == 0 {
			return seq == s.rcvNxt
		}
		return seqInWindow(seq, s.rcvNxt, s.rcvWnd)
	}
	if s.rcvWnd == 0 {
		return false
	}
	return seqInWindow(seq, s.rcvNxt, s.rcvWnd) || seqInWindow(seq+segLen-1, s.rcvNxt, s.rcvWnd)
}

// pureACK absorbs an acceptable segment without data or FIN.
func (e *Engine) pureACK(s *slot, i uint32, seq, ack uint32) Verdict {
	exact := seq == s.rcvNxt && ack == s.sndNxt
	if exact && (s.kind == KindTCPProbe || s.wsMode == WSResponder || s.wsMode == WSPong) {
		e.replied(s, i)
		return Absorb
	}
	s.counters.ACKsAbsorbed++
	return Absorb
}

// payloadReply absorbs the expected reply of a payload keep-alive, or
// wakes for anything else.
func (e *Engine) payloadReply(s *slot, i uint32, f *wakepattern.Frame, data []byte, now time.Duration, out Output) Verdict {
	x := s.ext
	if !matchReply(data, x.reply, x.mask) {
		s.status = StatusDataWaiting
		e.wake(s, i, StateWoken, ReasonData, f.Raw, now, out)
		return Wake
	}
	if !e.fits(s, len(data), 0, 1) {
		e.wake(s, i, StateWoken, ReasonBooksFull, f.Raw, now, out)
		return Wake
	}
	e.absorb(s, data, now)
	e.sendACK(s, now, out)
	s.counters.ACKsSent++
	e.replied(s, i)
	return Answer
}

// matchReply reports whether got is want under mask (empty: all ones).
func matchReply(got, want, mask []byte) bool {
	if len(got) != len(want) {
		return false
	}
	if len(mask) == 0 {
		return bytes.Equal(got, want)
	}
	for j := range got {
		if (got[j]^want[j])&mask[j] != 0 {
			return false
		}
	}
	return true
}

// wsReply handles server bytes on a WebSocket slot: complete Pings are
// answered with masked Pongs, the expected Pong is the reply, a trailing
// partial control frame waits in the slot's buffer; any other frame wakes
// the host with nothing of this segment absorbed.
func (e *Engine) wsReply(s *slot, i uint32, f *wakepattern.Frame, data []byte, now time.Duration, out Output) Verdict {
	x := s.ext
	c := append(append(e.rx[:0], x.wsBuf...), data...)
	r, tail := scanWS(c)
	if r == wsWake {
		s.status = StatusDataWaiting
		e.wake(s, i, StateWoken, ReasonData, f.Raw, now, out)
		return Wake
	}
	if len(c)-tail > cap(x.wsBuf) {
		s.status = StatusDataWaiting
		e.wake(s, i, StateWoken, ReasonBufferFull, f.Raw, now, out)
		return Wake
	}
	pongBytes, pings := 0, 0
	for pos := 0; pos < tail; pos += 2 + int(c[pos+1]) {
		if c[pos]&wsOpMask == wsOpPing {
			pings++
			pongBytes += wsClientHeaderLen(int(c[pos+1])) + int(c[pos+1])
		}
	}
	if !e.fits(s, len(data), pongBytes, 1+pings) {
		e.wake(s, i, StateWoken, ReasonBooksFull, f.Raw, now, out)
		return Wake
	}
	e.absorb(s, data, now)
	x.wsBuf = append(x.wsBuf[:0], c[tail:]...)
	if tail < len(c) {
		s.counters.Buffered++
	}
	matched := false
	for pos := 0; pos < tail; pos += 2 + int(c[pos+1]) {
		p := c[pos+2 : pos+2+int(c[pos+1])]
		if c[pos]&wsOpMask == wsOpPong {
			if x.pingOutstanding && bytes.Equal(p, x.request) {
				matched = true
			}
			continue
		}
		b := e.begin(s)
		e.rand.Read(e.key[:])
		putWSClientFrame(b[s.hdrLen:], wsOpPong, e.key, p)
		e.sendData(s, wsClientHeaderLen(len(p))+len(p), now, out)
		s.counters.PingsAnswered++
	}
	if pings == 0 {
		e.sendACK(s, now, out)
		s.counters.ACKsSent++
	}
	if matched {
		x.pingOutstanding = false
		e.replied(s, i)
	} else {
		s.status = StatusNormal
	}
	return Answer
}

// fits reports whether the books take absorbed more absorbed bytes, sent
// more sent bytes and entries more entries.
func (e *Engine) fits(s *slot, absorbed, sent, entries int) bool {
	b := &s.ext.books
	return len(b.Absorbed)+absorbed <= cap(b.Absorbed) &&
		len(b.Sent)+sent <= cap(b.Sent) &&
		len(b.Entries)+entries <= cap(b.Entries)
}

// absorb takes data (at RCV.NXT) off the stream into the books.
func (e *Engine) absorb(s *slot, data []byte, now time.Duration) {
	b := &s.ext.books
	b.Absorbed = append(b.Absorbed, data...)
	b.Entries = append(b.Entries, Entry{Dir: DirAbsorbed, Seq: s.rcvNxt, Len: uint32(len(data)), At: now})
	s.rcvNxt += uint32(len(data))
}

// dupACK answers an unacceptable segment with an ACK, at most once per
// Config.ACKInterval per slot.
func (e *Engine) dupACK(s *slot, now time.Duration, out Output) Verdict {
	if s.lastDupACK >= 0 && now-s.lastDupACK < e.cfg.ACKInterval {
		return Drop
	}
	s.lastDupACK = now
	s.counters.ACKsSent++
	e.sendACK(s, now, out)
	return Answer
}

// challengeACK sends an RFC 5961 challenge ACK, at most once per
// Config.ACKInterval per slot and Config.ChallengeACKLimit per second in
// all.
func (e *Engine) challengeACK(s *slot, now time.Duration, out Output) Verdict {
	if sec := now / time.Second; sec != e.challengeSecond {
		e.challengeSecond, e.challengeCount = sec, 0
	}
	if s.lastChallenge >= 0 && now-s.lastChallenge < e.cfg.ACKInterval || e.challengeCount >= e.cfg.ChallengeACKLimit {
		return Drop
	}
	e.challengeCount++
	s.lastChallenge = now
	s.counters.ChallengeACKs++
	e.sendACK(s, now, out)
	return Answer
}

// dropOnly is Receive under Firmware.DropOnly (an APF-style filter): the
// exact reply to the keep-alive is dropped and counted as the reply;
// every other segment wakes the host with the frame.
func (e *Engine) dropOnly(s *slot, i uint32, f *wakepattern.Frame, now time.Duration, out Output) Verdict {
	const other = wakepattern.TCPFlagSYN | wakepattern.TCPFlagFIN | wakepattern.TCPFlagRST | wakepattern.TCPFlagPSH | wakepattern.TCPFlagURG
	flags := f.TCPFlags
	if f.PayloadLen == 0 && flags&wakepattern.TCPFlagACK != 0 && flags&other == 0 &&
		f.Seq == s.rcvNxt && f.Ack == s.sndNxt {
		e.replied(s, i)
		return Absorb
	}
	r := ReasonPassed
	switch {
	case flags&wakepattern.TCPFlagRST != 0:
		r = ReasonRST
	case f.PayloadLen > 0:
		r = ReasonData
	case flags&wakepattern.TCPFlagFIN != 0:
		r = ReasonFIN
	}
	s.status = StatusDataWaiting
	e.wake(s, i, StateWoken, r, f.Raw, now, out)
	return Wake
}
