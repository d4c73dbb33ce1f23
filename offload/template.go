package offload

import (
	"encoding/binary"
	"time"

	"github.com/standbynic/standbynic/wakepattern"
)

// Header sizes of the frames the engine sends.
const (
	ethLen   = 14
	vlanLen  = 4
	ipv4Len  = 20
	ipv6Len  = 40
	tcpLen   = 20
	tsOptLen = 12 // NOP NOP kind=8 len=10 TSval TSecr

	// maxSegment bounds the payload of one segment the engine sends
	// (retransmissions are cut to min(MSS, maxSegment)).
	maxSegment = 1460
	maxFrame   = maxHdr + maxSegment
	minFrame   = 60 // Ethernet minimum without the FCS
)

// TCP header field offsets used for patching.
const (
	tcpSeqOff    = 4
	tcpAckOff    = 8
	tcpOffFlags  = 12 // data offset (4 bits), reserved, flags: one 16-bit word
	tcpWindowOff = 14
	tcpCsumOff   = 16
	ipv4LenOff   = 2
	ipv4IDOff    = 4
	ipv4CsumOff  = 10
	ipv6LenOff   = 4
)

const (
	flagsACK    = wakepattern.TCPFlagACK
	flagsPSHACK = wakepattern.TCPFlagPSH | wakepattern.TCPFlagACK
)

// buildTemplate writes s.hdr from snap: the frame of a pure ACK with
// SEQ = SND.NXT, ACK = RCV.NXT, the timestamp option when negotiated
// (TSval = snap's, TSecr = TS.Recent), IP ID 0 and correct checksums.
//
//	Ethernet: dst=RemoteMAC src=LocalMAC [0x8100 TCI=VLAN] type
//	IPv4:     45 TOS len id=0 DF TTL 6 csum src dst
//	IPv6:     6|TC|flow=0 len 6 hop src dst
//	TCP:      sport dport seq ack off|ACK window csum urg=0 [01 01 08 0a TSval TSecr]
func (s *slot) buildTemplate(snap *Snapshot) {
	h := s.hdr[:]
	clear(h)
	copy(h[0:6], snap.RemoteMAC[:])
	copy(h[6:12], snap.LocalMAC[:])
	off := 12
	if snap.VLAN != 0 {
		binary.BigEndian.PutUint16(h[off:], wakepattern.EtherTypeVLAN)
		binary.BigEndian.PutUint16(h[off+2:], snap.VLAN)
		off += vlanLen
	}
	tcpHL := tcpLen
	if snap.Timestamps.Enabled {
		tcpHL += tsOptLen
	}
	src, dst := snap.Local.Addr(), snap.Remote.Addr()
	if src.Is4() {
		binary.BigEndian.PutUint16(h[off:], wakepattern.EtherTypeIPv4)
		off += 2
		s.l3Off = uint8(off)
		ip := h[off : off+ipv4Len]
		ip[0] = 0x45
		ip[1] = snap.TOS
		binary.BigEndian.PutUint16(ip[ipv4LenOff:], uint16(ipv4Len+tcpHL))
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = snap.TTL
		ip[9] = wakepattern.ProtoTCP
		a4, b4 := src.As4(), dst.As4()
		copy(ip[12:16], a4[:])
		copy(ip[16:20], b4[:])
		binary.BigEndian.PutUint16(ip[ipv4CsumOff:], wakepattern.Checksum(ip, 0))
		off += ipv4Len
	} else {
		binary.BigEndian.PutUint16(h[off:], wakepattern.EtherTypeIPv6)
		off += 2
		s.l3Off = uint8(off)
		ip := h[off : off+ipv6Len]
		binary.BigEndian.PutUint32(ip[0:], 6<<28|uint32(snap.TOS)<<20)
		binary.BigEndian.PutUint16(ip[ipv6LenOff:], uint16(tcpHL))
		ip[6] = wakepattern.ProtoTCP
		ip[7] = snap.TTL
		a16, b16 := src.As16(), dst.As16()
		copy(ip[8:24], a16[:])
		copy(ip[24:40], b16[:])
		off += ipv6Len
	}
	s.l4Off = uint8(off)
	t := h[off : off+tcpHL]
	binary.BigEndian.PutUint16(t[0:], snap.Local.Port())
	binary.BigEndian.PutUint16(t[2:], snap.Remote.Port())
	binary.BigEndian.PutUint32(t[tcpSeqOff:], snap.SndNxt)
	binary.BigEndian.PutUint32(t[tcpAckOff:], snap.RcvNxt)
	binary.BigEndian.PutUint16(t[tcpOffFlags:], uint16(tcpHL/4)<<12|uint16(flagsACK))
	binary.BigEndian.PutUint16(t[tcpWindowOff:], uint16(min(snap.RcvWnd>>snap.RcvWScale, 0xffff)))
	if snap.Timestamps.Enabled {
		copy(t[tcpLen:], []byte{1, 1, 8, 10})
		s.tsOff = uint8(off + tcpLen + 4)
		binary.BigEndian.PutUint32(t[tcpLen+4:], snap.Timestamps.Val)
		binary.BigEndian.PutUint32(t[tcpLen+8:], snap.Timestamps.Recent)
	}
	ph := wakepattern.PseudoHeaderSum(wakepattern.ProtoTCP, src, dst, tcpHL)
	binary.BigEndian.PutUint16(t[tcpCsumOff:], wakepattern.Checksum(t, ph))
	s.hdrLen = uint8(off + tcpHL)
}

