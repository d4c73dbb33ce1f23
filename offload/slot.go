package offload

import (
	"fmt"
	"time"
)

// State is the state of an armed slot (see the diagram in doc.go). The
// zero value is invalid.
type State uint8

const (
	stateInvalid State = iota
	// StateArmed: waiting for the next keep-alive time.
	StateArmed
	// StateWaitingReply: the cycle's keep-alive went out; waiting for the
	// reply for RetryInterval.
	StateWaitingReply
	// StateRetrying: at least one retry went out; waiting for the reply.
	StateRetrying
	// StateDead: no reply after RetryCount retries; the host was woken
	// with ReasonKeepAliveTimeout. Final.
	StateDead
	// StateWoken: the host was woken for a frame or full books. Final.
	StateWoken
	numState
)

var stateNames = [numState]string{"invalid", "armed", "waiting-reply", "retrying", "dead", "woken"}

func (s State) String() string {
	if s < numState {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Status is a slot's last condition, as Infineon keep-alive firmware
// reports it per connection. The zero value is invalid.
type Status uint8

const (
	statusInvalid Status = iota
	// StatusNormal: replies arrive as expected.
	StatusNormal
	// StatusNoResponse: a keep-alive went unanswered (retrying or dead).
	StatusNoResponse
	// StatusBadACK: the peer acknowledged data never sent, or too old.
	StatusBadACK
	// StatusUnexpectedFlags: a segment with SYN, without ACK, or an
	// in-window RST that was not exact.
	StatusUnexpectedFlags
	// StatusBadSeq: a segment outside the receive window, a duplicate or
	// a PAWS-old timestamp.
	StatusBadSeq
	// StatusDataWaiting: the peer sent data or closed; the host was woken.
	StatusDataWaiting
	// StatusNoACKFlag: a segment without the ACK flag (reported only by
	// engines with Firmware.ACKFlagStatus; otherwise such a segment is
	// StatusUnexpectedFlags).
	StatusNoACKFlag
	numStatus
)

var statusNames = [numStatus]string{"invalid", "normal", "no-response", "bad-ack", "unexpected-flags", "bad-seq", "data-waiting", "no-ack-flag"}

func (s Status) String() string {
	if s < numStatus {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Counters are the per-slot counters.
type Counters struct {
	KeepalivesSent  uint64 `json:"keepalives_sent"`  // first keep-alive of each cycle
	Retries         uint64 `json:"retries"`          // keep-alives re-sent for lack of a reply
	RepliesAbsorbed uint64 `json:"replies_absorbed"` // exact keep-alive ACKs and expected replies
	ACKsAbsorbed    uint64 `json:"acks_absorbed"`    // other acceptable pure ACKs
	PingsAnswered   uint64 `json:"pings_answered"`   // WebSocket Pings answered with a Pong
	ACKsSent        uint64 `json:"acks_sent"`        // ACKs of absorbed bytes and duplicate ACKs
	ChallengeACKs   uint64 `json:"challenge_acks"`   // RFC 5961 challenge ACKs
	// PeerKeepalivesAnswered counts the peer's own TCP keep-alive probes
	// (SEQ = RCV.NXT−1) answered with an ACK; they are not counted in
	// ACKsSent nor as dropped.
	PeerKeepalivesAnswered uint64 `json:"peer_keepalives_answered"`
	DroppedOutOfWindow     uint64 `json:"dropped_out_of_window"` // outside the window or old duplicates
	DroppedPAWS            uint64 `json:"dropped_paws"`          // PAWS-old timestamps
	DroppedBadACK          uint64 `json:"dropped_bad_ack"`       // unacceptable acknowledgment numbers
	DroppedOther           uint64 `json:"dropped_other"`         // malformed, no ACK flag, not this connection
	Buffered               uint64 `json:"buffered"`              // segments held as partial WebSocket frames
	Transitions            uint64 `json:"transitions"`           // state changes
}

// Entry is one record of the books: Len stream bytes starting at sequence
// number Seq, in direction Dir, at engine time At.
type Entry struct {
	Dir Dir
	Seq uint32
	Len uint32
	At  time.Duration
}

// Dir is the direction of a books entry. The zero value is invalid.
type Dir uint8

const (
	dirInvalid Dir = iota
	// DirSent: bytes the engine put on the stream (SND side).
	DirSent
	// DirAbsorbed: bytes the engine took off the stream (RCV side).
	DirAbsorbed
)

func (d Dir) String() string {
	switch d {
	case DirSent:
		return "sent"
	case DirAbsorbed:
		return "absorbed"
	}
	return fmt.Sprintf("dir(%d)", uint8(d))
}

// Books are the stream bytes a slot exchanged on the host's behalf, in
// order: Sent is every byte put on the stream (SND.NXT advanced by
// len(Sent)), Absorbed every byte taken from it (RCV.NXT advanced by
// len(Absorbed)), and Entries their records in time order. Retransmissions
// are not new bytes and are not recorded. With them the host takes the
// stream back byte-exact.
type Books struct {
	Sent     []byte
	Absorbed []byte
	Entries  []Entry
}

// Report is the final account of a slot, returned by Disarm.
type Report struct {
	State    State
	Status   Status
	Counters Counters
	Books    Books
	// SndNxt, SndUna and RcvNxt are the connection's sequence state now:
	// the host's snapshot advanced by the books (SndUna < SndNxt when sent
	// bytes are not yet acknowledged and must be queued for
	// retransmission).
	SndNxt, SndUna, RcvNxt uint32
	// TSRecent is the peer's latest TSval to echo.
	TSRecent uint32
	// LastKeepAlive is the engine time of the first keep-alive of the
	// slot's last cycle (retries do not move it): the next one was due an
	// Interval after it. It is set only when Counters.KeepalivesSent > 0
	// (0 otherwise). A host that arms the slot again continues the
	// schedule from it (Spec.FirstDue).
	LastKeepAlive time.Duration
}

// slot flags.
const (
	flagIPv6     = 1 << iota
	flagTS       // timestamps negotiated
	flagReplyDue // the cycle's reply has not arrived
	flagReplay   // Firmware.Replay: every send repeats the armed frame
)

// maxHdr is the longest header template: Ethernet + 802.1Q + IPv6 + TCP
// with NOP NOP TS.
const maxHdr = ethLen + vlanLen + ipv6Len + tcpLen + tsOptLen

// slot is an armed slot. It is kept compact: a TCP-probe slot has no ext.
type slot struct {
	id         SlotID
	state      State
	status     Status
	kind       Kind
	probe      ProbeForm
	wsMode     WSMode
	flags      uint8
	retries    uint8 // retries sent in this cycle
	retryCount uint8
	sndWScale  uint8
	mss        uint16
	// Template layout: offsets of the IP and TCP headers and the TSval
	// field, header length.
	l3Off, l4Off, tsOff, hdrLen uint8
	ipID                        uint16

	sndNxt, sndUna, rcvNxt uint32
	sndWnd, rcvWnd         uint32 // sndWnd: the largest window the peer offered
	tsVal, tsRate          uint32 // TSval at tsAt, clock rate in Hz
	tsRecent               uint32
	tsAt                   time.Duration

	interval, retryInterval, tolerance time.Duration
	cycleStart                         time.Duration // first keep-alive of the current (last) cycle
	lastDupACK, lastChallenge          time.Duration // rate limits; -1 never

	counters Counters
	ext      *slotExt

	// hdr is the header template: a pure ACK (SEQ = SND.NXT at arm,
	// ACK = RCV.NXT at arm, TS as at arm, IP ID 0) with correct
	// checksums. Sends copy and patch it.
	hdr [maxHdr]byte
}

// slotExt holds what only data-bearing slots need. The books' capacities
// are their limits.
type slotExt struct {
	request         []byte // KindPayload request or WebSocket Ping/Pong payload
	reply, mask     []byte // KindPayload expected reply
	books           Books
	wsBuf           []byte // partial WebSocket frame (capacity: the limit)
	pingOutstanding bool   // WSPing: a Ping waits for its Pong
	// KindPayload sequence number and tokens (PayloadSpec.Seq, Tokens).
	seqOff, seqLen uint8
	seq            uint32
	tokOff, tokLen int
	tokens         []byte // the tokens not yet sent
}

func (s *slot) has(f uint8) bool { return s.flags&f != 0 }

// tsNow returns the TSval for engine time now, continuing the host's
// timestamp clock (modulo 2^32).
func (s *slot) tsNow(now time.Duration) uint32 {
	d := now - s.tsAt
	if d < 0 {
		d = 0
	}
	ticks := uint64(d/time.Second)*uint64(s.tsRate) + uint64(d%time.Second)*uint64(s.tsRate)/uint64(time.Second)
	return s.tsVal + uint32(ticks)
}
