package wakepattern

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
)

// The kernel prefilter.
//
// CompileBPF turns a pattern set into a classic-BPF program that a NIC
// attaches to its AF_PACKET socket (SO_ATTACH_FILTER) so the kernel drops
// frames that cannot match. The program never rejects a frame the Matcher
// accepts. Its layout, in order:
//
//  1. Bitmap patterns, on raw frame bytes: a length guard, then one
//     load/and/compare per run of up to 4 masked bytes.
//  2. Magic packets. Classic BPF cannot search, so the program samples: a
//     magic packet at offset p holds its MAC 16 times in [p+6, p+102), so
//     every 4-byte word loaded at a multiple of 92 that falls in there is
//     one of the 6 rotations of 4 bytes of the MAC. The program loads the
//     words at 92, 184, ... and accepts when one is such a rotation;
//     frames longer than BPFMagicScanLen are accepted without sampling.
//     This is a superset (any frame with those 4 bytes at a sample point
//     passes), never a miss.
//  3. Ethernet with 0, 1 or 2 inline VLAN tags (0x8100 or 0x88a8); a third
//     tag is rejected, as the decoder does (TooManyTags). The VLAN ID of
//     the outermost tag is kept for connection patterns, as the Matcher
//     compares it (VID 0, priority tagged, counts as untagged).
//  4. ARP requests whose target protocol address is in AcceptARPFor.
//  5. IPv4 with options (the ldx 4*([k]&0xf) form), the same header checks
//     as the decoder (version, IHL, total length within the frame), and
//     TCP (data offset within the segment). Fragments (MF or offset != 0)
//     are rejected: the Matcher never matches a fragment.
//  6. IPv6 with its extension chain walked like the decoder (hop-by-hop,
//     routing, destination options, AH; at most MaxIPv6ExtHeaders); a
//     fragment header rejects the frame; then TCP, or ICMPv6 neighbour
//     solicitations whose target is exactly one of AcceptNSFor.
//  7. TCP SYN patterns (SYN set, ACK clear; wildcards), then the
//     connection set as a sorted decision tree over 32-bit words (low
//     cardinality fields first, binary search on values with jgt) so
//     that each connection costs about 4 instructions (IPv4) or 10 (IPv6).
//
// Connection verdicts equal the Matcher's for every frame whose TCP
// options are well formed, when the Matcher does not verify checksums and
// the program is at level BPFExact: the program cannot walk TCP options or
// sum the segment, so a frame with a malformed option list or a bad
// checksum on a connection passes the kernel and is rejected by the
// Matcher. Frames longer than MaxFrameLen are not cut as Decode cuts them.
//
// When the program does not fit in MaxInstructions, CompileBPF degrades, each
// step still a superset: first bitmap patterns keep only their first 16,
// then 4, then 1 compare; then connections are grouped by local address,
// local port and VLAN (BPFLocalPort: any remote), then by local address
// (BPFLocalAddr; SYN patterns lose their port), then every TCP segment of a
// family in use passes (BPFAnyTCP), and finally every frame (BPFAcceptAll).
//
// VLAN offload: on a real AF_PACKET socket the kernel strips the outer tag
// into packet metadata (veth and most NICs do VLAN offload), so the filter
// sees the frame without it. With BPFOptions.KernelStripsVLAN the program
// does not compare VLAN IDs, and each bitmap is also tried as if a tag had
// been removed at offset 12 (its bytes at 12..15 dropped, later ones 4
// earlier): both the tagged and untagged forms pass.

// Limits and defaults of the BPF compiler.
const (
	// BPFMaxInstructions is the kernel's BPF_MAXINSNS, the default and the
	// cap of BPFOptions.MaxInstructions.
	BPFMaxInstructions = 4096
	// BPFDefaultSnapLen is the accept verdict when BPFOptions.SnapLen is 0.
	BPFDefaultSnapLen = 262144
	// BPFMagicScanLen is the frame length up to which magic-packet
	// candidates are sampled; longer frames pass when a magic pattern is
	// present.
	BPFMagicScanLen = 1536
	// bpfMagicStride: any 93 consecutive offsets hold a multiple of 92.
	bpfMagicStride = 92
	bpfNSLen       = 24 // ICMPv6 neighbour solicitation up to its target
	// bpfBitmapMinFrame: the Matcher matches no bitmap on a shorter frame.
	bpfBitmapMinFrame = 8
	bpfICMPv6NS       = 135 // ICMPv6 type of a neighbour solicitation
)

// BPFLevel is how precisely a compiled program filters TCP connection
// patterns. The zero value is invalid.
type BPFLevel uint8

const (
	bpfLevelInvalid BPFLevel = iota
	// BPFExact accepts exactly the segments from Remote to Local with the
	// pattern's ports and VLAN.
	BPFExact
	// BPFLocalPort accepts segments to a pattern's local address, local
	// port and VLAN from any remote end.
	BPFLocalPort
	// BPFLocalAddr accepts segments to a pattern's local address.
	BPFLocalAddr
	// BPFAnyTCP accepts every well-formed TCP segment of a family in use.
	BPFAnyTCP
	// BPFAcceptAll accepts every frame.
	BPFAcceptAll
	numBPFLevel
)

var bpfLevelNames = [numBPFLevel]string{
	bpfLevelInvalid: "invalid",
	BPFExact:        "exact",
	BPFLocalPort:    "local-port",
	BPFLocalAddr:    "local-addr",
	BPFAnyTCP:       "any-tcp",
	BPFAcceptAll:    "accept-all",
}

// String returns a short lowercase name of the level.
func (l BPFLevel) String() string {
	if l < numBPFLevel {
		return bpfLevelNames[l]
	}
	return fmt.Sprintf("bpf-level(%d)", uint8(l))
}