// begin copies s's header template into the engine's transmit buffer and
// returns the buffer; the caller writes the payload at [s.hdrLen:] and
// calls finish.
func (e *Engine) begin(s *slot) []byte {
	copy(e.tx[:], s.hdr[:s.hdrLen])
	return e.tx[:]
}

// finish patches the frame begun with begin for a segment with n payload
// bytes (already written), sequence number seq, flags, ACK = RCV.NXT and
// the timestamps of now, updates the checksums incrementally (RFC 1624:
// only the changed words and the added payload are summed), and returns
// the frame.
func (e *Engine) finish(s *slot, n int, seq uint32, flags uint8, now time.Duration) []byte {
	hl := int(s.hdrLen)
	b := e.tx[:hl+n]
	l3, l4 := int(s.l3Off), int(s.l4Off)
	tcpHL := hl - l4
	if s.has(flagIPv6) {
		binary.BigEndian.PutUint16(b[l3+ipv6LenOff:], uint16(tcpHL+n))
	} else {
		ip := b[l3:]
		id := s.ipID
		if !s.has(flagReplay) {
			s.ipID++
		}
		c := uint32(^binary.BigEndian.Uint16(ip[ipv4CsumOff:]))
		oldLen := binary.BigEndian.Uint16(ip[ipv4LenOff:])
		newLen := oldLen + uint16(n)
		c += uint32(^oldLen) + uint32(newLen)
		c += uint32(^binary.BigEndian.Uint16(ip[ipv4IDOff:])) + uint32(id)
		binary.BigEndian.PutUint16(ip[ipv4LenOff:], newLen)
		binary.BigEndian.PutUint16(ip[ipv4IDOff:], id)
		binary.BigEndian.PutUint16(ip[ipv4CsumOff:], ^wakepattern.Fold(c))
	}
	t := b[l4:]
	c := uint32(^binary.BigEndian.Uint16(t[tcpCsumOff:]))
	c = patch32(c, t[tcpSeqOff:], seq)
	c = patch32(c, t[tcpAckOff:], s.rcvNxt)
	c = patch16(c, t[tcpOffFlags:], uint16(tcpHL/4)<<12|uint16(flags))
	if s.has(flagTS) && !s.has(flagReplay) {
		// (A replayed frame keeps the armed TSval and TSecr.)
		c = patch32(c, t[tcpLen+4:], s.tsNow(now))
		c = patch32(c, t[tcpLen+8:], s.tsRecent)
	}
	// The pseudo-header's TCP length grows by n (lengths stay below 2^16,
	// so only its low word changes).
	c += uint32(^uint16(tcpHL)) + uint32(uint16(tcpHL+n))
	if n > 0 {
		c += uint32(wakepattern.Fold(wakepattern.Sum(b[hl:], 0)))
	}
	binary.BigEndian.PutUint16(t[tcpCsumOff:], ^wakepattern.Fold(c))
	if len(b) < minFrame {
		// Pad to the Ethernet minimum (the padding is no payload: the IP
		// length excludes it).
		b = e.tx[:minFrame]
		clear(b[hl+n:])
	}
	return b
}

// patch16 writes v at b[0:2] and adds the change to the running
// one's-complement sum c (RFC 1624 eqn. 3: ~m + m').
func patch16(c uint32, b []byte, v uint16) uint32 {
	old := binary.BigEndian.Uint16(b)
	binary.BigEndian.PutUint16(b, v)
	return c + uint32(^old) + uint32(v)
}

// patch32 is patch16 for a 32-bit field.
func patch32(c uint32, b []byte, v uint32) uint32 {
	c = patch16(c, b, uint16(v>>16))
	return patch16(c, b[2:], uint16(v))
}
