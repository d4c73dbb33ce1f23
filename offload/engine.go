package offload

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// Config tunes an Engine. The zero value of every field means its default.
type Config struct {
	// Clock is the engine's time source; the NIC passes a CLOCK_BOOTTIME
	// one. When nil the engine reads no clock at all: its time is the last
	// now its driver passed to Fire (zero before the first Fire).
	Clock Clock
	// Rand supplies WebSocket masking keys and initial IP IDs (default: a
	// ChaCha8 generator seeded from crypto/rand). Tests pass a seeded one.
	Rand io.Reader
	// MaxSlots is the number of slots that may be armed at once (default
	// 4096).
	MaxSlots int
	// BookBytes bounds the bytes a data-bearing slot records in each
	// direction (default 4096); BookEntries bounds its entries (default
	// 256). Exceeding either wakes the host with ReasonBooksFull.
	BookBytes   int
	BookEntries int
	// WSBuffer bounds the partial WebSocket frame a slot holds (default
	// 127: the largest server control frame).
	WSBuffer int
	// ACKInterval is the least time between two duplicate ACKs (answers
	// to out-of-window, old duplicate, PAWS-old or bad-ACK segments) and
	// between two challenge ACKs of one slot (default 500 ms, Linux's
	// tcp_invalid_ratelimit).
	ACKInterval time.Duration
	// ChallengeACKLimit bounds the challenge ACKs of all slots per second
	// of engine time (default 1000, Linux's tcp_challenge_ack_limit).
	ChallengeACKLimit int
	// Firmware selects a shipping firmware's behaviours (zero: the
	// engine's own; see Firmware and package profile).
	Firmware Firmware
}

// Defaults of Config.
const (
	DefaultMaxSlots          = 4096
	DefaultBookBytes         = 4096
	DefaultBookEntries       = 256
	DefaultWSBuffer          = 2 + MaxControlPayload
	DefaultACKInterval       = 500 * time.Millisecond
	DefaultChallengeACKLimit = 1000
)

// Errors of Arm and Disarm.
var (
	ErrSlotInUse = errors.New("slot id already armed")
	ErrNoSlot    = errors.New("no free slot")
	ErrNotArmed  = errors.New("slot not armed")
)

// chunkSize is the number of slots per storage chunk: slots live in
// fixed chunks so the table grows without copying or slack.
const chunkSize = 4096

// Engine runs keep-alive slots. It is not safe for concurrent use: the
// NIC's datapath owns it and calls Arm, Disarm, Receive and Fire from one
// goroutine.
type Engine struct {
	cfg   Config
	clock Clock
	rand  io.Reader
	sched *Scheduler

	index  map[SlotID]uint32 // slot id → storage index (the scheduler id)
	chunks []*[chunkSize]slot
	free   []uint32
	used   uint32 // storage indices handed out so far

	// Fire state.
	fireFn  func(uint32)
	fireOut Output
	fireNow time.Duration

	// Challenge-ACK budget of the current second.
	challengeSecond time.Duration
	challengeCount  int

	stats Stats
	tx    [maxFrame]byte
	rx    []byte // WebSocket parse scratch: partial frame + one segment
	key   [4]byte
}

// Stats are the engine's counters.
type Stats struct {
	// Armed is the number of armed slots (any state).
	Armed int
	// Sched is the scheduler's: Batches counts radio wake-ups.
	Sched SchedStats
	// FramesSent, FramesReceived, Wakes: totals over all slots.
	FramesSent, FramesReceived, Wakes uint64
	// UnknownSlot counts frames given to Receive for an id not armed.
	UnknownSlot uint64
	// Transitions counts slot state changes [from][to].
	Transitions [numState][numState]uint64
}

// New returns an engine; cfg nil means defaults.
func New(cfg *Config) *Engine {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Clock == nil {
		c.Clock = new(fedClock)
	}
	if c.Rand == nil {
		var seed [32]byte
		crand.Read(seed[:]) // never fails (Go 1.24+ panics instead)
		c.Rand = rand.NewChaCha8(seed)
	}
	if c.MaxSlots <= 0 {
		c.MaxSlots = DefaultMaxSlots
	}
	if c.BookBytes <= 0 {
		c.BookBytes = DefaultBookBytes
	}
	if c.BookEntries <= 0 {
		c.BookEntries = DefaultBookEntries
	}
	if c.WSBuffer <= 0 {
		c.WSBuffer = DefaultWSBuffer
	}
	if c.ACKInterval <= 0 {
		c.ACKInterval = DefaultACKInterval
	}
	if c.ChallengeACKLimit <= 0 {
		c.ChallengeACKLimit = DefaultChallengeACKLimit
	}
	e := &Engine{
		cfg:   c,
		clock: c.Clock,
		rand:  c.Rand,
		sched: NewScheduler(min(c.MaxSlots, chunkSize)),
		index: make(map[SlotID]uint32),
		rx:    make([]byte, c.WSBuffer+65536),
	}
	e.fireFn = e.fire
	e.challengeSecond = -1
	return e
}

