package wakepattern

import (
	"encoding/binary"
	"net/netip"
)

// Decode decodes the Ethernet frame b into f, replacing everything f held,
// and returns f.Status. It never panics, allocates nothing and keeps b in
// f.Raw (it does not copy it).
//
// Layers: Ethernet; up to MaxVLANTags 802.1Q/802.1ad tags; ARP for
// Ethernet/IPv4; IPv4 (options skipped); IPv6 with up to MaxIPv6ExtHeaders
// extension headers (hop-by-hop, routing, fragment, destination options,
// AH); TCP with its options; ICMPv6 (type, and the target of a neighbour
// solicitation). Any other EtherType or protocol leaves Status Unknown with
// the layers before it filled in.
//
// Lengths come from the IP header: L4End is where the IP packet ends, and
// Ethernet padding after it is neither payload nor an error. A frame
// shorter than the IP length is Truncated. An upper-layer header that runs
// past the end the IP header announces (while the frame itself is long
// enough) is BadHeaderLength.
//
// Fragments (IPv4 MF or offset != 0, IPv6 fragment header) set Fragment and
// FragOff. A non-first fragment carries no upper-layer header: Status is OK
// and the TCP fields stay zero. A first fragment (offset 0) of a TCP
// segment has its TCP header decoded when it fits in the fragment (ports,
// seq, ack, flags, options; PayloadLen counts only this fragment's bytes;
// the checksum is never verified), and Status is OK even when it does not
// fit. IsTCP is false for every fragment, so fragments never match
// connection patterns.
//
// TCP options: MSS, window scale (clamped to TCPMaxWScale), SACK-permitted
// and timestamps are recorded; other kinds are skipped; a known kind with
// the wrong length is ignored, as Linux does. An option whose length is
// below 2 or runs past the header is BadHeaderLength.
func (f *Frame) Decode(b []byte, opt DecodeOptions) Status {
	if len(b) > MaxFrameLen {
		b = b[:MaxFrameLen]
	}
	if !opt.VerifyChecksums {
		if _, _, ok := f.decodeFast(b); ok {
			return OK
		}
	}
	return f.decodeGeneral(b, opt)
}

// decodeGeneral is Decode without the fast path: every layer, every
// check.
func (f *Frame) decodeGeneral(b []byte, opt DecodeOptions) Status {
	*f = Frame{Raw: b, WScale: -1}
	f.Status = f.decode(b, opt)
	return f.Status
}

// fastMinLen is the shortest frame decodeFast takes: Ethernet, IPv4 and
// TCP headers without options.
const fastMinLen = EthernetLen + IPv4MinLen + TCPMinLen

// tcpOptsNOPNOPTS is the first word of the usual options of an established
// segment: NOP, NOP, timestamps (kind 8, length 10).
const tcpOptsNOPNOPTS = 0x0101080a

