package nic

import (
	"errors"
	"fmt"
)

// Limits of the device's knobs.
const (
	DefaultSlots = 8
	MaxSlots     = 64

	// MinWakePacketSave is the smallest wake-packet save buffer NDIS lets a
	// device advertise: the saved packet holds min(length, 128) bytes.
	MinWakePacketSave     = 128
	DefaultWakePacketSave = 1514

	DefaultPostWakeFrames = 1024
	MaxPostWakeFrames     = 1 << 16

	MaxARPOffloads     = 8
	DefaultARPOffloads = 8
	// MinNSOffloads is the NS-offload count NDIS requires (two addresses:
	// link-local and global).
	MinNSOffloads     = 2
	MaxNSOffloads     = 8
	DefaultNSOffloads = 2

	DefaultMaxFrame = 9234 // 9216-byte jumbo frame + Ethernet header + two tags
	MinMaxFrame     = 1518
	MaxMaxFrame     = 1 << 18
)

// ErrLimit is wrapped by every error that reports a knob or a request
// beyond what the device advertises.
var ErrLimit = errors.New("beyond the device's limit")

// Capabilities is what the device advertises, as NDIS power management
// does. Zero fields take their defaults (see Normalize).
type Capabilities struct {
	// Slots is the number of hardware keep-alive slots (1–64, default 8).
	Slots int
	// WakePacketSave is the number of bytes kept of a wake packet
	// (≥128 as NDIS requires; default 1514).
	WakePacketSave int
	// PostWakeFrames bounds the frames buffered between a wake and Resume
	// (1–65536, default 1024). Overflow is counted, never silent.
	PostWakeFrames int
	// ARPOffloads is the number of IPv4 addresses the device answers ARP
	// requests for while asleep (1–8, default 8).
	ARPOffloads int
	// NSOffloads is the number of IPv6 addresses the device answers
	// neighbour solicitations for while asleep (2–8, default 2).
	NSOffloads int
	// MaxFrame is the largest frame the device moves, in bytes
	// (1518–262144, default 9234: a 9216-byte jumbo frame with its
	// Ethernet header and two VLAN tags). Port read buffers are this
	// long, and at least MaxGSOFrame on a port with offloads
	// (OffloadPort), which hands the device GSO super-frames of up to
	// 64 KB.
	MaxFrame int
}

// limitError names the field, the value and the limit.
func limitError(field string, value any, limit string) error {
	return fmt.Errorf("%s = %v: %s: %w", field, value, limit, ErrLimit)
}

// Normalize returns c with defaults filled in, or an error naming the
// first field out of range.
func (c Capabilities) Normalize() (Capabilities, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Slots, DefaultSlots)
	def(&c.WakePacketSave, DefaultWakePacketSave)
	def(&c.PostWakeFrames, DefaultPostWakeFrames)
	def(&c.ARPOffloads, DefaultARPOffloads)
	def(&c.NSOffloads, DefaultNSOffloads)
	def(&c.MaxFrame, DefaultMaxFrame)
	switch {
	case c.Slots < 1 || c.Slots > MaxSlots:
		return c, limitError("capabilities slots", c.Slots, fmt.Sprintf("must be 1–%d", MaxSlots))
	case c.WakePacketSave < MinWakePacketSave:
		return c, limitError("capabilities wake packet save", c.WakePacketSave, fmt.Sprintf("must be at least %d bytes", MinWakePacketSave))
	case c.PostWakeFrames < 1 || c.PostWakeFrames > MaxPostWakeFrames:
		return c, limitError("capabilities post-wake frames", c.PostWakeFrames, fmt.Sprintf("must be 1–%d", MaxPostWakeFrames))
	case c.ARPOffloads < 1 || c.ARPOffloads > MaxARPOffloads:
		return c, limitError("capabilities ARP offloads", c.ARPOffloads, fmt.Sprintf("must be 1–%d", MaxARPOffloads))
	case c.NSOffloads < MinNSOffloads || c.NSOffloads > MaxNSOffloads:
		return c, limitError("capabilities NS offloads", c.NSOffloads, fmt.Sprintf("must be %d–%d", MinNSOffloads, MaxNSOffloads))
	case c.MaxFrame < MinMaxFrame || c.MaxFrame > MaxMaxFrame:
		return c, limitError("capabilities max frame", c.MaxFrame, fmt.Sprintf("must be %d–%d bytes", MinMaxFrame, MaxMaxFrame))
	}
	if c.WakePacketSave > c.MaxFrame {
		c.WakePacketSave = c.MaxFrame
	}
	return c, nil
}