// ParseBPFLevel returns the level String names.
func ParseBPFLevel(s string) (BPFLevel, error) {
	for l := BPFExact; l < numBPFLevel; l++ {
		if bpfLevelNames[l] == s {
			return l, nil
		}
	}
	return bpfLevelInvalid, fmt.Errorf("bpf level %q: want one of exact, local-port, local-addr, any-tcp, accept-all", s)
}

// BPFOptions tunes CompileBPF. The zero value is valid.
type BPFOptions struct {
	// AcceptARPFor: ARP requests whose target protocol address is one of
	// these IPv4 addresses pass.
	AcceptARPFor []netip.Addr
	// AcceptNSFor: ICMPv6 neighbour solicitations (type 135) whose target
	// address is one of these IPv6 addresses pass (exact target check,
	// also behind extension headers; fragmented solicitations are
	// dropped).
	AcceptNSFor []netip.Addr
	// KernelStripsVLAN: the kernel removes the outer VLAN tag before the
	// filter runs, so the program must not rely on it (see above).
	KernelStripsVLAN bool
	// MaxInstructions caps the program length: 1..BPFMaxInstructions, 0
	// means BPFMaxInstructions.
	MaxInstructions int
	// SnapLen is the accept verdict (bytes kept); 0 means
	// BPFDefaultSnapLen.
	SnapLen uint32
}

// BPFProgram is a compiled prefilter and how precise it is.
type BPFProgram struct {
	Instructions []bpf.Instruction
	// Level is the precision of the connection filter.
	Level BPFLevel
	// BitmapCompares is how many compares each bitmap pattern kept; 0
	// means all of them.
	BitmapCompares int
	// Exact reports that nothing was degraded: connection verdicts equal
	// the Matcher's (see CompileBPF) and bitmaps are compared in full.
	Exact bool
}

// Assemble returns the program in the kernel's sock_filter encoding, for
// SO_ATTACH_FILTER.
func (p *BPFProgram) Assemble() ([]bpf.RawInstruction, error) {
	raw, err := bpf.Assemble(p.Instructions)
	if err != nil {
		return nil, fmt.Errorf("assemble bpf: %w", err)
	}
	return raw, nil
}

// CompileBPF compiles patterns into a classic-BPF program that accepts at
// least every frame the Matcher for the same patterns accepts (see
// BuildBPF for the precision it reached). Each pattern must pass
// DefaultCapabilities().Check; the set's size is limited only by what
// degrades (see above).
func CompileBPF(patterns []Pattern, opt BPFOptions) ([]bpf.Instruction, error) {
	p, err := BuildBPF(patterns, opt)
	if err != nil {
		return nil, err
	}
	return p.Instructions, nil
}

// CompileBPFRaw is CompileBPF followed by bpf.Assemble.
func CompileBPFRaw(patterns []Pattern, opt BPFOptions) ([]bpf.RawInstruction, error) {
	p, err := BuildBPF(patterns, opt)
	if err != nil {
		return nil, err
	}
	return p.Assemble()
}

// BuildBPF compiles patterns like CompileBPF and reports the level of
// precision that fitted in opt.MaxInstructions.
func BuildBPF(patterns []Pattern, opt BPFOptions) (*BPFProgram, error) {
	max := opt.MaxInstructions
	switch {
	case max == 0:
		max = BPFMaxInstructions
	case max < 0 || max > BPFMaxInstructions:
		return nil, fmt.Errorf("bpf: max instructions %d: limit 1..%d", max, BPFMaxInstructions)
	}
	snap := opt.SnapLen
	if snap == 0 {
		snap = BPFDefaultSnapLen
	}
	set, err := newBPFSet(patterns, opt)
	if err != nil {
		return nil, err
	}
	if set.acceptAll {
		return &BPFProgram{Instructions: []bpf.Instruction{bpf.RetConstant{Val: snap}}, Level: BPFAcceptAll}, nil
	}
	type step struct {
		level BPFLevel
		cmps  int
	}
	steps := []step{{BPFExact, 0}}
	if set.maxBitmapChecks > 16 {
		steps = append(steps, step{BPFExact, 16})
	}
	if set.maxBitmapChecks > 4 {
		steps = append(steps, step{BPFExact, 4})
	}
	last := 0
	if set.maxBitmapChecks > 1 {
		steps = append(steps, step{BPFExact, 1})
		last = 1
	}
	steps = append(steps, step{BPFLocalPort, last}, step{BPFLocalAddr, last}, step{BPFAnyTCP, last})
	for _, s := range steps {
		if set.minConnKeys(s.level) > max {
			continue // each key costs at least one instruction
		}
		g := &bpfGen{set: set, level: s.level, cmps: s.cmps, strip: opt.KernelStripsVLAN}
		g.accept = snap
		g.program()
		ins, err := g.link(max)
		if err == nil {
			ins, err = bpfInitScratch(ins, max)
		}
		if errors.Is(err, errBPFTooLong) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("bpf: %w", err)
		}
		return &BPFProgram{
			Instructions:   ins,
			Level:          s.level,
			BitmapCompares: s.cmps,
			Exact:          s.level == BPFExact && s.cmps == 0,
		}, nil
	}
	return &BPFProgram{Instructions: []bpf.Instruction{bpf.RetConstant{Val: snap}}, Level: BPFAcceptAll}, nil
}

// bpfCheck is one load/and/compare of a bitmap pattern.
type bpfCheck struct {
	off  uint32
	size int // 1, 2 or 4
	mask uint32
	val  uint32
}

// bpfConn is a connection key in frame order: src is the remote end.
type bpfConn struct {
	src, dst     [4]uint32 // IPv4 uses [0]
	sport, dport uint16
	vlan         uint16
}

// bpfSYN is a SYN pattern of one family.
type bpfSYN struct {
	anyAddr bool
	dst     [4]uint32
	port    uint16 // 0: any
}

