package wakepattern

import (
	"encoding/binary"
	"net/netip"
)

// Internet checksum helpers (RFC 1071, RFC 1624). They allocate nothing and
// are shared with the offload engine, which builds and patches frames.
//
// A "sum" is the unfolded one's-complement accumulation of 16-bit
// big-endian words; Fold reduces it to 16 bits and the checksum written in
// a header is its complement:
//
//	csum := ^Fold(Sum(payload, PseudoHeaderSum(ProtoTCP, src, dst, n)))
//
// A header whose checksum field is correct verifies with
// Fold(Sum(hdr, 0)) == 0xffff.

// Sum adds the bytes of b, as big-endian 16-bit words (an odd trailing
// byte is padded with zero), to the running sum initial and returns the
// new running sum. Sums may be chained: Sum(b, Sum(a, 0)) is the sum of
// a then b when len(a) is even.
func Sum(b []byte, initial uint32) uint32 {
	acc := uint64(initial)
	for len(b) >= 8 {
		acc += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		acc += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	// 32-bit words are congruent to the sum of their halves mod 0xffff,
	// so folding the 64-bit accumulator gives the 16-bit-word sum.
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 32) + (acc & 0xffffffff)
	return uint32(acc)
}

// Fold folds a running sum to 16 bits (end-around carry). It does not
// complement: the header checksum is ^Fold(sum).
func Fold(sum uint32) uint16 {
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	return uint16(sum)
}

// Checksum returns the Internet checksum of b with the running sum initial
// (e.g. a pseudo-header sum): the value to store in the checksum field,
// computed with that field zeroed.
func Checksum(b []byte, initial uint32) uint16 { return ^Fold(Sum(b, initial)) }

// PseudoHeaderSum returns the running sum of the TCP/UDP pseudo-header
// (RFC 9293 §3.1 for IPv4, RFC 8200 §8.1 for IPv6) for the given protocol,
// addresses and upper-layer length (header plus data). Both addresses must
// be of the same family; an IPv4-mapped IPv6 address counts as IPv6.
func PseudoHeaderSum(proto uint8, src, dst netip.Addr, length int) uint32 {
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		return pseudoSum(s[:], d[:], proto, length)
	}
	s, d := src.As16(), dst.As16()
	return pseudoSum(s[:], d[:], proto, length)
}

// pseudoSum is PseudoHeaderSum on raw address bytes (4 or 16 each).
func pseudoSum(src, dst []byte, proto uint8, length int) uint32 {
	s := uint64(Sum(src, 0)) + uint64(Sum(dst, 0)) + uint64(proto) +
		uint64(uint32(length)>>16) + uint64(uint32(length)&0xffff)
	s = (s >> 32) + (s & 0xffffffff)
	return uint32(s)
}

// UpdateChecksum16 returns the checksum field after a 16-bit word of the
// covered data changed from old to new, without recomputing the sum
// (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
func UpdateChecksum16(csum, old, new uint16) uint16 {
	s := uint32(^csum) + uint32(^old) + uint32(new)
	return ^Fold(s)
}

// UpdateChecksum32 is UpdateChecksum16 for a 32-bit field aligned on a
// 16-bit boundary (a sequence or acknowledgment number, an IPv4 address).
func UpdateChecksum32(csum uint16, old, new uint32) uint16 {
	s := uint32(^csum) + uint32(^uint16(old>>16)) + uint32(^uint16(old)) +
		uint32(uint16(new>>16)) + uint32(uint16(new))
	return ^Fold(s)
}
