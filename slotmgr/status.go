package slotmgr

import "strconv"

// Status is the outcome of a placement, numbered as Windows
// ControlChannelTriggerStatus. The zero value, HardwareSlotRequested, is
// "requested, not yet placed": it is never an allocation, so a Result that
// was never filled in fails closed.
type Status uint8

// The ControlChannelTrigger statuses, with the Windows numbering.
const (
	HardwareSlotRequested Status = 0 // requested, not placed yet
	SoftwareSlotAllocated Status = 1 // the host keeps the channel alive on its own wakes
	HardwareSlotAllocated Status = 2 // the NIC keeps the channel alive while the host sleeps
	PolicyError           Status = 3 // app not permitted, quota reached, interval out of bounds
	SystemError           Status = 4 // the hardware slot could not be configured (strict mode, pool full)
	TransportDisconnected Status = 5 // the channel's connection is gone; its slot is freed
	ServiceUnavailable    Status = 6 // a software slot asked for while the system enters standby
)

var statusNames = [...]string{
	HardwareSlotRequested: "HardwareSlotRequested",
	SoftwareSlotAllocated: "SoftwareSlotAllocated",
	HardwareSlotAllocated: "HardwareSlotAllocated",
	PolicyError:           "PolicyError",
	SystemError:           "SystemError",
	TransportDisconnected: "TransportDisconnected",
	ServiceUnavailable:    "ServiceUnavailable",
}

// String returns the Windows name of s.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Allocated reports whether s holds a slot (hardware or software).
func (s Status) Allocated() bool {
	return s == SoftwareSlotAllocated || s == HardwareSlotAllocated
}

// ResourceType is the kind of slot a channel asks for, numbered as Windows
// ControlChannelTriggerResourceType. The zero value is the Windows default,
// RequestSoftwareSlot.
type ResourceType uint8

// The resource types, with the Windows numbering.
const (
	RequestSoftwareSlot ResourceType = 0
	RequestHardwareSlot ResourceType = 1
)

// String returns the Windows name of r.
func (r ResourceType) String() string {
	switch r {
	case RequestSoftwareSlot:
		return "RequestSoftwareSlot"
	case RequestHardwareSlot:
		return "RequestHardwareSlot"
	}
	return "ResourceType(" + strconv.Itoa(int(r)) + ")"
}

// Kind is the kind of slot a channel holds. The zero value, NoSlot, holds
// nothing.
type Kind uint8

// Slot kinds.
const (
	NoSlot   Kind = iota // no slot: failed, disconnected or released
	Hardware             // a NIC keep-alive slot, one of the pool's N
	Software             // a host timer slot, unbounded
)

// String returns a short lowercase name of k.
func (k Kind) String() string {
	switch k {
	case NoSlot:
		return "none"
	case Hardware:
		return "hardware"
	case Software:
		return "software"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// SystemState is the host power state as far as the pool cares: software
// slots can only be handed out while the system is awake. The zero value is
// invalid.
type SystemState uint8

// System states.
const (
	_               SystemState = iota
	Awake                       // software and hardware slots may be allocated
	EnteringStandby             // software requests get ServiceUnavailable
	Standby                     // as EnteringStandby: no app runs, the host sleeps
)

// String returns a short lowercase name of s.
func (s SystemState) String() string {
	switch s {
	case Awake:
		return "awake"
	case EnteringStandby:
		return "entering-standby"
	case Standby:
		return "standby"
	}
	return "SystemState(" + strconv.Itoa(int(s)) + ")"
}
