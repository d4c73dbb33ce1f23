package nic

import (
	"encoding/binary"
	"errors"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// Offloaded frames. Linux links have checksum and segmentation offloads
// on by default: a TCP sender on a veth hands the link one GSO
// "super-frame" of up to 64 KB with a partial checksum (CHECKSUM_PARTIAL:
// the checksum field holds only the pseudo-header sum), and the link
// segments and checksums it, if ever, where it leaves the machine. A
// packet socket opened with PACKET_VNET_HDR (packet(7)) receives each
// frame behind a struct virtio_net_hdr (include/uapi/linux/virtio_net.h)
// that says so, and takes one in front of each frame it sends, so a bump
// in the wire can pass such frames on unchanged: the kernel on the other
// side finishes them as it would have on the first link.
//
//	struct virtio_net_hdr {          // host byte order (legacy virtio)
//		u8  flags;       // NEEDS_CSUM: checksum partial; DATA_VALID: verified
//		u8  gso_type;    // NONE, TCPV4, UDP, TCPV6, UDP_L4; | ECN
//		u16 hdr_len;     // length of the headers (a hint on receive)
//		u16 gso_size;    // payload bytes per segment
//		u16 csum_start;  // offset from the frame's start where summing starts
//		u16 csum_offset; // offset from csum_start of the checksum field
//	};
//
// The device carries the header with every frame it forwards in D0 (and
// while waking, from the host), across both ports. Frames it looks into
// in D3 and while waking are made whole first (finishFrame): a partial
// checksum is completed, a GSO frame is cut into its segments with full
// checksums, exactly as the kernel's software GSO would; those plain
// frames are what the offload engine, the post-wake buffer and the
// coalescing hold see and what the host gets at Resume. A port that
// cannot carry the header (a Port that is not an OffloadPort, or whose
// Offloads is false) also gets plain frames.

// VnetHdrLen is the size of struct virtio_net_hdr.
const VnetHdrLen = 10

// virtio_net_hdr flags and GSO types.
const (
	VnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	VnetDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID

	GSONone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	GSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	GSOUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP (UFO, IP fragmentation)
	GSOTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	GSOUDPL4 = 5    // VIRTIO_NET_HDR_GSO_UDP_L4 (UDP segmentation)
	GSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN: the sender set CWR
)

// MaxGSOFrame is the longest frame a link with the default GSO limit
// (gso_max_size 65536) hands a packet socket: an IPv6 packet with a
// 65535-byte payload behind an Ethernet header and two VLAN tags. A port
// with offloads reads into buffers at least this long.
const MaxGSOFrame = 65535 + 40 + EthernetHeaderLen + 2*VLANTagLen

// VnetHdr is a frame's struct virtio_net_hdr: its offload state. The zero
// value is a whole frame (full checksums, no segmentation pending).
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

// IsGSO reports whether the frame is a super-frame to be segmented.
func (h *VnetHdr) IsGSO() bool { return h.GSOType&^GSOECN != GSONone }

// NeedsCsum reports whether the frame's checksum at CsumStart+CsumOffset
// is partial.
func (h *VnetHdr) NeedsCsum() bool { return h.Flags&VnetNeedsCsum != 0 }

// Whole reports whether the frame needs no finishing: no GSO, no
// partial checksum.
func (h *VnetHdr) Whole() bool { return !h.IsGSO() && !h.NeedsCsum() }

// put writes h into b[:VnetHdrLen] in host byte order.
func (h *VnetHdr) put(b []byte) {
	_ = b[VnetHdrLen-1]
	b[0], b[1] = h.Flags, h.GSOType
	binary.NativeEndian.PutUint16(b[2:], h.HdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.GSOSize)
	binary.NativeEndian.PutUint16(b[6:], h.CsumStart)
	binary.NativeEndian.PutUint16(b[8:], h.CsumOffset)
}

// get reads h from b[:VnetHdrLen].
func (h *VnetHdr) get(b []byte) {
	_ = b[VnetHdrLen-1]
	h.Flags, h.GSOType = b[0], b[1]
	h.HdrLen = binary.NativeEndian.Uint16(b[2:])
	h.GSOSize = binary.NativeEndian.Uint16(b[4:])
	h.CsumStart = binary.NativeEndian.Uint16(b[6:])
	h.CsumOffset = binary.NativeEndian.Uint16(b[8:])
}

// shift moves the header's offsets by n bytes (a VLAN tag inserted in
// front of them).
func (h *VnetHdr) shift(n uint16) {
	if h.NeedsCsum() {
		h.CsumStart += n
	}
	if h.IsGSO() && h.HdrLen != 0 {
		h.HdrLen += n
	}
}

// OffloadPort is a Port that moves frames with their virtio_net_hdr.
// When Offloads reports true, ReadBatch fills Packet.Vnet and frames may
// be GSO super-frames (up to MaxGSOFrame, beyond the MTU) or carry partial
// checksums; WriteBatchVnet sends frames[i] with hdrs[i] (WriteBatch sends
// them with a zero header: whole frames). The AF_PACKET port implements
// it (PACKET_VNET_HDR), as does porttest's pipe with Config.Offloads.
type OffloadPort interface {
	Port
	// Offloads reports whether frames carry their virtio_net_hdr.
	Offloads() bool
	// WriteBatchVnet is WriteBatch with a header per frame; len(hdrs)
	// must be at least len(frames). A GSO frame may exceed the MTU; its
	// segments (GSOSize payload bytes behind its headers) may not.
	WriteBatchVnet(frames [][]byte, hdrs []VnetHdr) (int, error)
}

// portOffloads reports whether p carries virtio_net_hdrs.
func portOffloads(p Port) (OffloadPort, bool) {
	op, ok := p.(OffloadPort)
	if !ok || !op.Offloads() {
		return nil, false
	}
	return op, true
}

// CheckVnetFrameSize is checkFrameSize for a frame with its header: a
// GSO frame may be up to MaxGSOFrame long if one segment (its headers
// plus GSOSize bytes) fits the MTU.
func CheckVnetFrameSize(mtu int, frame []byte, h *VnetHdr) error {
	if !h.IsGSO() {
		return checkFrameSize(mtu, frame)
	}
	if len(frame) < EthernetHeaderLen {
		return &frameSizeError{n: len(frame), min: EthernetHeaderLen}
	}
	if len(frame) > MaxMaxFrame {
		return &frameSizeError{n: len(frame), max: MaxMaxFrame}
	}
	if seg := int(h.CsumStart) + int(h.GSOSize); h.GSOSize == 0 || seg > FrameLimit(mtu, frame)+60 {
		// csum_start is the L4 header; 60 bytes is the longest TCP header.
		return &frameSizeError{n: seg, max: FrameLimit(mtu, frame)}
	}
	return nil
}

// Errors of finishFrame. Each is counted (vnet_dropped_bad) where the
// device drops a frame for it.
var (
	errVnetHeaders = errors.New("virtio_net_hdr: offsets do not match the frame's headers")
	errVnetGSOType = errors.New("virtio_net_hdr: unsupported gso_type")
)

// l3Offset returns the offset of the IP header of an Ethernet frame with
// up to two VLAN tags, and its EtherType.
func l3Offset(frame []byte) (int, uint16) {
	off := EthernetHeaderLen
	if len(frame) < off {
		return 0, 0
	}
	et := binary.BigEndian.Uint16(frame[12:])
	for i := 0; i < 2 && (et == 0x8100 || et == 0x88a8); i++ {
		if len(frame) < off+VLANTagLen {
			return 0, 0
		}
		et = binary.BigEndian.Uint16(frame[off+2:])
		off += VLANTagLen
	}
	return off, et
}

// completeCsum finishes a partial checksum in place: the field at
// CsumStart+CsumOffset holds the pseudo-header sum, and the checksum
// covers everything from CsumStart to the IP packet's end (not Ethernet
// padding; skb_checksum_help). A UDP checksum that comes out 0 is sent as
// 0xffff.
func completeCsum(frame []byte, h *VnetHdr) error {
	start, field := int(h.CsumStart), int(h.CsumStart)+int(h.CsumOffset)
	end := ipEnd(frame)
	if start < EthernetHeaderLen || field+2 > end {
		return errVnetHeaders
	}
	c := ^wp.Fold(wp.Sum(frame[start:end], 0))
	if c == 0 && h.CsumOffset == 6 { // UDP's check field
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[field:], c)
	return nil
}

// ipEnd returns where the IP packet in frame ends by its length field,
// or the frame's end when the field is 0 or beyond it.
func ipEnd(frame []byte) int {
	l3, et := l3Offset(frame)
	n := 0
	switch {
	case et == 0x0800 && len(frame) >= l3+20:
		n = l3 + int(binary.BigEndian.Uint16(frame[l3+2:]))
	case et == 0x86dd && len(frame) >= l3+40:
		n = l3 + 40 + int(binary.BigEndian.Uint16(frame[l3+4:]))
	}
	if n <= l3 || n > len(frame) {
		return len(frame)
	}
	return n
}

// normalizeGSO rewrites a GSO frame that does not carry a partial
// checksum — what a receiving NIC's GRO hands a packet socket: DATA_VALID,
// csum_start 0, the checksum field the first segment's — into the form a
// sender's TSO frame has and the kernel expects on transmit: NEEDS_CSUM at
// the L4 header, the field holding the pseudo-header sum over the whole
// L4 length. The L4 header is found from the IP header (IPv4 with
// options, IPv6 without extension headers).
func normalizeGSO(frame []byte, h *VnetHdr) error {
	l3, et := l3Offset(frame)
	var l4 int
	var proto uint8
	switch {
	case et == 0x0800 && len(frame) >= l3+20 && frame[l3]>>4 == 4:
		l4, proto = l3+int(frame[l3]&0x0f)*4, frame[l3+9]
	case et == 0x86dd && len(frame) >= l3+40 && frame[l3]>>4 == 6:
		l4, proto = l3+40, frame[l3+6]
	default:
		return errVnetHeaders
	}
	off := 16
	switch {
	case proto == 6 && (h.GSOType&^GSOECN == GSOTCPv4 || h.GSOType&^GSOECN == GSOTCPv6):
	case proto == 17 && h.GSOType&^GSOECN == GSOUDPL4:
		off = 6
	default:
		return errVnetGSOType
	}
	end := ipEnd(frame)
	if l4+off+2 > end || l4 <= l3 {
		return errVnetHeaders
	}
	var ps uint32
	if et == 0x0800 {
		ps = pseudoSum(frame[l3+12:l3+20], proto)
	} else {
		ps = pseudoSum(frame[l3+8:l3+40], proto)
	}
	binary.BigEndian.PutUint16(frame[l4+off:], wp.Fold(ps+uint32(end-l4)))
	h.Flags = VnetNeedsCsum
	h.CsumStart, h.CsumOffset = uint16(l4), uint16(off)
	return nil
}

// segmenter cuts a GSO super-frame into its segments, one per next call,
// each with full IPv4 header, TCP or UDP checksums, as the kernel's
// software GSO does (tcp_gso_segment, __udp_gso_segment): consecutive
// sequence numbers, FIN and PSH on the last segment only, CWR on the first
// only, the IPv4 ID counting up. It allocates nothing.
type segmenter struct {
	frame  []byte
	l3, l4 int // offsets of the IP and L4 headers
	hlen   int // all headers
	mss    int
	off    int // next payload byte
	i      int // segments emitted
	done   bool
	v4     bool
	tcp    bool
	seq    uint32
	id     uint16
	flags  uint8 // the super-frame's TCP flags
	pseudo uint32
}

// TCP flag bits touched by segmentation.
const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// init checks frame against h and prepares the segments. The IPv4 header
// checksum of the super-frame must verify.
func (s *segmenter) init(frame []byte, h *VnetHdr) error {
	*s = segmenter{frame: frame[:ipEnd(frame)], mss: int(h.GSOSize)}
	frame = s.frame
	l3, et := l3Offset(frame)
	switch h.GSOType &^ GSOECN {
	case GSOTCPv4:
		s.v4, s.tcp = true, true
	case GSOTCPv6:
		s.tcp = true
	case GSOUDPL4:
		s.v4 = et == 0x0800
	default:
		return errVnetGSOType
	}
	if l3 == 0 || (s.v4 && et != 0x0800) || (!s.v4 && et != 0x86dd) || s.mss == 0 {
		return errVnetHeaders
	}
	s.l3 = l3
	l4 := int(h.CsumStart)
	if !h.NeedsCsum() || l4 == 0 {
		return errVnetHeaders
	}
	if s.v4 {
		if len(frame) < l3+20 || frame[l3]>>4 != 4 || l4 != l3+int(frame[l3]&0x0f)*4 {
			return errVnetHeaders
		}
		if wp.Fold(wp.Sum(frame[l3:l4], 0)) != 0xffff {
			return errVnetHeaders
		}
		s.id = binary.BigEndian.Uint16(frame[l3+4:])
	} else if len(frame) < l3+40 || frame[l3]>>4 != 6 || l4 < l3+40 {
		return errVnetHeaders
	}
	if s.tcp {
		if len(frame) < l4+20 || h.CsumOffset != 16 {
			return errVnetHeaders
		}
		s.hlen = l4 + int(frame[l4+12]>>4)*4
		if s.hlen < l4+20 || s.hlen > len(frame) {
			return errVnetHeaders
		}
		s.seq = binary.BigEndian.Uint32(frame[l4+4:])
		s.flags = frame[l4+13]
	} else {
		if len(frame) < l4+8 || h.CsumOffset != 6 {
			return errVnetHeaders
		}
		s.hlen = l4 + 8
	}
	s.l4, s.off = l4, s.hlen
	var proto uint8 = 17
	if s.tcp {
		proto = 6
	}
	if s.v4 {
		s.pseudo = pseudoSum(frame[l3+12:l3+20], proto)
	} else {
		s.pseudo = pseudoSum(frame[l3+8:l3+40], proto)
	}
	return nil
}

// pseudoSum is the pseudo-header sum of the addresses and the protocol;
// the length is added per segment.
func pseudoSum(addrs []byte, proto uint8) uint32 {
	return uint32(wp.Fold(wp.Sum(addrs, uint32(proto))))
}

// segLen returns the length of the largest segment.
func (s *segmenter) segLen() int { return s.hlen + s.mss }

// next writes the next segment into dst (at least segLen bytes) and
// returns its length, or 0 when every segment was written.
func (s *segmenter) next(dst []byte) int {
	if s.done {
		return 0
	}
	chunk := min(s.mss, len(s.frame)-s.off)
	n := s.hlen + chunk
	copy(dst[:s.hlen], s.frame[:s.hlen])
	copy(dst[s.hlen:n], s.frame[s.off:s.off+chunk])
	last := s.off+chunk >= len(s.frame)
	l3, l4 := s.l3, s.l4
	if s.v4 {
		binary.BigEndian.PutUint16(dst[l3+2:], uint16(n-l3))
		binary.BigEndian.PutUint16(dst[l3+4:], s.id+uint16(s.i))
		dst[l3+10], dst[l3+11] = 0, 0
		binary.BigEndian.PutUint16(dst[l3+10:], ^wp.Fold(wp.Sum(dst[l3:l4], 0)))
	} else {
		binary.BigEndian.PutUint16(dst[l3+4:], uint16(n-l3-40))
	}
	l4len := n - l4
	if s.tcp {
		binary.BigEndian.PutUint32(dst[l4+4:], s.seq+uint32(s.i*s.mss))
		fl := s.flags
		if !last {
			fl &^= tcpFIN | tcpPSH
		}
		if s.i > 0 {
			fl &^= tcpCWR
		}
		dst[l4+13] = fl
		dst[l4+16], dst[l4+17] = 0, 0
		c := ^wp.Fold(wp.Sum(dst[l4:n], s.pseudo+uint32(l4len)))
		binary.BigEndian.PutUint16(dst[l4+16:], c)
	} else {
		binary.BigEndian.PutUint16(dst[l4+4:], uint16(l4len))
		dst[l4+6], dst[l4+7] = 0, 0
		c := ^wp.Fold(wp.Sum(dst[l4:n], s.pseudo+uint32(l4len)))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(dst[l4+6:], c)
	}
	s.off += chunk
	s.i++
	s.done = last // a super-frame without payload is one segment
	return n
}
