package xdp

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf/asm"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// XDP verdicts (enum xdp_action).
const (
	xdpDrop = 1
	xdpPass = 2
)

// The map layouts the program and the userspace side share.
//
// conns (hash): a 40-byte key, the 4-tuple as it is on the wire, and a
// 4-byte value, the slot's index in slots (0: a pattern's connection
// without an absorbing slot).
//
//	off  0: source address, 16 bytes (IPv4: the first 4, then zeros)
//	off 16: destination address, 16 bytes
//	off 32: source port, destination port, as on the wire (4 bytes)
//	off 36: family, uint32 4 or 6 (native byte order)
//
// slots (array, memory-mapped): one 64-byte record per slot index.
//
//	off  0: seq, the slot's RCV.NXT, uint32 as a native load of its wire bytes
//	off  4: ack, the slot's SND.NXT, the same
//	off  8: TS.Recent, uint32 in host order (the program moves it forward)
//	off 12: flags, uint32: slotArmed, slotTS, slotReply
//	off 16: replies absorbed, uint64
//	off 24: other exact pure ACKs absorbed, uint64
//	off 32: frames of the connection passed to userspace, uint64
//
// globals (array of one 128-byte record, memory-mapped): a uint64 counter
// per Reason at 8×Reason, and at globalsBypassOff a uint64 that, when
// not zero, passes every frame (PassAll: a wake lets everything in
// before the link is closed).
const (
	keyLen       = 40
	keyFamilyOff = 36
	keyPortsOff  = 32

	slotRecLen    = 64
	slotSeqOff    = 0
	slotAckOff    = 4
	slotTSOff     = 8
	slotFlagsOff  = 12
	slotReplyOff  = 16
	slotACKOff    = 24
	slotPassedOff = 32

	globalsLen       = 128
	globalsBypassOff = 120
)

// Slot flags.
const (
	slotArmed = 1 << 0 // absorb the exact keep-alive reply
	slotTS    = 1 << 1 // the connection uses RFC 7323 timestamps: PAWS applies
	slotReply = 1 << 2 // an exact pure ACK is the keep-alive's reply (else an ACK)
)

// Reason is what the program did with a frame; each has a counter.
type Reason uint8

const (
	// Passed: handed to the socket (and the userspace datapath).
	Passed Reason = iota
	// Absorbed: an armed slot's exact keep-alive reply, dropped and
	// counted in the slot's record.
	Absorbed
	// DroppedNotIP: an untagged frame neither IPv4, IPv6 nor ARP.
	DroppedNotIP
	// DroppedNotTCP: an IP packet neither TCP nor an ICMPv6 neighbour
	// solicitation.
	DroppedNotTCP
	// DroppedFragment: an IPv4 fragment or an IPv6 fragment header.
	DroppedFragment
	// DroppedNoMatch: a TCP segment of no connection pattern (and no SYN
	// a SYN pattern could take).
	DroppedNoMatch
	// DroppedARP: an ARP frame that is not a request for one of the
	// host's addresses.
	DroppedARP
	numReasons
)

var reasonNames = [numReasons]string{
	Passed:          "passed",
	Absorbed:        "absorbed",
	DroppedNotIP:    "dropped_not_ip",
	DroppedNotTCP:   "dropped_not_tcp",
	DroppedFragment: "dropped_fragment",
	DroppedNoMatch:  "dropped_no_match",
	DroppedARP:      "dropped_arp",
}

// String returns the counter's name.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// MaxARPAddrs bounds Config.ARPFor: the program compares each in turn.
const MaxARPAddrs = 64

// Map names the instructions reference.
const (
	mapConns   = "conns"
	mapSlots   = "slots"
	mapGlobals = "globals"
)

// native is the byte order of the machine the program runs on.
var native = binary.NativeEndian

// n16 returns what a native 16-bit load of v's wire (big-endian) bytes
// gives, as a jump immediate.
func n16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(native.Uint16(b[:]))
}

// n32 is n16 for 32-bit loads; the program compares it with 32-bit jumps.
func n32(v uint32) int32 {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return int32(native.Uint32(b[:]))
}

// wire32 is n32 as an unsigned value, for the slots' seq and ack.
func wire32(v uint32) uint32 { return uint32(n32(v)) }

// plan is what the program needs to know of a pattern set.
type plan struct {
	mayDrop bool    // no pattern looks at raw bytes: frames that match nothing may be dropped
	syn     [2]bool // a SYN pattern exists for IPv4, IPv6
	arp     []uint32
}

