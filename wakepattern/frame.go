package wakepattern

import (
	"net/netip"
	"strconv"
)

// Limits of the decoder. They are published so a device can advertise them.
const (
	// MaxVLANTags is the number of stacked 802.1Q/802.1ad tags decoded
	// (QinQ). A frame with more tags is reported as TooManyTags.
	MaxVLANTags = 2
	// MaxIPv6ExtHeaders is the length of the IPv6 extension-header chain the
	// decoder walks before it gives up with ExtChainTooLong.
	MaxIPv6ExtHeaders = 8
)

// EtherTypes the decoder understands.
const (
	EtherTypeIPv4  uint16 = 0x0800
	EtherTypeARP   uint16 = 0x0806
	EtherTypeVLAN  uint16 = 0x8100 // 802.1Q C-tag
	EtherTypeQinQ  uint16 = 0x88a8 // 802.1ad S-tag
	EtherTypeIPv6  uint16 = 0x86dd
	EtherTypeEAPOL uint16 = 0x888e
)

// IP protocol numbers the decoder understands.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// TCP flag bits as they appear in byte 13 of the TCP header.
const (
	TCPFlagFIN uint8 = 0x01
	TCPFlagSYN uint8 = 0x02
	TCPFlagRST uint8 = 0x04
	TCPFlagPSH uint8 = 0x08
	TCPFlagACK uint8 = 0x10
	TCPFlagURG uint8 = 0x20
	TCPFlagECE uint8 = 0x40
	TCPFlagCWR uint8 = 0x80
)

// Status is the outcome of Decode. Its zero value is Unknown, so a Frame
// that was never decoded fails closed.
type Status uint8

const (
	// Unknown: not decoded, or an EtherType/protocol the decoder does not
	// parse further. Layers up to the unknown one are still filled in.
	Unknown Status = iota
	// OK: every layer present was decoded and is well formed.
	OK
	// Truncated: the frame ends inside a header or before the length the
	// IP header announces.
	Truncated
	// BadHeaderLength: an IHL, TCP data offset, option length or IPv6
	// extension length is impossible.
	BadHeaderLength
	// BadIPChecksum: the IPv4 header checksum is wrong (checked only with
	// VerifyChecksums).
	BadIPChecksum
	// BadTCPChecksum: the TCP checksum is wrong (checked only with
	// VerifyChecksums; never on fragments).
	BadTCPChecksum
	// BadVersion: the IP version nibble disagrees with the EtherType.
	BadVersion
	// TooManyTags: more than MaxVLANTags VLAN tags.
	TooManyTags
	// ExtChainTooLong: more than MaxIPv6ExtHeaders IPv6 extension headers.
	ExtChainTooLong
	numStatus
)

// Frame is the decoded view of one Ethernet frame. Decode fills it in place
// and allocates nothing; it keeps a reference to the decoded bytes in Raw.
// All offsets are from the start of Raw. Fields of layers that are absent
// are zero.
type Frame struct {
	Raw    []byte
	Status Status

	// Ethernet.
	Dst, Src  [6]byte
	NumVLAN   uint8
	VLAN      [MaxVLANTags]uint16 // VLAN IDs (12 bits), outermost first
	EtherType uint16              // innermost EtherType, after the tags
	L3Off     uint16              // offset of the ARP/IP header

	// ARP (EtherType ARP, Ethernet/IPv4 only).
	ARPOp       uint16
	ARPSenderHW [6]byte
	ARPTargetHW [6]byte

	// IPv4 / IPv6 (ARP: sender and target protocol addresses).
	SrcIP, DstIP netip.Addr
	IPProto      uint8  // upper-layer protocol after the extension chain
	TTL          uint8  // TTL or hop limit
	TOS          uint8  // TOS or traffic class
	Fragment     bool   // IPv4 MF or offset != 0; IPv6 Fragment header
	FragOff      uint16 // fragment offset in bytes when Fragment
	L4Off        uint16
	L4End        uint16 // end of the IP payload as the IP header announces it

	// TCP.
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	TCPFlags         uint8
	Window           uint16 // raw, unscaled
	MSS              uint16 // 0 when absent
	WScale           int8   // -1 when absent
	SACKPermitted    bool
	HasTS            bool
	TSval, TSecr     uint32
	TSOff            uint16 // offset of the TSval field when HasTS
	PayloadOff       uint16 // first payload byte
	PayloadLen       uint16 // from the IP length, never the Ethernet padding

	// ICMPv6 (neighbour solicitation).
	ICMPType  uint8
	NDPTarget netip.Addr
}

// Payload returns the TCP payload bytes (nil when there are none).
func (f *Frame) Payload() []byte {
	if f.PayloadLen == 0 {
		return nil
	}
	return f.Raw[f.PayloadOff : f.PayloadOff+f.PayloadLen]
}

// IsTCP reports whether the frame carries a fully decoded TCP segment.
func (f *Frame) IsTCP() bool { return f.Status == OK && f.IPProto == ProtoTCP && !f.Fragment }

// DecodeOptions tunes Decode.
type DecodeOptions struct {
	// VerifyChecksums checks the IPv4 header checksum and the TCP checksum.
	VerifyChecksums bool
}

// MaxFrameLen is the longest frame Decode looks at: offsets in Frame are
// 16 bits. Bytes past it are ignored (Raw is cut there), so an IP packet
// announcing more is reported Truncated.
const MaxFrameLen = 65535

var statusNames = [numStatus]string{
	Unknown:         "unknown",
	OK:              "ok",
	Truncated:       "truncated",
	BadHeaderLength: "bad header length",
	BadIPChecksum:   "bad IP checksum",
	BadTCPChecksum:  "bad TCP checksum",
	BadVersion:      "bad IP version",
	TooManyTags:     "too many VLAN tags",
	ExtChainTooLong: "IPv6 extension chain too long",
}

// String returns a short lowercase name of the status.
func (s Status) String() string {
	if s < numStatus {
		return statusNames[s]
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}