func (e *Engine) slotAt(i uint32) *slot { return &e.chunks[i/chunkSize][i%chunkSize] }

// Arm validates snap and spec and arms slot id: its first keep-alive is
// due spec.FirstDue from now (one Interval when FirstDue is 0), the
// following ones an Interval after the start of the previous cycle.
func (e *Engine) Arm(id SlotID, snap Snapshot, spec Spec) error {
	if err := snap.Validate(); err != nil {
		return fmt.Errorf("arm slot %d: %w", id, err)
	}
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("arm slot %d: %w", id, err)
	}
	if n := spec.sendLen(); n > int(snap.MSS) {
		return fmt.Errorf("arm slot %d: %w: keep-alive of %d bytes above MSS %d", id, ErrInvalidSpec, n, snap.MSS)
	}
	if e.cfg.Firmware.Replay && spec.sendLen() > 0 {
		return fmt.Errorf("arm slot %d: %w: a %v keep-alive sends %d bytes", id, ErrReplayAdvances, spec.Kind, spec.sendLen())
	}
	if _, ok := e.index[id]; ok {
		return fmt.Errorf("arm slot %d: %w", id, ErrSlotInUse)
	}
	if len(e.index) >= e.cfg.MaxSlots {
		return fmt.Errorf("arm slot %d: %w (%d armed)", id, ErrNoSlot, len(e.index))
	}
	var i uint32
	if n := len(e.free); n > 0 {
		i = e.free[n-1]
		e.free = e.free[:n-1]
	} else {
		i = e.used
		e.used++
		if int(i/chunkSize) >= len(e.chunks) {
			e.chunks = append(e.chunks, new([chunkSize]slot))
		}
	}
	e.index[id] = i
	s := e.slotAt(i)
	*s = slot{
		id:            id,
		state:         StateArmed,
		status:        StatusNormal,
		kind:          spec.Kind,
		probe:         spec.Probe,
		wsMode:        spec.WebSocket.Mode,
		retryCount:    uint8(spec.RetryCount),
		sndWScale:     snap.SndWScale,
		mss:           snap.MSS,
		sndNxt:        snap.SndNxt,
		sndUna:        snap.SndNxt,
		rcvNxt:        snap.RcvNxt,
		rcvWnd:        snap.RcvWnd,
		sndWnd:        snap.SndWnd,
		interval:      spec.Interval,
		retryInterval: spec.RetryInterval,
		tolerance:     spec.Tolerance,
		lastDupACK:    -1,
		lastChallenge: -1,
	}
	if snap.Local.Addr().Is6() {
		s.flags |= flagIPv6
	}
	if e.cfg.Firmware.NoTimestamps {
		// The offloaded segments carry no options; the report still
		// gives the armed TS.Recent back.
		s.tsRecent = snap.Timestamps.Recent
		snap.Timestamps = Timestamps{}
	}
	if e.cfg.Firmware.Replay {
		s.flags |= flagReplay
	}
	if ts := snap.Timestamps; ts.Enabled {
		s.flags |= flagTS
		s.tsVal, s.tsAt, s.tsRate, s.tsRecent = ts.Val, ts.At, ts.Rate, ts.Recent
	}
	e.rand.Read(e.key[:2])
	s.ipID = binary.BigEndian.Uint16(e.key[:2])
	s.buildTemplate(&snap)
	if spec.Kind != KindTCPProbe {
		x := &slotExt{
			books: Books{
				Sent:     make([]byte, 0, e.cfg.BookBytes),
				Absorbed: make([]byte, 0, e.cfg.BookBytes),
				Entries:  make([]Entry, 0, e.cfg.BookEntries),
			},
		}
		switch spec.Kind {
		case KindPayload:
			x.request = append([]byte(nil), spec.Payload.Request...)
			x.reply = append([]byte(nil), spec.Payload.Reply...)
			x.mask = append([]byte(nil), spec.Payload.ReplyMask...)
			if q := spec.Payload.Seq; q.Len > 0 {
				x.seqOff, x.seqLen, x.seq = uint8(q.Offset), uint8(q.Len), q.Start
			}
			if tk := spec.Payload.Tokens; tk.Len > 0 {
				x.tokOff, x.tokLen = tk.Offset, tk.Len
				x.tokens = append([]byte(nil), tk.Stream...)
			}
		case KindWebSocket:
			x.request = append([]byte{}, spec.WebSocket.Payload...)
			x.wsBuf = make([]byte, 0, e.cfg.WSBuffer)
		}
		s.ext = x
	}
	first := spec.FirstDue
	if first == 0 {
		first = spec.Interval
	}
	e.sched.Schedule(i, e.clock.Now()+first, s.tolerance)
	return nil
}

