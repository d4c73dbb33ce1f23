package offload

import "errors"

// Firmware selects behaviours of a shipping keep-alive firmware that the
// engine emulates in place of its own (package profile names the real
// parts). The zero value is this engine's own behaviour: patched
// templates, the timestamp option when negotiated, replies absorbed and
// classified, retries and dead-peer detection, the RFC statuses.
type Firmware struct {
	// Replay sends every keep-alive of a slot as the same bytes: the frame
	// built at Arm is replayed each period (Broadcom mkeep_alive: an
	// opaque packet sent byte for byte every period_msec). The IP ID, the
	// TSval and the sequence numbers never advance, so only keep-alives
	// that put no new bytes on the stream (TCP probes) can be replayed:
	// Arm refuses the others with ErrReplayAdvances.
	Replay bool
	// NoTimestamps leaves the TCP timestamp option out of every segment
	// the slot sends, even when the connection negotiated it (Android's
	// offloaded keep-alive ACK carries no options). A peer that enforces
	// RFC 7323 §3.2 drops such segments.
	NoTimestamps bool
	// DropOnly reduces reply handling to one filter (Android APF): the
	// exact reply to the keep-alive (addresses, ports, SEQ = RCV.NXT,
	// ACK = SND.NXT, ACK flag only, no payload) is dropped and counted as
	// the reply; every other segment of the connection is passed to the
	// host, which wakes (ReasonData for data, ReasonFIN, ReasonRST,
	// ReasonPassed for anything else). Nothing is ever answered.
	DropOnly bool
	// NoLiveness turns dead-peer detection off: a keep-alive is sent each
	// Interval whether or not the last one was answered, there are no
	// retries, and the peer is never declared dead (firmware that only
	// sends: Android, Broadcom). The status still says no-response.
	NoLiveness bool
	// ACKFlagStatus reports a segment without the ACK flag as
	// StatusNoACKFlag (Infineon NO_TCP_ACK_FLAG) instead of
	// StatusUnexpectedFlags.
	ACKFlagStatus bool
	// EndOnData ends the offload on any data from the peer: payload and
	// WebSocket slots wake with ReasonData instead of absorbing their
	// expected replies (Android: DATA_RECEIVED stops the keep-alive).
	EndOnData bool
}

// ErrReplayAdvances is returned by Arm on a Replay engine for a spec
// whose keep-alive puts bytes on the stream: replaying them would repeat
// the same sequence numbers, and the peer would take every copy after the
// first as a retransmission.
var ErrReplayAdvances = errors.New("a replayed keep-alive cannot advance the stream")