// bpfSet is a pattern set prepared for code generation.
type bpfSet struct {
	acceptAll       bool // a pattern matches every frame
	bitmaps         [][]bpfCheck
	maxBitmapChecks int
	magic           []uint32 // 4-byte rotations of the magic MACs
	conn            [2][]bpfConn
	syn             [2][]bpfSYN
	arp             []uint32
	ns              [][4]uint32
}

func bpfWords(a netip.Addr) [4]uint32 {
	var w [4]uint32
	if a.Is4() {
		b := a.As4()
		w[0] = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		return w
	}
	b := a.As16()
	for i := range w {
		w[i] = uint32(b[4*i])<<24 | uint32(b[4*i+1])<<16 | uint32(b[4*i+2])<<8 | uint32(b[4*i+3])
	}
	return w
}

func bpfFamily(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

func newBPFSet(patterns []Pattern, opt BPFOptions) (*bpfSet, error) {
	s := &bpfSet{}
	hard := DefaultCapabilities()
	for i := range patterns {
		p := &patterns[i]
		if err := hard.Check(p); err != nil {
			return nil, fmt.Errorf("bpf: %w", err)
		}
		switch p.Kind {
		case KindTCPConn:
			c := p.Conn
			l, r := c.Local.Addr(), c.Remote.Addr()
			if !l.IsValid() || !r.IsValid() {
				return nil, fmt.Errorf("bpf: pattern %d: conn: invalid address", p.ID)
			}
			if l.Is4() != r.Is4() {
				return nil, fmt.Errorf("bpf: pattern %d: conn: local %v and remote %v differ in family", p.ID, l, r)
			}
			if c.VLAN > 0xfff {
				return nil, fmt.Errorf("bpf: pattern %d: conn: vlan %d: limit 4095", p.ID, c.VLAN)
			}
			fam := bpfFamily(l)
			s.conn[fam] = append(s.conn[fam], bpfConn{
				src: bpfWords(r), dst: bpfWords(l),
				sport: c.Remote.Port(), dport: c.Local.Port(), vlan: c.VLAN,
			})
		case KindTCPSYN:
			// The family is IPv6's; Check made it agree with a valid
			// address.
			a := p.SYN.Local.Addr()
			fam := 0
			if p.SYN.IPv6 {
				fam = 1
			}
			y := bpfSYN{port: p.SYN.Local.Port(), anyAddr: !a.IsValid() || a.IsUnspecified()}
			if !y.anyAddr {
				y.dst = bpfWords(a)
			}
			s.syn[fam] = append(s.syn[fam], y)
		case KindBitmap:
			b := p.Bitmap
			if b.Offset < 0 {
				return nil, fmt.Errorf("bpf: pattern %d: bitmap offset %d: must not be negative", p.ID, b.Offset)
			}
			var bytes []bpfByte
			for j, v := range b.Bytes {
				if j/8 < len(b.Mask) && b.Mask[j/8]&(1<<(j%8)) != 0 {
					bytes = append(bytes, bpfByte{uint32(b.Offset + j), v})
				}
			}
			if len(bytes) == 0 {
				s.acceptAll = true
				continue
			}
			s.addBitmap(bytes)
			if opt.KernelStripsVLAN {
				var shifted []bpfByte
				for _, x := range bytes {
					switch {
					case x.off < 12:
						shifted = append(shifted, x)
					case x.off >= 16:
						shifted = append(shifted, bpfByte{x.off - 4, x.val})
					}
				}
				if len(shifted) == 0 {
					s.acceptAll = true
					continue
				}
				s.addBitmap(shifted)
			}
		case KindMagic:
			m := p.Magic.MAC
			for r := range 6 {
				s.magic = append(s.magic, uint32(m[r])<<24|uint32(m[(r+1)%6])<<16|uint32(m[(r+2)%6])<<8|uint32(m[(r+3)%6]))
			}
		default:
			return nil, fmt.Errorf("bpf: pattern %d: kind %d: unknown", p.ID, p.Kind)
		}
	}
	for i, a := range opt.AcceptARPFor {
		a = a.Unmap()
		if !a.Is4() {
			return nil, fmt.Errorf("bpf: accept arp for[%d] %v: not an IPv4 address", i, a)
		}
		s.arp = append(s.arp, bpfWords(a)[0])
	}
	for i, a := range opt.AcceptNSFor {
		if !a.Is6() || a.Is4In6() {
			return nil, fmt.Errorf("bpf: accept ns for[%d] %v: not an IPv6 address", i, a)
		}
		s.ns = append(s.ns, bpfWords(a))
	}
	return s, nil
}

// minConnKeys returns the number of distinct connection keys at level l,
// a lower bound of the program's length.
func (s *bpfSet) minConnKeys(l BPFLevel) int {
	n := 0
	for _, conns := range s.conn {
		seen := make(map[bpfConn]struct{}, len(conns))
		for _, c := range conns {
			switch l {
			case BPFExact:
			case BPFLocalPort:
				c.src, c.sport = [4]uint32{}, 0
			case BPFLocalAddr:
				c = bpfConn{dst: c.dst}
			default:
				return 0
			}
			seen[c] = struct{}{}
		}
		n += len(seen)
	}
	return n
}

type bpfByte struct {
	off uint32
	val byte
}

// addBitmap groups the masked bytes (sorted by offset) into loads of 1, 2
// or 4 bytes that never reach past the last masked byte.
func (s *bpfSet) addBitmap(bytes []bpfByte) {
	need := bytes[len(bytes)-1].off + 1
	var checks []bpfCheck
	for i := 0; i < len(bytes); {
		start := bytes[i].off
		j := i
		for j < len(bytes) && bytes[j].off < start+4 {
			j++
		}
		span := bytes[j-1].off - start + 1
		size := 1
		switch {
		case span >= 3 && start+4 <= need:
			size = 4
		case span >= 2:
			size = 2
		}
		c := bpfCheck{off: start, size: size}
		for i < len(bytes) && bytes[i].off < start+uint32(size) {
			sh := 8 * uint32(size-1-int(bytes[i].off-start))
			c.mask |= 0xff << sh
			c.val |= uint32(bytes[i].val) << sh
			i++
		}
		checks = append(checks, c)
	}
	s.bitmaps = append(s.bitmaps, checks)
	s.maxBitmapChecks = max(s.maxBitmapChecks, len(checks))
}

// Scratch memory of the program.
const (
	bpfMemSrc   = 0 // 0..3: source address words
	bpfMemDst   = 4 // 4..7: destination address words
	bpfMemPorts = 8 // source port << 16 | destination port
	bpfMemFlags = 9
	bpfMemVLAN  = 10
	bpfMemTmp   = 11
	bpfMemL3    = 12
	bpfMemEnd   = 13 // IPv6: end of the IP packet
	bpfMemPos   = 14 // IPv6: offset of the current header
)

// bpfField is one 32-bit key column: a scratch slot, an absolute load or
// an X-relative load, optionally masked.
type bpfField struct {
	mem  int // scratch slot, or -1
	off  uint32
	size int
	ind  bool
	mask uint32 // 0: none
}

func bpfMem(n int) bpfField                 { return bpfField{mem: n} }
func bpfMemMasked(n int, m uint32) bpfField { return bpfField{mem: n, mask: m} }

// bpfGen generates one program at one level of precision.
type bpfGen struct {
	bpfAsm
	set   *bpfSet
	level BPFLevel
	cmps  int // bitmap compares kept per pattern; 0: all
	strip bool
}

func (g *bpfGen) load(f bpfField) {
	switch {
	case f.mem >= 0:
		g.emit(bpf.LoadScratch{Dst: bpf.RegA, N: f.mem})
	case f.ind:
		g.emit(bpf.LoadIndirect{Off: f.off, Size: f.size})
	default:
		g.emit(bpf.LoadAbsolute{Off: f.off, Size: f.size})
	}
	if f.mask != 0 {
		g.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: f.mask})
	}
}

