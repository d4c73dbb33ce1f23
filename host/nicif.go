package host

import (
	"net/netip"
	"time"

	"github.com/standbynic/standbynic/offload"
)

// NIC is what the host needs of its connected-standby network adapter.
// The host drives it from one goroutine; implementations must be safe for
// that and for Wakes being read concurrently.
type NIC interface {
	// Slots returns the number of hardware keep-alive slots.
	Slots() int
	// Track asks the NIC to learn, while awake, the TCP state of the
	// connection local↔remote (MACs, the peer's TSval) from the segments
	// it forwards.
	Track(local, remote netip.AddrPort) error
	// Untrack stops learning the connection.
	Untrack(local, remote netip.AddrPort)
	// Learned returns what the NIC learned of a tracked connection; ok is
	// false when it saw no segment of it.
	Learned(local, remote netip.AddrPort) (Learned, bool)
	// Arm arms a hardware slot for a frozen connection and returns its id.
	Arm(snap offload.Snapshot, spec offload.Spec) (slot int, err error)
	// Disarm frees a slot and returns its final report (books included).
	Disarm(slot int) (offload.Report, error)
	// Sleep enters D3: nothing reaches the host until a wake.
	Sleep() error
	// Resume returns to D0 and delivers the frames buffered since the
	// wake, in order.
	Resume() error
	// Wakes delivers the NIC's wake events.
	Wakes() <-chan NICWake
}

// Learned is the part of the NIC's view of a connection the host cannot
// read from its own socket.
type Learned struct {
	LocalMAC, RemoteMAC [6]byte
	// TSRecent is the peer's last TSval; HasTS says timestamps were seen.
	TSRecent uint32
	HasTS    bool
}

// NICWake is a wake event of the NIC.
type NICWake struct {
	// Slot is the slot that woke the host; 0 when no slot did (a wake
	// pattern or a host request).
	Slot int
	// Reason is the slot's reason (zero for non-slot wakes).
	Reason offload.Reason
	// At is the NIC-clock time of the wake; RxTime when the wake packet
	// was received (zero without a packet).
	At     time.Duration
	RxTime time.Time
}
