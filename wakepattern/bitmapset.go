package wakepattern

import (
	"encoding/binary"
	"math/bits"
	"sort"
)

// Bitmap patterns are compiled into 64-bit chunks: (frame offset, mask,
// value) with the masked bytes of 8 consecutive frame bytes. Chunks are
// aligned to 8-byte frame offsets, so patterns at different offsets share
// chunk positions; the last chunk is moved back to end at the pattern's
// last masked byte so no load runs past it.
//
// Each pattern chooses a key chunk: one that few other patterns share
// (most selective). Patterns whose key chunks have the same position and
// mask form a group; a group is a small hash table from the chunk value to
// the patterns with that value. A frame is checked with one load and one
// probe per group, and only the candidates found are checked fully (their
// other chunks, least shared first). A frame that matches nothing is
// usually rejected after one probe per group.

type bmChunk struct {
	off  int
	mask uint64
	val  uint64
}

type bmPattern struct {
	rank   uint64
	need   int       // frame length needed: last masked byte + 1, at least 8
	chunks []bmChunk // the chunks other than the key chunk, most selective first
}

type bmSlot struct {
	val        uint64
	start, end uint32 // candidates [start, end); end == 0: empty
}

type bmGroup struct {
	off   int
	mask  uint64
	best  uint64 // best rank in the group
	shift uint
	slots []bmSlot
	cands []int32 // pattern positions in bitmapSet.pats, by val then rank
}

type bitmapSet struct {
	best   uint64 // best rank of all bitmap patterns; noRank when none
	pats   []bmPattern
	groups []bmGroup
}