func (g *bpfGen) usesVLAN() bool {
	return !g.strip && (g.level == BPFExact || g.level == BPFLocalPort)
}

func (g *bpfGen) needTCP(fam int) bool {
	return len(g.set.conn[fam]) > 0 || len(g.set.syn[fam]) > 0
}

func (g *bpfGen) program() {
	for _, checks := range g.set.bitmaps {
		g.bitmap(checks)
	}
	g.magic()
	need4 := g.needTCP(0) || len(g.set.arp) > 0
	need6 := g.needTCP(1) || len(g.set.ns) > 0
	if !need4 && !need6 {
		g.goTo(bpfReject)
		return
	}
	l := bpfL2Labels{ip4: g.newLabel(), ip6: g.newLabel(), tcp4: g.newLabel(), tcp6: g.newLabel()}
	g.l2(l)
	if g.needTCP(0) && g.level != BPFAnyTCP {
		g.bind(l.tcp4)
		g.tcp(0)
	}
	if need6 {
		g.bind(l.ip6)
		g.ipv6(l.tcp6)
	}
}

func (g *bpfGen) bitmap(checks []bpfCheck) {
	if g.cmps > 0 && len(checks) > g.cmps {
		checks = checks[:g.cmps]
	}
	need := uint32(bpfBitmapMinFrame)
	for _, c := range checks {
		need = max(need, c.off+uint32(c.size))
	}
	next := g.newLabel()
	g.emit(bpf.LoadExtension{Num: bpf.ExtLen})
	g.jlt(need, next)
	for _, c := range checks {
		g.emit(bpf.LoadAbsolute{Off: c.off, Size: c.size})
		if full := uint32(1)<<(8*c.size) - 1; c.mask != full {
			g.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: c.mask})
		}
		g.jne(c.val, next)
	}
	g.goTo(bpfAccept)
	g.bind(next)
}

func (g *bpfGen) magic() {
	if len(g.set.magic) == 0 {
		return
	}
	words := slices.Clone(g.set.magic)
	slices.Sort(words)
	words = slices.Compact(words)
	rows := make([][]uint32, len(words))
	for i, w := range words {
		rows[i] = []uint32{w}
	}
	done := g.newLabel()
	g.emit(bpf.LoadExtension{Num: bpf.ExtLen})
	g.jump(bpf.JumpGreaterThan, BPFMagicScanLen, bpfAccept, bpfNext)
	// p >= 0, so [p+6, p+98] never holds offset 0: sampling starts at 92
	// (the destination MAC at 0 would otherwise pass every unicast frame).
	for q := uint32(bpfMagicStride); q+4 <= BPFMagicScanLen; q += bpfMagicStride {
		g.emit(bpf.LoadExtension{Num: bpf.ExtLen})
		g.jlt(q+4, done)
		next := g.newLabel()
		g.set1([]bpfField{{mem: -1, off: q, size: 4}}, rows, next)
		g.bind(next)
	}
	g.bind(done)
}

// bpfL2Labels: the IPv4 TCP matcher (fields in scratch memory), the
// general IPv6 path (header offset in X) and the IPv6 TCP matcher.
type bpfL2Labels struct{ ip4, ip6, tcp4, tcp6 bpfTarget }

