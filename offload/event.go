package offload

import (
	"fmt"
	"time"
)

// SlotID names an armed slot. The engine's owner chooses it.
type SlotID uint32

// Verdict is what the engine did with a frame given to Receive. The zero
// value is invalid.
type Verdict uint8

const (
	verdictInvalid Verdict = iota
	// Absorb: the frame was consumed by the slot (a keep-alive reply, an
	// acknowledgment); nothing reaches the host and nothing was sent.
	Absorb
	// Answer: the frame was consumed and the engine sent one or more
	// frames in reply through Output.Send (the ACK of an absorbed reply,
	// a Pong, a challenge ACK, a duplicate ACK).
	Answer
	// Drop: the frame was discarded (out of window, PAWS-old, malformed,
	// rate-limited answer, unknown slot); nothing reaches the host.
	Drop
	// Wake: the frame is for the host. The slot is woken (Output.Wake was
	// called once, when it woke); the caller keeps the frame for the host
	// and delivers it, and every later frame of the slot, after resume.
	Wake
	numVerdict
)

var verdictNames = [numVerdict]string{"invalid", "absorb", "answer", "drop", "wake"}

func (v Verdict) String() string {
	if v < numVerdict {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Reason is why a slot woke the host. The zero value is invalid.
type Reason uint8

const (
	reasonInvalid Reason = iota
	// ReasonData: the peer sent data the slot does not absorb (a push
	// message, a WebSocket data or Close frame, out-of-order data).
	ReasonData
	// ReasonFIN: the peer closed its side.
	ReasonFIN
	// ReasonRST: the peer reset the connection (RST at RCV.NXT).
	ReasonRST
	// ReasonKeepAliveTimeout: no reply after the retries: the peer is dead.
	ReasonKeepAliveTimeout
	// ReasonBooksFull: the next send or absorption would overflow the
	// slot's books.
	ReasonBooksFull
	// ReasonBufferFull: a partial WebSocket control frame outgrew the
	// slot's buffer.
	ReasonBufferFull
	// ReasonPassed: a drop-only filter (Firmware.DropOnly) passed a
	// segment that is not the exact keep-alive reply to the host (a
	// duplicate ACK, the peer's own keep-alive probe, a SYN).
	ReasonPassed
	// ReasonNoTokens: a payload keep-alive with tokens (PayloadSpec.Tokens)
	// has no whole token left to send.
	ReasonNoTokens
	numReason
)

var reasonNames = [numReason]string{
	reasonInvalid:          "invalid",
	ReasonData:             "data",
	ReasonFIN:              "fin",
	ReasonRST:              "rst",
	ReasonKeepAliveTimeout: "keep-alive-timeout",
	ReasonBooksFull:        "books-full",
	ReasonBufferFull:       "buffer-full",
	ReasonPassed:           "passed",
	ReasonNoTokens:         "no-tokens",
}

func (r Reason) String() string {
	if r < numReason {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Event is a wake of the host by one slot.
type Event struct {
	Slot   SlotID
	Reason Reason
	// At is the engine-clock time of the wake.
	At time.Duration
	// Frame is the frame that woke the slot (nil for timeouts and books
	// full on send). It is valid only during the Wake call.
	Frame []byte
}

// Output receives what the engine produces. The engine calls it
// synchronously from Fire and Receive; it must not call back into the
// engine.
type Output interface {
	// Send puts frame on the wire. frame is valid only during the call:
	// the callee copies it.
	Send(frame []byte)
	// Wake wakes the host. ev.Frame is valid only during the call.
	Wake(ev Event)
}