// decodeFast decodes, in one pass with a few bounds checks, the shape of
// almost every segment of an established connection: Ethernet with at
// most one 802.1Q/802.1ad tag, IPv4 without options and not fragmented,
// TCP without options or with exactly NOP, NOP, timestamps; and the same
// with IPv6 without extension headers (decodeFast6). It fills f as decode
// would (Status OK) and returns true, with, for IPv4, the segment's
// connection key (a, e; see connKey), which a Matcher looks up without
// reading the frame again (for IPv6 the key does not fit: a and e are 0).
// For any other frame, or one that is short or malformed, it writes
// nothing and returns false, and Decode takes the general path.
func (f *Frame) decodeFast(b []byte) (a, e uint64, ok bool) {
	if len(b) < fastMinLen {
		return 0, 0, false
	}
	eth := (*[EthernetLen + VLANTagLen]byte)(b[:fastMinLen])
	off := EthernetLen
	var numVLAN uint8
	var vid uint16
	et := binary.BigEndian.Uint16(eth[EthernetTypeOff:])
	if et == EtherTypeVLAN || et == EtherTypeQinQ {
		tag := binary.BigEndian.Uint32(eth[EthernetLen:])
		numVLAN, vid, et = 1, uint16(tag>>16)&0x0fff, uint16(tag)
		off += VLANTagLen
	}
	if et != EtherTypeIPv4 {
		if et == EtherTypeIPv6 && f.decodeFast6(b, off, numVLAN, vid) {
			return 0, 0, true
		}
		return 0, 0, false
	}
	p := b[off:]
	if len(p) < IPv4MinLen+TCPMinLen {
		return 0, 0, false
	}
	h := (*[IPv4MinLen + TCPMinLen]byte)(p)
	if h[IPv4VersionIHLOff] != 0x45 || h[IPv4ProtoOff] != ProtoTCP ||
		binary.BigEndian.Uint16(h[IPv4FlagsFragOff:])&(IPv4FlagMF|ipv4FragOffMask) != 0 {
		return 0, 0, false
	}
	tl := int(binary.BigEndian.Uint16(h[IPv4TotalLenOff:]))
	thl := int(h[IPv4MinLen+TCPDataOffOff]>>4) * 4
	if (thl != TCPMinLen && thl != TCPMinLen+12) || tl < IPv4MinLen+thl || len(p) < tl {
		return 0, 0, false
	}
	var tsval, tsecr uint32
	hasTS := thl > TCPMinLen
	if hasTS {
		o := (*[12]byte)(p[IPv4MinLen+TCPMinLen:])
		if binary.BigEndian.Uint32(o[:]) != tcpOptsNOPNOPTS {
			return 0, 0, false
		}
		tsval = binary.BigEndian.Uint32(o[4:])
		tsecr = binary.BigEndian.Uint32(o[8:])
	}
	l4 := off + IPv4MinLen
	t := (*[TCPMinLen]byte)(h[IPv4MinLen:])
	// Every field of f is written, in order, rather than zeroing f first:
	// TestDecodeFast poisons every field (by reflection, so a field added
	// to Frame is covered) and checks that none survives.
	f.Raw = b
	f.Status = OK
	f.Dst = [6]byte(eth[EthernetDstOff:])
	f.Src = [6]byte(eth[EthernetSrcOff:])
	f.NumVLAN = numVLAN
	f.VLAN = [MaxVLANTags]uint16{vid}
	f.EtherType = EtherTypeIPv4
	f.L3Off = uint16(off)
	f.ARPOp = 0
	f.ARPSenderHW = [6]byte{}
	f.ARPTargetHW = [6]byte{}
	f.SrcIP = netip.AddrFrom4([4]byte(h[IPv4SrcOff:]))
	f.DstIP = netip.AddrFrom4([4]byte(h[IPv4DstOff:]))
	f.IPProto = ProtoTCP
	f.TTL = h[IPv4TTLOff]
	f.TOS = h[IPv4TOSOff]
	f.Fragment = false
	f.FragOff = 0
	f.L4Off = uint16(l4)
	f.L4End = uint16(off + tl)
	f.SrcPort = binary.BigEndian.Uint16(t[TCPSrcPortOff:])
	f.DstPort = binary.BigEndian.Uint16(t[TCPDstPortOff:])
	f.Seq = binary.BigEndian.Uint32(t[TCPSeqOff:])
	f.Ack = binary.BigEndian.Uint32(t[TCPAckOff:])
	f.TCPFlags = t[TCPFlagsOff]
	f.Window = binary.BigEndian.Uint16(t[TCPWindowOff:])
	f.MSS = 0
	f.WScale = -1
	f.SACKPermitted = false
	f.HasTS = hasTS
	f.TSval, f.TSecr = tsval, tsecr
	f.TSOff = 0
	if hasTS {
		f.TSOff = uint16(l4 + TCPMinLen + 4)
	}
	f.PayloadOff = uint16(l4 + thl)
	f.PayloadLen = uint16(tl - IPv4MinLen - thl)
	f.ICMPType = 0
	f.NDPTarget = netip.Addr{}
	// Source and destination are adjacent: one load is remote<<32 | local.
	a = binary.BigEndian.Uint64(h[IPv4SrcOff:])
	e = uint64(binary.BigEndian.Uint32(t[TCPSrcPortOff:]))<<32 | uint64(vid)<<16 | 4
	return a, e, true
}