// l2 parses Ethernet and up to two VLAN tags and dispatches on the
// EtherType at each depth.
func (g *bpfGen) l2(l bpfL2Labels) {
	tag1, tag2 := g.newLabel(), g.newLabel()
	g.emit(bpf.LoadAbsolute{Off: 12, Size: 2})
	g.jeq(uint32(EtherTypeVLAN), tag1)
	g.jeq(uint32(EtherTypeQinQ), tag1)
	if g.usesVLAN() {
		g.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: 0}, bpf.StoreScratch{Src: bpf.RegX, N: bpfMemVLAN})
	}
	g.dispatch(14, l)

	g.bind(tag1)
	if g.usesVLAN() {
		g.emit(bpf.LoadAbsolute{Off: 14, Size: 2},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0fff},
			bpf.StoreScratch{Src: bpf.RegA, N: bpfMemVLAN})
	}
	g.emit(bpf.LoadAbsolute{Off: 16, Size: 2})
	g.jeq(uint32(EtherTypeVLAN), tag2)
	g.jeq(uint32(EtherTypeQinQ), tag2)
	g.dispatch(18, l)

	g.bind(tag2)
	g.emit(bpf.LoadAbsolute{Off: 20, Size: 2})
	g.jeq(uint32(EtherTypeVLAN), bpfReject)
	g.jeq(uint32(EtherTypeQinQ), bpfReject)
	g.dispatch(22, l)
}

// dispatch branches on the EtherType in A for an L3 header at off.
func (g *bpfGen) dispatch(off uint32, l bpfL2Labels) {
	ip4, arp := g.newLabel(), g.newLabel()
	need6 := g.needTCP(1) || len(g.set.ns) > 0
	if g.needTCP(0) {
		g.jeq(uint32(EtherTypeIPv4), ip4)
	}
	if len(g.set.arp) > 0 {
		g.jeq(uint32(EtherTypeARP), arp)
	}
	if need6 {
		g.jne(uint32(EtherTypeIPv6), bpfReject)
		if g.needTCP(1) {
			g.ipv6TCP(off, l.tcp6)
		}
		g.emit(bpf.LoadConstant{Dst: bpf.RegX, Val: off})
		g.goTo(l.ip6)
	} else {
		g.goTo(bpfReject)
	}
	if g.needTCP(0) {
		g.bind(ip4)
		g.ipv4(off, l.tcp4)
	}
	if len(g.set.arp) > 0 {
		g.bind(arp)
		g.emit(bpf.LoadAbsolute{Off: off + 6, Size: 2})
		g.jne(1, bpfReject)
		rows := make([][]uint32, len(g.set.arp))
		for i, a := range g.set.arp {
			rows[i] = []uint32{a}
		}
		g.set1([]bpfField{{mem: -1, off: off + 24, size: 4}}, rows, bpfReject)
	}
}

// ipv4 checks an IPv4 header at the constant offset l as the decoder
// does, and for a TCP segment stores its fields and jumps to tcp.
//
// A header without options (IHL 5, nearly every segment) takes a path of
// absolute loads only: the kernel inlines an absolute load as a bounds
// check and a direct read, while every X-relative load is a call to
// bpf_skb_load_helper_*. Options take the general X-relative path.
func (g *bpfGen) ipv4(l uint32, tcp bpfTarget) {
	opts := g.newLabel()
	g.emit(bpf.LoadAbsolute{Off: l, Size: 1})
	g.jne(0x45, opts)
	g.emit(bpf.LoadAbsolute{Off: l + 2, Size: 2}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemTmp}) // total length
	g.ipv4TCPPacket(l)
	g.emit(bpf.LoadScratch{Dst: bpf.RegA, N: bpfMemTmp})
	// Total length below header + fixed TCP header; it also rejects a
	// total length below the IP header, as the decoder does (the
	// decoder finds it malformed before looking at the protocol, and no
	// pattern matches a malformed frame).
	g.jlt(40, bpfReject)
	g.emit(bpf.LoadAbsolute{Off: l + 32, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2})
	g.jlt(20, bpfReject) // data offset
	g.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 20}, bpf.TAX{}, bpf.LoadScratch{Dst: bpf.RegA, N: bpfMemTmp})
	g.jltX(bpfReject) // TCP header past the segment
	if g.level == BPFAnyTCP {
		g.goTo(bpfAccept)
	} else {
		g.emit(bpf.LoadAbsolute{Off: l + 20, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemPorts},
			bpf.LoadAbsolute{Off: l + 33, Size: 1}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemFlags})
		g.storeAddrs4(l)
		g.goTo(tcp)
	}

	g.bind(opts)
	g.emit(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	g.jne(4, bpfReject)
	g.emit(bpf.LoadAbsolute{Off: l + 2, Size: 2}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemTmp}, // total length
		bpf.LoadMemShift{Off: l}, bpf.TXA{})
	g.jlt(20, bpfReject) // header length
	g.emit(bpf.LoadScratch{Dst: bpf.RegA, N: bpfMemTmp})
	g.jltX(bpfReject) // total length < header length
	g.ipv4TCPPacket(l)
	g.emit(bpf.LoadMemShift{Off: l}, bpf.LoadScratch{Dst: bpf.RegA, N: bpfMemTmp}, bpf.ALUOpX{Op: bpf.ALUOpSub})
	g.jlt(20, bpfReject) // TCP segment shorter than its fixed header
	g.emit(bpf.StoreScratch{Src: bpf.RegA, N: bpfMemTmp})
	g.tcpHeaderFits(bpf.LoadIndirect{Off: l + 12, Size: 1})
	if g.level == BPFAnyTCP {
		g.goTo(bpfAccept)
		return
	}
	g.emit(bpf.LoadMemShift{Off: l},
		bpf.LoadIndirect{Off: l, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemPorts},
		bpf.LoadIndirect{Off: l + 13, Size: 1}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemFlags})
	g.storeAddrs4(l)
	g.goTo(tcp)
}