func newPlan(patterns []wp.Pattern, arpFor []netip.Addr) (*plan, error) {
	p := &plan{mayDrop: true}
	for i := range patterns {
		switch pt := &patterns[i]; pt.Kind {
		case wp.KindTCPConn:
		case wp.KindTCPSYN:
			if pt.SYN.IPv6 {
				p.syn[1] = true
			} else {
				p.syn[0] = true
			}
		case wp.KindBitmap, wp.KindMagic:
			p.mayDrop = false
		default:
			return nil, fmt.Errorf("xdp: pattern %d: kind %d: unknown", pt.ID, pt.Kind)
		}
	}
	if len(arpFor) > MaxARPAddrs {
		return nil, fmt.Errorf("xdp: arp for: %d addresses: limit %d", len(arpFor), MaxARPAddrs)
	}
	for i, a := range arpFor {
		a = a.Unmap()
		if !a.Is4() {
			return nil, fmt.Errorf("xdp: arp for[%d] %v: not an IPv4 address", i, a)
		}
		b := a.As4()
		p.arp = append(p.arp, binary.BigEndian.Uint32(b[:]))
	}
	return p, nil
}

// gen assembles the program.
type gen struct {
	p            *plan
	ins          asm.Instructions
	pendingLabel string
}

// emit appends instructions, the first carrying the pending label.
func (g *gen) emit(ins ...asm.Instruction) {
	if len(ins) > 0 && g.pendingLabel != "" {
		ins[0] = ins[0].WithSymbol(g.pendingLabel)
		g.pendingLabel = ""
	}
	g.ins = append(g.ins, ins...)
}

// mark names the next instruction emitted.
func (g *gen) mark(name string) {
	if g.pendingLabel != "" {
		panic("xdp: two labels on one instruction: " + g.pendingLabel + ", " + name)
	}
	g.pendingLabel = name
}

// drop returns the target of a drop for reason r: its counter, or pass
// when the set has patterns on raw bytes.
func (g *gen) drop(r Reason) string {
	if !g.p.mayDrop {
		return "pass"
	}
	return "drop_" + r.String()[len("dropped_"):]
}

// checkLen jumps to fail when the frame is shorter than n bytes.
func (g *gen) checkLen(n int32, fail string) {
	g.emit(asm.Mov.Reg(asm.R2, asm.R7), asm.Add.Imm(asm.R2, n), asm.JGT.Reg(asm.R2, asm.R8, fail))
}

// count adds one to the global counter of r (R1, R2 clobbered).
func (g *gen) count(r Reason) {
	g.emit(asm.LoadMapValue(asm.R1, 0, 0).WithReference(mapGlobals),
		asm.Mov.Imm(asm.R2, 1),
		asm.AddAtomic.Mem(asm.R1, asm.R2, asm.DWord, int16(8*int(r))))
}