// decodeFast6 is decodeFast for IPv6 without extension headers, after the
// Ethernet header and tag (the IPv6 header at off; numVLAN, vid). It
// writes f only when it returns true.
func (f *Frame) decodeFast6(b []byte, off int, numVLAN uint8, vid uint16) bool {
	if off > len(b) {
		return false
	}
	p := b[off:]
	if len(p) < IPv6Len+TCPMinLen {
		return false
	}
	h := (*[IPv6Len + TCPMinLen]byte)(p)
	if h[IPv6VersionOff]>>4 != 6 || h[IPv6NextHeaderOff] != ProtoTCP {
		return false
	}
	pl := int(binary.BigEndian.Uint16(h[IPv6PayloadLenOff:]))
	thl := int(h[IPv6Len+TCPDataOffOff]>>4) * 4
	if (thl != TCPMinLen && thl != TCPMinLen+12) || pl < thl || len(p) < IPv6Len+pl {
		return false
	}
	var tsval, tsecr uint32
	hasTS := thl > TCPMinLen
	if hasTS {
		o := (*[12]byte)(p[IPv6Len+TCPMinLen:])
		if binary.BigEndian.Uint32(o[:]) != tcpOptsNOPNOPTS {
			return false
		}
		tsval = binary.BigEndian.Uint32(o[4:])
		tsecr = binary.BigEndian.Uint32(o[8:])
	}
	l4 := off + IPv6Len
	t := (*[TCPMinLen]byte)(h[IPv6Len:])
	// Every field, in order, as in decodeFast.
	f.Raw = b
	f.Status = OK
	f.Dst = [6]byte(b[EthernetDstOff:])
	f.Src = [6]byte(b[EthernetSrcOff:])
	f.NumVLAN = numVLAN
	f.VLAN = [MaxVLANTags]uint16{vid}
	f.EtherType = EtherTypeIPv6
	f.L3Off = uint16(off)
	f.ARPOp = 0
	f.ARPSenderHW = [6]byte{}
	f.ARPTargetHW = [6]byte{}
	f.SrcIP = netip.AddrFrom16([16]byte(h[IPv6SrcOff:]))
	f.DstIP = netip.AddrFrom16([16]byte(h[IPv6DstOff:]))
	f.IPProto = ProtoTCP
	f.TTL = h[IPv6HopLimitOff]
	f.TOS = uint8(binary.BigEndian.Uint16(h[IPv6VersionOff:]) >> 4)
	f.Fragment = false
	f.FragOff = 0
	f.L4Off = uint16(l4)
	f.L4End = uint16(l4 + pl)
	f.SrcPort = binary.BigEndian.Uint16(t[TCPSrcPortOff:])
	f.DstPort = binary.BigEndian.Uint16(t[TCPDstPortOff:])
	f.Seq = binary.BigEndian.Uint32(t[TCPSeqOff:])
	f.Ack = binary.BigEndian.Uint32(t[TCPAckOff:])
	f.TCPFlags = t[TCPFlagsOff]
	f.Window = binary.BigEndian.Uint16(t[TCPWindowOff:])
	f.MSS = 0
	f.WScale = -1
	f.SACKPermitted = false
	f.HasTS = hasTS
	f.TSval, f.TSecr = tsval, tsecr
	f.TSOff = 0
	if hasTS {
		f.TSOff = uint16(l4 + TCPMinLen + 4)
	}
	f.PayloadOff = uint16(l4 + thl)
	f.PayloadLen = uint16(pl - thl)
	f.ICMPType = 0
	f.NDPTarget = netip.Addr{}
	return true
}

func (f *Frame) decode(b []byte, opt DecodeOptions) Status {
	if len(b) < EthernetLen {
		return Truncated
	}
	f.Dst = [6]byte(b[EthernetDstOff:])
	f.Src = [6]byte(b[EthernetSrcOff:])
	et := binary.BigEndian.Uint16(b[EthernetTypeOff:])
	off := EthernetLen
	for et == EtherTypeVLAN || et == EtherTypeQinQ {
		if f.NumVLAN == MaxVLANTags {
			f.EtherType = et
			return TooManyTags
		}
		if len(b) < off+VLANTagLen {
			return Truncated
		}
		tag := VLANTag(b[off:])
		f.VLAN[f.NumVLAN] = tag.ID()
		f.NumVLAN++
		et = tag.Type()
		off += VLANTagLen
	}
	f.EtherType = et
	f.L3Off = uint16(off)
	switch et {
	case EtherTypeIPv4:
		return f.decodeIPv4(b, off, opt)
	case EtherTypeIPv6:
		return f.decodeIPv6(b, off, opt)
	case EtherTypeARP:
		return f.decodeARP(b, off)
	}
	return Unknown
}

