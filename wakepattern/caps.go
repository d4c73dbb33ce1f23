package wakepattern

import (
	"errors"
	"fmt"
	"net/netip"
)

// Hard limits of the pattern model; a device's Capabilities may advertise
// less, never more.
const (
	// BitmapSizeLimit is the largest bitmap pattern (bytes compared).
	BitmapSizeLimit = 256
	// BitmapOffsetLimit is the largest bitmap offset: a standard frame
	// without FCS is 1514 bytes.
	BitmapOffsetLimit = 1514
	// MaxVLANID is the largest usable 802.1Q VLAN ID (4095 is reserved).
	MaxVLANID = 4094
)

// ErrLimit is matched (errors.Is) by every error that reports a value
// beyond a limit of Capabilities, so a caller can fall back (e.g. from a
// hardware to a software slot).
var ErrLimit = errors.New("limit exceeded")

// LimitError reports a value beyond a limit: "bitmap.offset 1600 exceeds
// limit 1514". Errors about one pattern wrap it with "pattern <id>: ".
type LimitError struct {
	Field string // e.g. "bitmap.offset", "tcp-conn count"
	Value int
	Limit int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s %d exceeds limit %d", e.Field, e.Value, e.Limit)
}

// Is reports whether target is ErrLimit.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// Capabilities are the limits a device advertises for wake patterns, in
// the manner of NDIS power-management capabilities. A pattern set that
// exceeds them is rejected by Compile with an error that names the field,
// the value and the limit.
type Capabilities struct {
	// MaxPatterns is the number of patterns of all kinds together.
	MaxPatterns int
	// MaxConnPatterns is the number of TCP connection patterns (hardware
	// keep-alive slots each need one).
	MaxConnPatterns int
	// MaxSYNPatterns is the number of TCP SYN patterns.
	MaxSYNPatterns int
	// MaxBitmapPatterns is the number of bitmap patterns.
	MaxBitmapPatterns int
	// MaxBitmapSize is the largest bitmap pattern in bytes
	// (≤ BitmapSizeLimit).
	MaxBitmapSize int
	// MaxBitmapOffset is the largest offset of a bitmap pattern from the
	// start of the frame (≤ BitmapOffsetLimit).
	MaxBitmapOffset int
	// MaxMagicPatterns is the number of magic-packet patterns.
	MaxMagicPatterns int
	// MaxPasswordLen is the longest SecureOn password: 0 (not supported),
	// 4 or 6.
	MaxPasswordLen int
}

// DefaultCapabilities returns the emulator's limits. The connection table
// is a hash table in host memory, so it takes 1,000,000 connection
// patterns (a scale test, not a NIC: real parts hold 1–20). Bitmaps follow
// the larger NDIS miniports: 64 patterns of up to 256 bytes at an offset up
// to 1514 (iwlwifi offers 20×128 B, ath11k 22×148 B at offset ≤ 128).
// 64 SYN patterns, 8 magic patterns with a SecureOn password of up to 6
// bytes. MaxPatterns is the sum of the per-kind limits.
func DefaultCapabilities() Capabilities {
	c := Capabilities{
		MaxConnPatterns:   1_000_000,
		MaxSYNPatterns:    64,
		MaxBitmapPatterns: 64,
		MaxBitmapSize:     BitmapSizeLimit,
		MaxBitmapOffset:   BitmapOffsetLimit,
		MaxMagicPatterns:  8,
		MaxPasswordLen:    6,
	}
	c.MaxPatterns = c.MaxConnPatterns + c.MaxSYNPatterns + c.MaxBitmapPatterns + c.MaxMagicPatterns
	return c
}

