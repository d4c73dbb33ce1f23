// Package wakepattern decides, for one Ethernet frame, which wake pattern or
// hardware slot it belongs to.
//
// It owns the frame views (Ethernet, 802.1Q/QinQ, ARP, IPv4, IPv6 with its
// extension chain, TCP with its options, ICMPv6 neighbour solicitation), the
// single validating decoder that never panics (Frame.Decode), the Internet
// checksum helpers the offload engine shares (Sum, Fold, Checksum,
// PseudoHeaderSum, UpdateChecksum16/32), the pattern kinds a device accepts
// (TCP connection, TCP SYN to a port, bitmap, magic packet) with their JSON
// form (ParsePatterns), the limits a device advertises (Capabilities), the
// compiled immutable Matcher, and the compilation of a pattern set to a
// classic-BPF kernel prefilter that never rejects a frame the Matcher
// accepts.
//
// It does no I/O, starts no goroutines and never reads the clock; the
// decode and match paths allocate nothing (tests prove it with
// testing.AllocsPerRun).
//
// # Decoder
//
// Frame.Decode fills a reusable Frame and returns a Status; malformed input
// yields a reason (Truncated, BadHeaderLength, BadIPChecksum,
// BadTCPChecksum with DecodeOptions.VerifyChecksums, BadVersion,
// TooManyTags, ExtChainTooLong), never an index error. Published limits:
// MaxVLANTags (2: one 802.1Q tag, or QinQ 802.1ad+802.1Q),
// MaxIPv6ExtHeaders (8), MaxFrameLen (65535; bytes past it are ignored).
// Lengths come from the IP header (Ethernet padding is not payload). A
// non-first fragment has no TCP header; a first fragment's TCP header is
// decoded best effort; IsTCP is false for every fragment.
//
// # Matching
//
// Compile checks the set against Capabilities (errors name the field, the
// value and the limit, e.g. "pattern 7: bitmap.offset 1600 exceeds limit
// 1514"; limit errors match ErrLimit) and builds a Matcher; swap Matchers
// with atomic.Pointer, the receive path takes no lock.
//
//   - TCP connection: segments from Remote to Local with the pattern's
//     VLAN (outermost tag; 0 means untagged or priority-tagged), on frames
//     with IsTCP. Lookup is one probe of an open-addressing hash table, O(1)
//     in the number of patterns. The Result carries the class (RST, SYN,
//     data, FIN, pure ACK, in that order of precedence), seq, ack, their
//     offsets and the payload's.
//   - TCP SYN: SYN without ACK to the local address and port; an invalid or
//     unspecified address and port 0 are wildcards (NDIS); any VLAN.
//   - Bitmap: the masked bytes at Offset from the start of the frame; the
//     frame must contain every masked byte (and be at least 8 bytes).
//     Compiled to 64-bit words, grouped by their most selective word into
//     hash tables, so a frame that matches nothing costs about one probe
//     per group.
//   - Magic: 6×0xFF then 16× the MAC (then the password when set) anywhere
//     in the frame.
//
// Bitmap and magic patterns look at the raw bytes whatever the decode
// status; connection and SYN patterns need Status OK. When several patterns
// match, the highest Priority wins, then the lowest index.
package wakepattern
