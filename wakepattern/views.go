package wakepattern

import (
	"encoding/binary"
	"net/netip"
)

// Header views. Each view is a byte slice that starts at its header. The
// accessors do not check lengths: call them only on a view at least the
// header's minimum length long (Frame.Decode validates before it reads).
// Offset constants are relative to the start of the header.

// Ethernet is an Ethernet II header.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination MAC (6 octets)                 |
//	+                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                               |                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//	|                      Source MAC (6 octets)                    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           EtherType           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Ethernet []byte

// Ethernet offsets and length.
const (
	EthernetDstOff  = 0
	EthernetSrcOff  = 6
	EthernetTypeOff = 12
	EthernetLen     = 14
	// EthernetMinFrame is the minimum frame length without FCS: shorter
	// frames are padded, and the padding is not payload.
	EthernetMinFrame = 60
)

// Dst returns the destination MAC.
func (e Ethernet) Dst() [6]byte { return [6]byte(e[EthernetDstOff:]) }

// Src returns the source MAC.
func (e Ethernet) Src() [6]byte { return [6]byte(e[EthernetSrcOff:]) }

// Type returns the EtherType (or the TPID of the first VLAN tag).
func (e Ethernet) Type() uint16 { return binary.BigEndian.Uint16(e[EthernetTypeOff:]) }

// VLANTag is an 802.1Q (C-tag, TPID 0x8100) or 802.1ad (S-tag, TPID
// 0x88a8) tag, viewed from its TCI, i.e. the 4 bytes after the TPID.
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| PCP |D|        VLAN ID        |       Inner EtherType         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type VLANTag []byte

// VLAN tag offsets and length.
const (
	VLANTCIOff  = 0
	VLANTypeOff = 2
	VLANTagLen  = 4
)

// ID returns the 12-bit VLAN identifier.
func (v VLANTag) ID() uint16 { return binary.BigEndian.Uint16(v[VLANTCIOff:]) & 0x0fff }

// PCP returns the 3-bit priority code point.
func (v VLANTag) PCP() uint8 { return v[VLANTCIOff] >> 5 }

// Type returns the EtherType that follows the tag.
func (v VLANTag) Type() uint16 { return binary.BigEndian.Uint16(v[VLANTypeOff:]) }

// ARP is an ARP packet for Ethernet hardware and IPv4 protocol addresses
// (RFC 826).
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Hardware type         |         Protocol type         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  HW addr len  | Proto addr len|           Operation           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                  Sender hardware address (6)                  |
//	+                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                               |  Sender protocol address (4)  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//	|                               |                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//	|                  Target hardware address (6)                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                  Target protocol address (4)                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type ARP []byte

// ARP offsets, length and values.
const (
	ARPHTypeOff     = 0
	ARPPTypeOff     = 2
	ARPHLenOff      = 4
	ARPPLenOff      = 5
	ARPOpOff        = 6
	ARPSenderHWOff  = 8
	ARPSenderIPOff  = 14
	ARPTargetHWOff  = 18
	ARPTargetIPOff  = 24
	ARPLen          = 28
	ARPHTypeEther   = 1
	ARPOpRequest    = 1
	ARPOpReply      = 2
	arpHLenEthernet = 6
	arpPLenIPv4     = 4
)

// HType returns the hardware type.
func (a ARP) HType() uint16 { return binary.BigEndian.Uint16(a[ARPHTypeOff:]) }

// PType returns the protocol type.
func (a ARP) PType() uint16 { return binary.BigEndian.Uint16(a[ARPPTypeOff:]) }

// Op returns the operation (ARPOpRequest, ARPOpReply).
func (a ARP) Op() uint16 { return binary.BigEndian.Uint16(a[ARPOpOff:]) }

// SenderHW returns the sender hardware address.
func (a ARP) SenderHW() [6]byte { return [6]byte(a[ARPSenderHWOff:]) }

// SenderIP returns the sender protocol address.
func (a ARP) SenderIP() netip.Addr { return netip.AddrFrom4([4]byte(a[ARPSenderIPOff:])) }

// TargetHW returns the target hardware address.
func (a ARP) TargetHW() [6]byte { return [6]byte(a[ARPTargetHWOff:]) }

// TargetIP returns the target protocol address.
func (a ARP) TargetIP() netip.Addr { return netip.AddrFrom4([4]byte(a[ARPTargetIPOff:])) }

// IPv4 is an IPv4 header (RFC 791).
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Identification        |Flags|      Fragment Offset    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       Source Address                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Options                    |    Padding    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type IPv4 []byte