// Program layout (R6 ctx, R7 data, R8 data_end, R9 the slot's record):
// Ethernet; VLAN-tagged frames pass (the classic-BPF prefilter and the
// Matcher judge tags, and a kernel that moved the tag into metadata shows
// the frame untagged, as it does to that prefilter with
// KernelStripsVLAN); ARP requests for the host pass; IPv4 without options
// and IPv6 straight to TCP look the 4-tuple up; everything the program
// does not parse passes.
func program(p *plan) (asm.Instructions, error) {
	g := &gen{p: p}
	g.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word),
		asm.LoadMem(asm.R8, asm.R6, 4, asm.Word),
		asm.LoadMapValue(asm.R1, 0, 0).WithReference(mapGlobals),
		asm.LoadMem(asm.R2, asm.R1, globalsBypassOff, asm.DWord),
		asm.JNE.Imm(asm.R2, 0, "pass"),
	)
	g.checkLen(14, "pass")
	g.emit(asm.LoadMem(asm.R2, asm.R7, 12, asm.Half),
		asm.JEq.Imm(asm.R2, n16(0x0800), "ipv4"),
		asm.JEq.Imm(asm.R2, n16(0x86dd), "ipv6"),
		asm.JEq.Imm(asm.R2, n16(0x0806), "arp"),
		asm.JEq.Imm(asm.R2, n16(0x8100), "pass"),
		asm.JEq.Imm(asm.R2, n16(0x88a8), "pass"),
		asm.Ja.Label(g.drop(DroppedNotIP)),
	)

	// ARP: a request (opcode 1) whose target protocol address is the
	// host's passes.
	g.mark("arp")
	g.checkLen(42, g.drop(DroppedARP))
	g.emit(asm.LoadMem(asm.R2, asm.R7, 20, asm.Half),
		asm.JNE.Imm(asm.R2, n16(1), g.drop(DroppedARP)),
		asm.LoadMem(asm.R2, asm.R7, 38, asm.Word))
	for _, a := range p.arp {
		g.emit(asm.JEq.Imm32(asm.R2, n32(a), "pass"))
	}
	g.emit(asm.Ja.Label(g.drop(DroppedARP)))

	// IPv4 without options.
	g.mark("ipv4")
	g.checkLen(34, "pass")
	g.emit(asm.LoadMem(asm.R2, asm.R7, 14, asm.Byte),
		asm.JNE.Imm(asm.R2, 0x45, "pass"), // options, or not version 4
		asm.LoadMem(asm.R2, asm.R7, 20, asm.Half),
		asm.And.Imm(asm.R2, n16(0x3fff)),
		asm.JNE.Imm(asm.R2, 0, g.drop(DroppedFragment)),
		asm.LoadMem(asm.R2, asm.R7, 23, asm.Byte),
		asm.JNE.Imm(asm.R2, 6, g.drop(DroppedNotTCP)),
	)
	g.checkLen(54, "pass")
	g.key(4, 26, 30, 34)
	g.lookup(4)

	// IPv6.
	g.mark("ipv6")
	g.checkLen(54, "pass")
	g.emit(asm.LoadMem(asm.R2, asm.R7, 14, asm.Byte),
		asm.RSh.Imm(asm.R2, 4),
		asm.JNE.Imm(asm.R2, 6, "pass"),
		asm.LoadMem(asm.R2, asm.R7, 20, asm.Byte),
		asm.JEq.Imm(asm.R2, 6, "tcp6"),
		asm.JEq.Imm(asm.R2, 58, "icmp6"),
		asm.JEq.Imm(asm.R2, 44, g.drop(DroppedFragment)),
		asm.JEq.Imm(asm.R2, 0, "pass"),  // hop-by-hop
		asm.JEq.Imm(asm.R2, 43, "pass"), // routing
		asm.JEq.Imm(asm.R2, 60, "pass"), // destination options
		asm.JEq.Imm(asm.R2, 51, "pass"), // AH
		asm.Ja.Label(g.drop(DroppedNotTCP)),
	)
	g.mark("icmp6")
	g.checkLen(55, "pass")
	g.emit(asm.LoadMem(asm.R2, asm.R7, 54, asm.Byte),
		asm.JEq.Imm(asm.R2, 135, "pass"), // neighbour solicitation
		asm.Ja.Label(g.drop(DroppedNotTCP)))
	g.mark("tcp6")
	g.checkLen(74, "pass")
	g.key(6, 22, 38, 54)
	g.lookup(6)

	// The exact-reply checks, one copy per family and header length.
	for _, fam := range []int{4, 6} {
		for _, doff := range []int{5, 8} {
			g.exact(fam, doff)
		}
	}

	g.mark("pass_slot")
	g.emit(asm.Mov.Imm(asm.R2, 1), asm.AddAtomic.Mem(asm.R9, asm.R2, asm.DWord, slotPassedOff))
	g.mark("pass")
	g.count(Passed)
	g.emit(asm.Mov.Imm(asm.R0, xdpPass), asm.Return())

	g.mark("absorb")
	g.emit(asm.LoadMem(asm.R2, asm.R9, slotFlagsOff, asm.Word),
		asm.And.Imm(asm.R2, slotReply),
		asm.Mov.Imm(asm.R3, 1),
		asm.JEq.Imm(asm.R2, 0, "absorb_ack"),
		asm.AddAtomic.Mem(asm.R9, asm.R3, asm.DWord, slotReplyOff),
		asm.Ja.Label("absorbed"))
	g.mark("absorb_ack")
	g.emit(asm.AddAtomic.Mem(asm.R9, asm.R3, asm.DWord, slotACKOff))
	g.mark("absorbed")
	g.count(Absorbed)
	g.emit(asm.Mov.Imm(asm.R0, xdpDrop), asm.Return())

	if p.mayDrop {
		for r := DroppedNotIP; r < numReasons; r++ {
			g.mark(g.drop(r))
			g.count(r)
			g.emit(asm.Mov.Imm(asm.R0, xdpDrop), asm.Return())
		}
	}
	if g.pendingLabel != "" {
		return nil, fmt.Errorf("xdp: label %s on nothing", g.pendingLabel)
	}
	return g.ins, nil
}