func (f *Frame) decodeARP(b []byte, off int) Status {
	if len(b) < off+ARPLen {
		return Truncated
	}
	a := ARP(b[off:])
	if a.HType() != ARPHTypeEther || a.PType() != EtherTypeIPv4 ||
		a[ARPHLenOff] != arpHLenEthernet || a[ARPPLenOff] != arpPLenIPv4 {
		return Unknown
	}
	f.ARPOp = a.Op()
	f.ARPSenderHW = a.SenderHW()
	f.ARPTargetHW = a.TargetHW()
	f.SrcIP = a.SenderIP()
	f.DstIP = a.TargetIP()
	return OK
}

func (f *Frame) decodeIPv4(b []byte, off int, opt DecodeOptions) Status {
	if len(b) < off+IPv4MinLen {
		return Truncated
	}
	h := IPv4(b[off:])
	if h.Version() != 4 {
		return BadVersion
	}
	hl := h.HeaderLen()
	if hl < IPv4MinLen {
		return BadHeaderLength
	}
	if len(h) < hl {
		return Truncated
	}
	tl := h.TotalLen()
	if tl < hl {
		return BadHeaderLength
	}
	if len(h) < tl {
		return Truncated
	}
	if opt.VerifyChecksums && Fold(Sum(h[:hl], 0)) != 0xffff {
		return BadIPChecksum
	}
	f.TOS = h.TOS()
	f.TTL = h.TTL()
	f.IPProto = h.Proto()
	f.SrcIP = netip.AddrFrom4([4]byte(h[IPv4SrcOff:]))
	f.DstIP = netip.AddrFrom4([4]byte(h[IPv4DstOff:]))
	f.L4Off = uint16(off + hl)
	f.L4End = uint16(off + tl)
	if binary.BigEndian.Uint16(h[IPv4FlagsFragOff:])&(IPv4FlagMF|ipv4FragOffMask) == 0 {
		if f.IPProto == ProtoTCP {
			return f.decodeTCP(b, opt) // the common case, without the fragment logic
		}
		return f.decodeL4(b, opt)
	}
	f.Fragment = true
	f.FragOff = uint16(h.FragOffset())
	if f.FragOff != 0 {
		return OK
	}
	return f.decodeL4(b, opt)
}

func (f *Frame) decodeIPv6(b []byte, off int, opt DecodeOptions) Status {
	if len(b) < off+IPv6Len {
		return Truncated
	}
	h := IPv6(b[off:])
	if h.Version() != 6 {
		return BadVersion
	}
	end := off + IPv6Len + h.PayloadLen()
	if len(b) < end {
		return Truncated
	}
	f.TOS = h.TrafficClass()
	f.TTL = h.HopLimit()
	f.SrcIP = netip.AddrFrom16([16]byte(h[IPv6SrcOff:]))
	f.DstIP = netip.AddrFrom16([16]byte(h[IPv6DstOff:]))
	f.L4End = uint16(end)
	next := h.NextHeader()
	p := off + IPv6Len
	for n := 0; ; n++ {
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoFragment, ProtoDestOpts, ProtoAH:
		default:
			f.IPProto = next
			f.L4Off = uint16(p)
			if f.Fragment && f.FragOff != 0 {
				return OK
			}
			return f.decodeL4(b, opt)
		}
		if n == MaxIPv6ExtHeaders {
			f.IPProto = next
			f.L4Off = uint16(p)
			return ExtChainTooLong
		}
		if end < p+IPv6ExtMinLen {
			return BadHeaderLength
		}
		e := IPv6Ext(b[p:end])
		el := e.Len(next)
		if end < p+el {
			return BadHeaderLength
		}
		if next == ProtoFragment {
			f.Fragment = true
			f.FragOff = uint16(e.FragOffset())
		}
		next = e.NextHeader()
		p += el
	}
}

// decodeL4 decodes the upper layer at f.L4Off..f.L4End. On a first
// fragment the TCP header is decoded best effort and the status is OK.
func (f *Frame) decodeL4(b []byte, opt DecodeOptions) Status {
	switch f.IPProto {
	case ProtoTCP:
		st := f.decodeTCP(b, opt)
		if f.Fragment {
			if st != OK {
				f.clearTCP()
			}
			return OK
		}
		return st
	case ProtoICMPv6:
		if f.EtherType != EtherTypeIPv6 {
			return Unknown
		}
		return f.decodeICMPv6(b)
	}
	return Unknown
}