// ipv4TCPPacket rejects, for the IPv4 header at l whose total length is in
// M[tmp], a frame shorter than the packet, a fragment and any protocol but
// TCP.
func (g *bpfGen) ipv4TCPPacket(l uint32) {
	g.emit(bpf.LoadExtension{Num: bpf.ExtLen}, bpf.ALUOpConstant{Op: bpf.ALUOpSub, Val: l},
		bpf.LoadScratch{Dst: bpf.RegX, N: bpfMemTmp})
	g.jltX(bpfReject) // frame shorter than the IP packet
	g.emit(bpf.LoadAbsolute{Off: l + 6, Size: 2})
	g.jump(bpf.JumpBitsSet, 0x3fff, bpfReject, bpfNext) // fragment
	g.emit(bpf.LoadAbsolute{Off: l + 9, Size: 1})
	g.jne(uint32(ProtoTCP), bpfReject)
}

// tcpHeaderFits checks the TCP data offset that load brings (the byte
// holding it) against the segment length in M[tmp]: a header of at least
// 20 bytes, within the segment.
func (g *bpfGen) tcpHeaderFits(load bpf.Instruction) {
	g.emit(load,
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2})
	g.jlt(20, bpfReject) // data offset
	g.emit(bpf.TAX{}, bpf.LoadScratch{Dst: bpf.RegA, N: bpfMemTmp})
	g.jltX(bpfReject) // TCP header past the segment
}

// storeAddrs4 stores the addresses of the IPv4 header at l.
func (g *bpfGen) storeAddrs4(l uint32) {
	g.emit(bpf.LoadAbsolute{Off: l + 12, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemSrc},
		bpf.LoadAbsolute{Off: l + 16, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemDst})
}

// ipv6TCP is the path of absolute loads (see ipv4) for an IPv6 header at
// the constant offset l directly followed by TCP: it checks the packet as
// the decoder does, stores the segment's fields and jumps to tcp (or
// accepts, at BPFAnyTCP). Any other next header falls through to the
// general path.
func (g *bpfGen) ipv6TCP(l uint32, tcp bpfTarget) {
	other := g.newLabel()
	g.emit(bpf.LoadAbsolute{Off: l + 6, Size: 1})
	g.jne(uint32(ProtoTCP), other)
	g.emit(bpf.LoadAbsolute{Off: l, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	g.jne(6, bpfReject)
	g.emit(bpf.LoadAbsolute{Off: l + 4, Size: 2}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemTmp}, // payload length
		bpf.LoadExtension{Num: bpf.ExtLen}, bpf.ALUOpConstant{Op: bpf.ALUOpSub, Val: l + 40},
		bpf.LoadScratch{Dst: bpf.RegX, N: bpfMemTmp})
	g.jltX(bpfReject) // frame shorter than the IP packet
	g.emit(bpf.LoadScratch{Dst: bpf.RegA, N: bpfMemTmp})
	g.jlt(20, bpfReject) // TCP segment shorter than its fixed header
	g.tcpHeaderFits(bpf.LoadAbsolute{Off: l + 52, Size: 1})
	if g.level == BPFAnyTCP {
		g.goTo(bpfAccept)
	} else {
		for i := range uint32(8) {
			g.emit(bpf.LoadAbsolute{Off: l + 8 + 4*i, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemSrc + int(i)})
		}
		g.emit(bpf.LoadAbsolute{Off: l + 40, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemPorts},
			bpf.LoadAbsolute{Off: l + 53, Size: 1}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemFlags})
		g.goTo(tcp)
	}
	g.bind(other)
}

// ipv6 checks an IPv6 header at offset X, walks its extension chain as
// the decoder does, and goes on to TCP (tcp: the matcher, once the
// segment's fields are stored) or neighbour solicitation.
func (g *bpfGen) ipv6(tcp bpfTarget) {
	tcp6, icmp6 := g.newLabel(), g.newLabel()
	wantTCP, wantNS := g.needTCP(1), len(g.set.ns) > 0
	g.emit(bpf.TXA{}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemL3},
		bpf.LoadIndirect{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	g.jne(6, bpfReject)
	g.emit(bpf.LoadIndirect{Off: 4, Size: 2}, bpf.ALUOpX{Op: bpf.ALUOpAdd},
		bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 40}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemEnd},
		bpf.TAX{}, bpf.LoadExtension{Num: bpf.ExtLen})
	g.jltX(bpfReject) // frame shorter than the IP packet
	g.emit(bpf.LoadScratch{Dst: bpf.RegX, N: bpfMemL3})
	if wantTCP && g.level != BPFAnyTCP {
		for i := range uint32(8) {
			g.emit(bpf.LoadIndirect{Off: 8 + 4*i, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemSrc + int(i)})
		}
	}
	g.emit(bpf.TXA{}, bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 40}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemPos},
		bpf.LoadIndirect{Off: 6, Size: 1}, bpf.LoadScratch{Dst: bpf.RegX, N: bpfMemPos})
	// A: next header, X and M[pos]: its offset.
	for n := 0; ; n++ {
		if wantTCP {
			g.jeq(uint32(ProtoTCP), tcp6)
		}
		if wantNS {
			g.jeq(uint32(ProtoICMPv6), icmp6)
		}
		if n == MaxIPv6ExtHeaders {
			g.goTo(bpfReject)
			break
		}
		ah, e8, common := g.newLabel(), g.newLabel(), g.newLabel()
		g.jeq(0, e8)  // hop-by-hop
		g.jeq(43, e8) // routing
		g.jeq(60, e8) // destination options
		g.jne(51, bpfReject)
		// AH: (len+2)*4
		g.bind(ah)
		g.emit(bpf.LoadIndirect{Off: 1, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 2},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2})
		g.goTo(common)
		g.bind(e8) // (len+1)*8
		g.emit(bpf.LoadIndirect{Off: 1, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 3})
		g.bind(common)
		g.emit(bpf.ALUOpX{Op: bpf.ALUOpAdd}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemTmp},
			bpf.LoadScratch{Dst: bpf.RegX, N: bpfMemEnd})
		g.jgtX(bpfReject) // extension header past the packet
		g.emit(bpf.LoadScratch{Dst: bpf.RegX, N: bpfMemPos}, bpf.LoadIndirect{Off: 0, Size: 1},
			bpf.LoadScratch{Dst: bpf.RegX, N: bpfMemTmp}, bpf.StoreScratch{Src: bpf.RegX, N: bpfMemPos})
	}
	if wantTCP {
		g.bind(tcp6)
		g.emit(bpf.LoadScratch{Dst: bpf.RegA, N: bpfMemEnd}, bpf.ALUOpX{Op: bpf.ALUOpSub})
		g.jlt(20, bpfReject)
		g.emit(bpf.StoreScratch{Src: bpf.RegA, N: bpfMemTmp})
		g.tcpHeaderFits(bpf.LoadIndirect{Off: 12, Size: 1})
		if g.level == BPFAnyTCP {
			g.goTo(bpfAccept)
		} else {
			g.emit(bpf.LoadScratch{Dst: bpf.RegX, N: bpfMemPos},
				bpf.LoadIndirect{Off: 0, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemPorts},
				bpf.LoadIndirect{Off: 13, Size: 1}, bpf.StoreScratch{Src: bpf.RegA, N: bpfMemFlags})
			g.bind(tcp)
			g.tcp(1)
		}
	}
	if wantNS {
		g.bind(icmp6)
		g.emit(bpf.LoadScratch{Dst: bpf.RegA, N: bpfMemEnd}, bpf.ALUOpX{Op: bpf.ALUOpSub})
		g.jlt(bpfNSLen, bpfReject)
		g.emit(bpf.LoadIndirect{Off: 0, Size: 1})
		g.jne(bpfICMPv6NS, bpfReject)
		rows := make([][]uint32, len(g.set.ns))
		for i, t := range g.set.ns {
			rows[i] = t[:]
		}
		fields := make([]bpfField, 4)
		for i := range fields {
			fields[i] = bpfField{mem: -1, ind: true, off: 8 + 4*uint32(i), size: 4}
		}
		g.set1(fields, rows, bpfReject)
	}
}

