package nic

import (
	"sync"
	"time"

	"github.com/standbynic/standbynic/offload"
)

// WakeReason is why the device woke the host. The zero value is invalid.
type WakeReason uint8

const (
	wakeInvalid WakeReason = iota
	// WakeData: a slot's peer sent data (a push message).
	WakeData
	// WakeFIN: a slot's peer closed its side.
	WakeFIN
	// WakeRST: a slot's peer reset the connection.
	WakeRST
	// WakeKeepAliveTimeout: a slot's peer did not answer the keep-alive
	// and its retries.
	WakeKeepAliveTimeout
	// WakeBooksFull: a slot's books are full.
	WakeBooksFull
	// WakeBufferFull: a slot's partial-frame buffer is full.
	WakeBufferFull
	// WakePattern: a frame matched an extra wake pattern (bitmap, magic
	// packet, TCP SYN).
	WakePattern
	// WakeHost: the host asked to wake (Device.Wake).
	WakeHost
	// WakeNICLost: the NIC daemon was lost or restarted. A device never
	// raises it; a Remote does, when its control connection, wake stream
	// or lease ends, so the host thaws what the NIC guarded.
	WakeNICLost
	// WakePassed: a drop-only firmware filter (profile android-apf,
	// broadcom-mkeepalive) passed a slot's segment that is not the exact
	// keep-alive reply to the host.
	WakePassed
	// WakeNoTokens: a slot's payload keep-alive ran out of tokens
	// (profile nl80211-tcp: NL80211_WOWLAN_TRIG_WAKEUP_TCP_NOMORETOKENS).
	WakeNoTokens
	numWakeReason
)

var wakeReasonNames = [numWakeReason]string{
	wakeInvalid:          "invalid",
	WakeData:             "data",
	WakeFIN:              "fin",
	WakeRST:              "reset",
	WakeKeepAliveTimeout: "keep-alive-timeout",
	WakeBooksFull:        "books-full",
	WakeBufferFull:       "buffer-full",
	WakePattern:          "pattern",
	WakeHost:             "host",
	WakeNICLost:          "nic-lost",
	WakePassed:           "passed",
	WakeNoTokens:         "no-tokens",
}

// String returns the reason's name.
func (r WakeReason) String() string {
	if r < numWakeReason {
		return wakeReasonNames[r]
	}
	return "invalid"
}

func wakeReasonOf(r offload.Reason) WakeReason {
	switch r {
	case offload.ReasonData:
		return WakeData
	case offload.ReasonFIN:
		return WakeFIN
	case offload.ReasonRST:
		return WakeRST
	case offload.ReasonKeepAliveTimeout:
		return WakeKeepAliveTimeout
	case offload.ReasonBooksFull:
		return WakeBooksFull
	case offload.ReasonBufferFull:
		return WakeBufferFull
	case offload.ReasonPassed: // firmware profile hook
		return WakePassed
	case offload.ReasonNoTokens: // firmware profile hook
		return WakeNoTokens
	}
	return wakeInvalid
}

// WakeEvent is a wake indication, as NDIS reports it after resume: the
// reason, what caused it, and the saved wake packet.
type WakeEvent struct {
	Reason WakeReason
	// Slot is the slot that woke (0 when the wake is not a slot's).
	Slot SlotID
	// Pattern is the ID of the extra wake pattern matched (Reason
	// WakePattern).
	Pattern uint32
	// At is the device-clock time of the wake.
	At time.Duration
	// RxTime is when the wake packet was received by the wire port (zero
	// when there is no packet: timeouts, host wakes).
	RxTime time.Time
	// Packet is the saved wake packet, at most Capabilities.WakePacketSave
	// bytes; Len is its full length. Nil when there is no packet.
	Packet []byte
	Len    int
}

// postWake is the bounded buffer of wire frames that arrive between a
// wake and Resume. Buffers are allocated on first use and reused.
type postWake struct {
	mu   sync.Mutex
	bufs [][]byte // ring storage, len == capacity
	head int      // index of the oldest frame
	n    int      // frames held
}

func newPostWake(frames int) *postWake { return &postWake{bufs: make([][]byte, frames)} }

// push copies frame in; it reports false when the buffer is full.
// Called with mu held.
func (p *postWake) push(frame []byte) bool {
	if p.n == len(p.bufs) {
		return false
	}
	i := (p.head + p.n) % len(p.bufs)
	b := p.bufs[i]
	if cap(b) < len(frame) {
		b = make([]byte, 0, max(len(frame), 2048))
	}
	p.bufs[i] = append(b[:0], frame...)
	p.n++
	return true
}

// drain hands out the held frames in order, in batches of at most
// len(batch), through fn, and empties the buffer. Called with mu held.
func (p *postWake) drain(batch [][]byte, fn func([][]byte)) {
	for p.n > 0 {
		k := 0
		for k < len(batch) && p.n > 0 {
			batch[k] = p.bufs[p.head]
			p.head = (p.head + 1) % len(p.bufs)
			p.n--
			k++
		}
		fn(batch[:k])
		clear(batch[:k])
	}
	p.head = 0
}
