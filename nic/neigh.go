package nic

import (
	"encoding/binary"
	"net/netip"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// Neighbour offload (NDIS ARP offload and NS offload): while the host
// sleeps the device answers ARP requests for the host's IPv4 addresses and
// IPv6 neighbour solicitations for its IPv6 addresses, so the network can
// still reach it. The replies are written into a caller-owned buffer;
// nothing is allocated.

// Lengths of the replies (before minimum-frame padding), without tags.
const (
	naICMPLen = 32 // NA header (24) + target link-layer address option (8)
	naFlagsSO = 0x60000000
	ndpOptTLL = 2
	nsHopOK   = 255
)

// hostAddrs are the addresses the device answers for.
type hostAddrs struct {
	mac [6]byte
	v4  []netip.Addr
	v6  []netip.Addr
}

func (h *hostAddrs) hasV4(a netip.Addr) bool {
	for _, x := range h.v4 {
		if x == a {
			return true
		}
	}
	return false
}

func (h *hostAddrs) hasV6(a netip.Addr) bool {
	for _, x := range h.v6 {
		if x == a {
			return true
		}
	}
	return false
}

// isARPRequestFor reports whether f is an ARP request for one of the
// host's IPv4 addresses.
func (h *hostAddrs) isARPRequestFor(f *wp.Frame) bool {
	return f.Status == wp.OK && f.EtherType == wp.EtherTypeARP && f.ARPOp == wp.ARPOpRequest && h.hasV4(f.DstIP)
}

// arpReply writes the reply to the ARP request f into dst (at least 60
// bytes plus the request's tags) and returns its length. The reply keeps
// the request's VLAN tags.
func (h *hostAddrs) arpReply(dst []byte, f *wp.Frame) int {
	l3 := int(f.L3Off)
	n := copy(dst, f.Raw[:l3])
	copy(dst[wp.EthernetDstOff:], f.Src[:])
	copy(dst[wp.EthernetSrcOff:], h.mac[:])
	a := dst[l3 : l3+wp.ARPLen]
	binary.BigEndian.PutUint16(a[wp.ARPHTypeOff:], wp.ARPHTypeEther)
	binary.BigEndian.PutUint16(a[wp.ARPPTypeOff:], wp.EtherTypeIPv4)
	a[wp.ARPHLenOff] = 6
	a[wp.ARPPLenOff] = 4
	binary.BigEndian.PutUint16(a[wp.ARPOpOff:], wp.ARPOpReply)
	copy(a[wp.ARPSenderHWOff:], h.mac[:])
	tip := f.DstIP.As4()
	copy(a[wp.ARPSenderIPOff:], tip[:])
	copy(a[wp.ARPTargetHWOff:], f.ARPSenderHW[:])
	sip := f.SrcIP.As4()
	copy(a[wp.ARPTargetIPOff:], sip[:])
	n += wp.ARPLen
	return pad(dst, n)
}

// pad zero-fills dst up to the minimum Ethernet frame and returns the new
// length.
func pad(dst []byte, n int) int {
	for n < wp.EthernetMinFrame {
		dst[n] = 0
		n++
	}
	return n
}

// nsStatus classifies a neighbour solicitation for the host.
type nsStatus uint8

const (
	nsNotForUs    nsStatus = iota // not an NS, or not for the host's addresses
	nsInvalid                     // an NS for the host that fails RFC 4861 §7.1.1 validation
	nsBadChecksum                 // an NS for the host with a wrong ICMPv6 checksum
	nsValid
)

// checkNS validates f as an NS for one of the host's IPv6 addresses: hop
// limit 255, code 0, at least 24 bytes, correct ICMPv6 checksum, and a
// solicited-node destination when the source is unspecified (DAD).
func (h *hostAddrs) checkNS(f *wp.Frame) nsStatus {
	if f.Status != wp.OK || f.EtherType != wp.EtherTypeIPv6 || f.IPProto != wp.ProtoICMPv6 ||
		f.ICMPType != wp.ICMPv6TypeNeighborSolicit || f.Fragment || !h.hasV6(f.NDPTarget) {
		return nsNotForUs
	}
	icmp := f.Raw[f.L4Off:f.L4End]
	if f.TTL != nsHopOK || len(icmp) < wp.NSLen || icmp[wp.ICMPv6CodeOff] != 0 {
		return nsInvalid
	}
	if wp.Fold(wp.Sum(icmp, wp.PseudoHeaderSum(wp.ProtoICMPv6, f.SrcIP, f.DstIP, len(icmp)))) != 0xffff {
		return nsBadChecksum
	}
	if f.SrcIP.IsUnspecified() && !isSolicitedNode(f.DstIP, f.NDPTarget) {
		return nsInvalid
	}
	return nsValid
}

// isSolicitedNode reports whether dst is the solicited-node multicast
// address of target (ff02::1:ffXX:XXXX).
func isSolicitedNode(dst, target netip.Addr) bool {
	d, t := dst.As16(), target.As16()
	return d == [16]byte{0xff, 0x02, 10: 0, 11: 0x01, 12: 0xff, 13: t[13], 14: t[14], 15: t[15]}
}

var (
	allNodes    = netip.AddrFrom16([16]byte{0xff, 0x02, 15: 0x01})
	allNodesMAC = [6]byte{0x33, 0x33, 0, 0, 0, 1}
)

// naReply writes the neighbour advertisement answering the valid NS f into
// dst and returns its length: from the target address to the solicitor
// (solicited and override flags set, RFC 4861 §7.2.4), or to all-nodes
// without the solicited flag when the solicitor is unspecified (DAD), with
// the target link-layer address option.
func (h *hostAddrs) naReply(dst []byte, f *wp.Frame) int {
	l3 := int(f.L3Off)
	copy(dst, f.Raw[:l3])
	copy(dst[wp.EthernetSrcOff:], h.mac[:])
	src, dstIP := f.NDPTarget, f.SrcIP
	flags := uint32(naFlagsSO)
	if dstIP.IsUnspecified() {
		dstIP = allNodes
		flags = 0x20000000 // override only
		copy(dst[wp.EthernetDstOff:], allNodesMAC[:])
	} else {
		copy(dst[wp.EthernetDstOff:], f.Src[:])
	}
	ip := dst[l3 : l3+wp.IPv6Len]
	binary.BigEndian.PutUint32(ip[0:], 6<<28)
	binary.BigEndian.PutUint16(ip[4:], naICMPLen)
	ip[6] = wp.ProtoICMPv6
	ip[7] = nsHopOK
	s, d := src.As16(), dstIP.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	m := dst[l3+wp.IPv6Len : l3+wp.IPv6Len+naICMPLen]
	m[0] = wp.ICMPv6TypeNeighborAdvert
	m[1] = 0
	m[2], m[3] = 0, 0
	binary.BigEndian.PutUint32(m[4:], flags)
	copy(m[8:24], s[:])
	m[24] = ndpOptTLL
	m[25] = 1
	copy(m[26:32], h.mac[:])
	cs := wp.Checksum(m, wp.PseudoHeaderSum(wp.ProtoICMPv6, src, dstIP, naICMPLen))
	binary.BigEndian.PutUint16(m[2:], cs)
	return pad(dst, l3+wp.IPv6Len+naICMPLen)
}
