package xdp

import (
	"errors"
	"fmt"
	"net/netip"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// Limits.
const (
	// DefaultMaxSlots is Config.MaxSlots when it is 0.
	DefaultMaxSlots = 4096
	// MaxSlots caps Config.MaxSlots (the slots map is memory-mapped:
	// 64 bytes a slot).
	MaxSlots = 1 << 20
)

// ErrUnsupported is matched (errors.Is) when the platform or the kernel
// cannot load or attach the program: the caller falls back to the
// classic-BPF socket filter.
var ErrUnsupported = errors.New("xdp not supported")

// Config is what the program is generated from. The zero value is valid:
// no patterns, no addresses (every frame that could match nothing is
// dropped).
type Config struct {
	// Patterns is the same set the classic-BPF prefilter is compiled from
	// (slot patterns, extra wake patterns, coalescing filters): the
	// program passes at least every frame the Matcher for it accepts.
	// Bitmap and magic patterns look at raw bytes, so with one the
	// program drops nothing it does not absorb.
	Patterns []wp.Pattern
	// ARPFor: ARP requests for these IPv4 addresses pass (at most
	// MaxARPAddrs). Neighbour solicitations always pass.
	ARPFor []netip.Addr
	// MaxSlots is the number of slot indices (1..MaxSlots); 0 means
	// DefaultMaxSlots.
	MaxSlots int
}

func (c *Config) maxSlots() (int, error) {
	switch n := c.MaxSlots; {
	case n == 0:
		return DefaultMaxSlots, nil
	case n < 0 || n > MaxSlots:
		return 0, fmt.Errorf("xdp: max slots %d: limit 1..%d", n, MaxSlots)
	default:
		return n, nil
	}
}

// Slot is an armed slot's connection and its expected reply.
type Slot struct {
	// Conn is the connection (Local is the host's end). A slot on a VLAN
	// other than 0 never absorbs (see doc.go).
	Conn wp.TCPConn
	// RcvNxt and SndNxt are the slot's RCV.NXT and SND.NXT: the exact
	// reply has SEQ = RcvNxt and ACK = SndNxt.
	RcvNxt, SndNxt uint32
	// Timestamps: the connection uses RFC 7323 timestamps; a reply whose
	// TSval is older than TSRecent passes (PAWS, decided in userspace).
	Timestamps bool
	TSRecent   uint32
	// Reply: an exact pure ACK is the keep-alive's reply (a TCP probe, a
	// WebSocket Pong or responder slot); otherwise it is counted as an
	// ACK, as the offload engine counts it.
	Reply bool
}

// SlotCounters are a slot's counters in the program.
type SlotCounters struct {
	// Replies and ACKs are the exact pure ACKs absorbed, as the offload
	// engine's RepliesAbsorbed and ACKsAbsorbed.
	Replies, ACKs uint64
	// Passed counts the connection's frames handed to userspace.
	Passed uint64
}

// connKey is the conns key of a connection's segments from the remote
// end.
func connKey(c *wp.TCPConn) ([keyLen]byte, error) {
	var k [keyLen]byte
	l, r := c.Local.Addr(), c.Remote.Addr()
	if !l.IsValid() || !r.IsValid() || l.Is4() != r.Is4() || l.Is4In6() || r.Is4In6() {
		return k, fmt.Errorf("xdp: conn %v→%v: want two addresses of one family", c.Local, c.Remote)
	}
	fam := uint32(6)
	if l.Is4() {
		fam = 4
		s, d := r.As4(), l.As4()
		copy(k[0:], s[:])
		copy(k[16:], d[:])
	} else {
		s, d := r.As16(), l.As16()
		copy(k[0:], s[:])
		copy(k[16:], d[:])
	}
	k[keyPortsOff] = byte(c.Remote.Port() >> 8)
	k[keyPortsOff+1] = byte(c.Remote.Port())
	k[keyPortsOff+2] = byte(c.Local.Port() >> 8)
	k[keyPortsOff+3] = byte(c.Local.Port())
	native.PutUint32(k[keyFamilyOff:], fam)
	return k, nil
}