// bitmapChunks returns the chunks of b and the frame length it needs.
func bitmapChunks(b *Bitmap) ([]bmChunk, int) {
	first, last := -1, -1
	for i := range b.Bytes {
		if b.Mask[i/8]&(1<<(i%8)) != 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil, 0
	}
	first += b.Offset
	last += b.Offset
	need := max(last+1, 8)
	var out []bmChunk
	for p := first &^ 7; p <= last; p += 8 {
		q := p
		if q+8 > need {
			q = need - 8
		}
		var c bmChunk
		c.off = q
		for j := 0; j < 8; j++ {
			i := q + j - b.Offset
			if i < 0 || i >= len(b.Bytes) || b.Mask[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			sh := uint(56 - 8*j)
			c.mask |= 0xff << sh
			c.val |= uint64(b.Bytes[i]) << sh
		}
		if c.mask != 0 {
			out = append(out, c)
		}
	}
	return out, need
}

// newBitmapSet compiles the bitmap patterns ps (pattern indexes idx, ranks
// rank).
func newBitmapSet(ps []*Bitmap, ranks []uint64) bitmapSet {
	s := bitmapSet{best: noRank}
	if len(ps) == 0 {
		return s
	}
	all := make([][]bmChunk, len(ps))
	needs := make([]int, len(ps))
	shared := map[bmChunk]int{}
	for i, b := range ps {
		all[i], needs[i] = bitmapChunks(b)
		for _, c := range all[i] {
			shared[c]++
		}
	}
	// Order each pattern's chunks: least shared first, then most bytes.
	for _, cs := range all {
		sort.SliceStable(cs, func(x, y int) bool {
			sx, sy := shared[cs[x]], shared[cs[y]]
			if sx != sy {
				return sx < sy
			}
			return bits.OnesCount64(cs[x].mask) > bits.OnesCount64(cs[y].mask)
		})
	}
	// Choose key chunks greedily: among each pattern's least-shared
	// chunks, take the (position, mask) that covers most patterns still
	// without a key, so patterns share groups.
	type pos struct {
		off  int
		mask uint64
	}
	key := make([]int, len(ps)) // index of the key chunk in all[i]
	for i := range key {
		key[i] = -1
	}
	for left := len(ps); left > 0; {
		cover := map[pos]int{}
		for i, cs := range all {
			if key[i] >= 0 {
				continue
			}
			lo := shared[cs[0]]
			for _, c := range cs {
				if shared[c] != lo {
					break
				}
				cover[pos{c.off, c.mask}]++
			}
		}
		var bestPos pos
		bestN := -1
		for p, n := range cover {
			if n > bestN || (n == bestN && (p.off < bestPos.off || (p.off == bestPos.off && p.mask < bestPos.mask))) {
				bestPos, bestN = p, n
			}
		}
		for i, cs := range all {
			if key[i] >= 0 {
				continue
			}
			lo := shared[cs[0]]
			for j, c := range cs {
				if shared[c] != lo {
					break
				}
				if c.off == bestPos.off && c.mask == bestPos.mask {
					key[i] = j
					left--
					break
				}
			}
		}
	}
	s.pats = make([]bmPattern, len(ps))
	groupOf := map[pos]int{}
	members := [][]int{}
	for i, cs := range all {
		k := cs[key[i]]
		rest := make([]bmChunk, 0, len(cs)-1)
		rest = append(rest, cs[:key[i]]...)
		rest = append(rest, cs[key[i]+1:]...)
		s.pats[i] = bmPattern{rank: ranks[i], need: needs[i], chunks: rest}
		s.best = min(s.best, ranks[i])
		p := pos{k.off, k.mask}
		g, ok := groupOf[p]
		if !ok {
			g = len(members)
			groupOf[p] = g
			members = append(members, nil)
			s.groups = append(s.groups, bmGroup{off: k.off, mask: k.mask, best: noRank})
		}
		members[g] = append(members[g], i)
	}
	for g := range s.groups {
		grp := &s.groups[g]
		ms := members[g]
		keyVal := func(i int) uint64 { return all[i][key[i]].val }
		sort.SliceStable(ms, func(x, y int) bool {
			vx, vy := keyVal(ms[x]), keyVal(ms[y])
			if vx != vy {
				return vx < vy
			}
			return ranks[ms[x]] < ranks[ms[y]]
		})
		size := 2
		for size < 2*len(ms) {
			size *= 2
		}
		grp.shift = uint(64 - bits.TrailingZeros(uint(size)))
		grp.slots = make([]bmSlot, size)
		grp.cands = make([]int32, len(ms))
		for j, i := range ms {
			grp.cands[j] = int32(i)
			grp.best = min(grp.best, ranks[i])
		}
		for j := 0; j < len(ms); {
			v := keyVal(ms[j])
			e := j
			for e < len(ms) && keyVal(ms[e]) == v {
				e++
			}
			for h := (v * 0x9e3779b97f4a7c15) >> grp.shift; ; h = (h + 1) & uint64(size-1) {
				if grp.slots[h].end == 0 {
					grp.slots[h] = bmSlot{val: v, start: uint32(j), end: uint32(e)}
					break
				}
			}
			j = e
		}
	}
	return s
}

// match returns the best rank of a bitmap pattern that matches raw and is
// better than best, or best.
func (s *bitmapSet) match(raw []byte, best uint64) uint64 {
	for gi := range s.groups {
		g := &s.groups[gi]
		if g.best >= best || g.off+8 > len(raw) {
			continue
		}
		w := binary.BigEndian.Uint64(raw[g.off:]) & g.mask
		mask := uint64(len(g.slots) - 1)
		for h := (w * 0x9e3779b97f4a7c15) >> g.shift; ; h = (h + 1) & mask {
			sl := &g.slots[h]
			if sl.end == 0 {
				break
			}
			if sl.val != w {
				continue
			}
			for _, pi := range g.cands[sl.start:sl.end] {
				p := &s.pats[pi]
				if p.rank >= best {
					break
				}
				if len(raw) >= p.need && p.matchRest(raw) {
					best = p.rank
					break
				}
			}
			break
		}
	}
	return best
}

func (p *bmPattern) matchRest(raw []byte) bool {
	for i := range p.chunks {
		c := &p.chunks[i]
		if binary.BigEndian.Uint64(raw[c.off:])&c.mask != c.val {
			return false
		}
	}
	return true
}
