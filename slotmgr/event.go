package slotmgr

import (
	"strconv"
	"time"
)

// EventKind says what happened to a channel behind its owner's back. The
// zero value is invalid.
type EventKind uint8

// Event kinds.
const (
	_            EventKind = iota
	Promoted               // software → hardware: a hardware slot was freed
	Evicted                // hardware → software: a higher-priority request took the slot
	Disconnected           // the transport is gone; the slot was freed
)

// String returns a short lowercase name of k.
func (k EventKind) String() string {
	switch k {
	case Promoted:
		return "promoted"
	case Evicted:
		return "evicted"
	case Disconnected:
		return "disconnected"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event tells a channel's owner that its placement changed.
type Event struct {
	Kind    EventKind
	Channel string
	App     string
	From    Kind // the slot kind before
	To      Kind // the slot kind after
	Slot    int  // the slot index after; -1 with NoSlot
	Reason  string
	At      time.Duration // the pool's clock at the change
}