// Disarm removes slot id, in whatever state, and returns its final report.
// The books are the slot's own: the engine keeps no reference to them.
func (e *Engine) Disarm(id SlotID) (Report, error) {
	i, ok := e.index[id]
	if !ok {
		return Report{}, fmt.Errorf("disarm slot %d: %w", id, ErrNotArmed)
	}
	s := e.slotAt(i)
	r := Report{
		State:    s.state,
		Status:   s.status,
		Counters: s.counters,
		SndNxt:   s.sndNxt,
		SndUna:   s.sndUna,
		RcvNxt:   s.rcvNxt,
		TSRecent: s.tsRecent,
	}
	if s.counters.KeepalivesSent > 0 {
		r.LastKeepAlive = s.cycleStart
	}
	if s.ext != nil {
		r.Books = s.ext.books
	}
	e.sched.Cancel(i)
	delete(e.index, id)
	*s = slot{}
	e.free = append(e.free, i)
	return r, nil
}

// State returns the state, status and counters of slot id.
func (e *Engine) State(id SlotID) (State, Status, Counters, bool) {
	i, ok := e.index[id]
	if !ok {
		return stateInvalid, statusInvalid, Counters{}, false
	}
	s := e.slotAt(i)
	return s.state, s.status, s.counters, true
}

// NextDeadline returns when Fire must next be called, and false when no
// slot waits for a timer.
func (e *Engine) NextDeadline() (time.Duration, bool) { return e.sched.Next() }

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	st := e.stats
	st.Armed = len(e.index)
	st.Sched = e.sched.Stats()
	return st
}

// Fire sends the keep-alives and retries due at now (normally
// Clock.Now(), at or after NextDeadline), together with those whose
// tolerance window is open, declares dead the slots whose last retry went
// unanswered, and returns the number of slot timers handled. It allocates
// nothing.
func (e *Engine) Fire(now time.Duration, out Output) int {
	if fc, ok := e.clock.(*fedClock); ok && now > fc.now {
		fc.now = now
	}
	e.fireOut, e.fireNow = out, now
	n := e.sched.Fire(now, e.fireFn)
	e.fireOut = nil
	return n
}

// fire handles the timer of the slot at storage index i.
func (e *Engine) fire(i uint32) {
	s := e.slotAt(i)
	now, out := e.fireNow, e.fireOut
	switch s.state {
	case StateArmed:
		e.startCycle(s, i, now, out)
	case StateWaitingReply, StateRetrying:
		if !s.has(flagReplyDue) {
			// The reply came; the next cycle is due.
			e.startCycle(s, i, now, out)
			return
		}
		if e.cfg.Firmware.NoLiveness {
			// Firmware that only sends: the next keep-alive, no retry.
			s.status = StatusNoResponse
			e.startCycle(s, i, now, out)
			return
		}
		if int(s.retries) >= int(s.retryCount) {
			s.status = StatusNoResponse
			e.wake(s, i, StateDead, ReasonKeepAliveTimeout, nil, now, out)
			return
		}
		s.retries++
		s.counters.Retries++
		s.status = StatusNoResponse
		e.transition(s, StateRetrying)
		if !e.retry(s, i, now, out) {
			return
		}
		e.sched.Schedule(i, now+s.retryInterval, 0)
	}
}

// startCycle sends the first keep-alive of a cycle and waits for its reply.
func (e *Engine) startCycle(s *slot, i uint32, now time.Duration, out Output) {
	s.retries = 0
	s.flags |= flagReplyDue
	if s.sndUna != s.sndNxt {
		// Unacknowledged bytes (a Pong whose ACK was lost) go first.
		e.retransmit(s, now, out)
	}
	if !e.sendKeepAlive(s, i, now, out) {
		return
	}
	s.cycleStart = now
	s.counters.KeepalivesSent++
	e.transition(s, StateWaitingReply)
	if e.cfg.Firmware.NoLiveness {
		e.sched.Schedule(i, now+s.interval, s.tolerance)
		return
	}
	e.sched.Schedule(i, now+s.retryInterval, 0)
}

