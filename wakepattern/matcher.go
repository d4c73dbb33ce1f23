package wakepattern

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"sort"
)

// noRank is the rank of "no match". A pattern's rank orders matches:
// (255-priority)<<32 | index, so a lower rank wins (higher priority, then
// lower index).
const noRank = ^uint64(0)

func rankOf(p *Pattern, i int) uint64 { return rank(p.Priority, i) }

func rank(prio uint8, i int) uint64 { return uint64(255-prio)<<32 | uint64(uint32(i)) }

// Matcher is a compiled, immutable pattern set. It is safe for concurrent
// use; swap sets with atomic.Pointer[Matcher].
type Matcher struct {
	patterns []Pattern

	nConn int
	conn  connTable

	syn     []synEntry // by rank
	synBest uint64

	bitmap bitmapSet

	magic     []magicEntry // by rank
	magicBest uint64

	othersBest uint64 // min(synBest, bitmap.best, magicBest)
}

type synEntry struct {
	rank    uint64
	v6      bool
	anyAddr bool
	addr    netip.Addr
	port    uint16 // 0: any
}

type magicEntry struct {
	rank uint64
	seq  []byte // 6×0xff, 16×MAC, password
}

// Compile checks patterns against caps (see Capabilities.Check; also
// duplicate IDs, duplicate connections and the count limits) and builds
// an immutable Matcher from a copy of them.
func Compile(patterns []Pattern, caps Capabilities) (*Matcher, error) {
	if err := caps.checkSet(patterns); err != nil {
		return nil, err
	}
	m := &Matcher{
		patterns:  make([]Pattern, len(patterns)),
		synBest:   noRank,
		magicBest: noRank,
	}
	var bitmaps []*Bitmap
	var bitmapRanks []uint64
	var n4, n6 int
	for i := range patterns {
		p := patterns[i]
		p.Bitmap.Bytes = bytes.Clone(p.Bitmap.Bytes)
		p.Bitmap.Mask = bytes.Clone(p.Bitmap.Mask)
		p.Magic.Password = bytes.Clone(p.Magic.Password)
		m.patterns[i] = p
		if p.Kind == KindTCPConn {
			if p.Conn.Local.Addr().Is4() {
				n4++
			} else {
				n6++
			}
		}
	}
	m.nConn = n4 + n6
	if m.nConn > 0 {
		m.conn = newConnTable(n4, n6, rand.Uint64())
	}
	for i := range m.patterns {
		p := &m.patterns[i]
		r := rankOf(p, i)
		switch p.Kind {
		case KindTCPConn:
			m.conn.insert(patternConnKey(&p.Conn), i, p.Priority)
		case KindTCPSYN:
			a := p.SYN.Local.Addr()
			e := synEntry{rank: r, v6: p.SYN.IPv6, port: p.SYN.Local.Port()}
			if !a.IsValid() || a.IsUnspecified() {
				e.anyAddr = true
			} else {
				e.addr, e.v6 = a, a.Is6()
			}
			m.syn = append(m.syn, e)
			m.synBest = min(m.synBest, r)
		case KindBitmap:
			bitmaps = append(bitmaps, &p.Bitmap)
			bitmapRanks = append(bitmapRanks, r)
		case KindMagic:
			seq := bytes.Repeat([]byte{0xff}, 6)
			for range 16 {
				seq = append(seq, p.Magic.MAC[:]...)
			}
			seq = append(seq, p.Magic.Password...)
			m.magic = append(m.magic, magicEntry{rank: r, seq: seq})
			m.magicBest = min(m.magicBest, r)
		}
	}
	sort.Slice(m.syn, func(i, j int) bool { return m.syn[i].rank < m.syn[j].rank })
	sort.Slice(m.magic, func(i, j int) bool { return m.magic[i].rank < m.magic[j].rank })
	m.bitmap = newBitmapSet(bitmaps, bitmapRanks)
	m.othersBest = min(m.synBest, m.bitmap.best, m.magicBest)
	return m, nil
}

// Len returns the number of patterns.
func (m *Matcher) Len() int { return len(m.patterns) }

// Pattern returns pattern i (as given to Compile), owned by the Matcher:
// read only.
func (m *Matcher) Pattern(i int) *Pattern { return &m.patterns[i] }

// Patterns returns a copy of the pattern set.
func (m *Matcher) Patterns() []Pattern {
	out := make([]Pattern, len(m.patterns))
	for i, p := range m.patterns {
		p.Bitmap.Bytes = bytes.Clone(p.Bitmap.Bytes)
		p.Bitmap.Mask = bytes.Clone(p.Bitmap.Mask)
		p.Magic.Password = bytes.Clone(p.Magic.Password)
		out[i] = p
	}
	return out
}