// l3, l4: where the IP and TCP headers start for a family.
func offsets(fam int) (l3, l4 int16) {
	if fam == 4 {
		return 14, 34
	}
	return 14, 54
}

// key builds the conns key of the segment on the stack at fp-40: the
// addresses at src and dst (1 word for IPv4, 4 for IPv6), the ports at
// ports.
func (g *gen) key(fam int, src, dst, ports int16) {
	g.emit(asm.Mov.Imm(asm.R2, 0))
	for off := int16(-40); off < 0; off += 8 {
		g.emit(asm.StoreMem(asm.RFP, off, asm.R2, asm.DWord))
	}
	words := int16(1)
	if fam == 6 {
		words = 4
	}
	for i := range words {
		g.emit(asm.LoadMem(asm.R2, asm.R7, src+4*i, asm.Word), asm.StoreMem(asm.RFP, -40+4*i, asm.R2, asm.Word),
			asm.LoadMem(asm.R2, asm.R7, dst+4*i, asm.Word), asm.StoreMem(asm.RFP, -24+4*i, asm.R2, asm.Word))
	}
	g.emit(asm.LoadMem(asm.R2, asm.R7, ports, asm.Word), asm.StoreMem(asm.RFP, -40+keyPortsOff, asm.R2, asm.Word),
		asm.Mov.Imm(asm.R2, int32(fam)), asm.StoreMem(asm.RFP, -40+keyFamilyOff, asm.R2, asm.Word))
}

// lookup finds the segment's slot record and sends a candidate for an
// exact reply (ACK set; no SYN, FIN or RST; no payload; a header of 20
// bytes or of 32 with NOP NOP TS) to the exact check of its layout.
func (g *gen) lookup(fam int) {
	l3, l4 := offsets(fam)
	sfx := fmt.Sprint(fam)
	// IPv4's total length covers both headers and counts from l3;
	// IPv6's payload length covers TCP only and counts from l4.
	lenOff, hdrs, base := l3+2, int32(20), int32(l3)
	if fam == 6 {
		lenOff, hdrs, base = l3+4, 0, int32(l4)
	}
	g.emit(asm.LoadMapPtr(asm.R1, 0).WithReference(mapConns),
		asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, -40),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "nomatch"+sfx),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Word),
		asm.JEq.Imm(asm.R2, 0, "pass"),
		asm.StoreMem(asm.RFP, -44, asm.R2, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapSlots),
		asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, -44),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Reg(asm.R9, asm.R0),
		asm.LoadMem(asm.R2, asm.R9, slotFlagsOff, asm.Word),
		asm.And.Imm(asm.R2, slotArmed),
		asm.JEq.Imm(asm.R2, 0, "pass_slot"),
		asm.LoadMem(asm.R2, asm.R7, l4+13, asm.Byte),
		asm.And.Imm(asm.R2, int32(wp.TCPFlagFIN|wp.TCPFlagSYN|wp.TCPFlagRST|wp.TCPFlagACK)),
		asm.JNE.Imm(asm.R2, int32(wp.TCPFlagACK), "pass_slot"),
		asm.LoadMem(asm.R3, asm.R7, l4+12, asm.Byte),
		asm.RSh.Imm(asm.R3, 4),
		asm.LoadMem(asm.R4, asm.R7, lenOff, asm.Half),
		asm.HostTo(asm.BE, asm.R4, asm.Half),
		asm.Mov.Reg(asm.R5, asm.R8), asm.Sub.Reg(asm.R5, asm.R7), asm.Sub.Imm(asm.R5, base),
		asm.JGT.Reg(asm.R4, asm.R5, "pass_slot"), // the frame is shorter than the packet
		asm.JNE.Imm(asm.R3, 5, "doff8_"+sfx),
		asm.JNE.Imm(asm.R4, hdrs+20, "pass_slot"),
		asm.Ja.Label("exact"+sfx+"_5"),
	)
	g.mark("doff8_" + sfx)
	g.emit(asm.JNE.Imm(asm.R3, 8, "pass_slot"),
		asm.JNE.Imm(asm.R4, hdrs+32, "pass_slot"),
		asm.Ja.Label("exact"+sfx+"_8"))

	g.mark("nomatch" + sfx)
	if g.p.syn[fam/6] {
		g.emit(asm.LoadMem(asm.R2, asm.R7, l4+13, asm.Byte),
			asm.And.Imm(asm.R2, int32(wp.TCPFlagSYN|wp.TCPFlagACK)),
			asm.JEq.Imm(asm.R2, int32(wp.TCPFlagSYN), "pass"))
	}
	g.emit(asm.Ja.Label(g.drop(DroppedNoMatch)))
}