// retry re-sends for a missing reply: the unacknowledged bytes when there
// are any, else a new keep-alive. It reports false when the slot woke.
func (e *Engine) retry(s *slot, i uint32, now time.Duration, out Output) bool {
	if s.sndUna != s.sndNxt {
		e.retransmit(s, now, out)
		return true
	}
	return e.sendKeepAlive(s, i, now, out)
}

// sendKeepAlive sends one keep-alive of s's kind. It reports false when
// the books could not take it (the slot woke instead).
func (e *Engine) sendKeepAlive(s *slot, i uint32, now time.Duration, out Output) bool {
	switch {
	case s.kind == KindTCPProbe || s.wsMode == WSResponder:
		e.sendProbe(s, now, out)
	case s.kind == KindPayload:
		x := s.ext
		if x.tokLen > 0 && len(x.tokens) < x.tokLen {
			e.wake(s, i, StateWoken, ReasonNoTokens, nil, now, out)
			return false
		}
		if !e.bookSend(s, i, len(x.request), now, out) {
			return false
		}
		b := e.begin(s)
		p := b[s.hdrLen : int(s.hdrLen)+len(x.request)]
		copy(p, x.request)
		if x.seqLen > 0 {
			for k := range int(x.seqLen) {
				p[int(x.seqOff)+k] = byte(x.seq >> (8 * k))
			}
			x.seq++
		}
		if x.tokLen > 0 {
			copy(p[x.tokOff:x.tokOff+x.tokLen], x.tokens)
			x.tokens = x.tokens[x.tokLen:]
		}
		e.sendData(s, len(x.request), now, out)
	default: // WebSocket Ping or Pong
		x := s.ext
		op := byte(wsOpPing)
		if s.wsMode == WSPong {
			op = wsOpPong
		}
		n := wsClientHeaderLen(len(x.request)) + len(x.request)
		if !e.bookSend(s, i, n, now, out) {
			return false
		}
		b := e.begin(s)
		e.rand.Read(e.key[:])
		putWSClientFrame(b[s.hdrLen:], op, e.key, x.request)
		e.sendData(s, n, now, out)
		if s.wsMode == WSPing {
			x.pingOutstanding = true
		}
	}
	return true
}

// sendProbe sends the RFC 1122 keep-alive: SEQ = SND.NXT−1, with zero or
// one garbage byte.
func (e *Engine) sendProbe(s *slot, now time.Duration, out Output) {
	b := e.begin(s)
	n := 0
	if s.probe == ProbeOneByte {
		b[s.hdrLen] = 0
		n = 1
	}
	e.send(e.finish(s, n, s.sndNxt-1, flagsACK, now), out)
}

// sendACK sends <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>.
func (e *Engine) sendACK(s *slot, now time.Duration, out Output) {
	e.begin(s)
	e.send(e.finish(s, 0, s.sndNxt, flagsACK, now), out)
}

// sendData sends the n new stream bytes written after the header by the
// caller (begin), records them in the books and advances SND.NXT.
func (e *Engine) sendData(s *slot, n int, now time.Duration, out Output) {
	x := s.ext
	p := e.tx[s.hdrLen : int(s.hdrLen)+n]
	x.books.Sent = append(x.books.Sent, p...)
	x.books.Entries = append(x.books.Entries, Entry{Dir: DirSent, Seq: s.sndNxt, Len: uint32(n), At: now})
	seq := s.sndNxt
	s.sndNxt += uint32(n)
	e.send(e.finish(s, n, seq, flagsPSHACK, now), out)
}

// retransmit re-sends the unacknowledged bytes [SND.UNA, SND.NXT) from
// the books (at most one segment).
func (e *Engine) retransmit(s *slot, now time.Duration, out Output) {
	x := s.ext
	if x == nil {
		return
	}
	n := int(s.sndNxt - s.sndUna)
	sent := x.books.Sent
	if n > len(sent) {
		n = len(sent) // cannot happen: SND.UNA starts at SND.NXT
	}
	p := sent[len(sent)-n:]
	if m := min(int(s.mss), maxSegment); len(p) > m {
		p = p[:m]
	}
	b := e.begin(s)
	copy(b[s.hdrLen:], p)
	e.send(e.finish(s, len(p), s.sndUna, flagsPSHACK, now), out)
}