// tcp matches the stored fields of a TCP segment of family fam against
// the SYN and connection patterns.
func (g *bpfGen) tcp(fam int) {
	words := 1
	if fam == 1 {
		words = 4
	}
	dst := make([]bpfField, words)
	for i := range dst {
		dst[i] = bpfMem(bpfMemDst + i)
	}
	dport := bpfMemMasked(bpfMemPorts, 0xffff)

	conn := g.newLabel()
	if syns := g.set.syn[fam]; len(syns) > 0 {
		g.emit(bpf.LoadScratch{Dst: bpf.RegA, N: bpfMemFlags}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: uint32(TCPFlagSYN | TCPFlagACK | TCPFlagRST)})
		g.jne(uint32(TCPFlagSYN), conn)
		var byPort, byAddr, byBoth [][]uint32
		anySYN := false
		for _, y := range syns {
			port := y.port
			if g.level >= BPFLocalAddr {
				port = 0
			}
			switch {
			case y.anyAddr && port == 0:
				anySYN = true
			case y.anyAddr:
				byPort = append(byPort, []uint32{uint32(port)})
			case port == 0:
				byAddr = append(byAddr, y.dst[:words])
			default:
				byBoth = append(byBoth, append(slices.Clone(y.dst[:words]), uint32(port)))
			}
		}
		if anySYN {
			byPort, byAddr, byBoth = nil, nil, nil
			g.goTo(bpfAccept)
		}
		if len(byPort) > 0 {
			next := g.newLabel()
			g.set1([]bpfField{dport}, byPort, next)
			g.bind(next)
		}
		if len(byAddr) > 0 {
			next := g.newLabel()
			g.set1(dst, byAddr, next)
			g.bind(next)
		}
		if len(byBoth) > 0 {
			next := g.newLabel()
			g.set1(append(slices.Clone(dst), dport), byBoth, next)
			g.bind(next)
		}
	}
	g.bind(conn)
	conns := g.set.conn[fam]
	if len(conns) == 0 {
		g.goTo(bpfReject)
		return
	}
	var fields []bpfField
	switch g.level {
	case BPFExact:
		for i := range words {
			fields = append(fields, bpfMem(bpfMemSrc+i))
		}
		fields = append(fields, dst...)
		fields = append(fields, bpfMem(bpfMemPorts))
	case BPFLocalPort:
		fields = append(fields, dst...)
		fields = append(fields, dport)
	default:
		fields = append(fields, dst...)
	}
	vlan := g.usesVLAN()
	if vlan {
		fields = append(fields, bpfMem(bpfMemVLAN))
	}
	rows := make([][]uint32, len(conns))
	flat := make([]uint32, 0, len(conns)*len(fields))
	for i, c := range conns {
		start := len(flat)
		if g.level == BPFExact {
			flat = append(flat, c.src[:words]...)
		}
		flat = append(flat, c.dst[:words]...)
		switch g.level {
		case BPFExact:
			flat = append(flat, uint32(c.sport)<<16|uint32(c.dport))
		case BPFLocalPort:
			flat = append(flat, uint32(c.dport))
		}
		if vlan {
			flat = append(flat, uint32(c.vlan))
		}
		rows[i] = flat[start:len(flat):len(flat)]
	}
	g.set1(fields, rows, bpfReject)
}

