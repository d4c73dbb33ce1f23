package wakepattern

import "encoding/binary"

// connKey is a TCP connection as seen on a segment from the remote end to
// the local end, packed into words: IPv4 uses a (remote<<32 | local) and
// e; IPv6 uses a, b (remote) and c, d (local) and e. e packs
// remote port<<48 | local port<<32 | VLAN<<16 | IP version.
type connKey struct{ a, b, c, d, e uint64 }

// lookupFrame returns the pattern index and priority of the connection
// of a decoded TCP frame (source = remote, destination = local), or -1.
// The key stays in registers: it is never built in memory.
func (t *connTable) lookupFrame(f *Frame) (int, uint8) {
	raw := f.Raw
	l3, l4 := int(f.L3Off), int(f.L4Off)
	if l4+4 > len(raw) || l4 < 0 {
		return -1, 0
	}
	var vlan uint64
	if f.NumVLAN > 0 {
		vlan = uint64(f.VLAN[0])
	}
	ports := uint64(binary.BigEndian.Uint32(raw[l4:]))
	switch f.EtherType {
	case EtherTypeIPv4:
		if l3+IPv4MinLen > len(raw) {
			return -1, 0
		}
		h := raw[l3 : l3+IPv4MinLen]
		a := uint64(binary.BigEndian.Uint32(h[IPv4SrcOff:]))<<32 | uint64(binary.BigEndian.Uint32(h[IPv4DstOff:]))
		return t.find(a, 0, 0, 0, ports<<32|vlan<<16|4)
	case EtherTypeIPv6:
		if l3+IPv6Len > len(raw) {
			return -1, 0
		}
		h := raw[l3 : l3+IPv6Len]
		return t.find(binary.BigEndian.Uint64(h[IPv6SrcOff:]), binary.BigEndian.Uint64(h[IPv6SrcOff+8:]),
			binary.BigEndian.Uint64(h[IPv6DstOff:]), binary.BigEndian.Uint64(h[IPv6DstOff+8:]),
			ports<<32|vlan<<16|6)
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

// connHash mixes a key with independent multiplies (they pipeline) and a
// final avalanche. The seed is per Matcher.
func connHash(a, b, c, d, e, seed uint64) uint64 {
	h := a*0x9e3779b97f4a7c15 + b*0xc2b2ae3d27d4eb4f + c*0x165667b19e3779f9 +
		d*0x27d4eb2f165667c5 + (e^seed)*0x94d049bb133111eb
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return h
}

// connSlot is one slot of the open-addressing table: idx is the pattern
// index + 1 (0: empty); tag holds 24 bits of the key's hash (checked
// before the key) above the pattern's priority (low 8 bits), so a lookup
// reads no pattern.
type connSlot struct {
	tag uint32
	idx uint32
}

const connTagMask = 0xffffff00

// connTable maps connection keys to pattern indexes. Linear probing, load
// factor ≤ 1/2, so a lookup ends at an empty slot. Keys are stored by
// pattern index.
type connTable struct {
	seed  uint64
	mask  uint64
	slots []connSlot
	keys  []connKey // by pattern index; zero for other kinds
}

func newConnTable(n, npatterns int, seed uint64) connTable {
	size := 8
	for size < 2*n {
		size *= 2
	}
	return connTable{
		seed:  seed,
		mask:  uint64(size - 1),
		slots: make([]connSlot, size),
		keys:  make([]connKey, npatterns),
	}
}

// insert adds key for pattern index i with priority prio; keys are
// unique (Compile checked).
func (t *connTable) insert(k connKey, i int, prio uint8) {
	t.keys[i] = k
	h := connHash(k.a, k.b, k.c, k.d, k.e, t.seed)
	for s := h & t.mask; ; s = (s + 1) & t.mask {
		if t.slots[s].idx == 0 {
			t.slots[s] = connSlot{tag: uint32(h>>32)&connTagMask | uint32(prio), idx: uint32(i + 1)}
			return
		}
	}
}

// find returns the pattern index of the key (a, b, c, d, e) and its
// priority, or -1.
func (t *connTable) find(a, b, c, d, e uint64) (int, uint8) {
	h := connHash(a, b, c, d, e, t.seed)
	tag := uint32(h>>32) & connTagMask
	slots, keys := t.slots, t.keys
	for s := h & t.mask; ; s = (s + 1) & t.mask {
		sl := slots[s]
		if sl.idx == 0 {
			return -1, 0
		}
		if sl.tag&connTagMask == tag {
			k := &keys[sl.idx-1]
			if k.a == a && k.e == e && k.b == b && k.c == c && k.d == d {
				return int(sl.idx - 1), uint8(sl.tag)
			}
		}
	}
}
