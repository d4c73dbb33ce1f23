package offload

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Snapshot is the state of one established TCP connection as the host read
// it (TCP_REPAIR on Linux) when it quiesced the socket: nothing unsent and
// nothing unread, so SND.UNA = SND.NXT.
type Snapshot struct {
	// LocalMAC is the host's MAC; RemoteMAC is the next hop's (the peer or
	// the router towards it).
	LocalMAC, RemoteMAC [6]byte
	// VLAN is the 802.1Q VLAN ID of the connection; 0 means untagged.
	VLAN uint16

	// Local and Remote are the connection's endpoints: both IPv4 or both
	// IPv6 (an IPv4-mapped IPv6 address is not accepted).
	Local, Remote netip.AddrPort

	// SndNxt and RcvNxt are the next sequence number to send and to receive.
	SndNxt, RcvNxt uint32
	// SndWnd is the peer's receive window and RcvWnd ours, in bytes
	// (already scaled).
	SndWnd, RcvWnd uint32
	// SndWScale is the peer's window-scale shift (applied to the windows
	// it advertises), RcvWScale ours (applied to the window we advertise).
	SndWScale, RcvWScale uint8

	// Timestamps holds the RFC 7323 timestamp state.
	Timestamps Timestamps

	// TTL is the IPv4 TTL or IPv6 hop limit of the segments we send; TOS is
	// the IPv4 TOS or IPv6 traffic class.
	TTL, TOS uint8
	// MSS is the largest segment payload the peer accepts.
	MSS uint16
}

// Timestamps is the RFC 7323 state of a connection. When Enabled, every
// segment the engine sends carries the option (NOP NOP TS), with a TSval
// that continues the host's timestamp clock: Val at time At on the engine's
// clock, advancing Rate ticks per second.
type Timestamps struct {
	Enabled bool
	// Val is the last TSval the host used, read at At (engine clock).
	Val uint32
	At  time.Duration
	// Rate is the host's timestamp clock in Hz (Linux: 1000).
	Rate uint32
	// Recent is TS.Recent, the peer's TSval to echo in TSecr.
	Recent uint32
}

// Snapshot limits.
const (
	// MaxWScale is the largest window-scale shift (RFC 7323 §2.3).
	MaxWScale = 14
	// MaxTSRate is the fastest timestamp clock accepted (1 µs ticks).
	MaxTSRate = 1_000_000
	// MinMSS is the smallest MSS accepted (RFC 9293's IPv4 minimum
	// datagram 576 − 40 would be 536; links may clamp lower, 88 is what
	// Linux accepts as TCP_MIN_MSS).
	MinMSS = 88
	// MaxVLAN is the largest 802.1Q VLAN ID (4095 is reserved).
	MaxVLAN = 4094
)

// ErrInvalidSnapshot is wrapped by every error of Snapshot.Validate.
var ErrInvalidSnapshot = errors.New("invalid snapshot")

func snapErr(field string, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidSnapshot, field, fmt.Sprintf(format, args...))
}

// Validate reports the first field of s that cannot describe an
// established connection, naming the field and the limit.
func (s *Snapshot) Validate() error {
	var zero [6]byte
	if s.LocalMAC == zero {
		return snapErr("LocalMAC", "zero")
	}
	if s.RemoteMAC == zero {
		return snapErr("RemoteMAC", "zero")
	}
	if s.RemoteMAC[0]&1 != 0 {
		return snapErr("RemoteMAC", "%x is a group address", s.RemoteMAC)
	}
	if s.VLAN > MaxVLAN {
		return snapErr("VLAN", "%d above %d", s.VLAN, MaxVLAN)
	}
	if err := checkEndpoint("Local", s.Local); err != nil {
		return err
	}
	if err := checkEndpoint("Remote", s.Remote); err != nil {
		return err
	}
	if s.Local.Addr().Is4() != s.Remote.Addr().Is4() {
		return snapErr("Remote", "%v is not of the family of Local %v", s.Remote, s.Local)
	}
	if s.SndWScale > MaxWScale {
		return snapErr("SndWScale", "%d above %d", s.SndWScale, MaxWScale)
	}
	if s.RcvWScale > MaxWScale {
		return snapErr("RcvWScale", "%d above %d", s.RcvWScale, MaxWScale)
	}
	if s.RcvWnd > 0xffff<<s.RcvWScale {
		return snapErr("RcvWnd", "%d above %d (65535 << RcvWScale)", s.RcvWnd, 0xffff<<s.RcvWScale)
	}
	if s.SndWnd > 0xffff<<s.SndWScale {
		return snapErr("SndWnd", "%d above %d (65535 << SndWScale)", s.SndWnd, 0xffff<<s.SndWScale)
	}
	if ts := s.Timestamps; ts.Enabled {
		if ts.Rate == 0 || ts.Rate > MaxTSRate {
			return snapErr("Timestamps.Rate", "%d Hz outside 1..%d", ts.Rate, MaxTSRate)
		}
		if ts.At < 0 {
			return snapErr("Timestamps.At", "%v negative", ts.At)
		}
	}
	if s.TTL == 0 {
		return snapErr("TTL", "zero")
	}
	if s.MSS < MinMSS {
		return snapErr("MSS", "%d below %d", s.MSS, MinMSS)
	}
	return nil
}

func checkEndpoint(field string, ap netip.AddrPort) error {
	a := ap.Addr()
	switch {
	case !a.IsValid():
		return snapErr(field, "no address")
	case a.Is4In6():
		return snapErr(field, "%v is IPv4-mapped IPv6", a)
	case a.IsUnspecified() || a.IsMulticast():
		return snapErr(field, "%v is not a unicast address", a)
	case a.Zone() != "":
		return snapErr(field, "%v has a zone", a)
	case ap.Port() == 0:
		return snapErr(field, "port 0")
	}
	return nil
}