// set1 emits a decision tree that jumps to accept when the fields equal
// one of rows and to fail otherwise. Columns with fewer distinct values
// are tested first; within a column the sorted values are binary
// searched.
func (g *bpfGen) set1(fields []bpfField, rows [][]uint32, fail bpfTarget) {
	if len(rows) == 0 {
		g.goTo(fail)
		return
	}
	if len(fields) == 0 {
		g.goTo(bpfAccept)
		return
	}
	// Order the columns by their number of distinct values.
	type col struct{ idx, distinct int }
	cols := make([]col, len(fields))
	vals := make([]uint32, len(rows))
	for c := range fields {
		for r := range rows {
			vals[r] = rows[r][c]
		}
		slices.Sort(vals)
		cols[c] = col{c, len(slices.Compact(vals))}
	}
	slices.SortStableFunc(cols, func(a, b col) int { return cmp.Compare(a.distinct, b.distinct) })
	order := make([]bpfField, len(fields))
	keys := make([][]uint32, len(rows))
	flat := make([]uint32, len(rows)*len(fields))
	for r := range rows {
		k := flat[r*len(fields) : (r+1)*len(fields) : (r+1)*len(fields)]
		for i, c := range cols {
			k[i] = rows[r][c.idx]
		}
		keys[r] = k
	}
	for i, c := range cols {
		order[i] = fields[c.idx]
	}
	slices.SortFunc(keys, slices.Compare)
	keys = slices.CompactFunc(keys, slices.Equal)
	g.tree(order, keys, 0, fail)
}

// tree emits the subtree for keys (sorted, all equal in columns < c).
func (g *bpfGen) tree(fields []bpfField, keys [][]uint32, c int, fail bpfTarget) {
	g.load(fields[c])
	// Group by the value of column c.
	type group struct {
		val  uint32
		keys [][]uint32
	}
	var groups []group
	for i := 0; i < len(keys); {
		j := i + 1
		for j < len(keys) && keys[j][c] == keys[i][c] {
			j++
		}
		groups = append(groups, group{keys[i][c], keys[i:j]})
		i = j
	}
	last := c == len(fields)-1
	var search func(gs []group)
	search = func(gs []group) {
		if len(gs) <= 4 {
			for i, gr := range gs {
				final := i == len(gs)-1
				if last {
					if final {
						g.jump(bpf.JumpEqual, gr.val, bpfAccept, fail)
					} else {
						g.jeq(gr.val, bpfAccept)
					}
					continue
				}
				nx := fail
				if !final {
					nx = g.newLabel()
				}
				g.jne(gr.val, nx)
				g.tree(fields, gr.keys, c+1, fail)
				if !final {
					g.bind(nx)
				}
			}
			return
		}
		mid := (len(gs) - 1) / 2
		right := g.newLabel()
		g.jump(bpf.JumpGreaterThan, gs[mid].val, right, bpfNext)
		search(gs[:mid+1])
		g.bind(right)
		search(gs[mid+1:])
	}
	search(groups)
}

// bpfUnsafeScratch returns the scratch cells the program loads on some
// path before storing them, as a bit set — the cells Linux's classic-BPF
// checker (check_load_and_stores in net/core/filter.c) refuses, making
// SO_ATTACH_FILTER fail with EINVAL. It follows the kernel's dataflow
// exactly: a cell is valid after a store, a jump's targets keep only the
// cells valid on every edge into them, and the cells valid after a jump
// (or a return) are reset to all.
func bpfUnsafeScratch(raw []bpf.RawInstruction) uint16 {
	masks := make([]uint16, len(raw)+1)
	for i := range masks {
		masks[i] = 0xffff
	}
	var valid, unsafe uint16
	mark := func(to int) {
		if to >= 0 && to < len(masks) {
			masks[to] &= valid
		}
	}
	for pc, ins := range raw {
		valid &= masks[pc]
		k := uint16(1) << (ins.K & 0xf)
		switch {
		case ins.Op == cbpfST || ins.Op == cbpfSTX:
			valid |= k
		case ins.Op == cbpfLDMem || ins.Op == cbpfLDXMem:
			if valid&k == 0 {
				unsafe |= k
				valid |= k // report each cell once per path
			}
		case ins.Op&cbpfClassMask == cbpfJMP:
			if ins.Op == cbpfJA {
				mark(pc + 1 + int(ins.K))
			} else {
				mark(pc + 1 + int(ins.Jt))
				mark(pc + 1 + int(ins.Jf))
			}
			valid = 0xffff
		}
	}
	return unsafe
}

// Classic-BPF opcodes (linux/filter.h), for bpfUnsafeScratch.
const (
	cbpfClassMask = 0x07
	cbpfST        = 0x02        // BPF_ST
	cbpfSTX       = 0x03        // BPF_STX
	cbpfJMP       = 0x05        // BPF_JMP
	cbpfLDMem     = 0x00 | 0x60 // BPF_LD | BPF_MEM
	cbpfLDXMem    = 0x01 | 0x60 // BPF_LDX | BPF_MEM
	cbpfJA        = 0x05 | 0x00 // BPF_JMP | BPF_JA
)

// bpfInitScratch makes ins acceptable to the kernel's checker: when some
// path loads a scratch cell it did not store, the program starts by
// zeroing those cells. Prepending leaves every relative jump intact.
func bpfInitScratch(ins []bpf.Instruction, max int) ([]bpf.Instruction, error) {
	raw, err := bpf.Assemble(ins)
	if err != nil {
		return nil, err
	}
	unsafe := bpfUnsafeScratch(raw)
	if unsafe == 0 {
		return ins, nil
	}
	pre := []bpf.Instruction{bpf.LoadConstant{Dst: bpf.RegA, Val: 0}}
	for cell := range 16 {
		if unsafe&(1<<cell) != 0 {
			pre = append(pre, bpf.StoreScratch{Src: bpf.RegA, N: cell})
		}
	}
	if len(pre)+len(ins) > max {
		return nil, errBPFTooLong
	}
	return append(pre, ins...), nil
}