// exact checks a candidate of family fam whose TCP header is doff words
// (5, or 8 with NOP NOP TS at its start): seq and ack are the slot's,
// the timestamp passes PAWS, the IPv4 header and TCP checksums are good;
// then it absorbs (TS.Recent moves to the reply's TSval).
func (g *gen) exact(fam, doff int) {
	l3, l4 := offsets(fam)
	name := fmt.Sprintf("exact%d_%d", fam, doff)
	g.mark(name)
	if doff == 8 {
		g.checkLen(int32(l4)+32, "pass_slot")
		g.emit(asm.LoadMem(asm.R2, asm.R7, l4+20, asm.Word),
			asm.JNE.Imm32(asm.R2, n32(0x0101080a), "pass_slot"))
	} else {
		g.checkLen(int32(l4)+20, "pass_slot")
	}
	g.emit(asm.LoadMem(asm.R2, asm.R7, l4+4, asm.Word),
		asm.LoadMem(asm.R3, asm.R9, slotSeqOff, asm.Word),
		asm.JNE.Reg32(asm.R2, asm.R3, "pass_slot"),
		asm.LoadMem(asm.R2, asm.R7, l4+8, asm.Word),
		asm.LoadMem(asm.R3, asm.R9, slotAckOff, asm.Word),
		asm.JNE.Reg32(asm.R2, asm.R3, "pass_slot"))
	if doff == 8 {
		g.emit(asm.LoadMem(asm.R2, asm.R9, slotFlagsOff, asm.Word),
			asm.And.Imm(asm.R2, slotTS),
			asm.JEq.Imm(asm.R2, 0, name+"_paws"),
			asm.LoadMem(asm.R2, asm.R7, l4+24, asm.Word),
			asm.HostTo(asm.BE, asm.R2, asm.Word),
			asm.LoadMem(asm.R3, asm.R9, slotTSOff, asm.Word),
			asm.Sub.Reg32(asm.R2, asm.R3),
			asm.JSLT.Imm32(asm.R2, 0, "pass_slot")) // older than TS.Recent
		g.mark(name + "_paws")
	}
	if fam == 4 {
		g.emit(asm.Mov.Imm(asm.R2, 0))
		for i := range int16(5) {
			g.emit(asm.LoadMem(asm.R3, asm.R7, l3+4*i, asm.Word), asm.Add.Reg(asm.R2, asm.R3))
		}
		g.fold()
		g.emit(asm.JNE.Imm(asm.R2, 0xffff, "pass_slot"))
	}
	// The pseudo-header: addresses, protocol 6 and the TCP length (the
	// same 16-bit words for both families).
	g.emit(asm.Mov.Imm(asm.R2, n16(6)+n16(uint16(4*doff))))
	src, words := l3+12, int16(2)
	if fam == 6 {
		src, words = l3+8, 8
	}
	for i := range words {
		g.emit(asm.LoadMem(asm.R3, asm.R7, src+4*i, asm.Word), asm.Add.Reg(asm.R2, asm.R3))
	}
	for i := range int16(doff) {
		g.emit(asm.LoadMem(asm.R3, asm.R7, l4+4*i, asm.Word), asm.Add.Reg(asm.R2, asm.R3))
	}
	g.fold()
	g.emit(asm.JNE.Imm(asm.R2, 0xffff, "pass_slot"))
	if doff == 8 {
		g.emit(asm.LoadMem(asm.R2, asm.R7, l4+24, asm.Word),
			asm.HostTo(asm.BE, asm.R2, asm.Word),
			asm.StoreMem(asm.R9, slotTSOff, asm.R2, asm.Word))
	}
	g.emit(asm.Ja.Label("absorb"))
}

// fold folds the one's complement sum of 32-bit words in R2 to 16 bits
// (R3 clobbered). Summing native loads is summing byte-swapped 16-bit
// words on a little-endian machine, and a good checksum folds to 0xffff
// either way.
func (g *gen) fold() {
	for range 2 {
		g.emit(asm.Mov.Reg(asm.R3, asm.R2), asm.RSh.Imm(asm.R3, 32),
			asm.Mov.Reg32(asm.R2, asm.R2), asm.Add.Reg(asm.R2, asm.R3))
	}
	for range 2 {
		g.emit(asm.Mov.Reg(asm.R3, asm.R2), asm.RSh.Imm(asm.R3, 16),
			asm.And.Imm(asm.R2, 0xffff), asm.Add.Reg(asm.R2, asm.R3))
	}
}