// Validate reports whether the capabilities themselves are possible.
func (c Capabilities) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxPatterns", c.MaxPatterns},
		{"MaxConnPatterns", c.MaxConnPatterns},
		{"MaxSYNPatterns", c.MaxSYNPatterns},
		{"MaxBitmapPatterns", c.MaxBitmapPatterns},
		{"MaxBitmapSize", c.MaxBitmapSize},
		{"MaxBitmapOffset", c.MaxBitmapOffset},
		{"MaxMagicPatterns", c.MaxMagicPatterns},
		{"MaxPasswordLen", c.MaxPasswordLen},
	} {
		if f.v < 0 {
			return fmt.Errorf("capabilities: %s %d is negative", f.name, f.v)
		}
	}
	if c.MaxBitmapSize > BitmapSizeLimit {
		return fmt.Errorf("capabilities: MaxBitmapSize %d exceeds limit %d", c.MaxBitmapSize, BitmapSizeLimit)
	}
	if c.MaxBitmapOffset > BitmapOffsetLimit {
		return fmt.Errorf("capabilities: MaxBitmapOffset %d exceeds limit %d", c.MaxBitmapOffset, BitmapOffsetLimit)
	}
	switch c.MaxPasswordLen {
	case 0, 4, 6:
	default:
		return fmt.Errorf("capabilities: MaxPasswordLen %d is not 0, 4 or 6", c.MaxPasswordLen)
	}
	return nil
}

// Check reports whether one pattern is well formed and within c. The error
// starts with "pattern <id>:" and names the field, the value and the
// limit, e.g. "pattern 7: bitmap.offset 1600 exceeds limit 1514". Limits
// on the number of patterns and duplicates are checked by Compile.
func (c Capabilities) Check(p *Pattern) error {
	if err := c.check(p); err != nil {
		return fmt.Errorf("pattern %d: %w", p.ID, err)
	}
	return nil
}

func (c Capabilities) check(p *Pattern) error {
	if !p.Kind.Valid() {
		return fmt.Errorf("kind %d is invalid", uint8(p.Kind))
	}
	if p.Kind != KindTCPConn && !connZero(&p.Conn) {
		return fmt.Errorf("conn is set on a %s pattern", p.Kind)
	}
	if p.Kind != KindTCPSYN && p.SYN != (TCPSYN{}) {
		return fmt.Errorf("syn is set on a %s pattern", p.Kind)
	}
	if p.Kind != KindBitmap && (p.Bitmap.Offset != 0 || p.Bitmap.Bytes != nil || p.Bitmap.Mask != nil) {
		return fmt.Errorf("bitmap is set on a %s pattern", p.Kind)
	}
	if p.Kind != KindMagic && (p.Magic.MAC != [6]byte{} || p.Magic.Password != nil) {
		return fmt.Errorf("magic is set on a %s pattern", p.Kind)
	}
	switch p.Kind {
	case KindTCPConn:
		return c.checkConn(&p.Conn)
	case KindTCPSYN:
		return c.checkSYN(&p.SYN)
	case KindBitmap:
		return c.checkBitmap(&p.Bitmap)
	default:
		return c.checkMagic(&p.Magic)
	}
}

func connZero(t *TCPConn) bool { return *t == TCPConn{} }

// checkHostAddr checks an address that names one end of a connection.
func checkHostAddr(field string, a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("%s: address missing", field)
	case a.Zone() != "":
		return fmt.Errorf("%s: address %v has a zone", field, a)
	case a.Is4In6():
		return fmt.Errorf("%s: address %v is IPv4-mapped; use the IPv4 form", field, a)
	case a.IsUnspecified(), a.IsMulticast():
		return fmt.Errorf("%s: address %v is not a unicast address", field, a)
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%s: address %v is not a unicast address", field, a)
	}
	return nil
}

func (c Capabilities) checkConn(t *TCPConn) error {
	if err := checkHostAddr("conn.local", t.Local.Addr()); err != nil {
		return err
	}
	if err := checkHostAddr("conn.remote", t.Remote.Addr()); err != nil {
		return err
	}
	if t.Local.Addr().Is4() != t.Remote.Addr().Is4() {
		return fmt.Errorf("conn: local %v and remote %v are of different families", t.Local.Addr(), t.Remote.Addr())
	}
	if t.Local.Port() == 0 {
		return errors.New("conn.local: port 0")
	}
	if t.Remote.Port() == 0 {
		return errors.New("conn.remote: port 0")
	}
	if t.VLAN > MaxVLANID {
		return &LimitError{"conn.vlan", int(t.VLAN), MaxVLANID}
	}
	return nil
}