// IPv4 offsets, lengths and flags.
const (
	IPv4VersionIHLOff = 0
	IPv4TOSOff        = 1
	IPv4TotalLenOff   = 2
	IPv4IDOff         = 4
	IPv4FlagsFragOff  = 6
	IPv4TTLOff        = 8
	IPv4ProtoOff      = 9
	IPv4ChecksumOff   = 10
	IPv4SrcOff        = 12
	IPv4DstOff        = 16
	IPv4MinLen        = 20
	IPv4MaxLen        = 60
	IPv4FlagDF        = 0x4000
	IPv4FlagMF        = 0x2000
	ipv4FragOffMask   = 0x1fff
)

// Version returns the version nibble.
func (h IPv4) Version() uint8 { return h[IPv4VersionIHLOff] >> 4 }

// HeaderLen returns the header length in bytes (IHL×4).
func (h IPv4) HeaderLen() int { return int(h[IPv4VersionIHLOff]&0x0f) * 4 }

// TOS returns the type-of-service byte.
func (h IPv4) TOS() uint8 { return h[IPv4TOSOff] }

// TotalLen returns the total length of the packet (header and payload).
func (h IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(h[IPv4TotalLenOff:])) }

// ID returns the identification field.
func (h IPv4) ID() uint16 { return binary.BigEndian.Uint16(h[IPv4IDOff:]) }

// MoreFragments reports whether the MF flag is set.
func (h IPv4) MoreFragments() bool {
	return binary.BigEndian.Uint16(h[IPv4FlagsFragOff:])&IPv4FlagMF != 0
}

// FragOffset returns the fragment offset in bytes.
func (h IPv4) FragOffset() int {
	return int(binary.BigEndian.Uint16(h[IPv4FlagsFragOff:])&ipv4FragOffMask) * 8
}

// TTL returns the time to live.
func (h IPv4) TTL() uint8 { return h[IPv4TTLOff] }

// Proto returns the protocol number.
func (h IPv4) Proto() uint8 { return h[IPv4ProtoOff] }

// Checksum returns the header checksum field.
func (h IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(h[IPv4ChecksumOff:]) }

// Src returns the source address.
func (h IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(h[IPv4SrcOff:])) }

// Dst returns the destination address.
func (h IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(h[IPv4DstOff:])) }

// IPv6 is the fixed IPv6 header (RFC 8200).
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                         Source Address (16)                   +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                      Destination Address (16)                 +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type IPv6 []byte

// IPv6 offsets and length.
const (
	IPv6VersionOff    = 0
	IPv6PayloadLenOff = 4
	IPv6NextHeaderOff = 6
	IPv6HopLimitOff   = 7
	IPv6SrcOff        = 8
	IPv6DstOff        = 24
	IPv6Len           = 40
)

// IPv6 extension header numbers (next-header values) the decoder walks.
const (
	ProtoHopByHop uint8 = 0
	ProtoRouting  uint8 = 43
	ProtoFragment uint8 = 44
	ProtoAH       uint8 = 51
	ProtoNoNext   uint8 = 59
	ProtoDestOpts uint8 = 60
)

// Version returns the version nibble.
func (h IPv6) Version() uint8 { return h[IPv6VersionOff] >> 4 }

// TrafficClass returns the traffic class.
func (h IPv6) TrafficClass() uint8 {
	return uint8(binary.BigEndian.Uint16(h[IPv6VersionOff:]) >> 4)
}

// PayloadLen returns the payload length (everything after the fixed header).
func (h IPv6) PayloadLen() int { return int(binary.BigEndian.Uint16(h[IPv6PayloadLenOff:])) }

// NextHeader returns the next-header field of the fixed header.
func (h IPv6) NextHeader() uint8 { return h[IPv6NextHeaderOff] }

// HopLimit returns the hop limit.
func (h IPv6) HopLimit() uint8 { return h[IPv6HopLimitOff] }

// Src returns the source address.
func (h IPv6) Src() netip.Addr { return netip.AddrFrom16([16]byte(h[IPv6SrcOff:])) }

// Dst returns the destination address.
func (h IPv6) Dst() netip.Addr { return netip.AddrFrom16([16]byte(h[IPv6DstOff:])) }

// IPv6Ext is an IPv6 extension header. Hop-by-hop options, routing and
// destination options share this layout, with Hdr Ext Len in 8-octet
// units not counting the first 8:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Header  |  Hdr Ext Len  |                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//	.                    Options / routing data                     .
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The authentication header (RFC 4302) counts its Payload Len in 4-octet
// units minus 2. The fragment header (RFC 8200 §4.5) is always 8 octets:
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                         Identification                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type IPv6Ext []byte