// bookSend reports whether the books take n more sent bytes; if not, the
// slot wakes with ReasonBooksFull.
func (e *Engine) bookSend(s *slot, i uint32, n int, now time.Duration, out Output) bool {
	x := s.ext
	if len(x.books.Sent)+n <= cap(x.books.Sent) && len(x.books.Entries) < cap(x.books.Entries) {
		return true
	}
	e.wake(s, i, StateWoken, ReasonBooksFull, nil, now, out)
	return false
}

func (e *Engine) send(frame []byte, out Output) {
	e.stats.FramesSent++
	out.Send(frame)
}

// transition moves s to state to and counts it.
func (e *Engine) transition(s *slot, to State) {
	if s.state == to {
		return
	}
	e.stats.Transitions[s.state][to]++
	s.counters.Transitions++
	s.state = to
}

// wake ends the slot's offload: final state to (dead or woken), timer
// cancelled, the host told.
func (e *Engine) wake(s *slot, i uint32, to State, r Reason, frame []byte, now time.Duration, out Output) {
	e.transition(s, to)
	e.sched.Cancel(i)
	e.stats.Wakes++
	out.Wake(Event{Slot: s.id, Reason: r, At: now, Frame: frame})
}

// replied records the reply the current cycle waited for.
func (e *Engine) replied(s *slot, i uint32) {
	s.counters.RepliesAbsorbed++
	s.status = StatusNormal
	if !s.has(flagReplyDue) {
		return
	}
	s.flags &^= flagReplyDue
	s.retries = 0
	e.transition(s, StateArmed)
	e.sched.Schedule(i, s.cycleStart+s.interval, s.tolerance)
}

// fedClock is the default Clock: the engine's time is the latest now its
// driver passed to Fire, so the package never reads the system clock.
type fedClock struct{ now time.Duration }

// Now implements Clock.Now.
func (c *fedClock) Now() time.Duration { return c.now }

// Expected is what a filter in front of the engine (the NIC's XDP fast
// path) needs to absorb a slot's exact keep-alive reply itself.
type Expected struct {
	// RcvNxt and SndNxt: the exact reply has SEQ = RcvNxt, ACK = SndNxt.
	RcvNxt, SndNxt uint32
	// Timestamps: PAWS applies against TSRecent.
	Timestamps bool
	TSRecent   uint32
	// Reply: an exact pure ACK is the reply the cycle waits for (a TCP
	// probe, a WebSocket Pong or responder slot); otherwise the engine
	// counts it as an ACK.
	Reply bool
	// Live: the slot still runs (armed, waiting or retrying); a dead or
	// woken slot absorbs nothing.
	Live bool
}

// Expected returns slot id's exact reply, and false when id is not
// armed. It allocates nothing.
func (e *Engine) Expected(id SlotID) (Expected, bool) {
	i, ok := e.index[id]
	if !ok {
		return Expected{}, false
	}
	s := e.slotAt(i)
	return Expected{
		RcvNxt: s.rcvNxt, SndNxt: s.sndNxt,
		Timestamps: s.has(flagTS), TSRecent: s.tsRecent,
		Reply: s.kind == KindTCPProbe || s.wsMode == WSResponder || s.wsMode == WSPong,
		Live:  s.state == StateArmed || s.state == StateWaitingReply || s.state == StateRetrying,
	}, true
}

// AbsorbedElsewhere counts exact pure ACKs (SEQ = RCV.NXT, ACK =
// SND.NXT, no data) a filter in front of the engine absorbed for slot id
// since the last call, as Receive would have: replies as the reply the
// cycle waits for (so the next timer starts a new cycle instead of a
// retry), acks as ACKsAbsorbed; tsRecent, when the slot uses timestamps
// and something was absorbed, becomes TS.Recent. Call it before Fire.
// It allocates nothing; a slot that is not live only has its counters
// moved.
func (e *Engine) AbsorbedElsewhere(id SlotID, replies, acks uint64, tsRecent uint32) {
	i, ok := e.index[id]
	if !ok || replies+acks == 0 {
		return
	}
	s := e.slotAt(i)
	s.counters.ACKsAbsorbed += acks
	s.sndUna = s.sndNxt
	if s.has(flagTS) && int32(tsRecent-s.tsRecent) > 0 {
		s.tsRecent = tsRecent
	}
	if replies == 0 {
		return
	}
	s.counters.RepliesAbsorbed += replies - 1
	if s.state == StateArmed || s.state == StateWaitingReply || s.state == StateRetrying {
		e.replied(s, i)
	} else {
		s.counters.RepliesAbsorbed++
	}
}