// Match reports whether the decoded frame f matches a pattern and fills r
// (r is zeroed when nothing matches). It allocates nothing.
//
// Rules:
//   - TCP connection and SYN patterns match only frames with IsTCP (status
//     OK, not a fragment). A connection pattern matches segments from
//     Remote to Local (source = Remote, destination = Local) whose VLAN
//     equals the pattern's: the outermost tag's ID (the only one when
//     there is one tag); VLAN 0 matches untagged and priority-tagged
//     (VID 0) frames only. A SYN pattern matches SYN without ACK to its
//     local address and port, either of which may be a wildcard, on any
//     VLAN.
//   - Bitmap and magic patterns match the raw bytes whatever the decode
//     status (a device compares bytes, it does not parse). A bitmap
//     matches when every masked byte exists in the frame and is equal; a
//     frame shorter than 8 bytes matches no bitmap.
//   - When several patterns match, the highest Priority wins, then the
//     lowest index.
//
// For connection and SYN patterns r also carries the segment's class and
// the seq/ack/payload fields and offsets.
func (m *Matcher) Match(f *Frame, r *Result) bool {
	i, prio := -1, uint8(0)
	tcp := f.IsTCP()
	if tcp && m.nConn > 0 {
		i, prio = m.conn.lookupFrame(f)
	}
	return m.finish(f, tcp, i, prio, r)
}

// finish completes Match given the connection lookup: pattern index i
// (-1: none) with priority prio; tcp is f.IsTCP().
func (m *Matcher) finish(f *Frame, tcp bool, i int, prio uint8, r *Result) bool {
	best := noRank
	segment := false // the best match is a connection or SYN pattern
	if i >= 0 {
		best, segment = rank(prio, i), true
	}
	if m.othersBest < best {
		best, segment = m.matchOthers(f, tcp, best, segment)
	}
	if best == noRank {
		*r = Result{}
		return false
	}
	// Field by field: a composite literal would be built on the stack and
	// copied.
	i = int(uint32(best))
	r.Pattern = &m.patterns[i]
	r.Index = i
	if !segment {
		r.Class, r.Seq, r.Ack, r.SeqOff, r.AckOff, r.PayloadOff, r.PayloadLen = 0, 0, 0, 0, 0, 0, 0
		return true
	}
	r.Class = classify(f)
	r.Seq, r.Ack = f.Seq, f.Ack
	r.SeqOff, r.AckOff = f.L4Off+TCPSeqOff, f.L4Off+TCPAckOff
	r.PayloadOff, r.PayloadLen = f.PayloadOff, f.PayloadLen
	return true
}

// matchOthers looks for a SYN (tcp: f IsTCP), bitmap or magic pattern
// that matches f and ranks better than best.
func (m *Matcher) matchOthers(f *Frame, tcp bool, best uint64, segment bool) (uint64, bool) {
	// A connection attempt is a SYN without ACK and without RST (a SYN|RST
	// segment is invalid and discarded by a listening socket, RFC 9293
	// 3.10.7.2), so it never wakes the host.
	if tcp && m.synBest < best && f.TCPFlags&(TCPFlagSYN|TCPFlagACK|TCPFlagRST) == TCPFlagSYN {
		for i := range m.syn {
			e := &m.syn[i]
			if e.rank >= best {
				break
			}
			if e.matches(f) {
				best, segment = e.rank, true
				break
			}
		}
	}
	if m.bitmap.best < best {
		if b := m.bitmap.match(f.Raw, best); b < best {
			best, segment = b, false
		}
	}
	if m.magicBest < best {
		for i := range m.magic {
			e := &m.magic[i]
			if e.rank >= best {
				break
			}
			if bytes.Index(f.Raw, e.seq) >= 0 {
				best, segment = e.rank, false
				break
			}
		}
	}
	return best, segment
}

// MatchFrame decodes b into f (without checksum verification) and
// matches it: Decode followed by Match. Callers that want checksums
// verified call Decode with VerifyChecksums and then Match.
func (m *Matcher) MatchFrame(b []byte, f *Frame, r *Result) bool {
	if len(b) > MaxFrameLen {
		b = b[:MaxFrameLen]
	}
	a, e, ok := f.decodeFast(b)
	if !ok {
		f.decodeGeneral(b, DecodeOptions{})
		return m.Match(f, r)
	}
	if e == 0 {
		return m.Match(f, r) // IPv6: the key is read from the frame
	}
	// The fast path decoded an IPv4 TCP segment (IsTCP) and returned its
	// connection key: look it up without reading the frame again.
	i, prio := -1, uint8(0)
	if m.nConn > 0 {
		i, prio = m.conn.find4(a, e)
	}
	return m.finish(f, true, i, prio, r)
}

func (e *synEntry) matches(f *Frame) bool {
	if (f.EtherType == EtherTypeIPv6) != e.v6 {
		return false
	}
	if e.port != 0 && e.port != f.DstPort {
		return false
	}
	return e.anyAddr || e.addr == f.DstIP
}

// classify returns the class of a decoded TCP segment: RST, then SYN,
// then data (payload, with or without FIN), then FIN, else pure ACK.
func classify(f *Frame) Class {
	switch {
	case f.TCPFlags&TCPFlagRST != 0:
		return ClassRST
	case f.TCPFlags&TCPFlagSYN != 0:
		return ClassSYN
	case f.PayloadLen > 0:
		return ClassData
	case f.TCPFlags&TCPFlagFIN != 0:
		return ClassFIN
	}
	return ClassPureACK
}