// IPv6 extension header offsets and lengths.
const (
	IPv6ExtNextOff     = 0
	IPv6ExtLenOff      = 1
	IPv6ExtMinLen      = 8
	IPv6FragOffOff     = 2
	IPv6FragIDOff      = 4
	IPv6FragHeaderLen  = 8
	ipv6FragOffsetMask = 0xfff8
	ipv6FragMoreFlag   = 0x0001
)

// NextHeader returns the next-header field.
func (e IPv6Ext) NextHeader() uint8 { return e[IPv6ExtNextOff] }

// Len returns the length in bytes of the extension header of type proto
// (as announced; the view may be shorter).
func (e IPv6Ext) Len(proto uint8) int {
	switch proto {
	case ProtoFragment:
		return IPv6FragHeaderLen
	case ProtoAH:
		return (int(e[IPv6ExtLenOff]) + 2) * 4
	default:
		return (int(e[IPv6ExtLenOff]) + 1) * 8
	}
}

// FragOffset returns the fragment offset in bytes (fragment header only).
func (e IPv6Ext) FragOffset() int {
	return int(binary.BigEndian.Uint16(e[IPv6FragOffOff:]) & ipv6FragOffsetMask)
}

// MoreFragments reports whether the M flag is set (fragment header only).
func (e IPv6Ext) MoreFragments() bool {
	return binary.BigEndian.Uint16(e[IPv6FragOffOff:])&ipv6FragMoreFlag != 0
}

// TCP is a TCP header (RFC 9293).
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Source Port          |       Destination Port        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                        Sequence Number                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Acknowledgment Number                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Data |       |C|E|U|A|P|R|S|F|                               |
//	| Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//	|       |       |R|E|G|K|H|T|N|N|                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Checksum            |         Urgent Pointer        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Options                    |    Padding    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type TCP []byte

// TCP offsets and lengths.
const (
	TCPSrcPortOff  = 0
	TCPDstPortOff  = 2
	TCPSeqOff      = 4
	TCPAckOff      = 8
	TCPDataOffOff  = 12
	TCPFlagsOff    = 13
	TCPWindowOff   = 14
	TCPChecksumOff = 16
	TCPUrgentOff   = 18
	TCPMinLen      = 20
	TCPMaxLen      = 60
)

// TCP option kinds and their lengths (RFC 9293, RFC 2018, RFC 7323).
const (
	TCPOptEOL           = 0
	TCPOptNOP           = 1
	TCPOptMSS           = 2
	TCPOptWScale        = 3
	TCPOptSACKPermitted = 4
	TCPOptSACK          = 5
	TCPOptTimestamps    = 8
	TCPOptMSSLen        = 4
	TCPOptWScaleLen     = 3
	TCPOptSACKPermLen   = 2
	TCPOptTimestampsLen = 10
	// TCPMaxWScale is the largest window-scale shift (RFC 7323 §2.3);
	// larger values are clamped to it.
	TCPMaxWScale = 14
)

// SrcPort returns the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t[TCPSrcPortOff:]) }

// DstPort returns the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t[TCPDstPortOff:]) }

// Seq returns the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t[TCPSeqOff:]) }

// Ack returns the acknowledgment number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t[TCPAckOff:]) }

// HeaderLen returns the header length in bytes (data offset×4).
func (t TCP) HeaderLen() int { return int(t[TCPDataOffOff]>>4) * 4 }

// Flags returns the flag byte (TCPFlagFIN …).
func (t TCP) Flags() uint8 { return t[TCPFlagsOff] }

// Window returns the raw (unscaled) window.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t[TCPWindowOff:]) }

// Checksum returns the checksum field.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t[TCPChecksumOff:]) }

// Options returns the option bytes (between the fixed header and the data
// offset). The view must be at least HeaderLen long.
func (t TCP) Options() []byte { return t[TCPMinLen:t.HeaderLen()] }

// NeighborSolicitation is an ICMPv6 neighbour solicitation (RFC 4861 §4.3).
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |     Code      |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                           Reserved                            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                       Target Address (16)                     +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Options ...
//	+-+-+-+-+-+-+-+-+-+-+-+-
type NeighborSolicitation []byte

// ICMPv6 offsets, lengths and types.
const (
	ICMPv6TypeOff             = 0
	ICMPv6CodeOff             = 1
	ICMPv6ChecksumOff         = 2
	ICMPv6MinLen              = 4
	NSTargetOff               = 8
	NSLen                     = 24
	ICMPv6TypeNeighborSolicit = 135
	ICMPv6TypeNeighborAdvert  = 136
)

// Type returns the ICMPv6 type.
func (n NeighborSolicitation) Type() uint8 { return n[ICMPv6TypeOff] }

// Target returns the target address.
func (n NeighborSolicitation) Target() netip.Addr {
	return netip.AddrFrom16([16]byte(n[NSTargetOff:]))
}