func (f *Frame) clearTCP() {
	f.SrcPort, f.DstPort, f.Seq, f.Ack, f.TCPFlags, f.Window = 0, 0, 0, 0, 0, 0
	f.MSS, f.WScale, f.SACKPermitted, f.HasTS, f.TSval, f.TSecr, f.TSOff = 0, -1, false, false, 0, 0, 0
	f.PayloadOff, f.PayloadLen = 0, 0
}

func (f *Frame) decodeTCP(b []byte, opt DecodeOptions) Status {
	off, end := int(f.L4Off), int(f.L4End)
	if end-off < TCPMinLen {
		return BadHeaderLength
	}
	t := TCP(b[off:end])
	hl := t.HeaderLen()
	if hl < TCPMinLen || hl > len(t) {
		return BadHeaderLength
	}
	f.SrcPort = t.SrcPort()
	f.DstPort = t.DstPort()
	f.Seq = t.Seq()
	f.Ack = t.Ack()
	f.TCPFlags = t.Flags()
	f.Window = t.Window()
	f.PayloadOff = uint16(off + hl)
	f.PayloadLen = uint16(end - off - hl)
	if hl == TCPMinLen+12 && binary.BigEndian.Uint32(t[TCPMinLen:]) == 0x0101080a {
		// The usual layout of an established segment: NOP, NOP, timestamps.
		f.HasTS = true
		f.TSval = binary.BigEndian.Uint32(t[TCPMinLen+4:])
		f.TSecr = binary.BigEndian.Uint32(t[TCPMinLen+8:])
		f.TSOff = uint16(off + TCPMinLen + 4)
	} else if hl > TCPMinLen {
		if st := f.decodeTCPOptions(t[TCPMinLen:hl], off+TCPMinLen); st != OK {
			return st
		}
	}
	if opt.VerifyChecksums && !f.Fragment {
		var ps uint32
		if f.EtherType == EtherTypeIPv4 {
			l3 := int(f.L3Off)
			ps = pseudoSum(b[l3+IPv4SrcOff:l3+IPv4SrcOff+4], b[l3+IPv4DstOff:l3+IPv4DstOff+4], ProtoTCP, len(t))
		} else {
			l3 := int(f.L3Off)
			ps = pseudoSum(b[l3+IPv6SrcOff:l3+IPv6SrcOff+16], b[l3+IPv6DstOff:l3+IPv6DstOff+16], ProtoTCP, len(t))
		}
		if Fold(Sum(t, ps)) != 0xffff {
			return BadTCPChecksum
		}
	}
	return OK
}

// decodeTCPOptions walks the option bytes o, which start at frame offset
// base.
func (f *Frame) decodeTCPOptions(o []byte, base int) Status {
	for i := 0; i < len(o); {
		kind := o[i]
		switch kind {
		case TCPOptEOL:
			return OK
		case TCPOptNOP:
			i++
			continue
		}
		if i+2 > len(o) {
			return BadHeaderLength
		}
		l := int(o[i+1])
		if l < 2 || i+l > len(o) {
			return BadHeaderLength
		}
		switch {
		case kind == TCPOptMSS && l == TCPOptMSSLen:
			f.MSS = binary.BigEndian.Uint16(o[i+2:])
		case kind == TCPOptWScale && l == TCPOptWScaleLen:
			f.WScale = int8(min(o[i+2], TCPMaxWScale))
		case kind == TCPOptSACKPermitted && l == TCPOptSACKPermLen:
			f.SACKPermitted = true
		case kind == TCPOptTimestamps && l == TCPOptTimestampsLen:
			f.HasTS = true
			f.TSval = binary.BigEndian.Uint32(o[i+2:])
			f.TSecr = binary.BigEndian.Uint32(o[i+6:])
			f.TSOff = uint16(base + i + 2)
		}
		i += l
	}
	return OK
}

func (f *Frame) decodeICMPv6(b []byte) Status {
	off, end := int(f.L4Off), int(f.L4End)
	if end-off < ICMPv6MinLen {
		return BadHeaderLength
	}
	m := NeighborSolicitation(b[off:end])
	f.ICMPType = m.Type()
	if f.ICMPType == ICMPv6TypeNeighborSolicit {
		if len(m) < NSLen {
			return BadHeaderLength
		}
		f.NDPTarget = m.Target()
	}
	return OK
}
