package host

import (
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// NIC is what the host needs of its connected-standby network adapter:
// the method set of *nic.Device it uses, so a device is passed as it is
// (Config.NIC = dev) and a remote device (the control API over the NIC's
// Unix socket) implements the same twelve methods. Connections are named
// with the host's end as Local.
//
// The host calls the NIC from its state machine, one call at a time,
// and reads Wakes concurrently; an implementation must allow that.
//
// The order the host keeps (the NIC must deliver nothing to the host in
// D3, so a frozen socket never receives a frame):
//
//	standby entry   Freeze socket → Arm → AddCoalescing (software
//	                channels) → Sleep
//	wake            [Wake, when the host wakes on its own] → Disarm →
//	                Thaw socket → RemoveCoalescing → Resume
type NIC interface {
	// Capabilities returns the device's limits; Slots is the number of
	// hardware keep-alive slots.
	Capabilities() nic.Capabilities
	// Track asks the NIC to learn, while awake (D0), the TCP state of a
	// connection from the segments it forwards: the MACs, the peer's
	// TSval, the sequence numbers both ways. Untrack stops it.
	Track(c wp.TCPConn) error
	Untrack(c wp.TCPConn) error
	// Learned returns what the NIC learned of a tracked connection; false
	// when it is not tracked.
	Learned(c wp.TCPConn) (nic.Learned, bool)
	// Arm arms a hardware slot for a frozen connection; Disarm frees it
	// and returns its final report, books included.
	Arm(s nic.SlotConfig) (nic.SlotID, error)
	Disarm(id nic.SlotID) (offload.Report, error)
	// AddCoalescing registers a receive-coalescing filter for a
	// connection the host keeps alive itself: in D3 its frames are held,
	// without a wake, until the next Resume. RemoveCoalescing removes it.
	AddCoalescing(c wp.TCPConn) error
	RemoveCoalescing(c wp.TCPConn) error
	// Sleep enters D3: nothing reaches the host until a wake.
	Sleep() error
	// Wake wakes the NIC on the host's behalf (the host's own timer, the
	// user) so that Resume may follow; it fails when the NIC is not in
	// D3 (already woken).
	Wake() error
	// Resume returns to D0 and delivers, in order, the frames held since
	// D3 (coalesced) and since the wake.
	Resume() error
	// Wakes delivers the NIC's wake events.
	Wakes() <-chan nic.WakeEvent
}

var _ NIC = (*nic.Device)(nil)
