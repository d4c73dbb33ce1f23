package wakepattern

import (
	"encoding/binary"
	"math/bits"
)

// A TCP connection, as seen on a segment from the remote end to the local
// end, is packed into words:
//
//	IPv4: a = remote<<32 | local
//	IPv6: a, b = remote (high, low); c, d = local (high, low)
//	both: e = remote port<<48 | local port<<32 | VLAN<<16 | IP version
//
// IPv4 and IPv6 keys live in separate open-addressing tables whose slots
// hold the whole key next to the pattern index, so a lookup reads one slot
// (one cache line, usually) and compares words: two for IPv4. e is never
// zero (it holds the IP version), so e == 0 marks an empty slot.

// connKey is a packed connection key; b, c and d are zero for IPv4.
type connKey struct{ a, b, c, d, e uint64 }

// connSlot4 is one slot of the IPv4 table.
type connSlot4 struct {
	a, e uint64
	idx  uint32 // pattern index
	prio uint8
}

// connSlot6 is one slot of the IPv6 table.
type connSlot6 struct {
	a, b, c, d, e uint64
	idx           uint32
	prio          uint8
}

// connTable maps connection keys to pattern indexes and priorities.
// Linear probing, load factor ≤ 1/2, so a lookup ends at an empty slot
// after a short run.
type connTable struct {
	seed0, seed1 uint64
	mask4, mask6 uint64
	v4           []connSlot4
	v6           []connSlot6
}

// connHash mixes two words with one 64×64→128-bit multiply (the folded
// product of the seeded words, as in wyhash). The seeds are per Matcher.
func connHash(x, y, seed0, seed1 uint64) uint64 {
	hi, lo := bits.Mul64(x^seed0, y^seed1)
	return hi ^ lo
}

// hash6 mixes an IPv6 key: the two addresses independently (the
// multiplies pipeline), then both together with the ports.
func (t *connTable) hash6(a, b, c, d, e uint64) uint64 {
	rh, rl := bits.Mul64(a^t.seed0, b^t.seed1)
	lh, ll := bits.Mul64(c^t.seed1, d^t.seed0)
	hi, lo := bits.Mul64(rh^rl^e, lh^ll^t.seed0)
	return hi ^ lo
}

// tableSize returns the number of slots for n keys: a power of two, at
// least 8 and at least 2n.
func tableSize(n int) int {
	size := 8
	for size < 2*n {
		size *= 2
	}
	return size
}

// newConnTable returns a table sized for n4 IPv4 and n6 IPv6 keys.
func newConnTable(n4, n6 int, seed uint64) connTable {
	t := connTable{
		seed0: seed,
		seed1: bits.RotateLeft64(seed, 32) ^ 0x9e3779b97f4a7c15,
	}
	if n4 > 0 {
		s := tableSize(n4)
		t.mask4, t.v4 = uint64(s-1), make([]connSlot4, s)
	}
	if n6 > 0 {
		s := tableSize(n6)
		t.mask6, t.v6 = uint64(s-1), make([]connSlot6, s)
	}
	return t
}

// insert adds key k for pattern index i with priority prio; keys are
// unique (Compile checked), and the table was sized for them.
func (t *connTable) insert(k connKey, i int, prio uint8) {
	if k.e&0xffff == 4 {
		for s := connHash(k.a, k.e, t.seed0, t.seed1) & t.mask4; ; s = (s + 1) & t.mask4 {
			if t.v4[s].e == 0 {
				t.v4[s] = connSlot4{a: k.a, e: k.e, idx: uint32(i), prio: prio}
				return
			}
		}
	}
	for s := t.hash6(k.a, k.b, k.c, k.d, k.e) & t.mask6; ; s = (s + 1) & t.mask6 {
		if t.v6[s].e == 0 {
			t.v6[s] = connSlot6{a: k.a, b: k.b, c: k.c, d: k.d, e: k.e, idx: uint32(i), prio: prio}
			return
		}
	}
}

// find4 returns the pattern index and priority of the IPv4 key (a, e), or
// -1.
func (t *connTable) find4(a, e uint64) (int, uint8) {
	v4, mask := t.v4, t.mask4
	if len(v4) == 0 {
		return -1, 0
	}
	for s := connHash(a, e, t.seed0, t.seed1) & mask; ; s = (s + 1) & mask {
		sl := &v4[s&uint64(len(v4)-1)]
		if sl.a == a && sl.e == e {
			return int(sl.idx), sl.prio
		}
		if sl.e == 0 {
			return -1, 0
		}
	}
}

// find6 returns the pattern index and priority of the IPv6 key, or -1.
func (t *connTable) find6(a, b, c, d, e uint64) (int, uint8) {
	v6, mask := t.v6, t.mask6
	if len(v6) == 0 {
		return -1, 0
	}
	for s := t.hash6(a, b, c, d, e) & mask; ; s = (s + 1) & mask {
		sl := &v6[s&uint64(len(v6)-1)]
		if sl.e == e && sl.a == a && sl.b == b && sl.c == c && sl.d == d {
			return int(sl.idx), sl.prio
		}
		if sl.e == 0 {
			return -1, 0
		}
	}
}

// lookupFrame returns the pattern index and priority of the connection
// of a decoded TCP frame (source = remote, destination = local), or -1.
// The key is read from the raw headers and stays in registers.
func (t *connTable) lookupFrame(f *Frame) (int, uint8) {
	raw := f.Raw
	l3, l4 := int(f.L3Off), int(f.L4Off)
	if l4 < 0 || l4+4 > len(raw) {
		return -1, 0
	}
	var vlan uint64
	if f.NumVLAN > 0 {
		vlan = uint64(f.VLAN[0])
	}
	e := uint64(binary.BigEndian.Uint32(raw[l4:]))<<32 | vlan<<16
	switch f.EtherType {
	case EtherTypeIPv4:
		if l3 < 0 || l3+IPv4MinLen > len(raw) {
			return -1, 0
		}
		// Source and destination are adjacent: one load is remote<<32 | local.
		return t.find4(binary.BigEndian.Uint64(raw[l3+IPv4SrcOff:]), e|4)
	case EtherTypeIPv6:
		if l3 < 0 || l3+IPv6Len > len(raw) {
			return -1, 0
		}
		h := (*[IPv6Len]byte)(raw[l3:])
		return t.find6(binary.BigEndian.Uint64(h[IPv6SrcOff:]), binary.BigEndian.Uint64(h[IPv6SrcOff+8:]),
			binary.BigEndian.Uint64(h[IPv6DstOff:]), binary.BigEndian.Uint64(h[IPv6DstOff+8:]), e|6)
	}
	return -1, 0
}

// patternConnKey returns the key of segments that match t.
func patternConnKey(t *TCPConn) connKey {
	e := uint64(t.Remote.Port())<<48 | uint64(t.Local.Port())<<32 | uint64(t.VLAN)<<16
	if t.Local.Addr().Is4() {
		r, l := t.Remote.Addr().As4(), t.Local.Addr().As4()
		return connKey{
			a: uint64(binary.BigEndian.Uint32(r[:]))<<32 | uint64(binary.BigEndian.Uint32(l[:])),
			e: e | 4,
		}
	}
	r, l := t.Remote.Addr().As16(), t.Local.Addr().As16()
	return connKey{
		a: binary.BigEndian.Uint64(r[:]), b: binary.BigEndian.Uint64(r[8:]),
		c: binary.BigEndian.Uint64(l[:]), d: binary.BigEndian.Uint64(l[8:]),
		e: e | 6,
	}
}