func (c Capabilities) checkSYN(s *TCPSYN) error {
	a := s.Local.Addr()
	if !a.IsValid() {
		return nil // any address of the family s.IPv6 selects
	}
	switch {
	case a.Zone() != "":
		return fmt.Errorf("syn.local: address %v has a zone", a)
	case a.Is4In6():
		return fmt.Errorf("syn.local: address %v is IPv4-mapped; use the IPv4 form", a)
	case a.IsMulticast():
		return fmt.Errorf("syn.local: address %v is not a unicast address", a)
	case a.Is6() != s.IPv6:
		return fmt.Errorf("syn: ipv6 %v does not match the family of local %v", s.IPv6, a)
	}
	return nil
}

func (c Capabilities) checkBitmap(b *Bitmap) error {
	if b.Offset < 0 {
		return fmt.Errorf("bitmap.offset %d is negative", b.Offset)
	}
	if b.Offset > c.MaxBitmapOffset {
		return &LimitError{"bitmap.offset", b.Offset, c.MaxBitmapOffset}
	}
	if len(b.Bytes) == 0 {
		return errors.New("bitmap.bytes is empty")
	}
	if len(b.Bytes) > c.MaxBitmapSize {
		return &LimitError{"bitmap.bytes length", len(b.Bytes), c.MaxBitmapSize}
	}
	need := (len(b.Bytes) + 7) / 8
	if len(b.Mask) > need {
		return fmt.Errorf("bitmap.mask length %d exceeds %d needed for %d bytes", len(b.Mask), need, len(b.Bytes))
	}
	if len(b.Mask) < need {
		return fmt.Errorf("bitmap.mask length %d is short of %d needed for %d bytes", len(b.Mask), need, len(b.Bytes))
	}
	if extra := len(b.Bytes) % 8; extra != 0 && b.Mask[need-1]>>extra != 0 {
		return fmt.Errorf("bitmap.mask selects bytes past the %d given", len(b.Bytes))
	}
	selected := false
	for _, m := range b.Mask {
		selected = selected || m != 0
	}
	if !selected {
		return errors.New("bitmap.mask selects no byte (it would match every frame)")
	}
	return nil
}

func (c Capabilities) checkMagic(m *Magic) error {
	if m.MAC == [6]byte{} {
		return errors.New("magic.mac is zero")
	}
	switch n := len(m.Password); {
	case n != 0 && n != 4 && n != 6:
		return fmt.Errorf("magic.password length %d is not 0, 4 or 6", n)
	case n > c.MaxPasswordLen:
		return &LimitError{"magic.password length", n, c.MaxPasswordLen}
	}
	return nil
}

// connIdent is a connection as a comparable value, for duplicate checks.
type connIdent struct {
	local, remote netip.AddrPort
	vlan          uint16
}

// checkSet checks every pattern and the set: counts against the limits,
// duplicate IDs, duplicate connections.
func (c Capabilities) checkSet(ps []Pattern) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if len(ps) > c.MaxPatterns {
		return &LimitError{"pattern count", len(ps), c.MaxPatterns}
	}
	var counts [len(kindNames)]int
	ids := make(map[uint32]int, len(ps))
	conns := make(map[connIdent]int)
	for i := range ps {
		p := &ps[i]
		if err := c.Check(p); err != nil {
			return err
		}
		if j, ok := ids[p.ID]; ok {
			return fmt.Errorf("pattern %d: duplicate id (patterns at index %d and %d)", p.ID, j, i)
		}
		ids[p.ID] = i
		counts[p.Kind]++
		if p.Kind == KindTCPConn {
			k := connIdent{p.Conn.Local, p.Conn.Remote, p.Conn.VLAN}
			if j, ok := conns[k]; ok {
				return fmt.Errorf("pattern %d: conn duplicates pattern %d", p.ID, ps[j].ID)
			}
			conns[k] = i
		}
	}
	for _, l := range []struct {
		kind  Kind
		field string
		limit int
	}{
		{KindTCPConn, "tcp-conn count", c.MaxConnPatterns},
		{KindTCPSYN, "tcp-syn count", c.MaxSYNPatterns},
		{KindBitmap, "bitmap count", c.MaxBitmapPatterns},
		{KindMagic, "magic count", c.MaxMagicPatterns},
	} {
		if counts[l.kind] > l.limit {
			return &LimitError{l.field, counts[l.kind], l.limit}
		}
	}
	return nil
}
