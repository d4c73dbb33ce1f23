package wakepattern

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Kind is the kind of a wake pattern. The zero value is invalid.
type Kind uint8

const (
	kindInvalid Kind = iota
	// KindTCPConn matches the segments of one established TCP connection
	// arriving from the remote end.
	KindTCPConn
	// KindTCPSYN matches a TCP SYN (without ACK) to a local address and
	// port; a zero address or port is a wildcard, as NDIS allows.
	KindTCPSYN
	// KindBitmap matches bytes under a mask (one bit per byte) at an
	// offset from the start of the frame.
	KindBitmap
	// KindMagic matches a Wake-on-LAN magic packet: 6×0xFF then 16 times
	// the MAC, optionally followed by a SecureOn password.
	KindMagic
)

// Pattern is one wake pattern as a device's owner submits it. Exactly one of
// the kind-specific fields is used, chosen by Kind.
type Pattern struct {
	ID       uint32 `json:"id"`
	Priority uint8  `json:"priority"` // higher wins when patterns overlap
	Kind     Kind   `json:"kind"`

	Conn   TCPConn `json:"conn,omitzero"`
	SYN    TCPSYN  `json:"syn,omitzero"`
	Bitmap Bitmap  `json:"bitmap,omitzero"`
	Magic  Magic   `json:"magic,omitzero"`
}

// TCPConn identifies one TCP connection of the sleeping host.
type TCPConn struct {
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
	// VLAN is the 802.1Q VLAN ID the connection runs on; 0 means untagged.
	VLAN uint16 `json:"vlan,omitzero"`
}

// TCPSYN matches connection attempts to the host.
type TCPSYN struct {
	// Local is the host's address and port; a zero (invalid) address
	// matches any address of the right family, an unspecified address
	// (0.0.0.0 or ::) any address of that family, and port 0 any port.
	Local netip.AddrPort `json:"local"`
	// IPv6 selects the family when Local's address is invalid (wildcard).
	IPv6 bool `json:"ipv6,omitzero"`
}

// Bitmap matches Bytes at Offset under Mask: bit i%8 of Mask[i/8]
// (least significant bit first, as NDIS) set means byte i must match.
type Bitmap struct {
	Offset int    `json:"offset"`
	Bytes  []byte `json:"bytes"`
	Mask   []byte `json:"mask"`
}

// Magic is a Wake-on-LAN magic packet for MAC, with an optional SecureOn
// password of 4 or 6 bytes. It is found anywhere in the frame.
type Magic struct {
	MAC      [6]byte `json:"mac"`
	Password []byte  `json:"password,omitzero"`
}

// Class is what a matched TCP segment means to a keep-alive engine. The
// zero value is invalid.
type Class uint8

const (
	classInvalid Class = iota
	ClassPureACK       // ACK without payload, SYN, FIN or RST
	ClassData          // carries payload (may also carry FIN)
	ClassFIN           // FIN without payload
	ClassRST           // RST
	ClassSYN           // SYN (with or without ACK)
)

// Result describes a match.
type Result struct {
	// Pattern is the matched pattern, owned by the Matcher: read only.
	Pattern *Pattern
	// Index is the pattern's position in the set given to Compile.
	Index int

	// For KindTCPConn (and KindTCPSYN): the segment.
	Class          Class
	Seq, Ack       uint32
	SeqOff, AckOff uint16 // offsets of the seq and ack fields in the frame
	PayloadOff     uint16
	PayloadLen     uint16
}

var kindNames = [...]string{
	kindInvalid: "invalid",
	KindTCPConn: "tcp-conn",
	KindTCPSYN:  "tcp-syn",
	KindBitmap:  "bitmap",
	KindMagic:   "magic",
}

// String returns the kind's text form ("tcp-conn", "tcp-syn", "bitmap",
// "magic").
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool { return k > kindInvalid && int(k) < len(kindNames) }

// MarshalText implements encoding.TextMarshaler. An invalid kind is an
// error.
func (k Kind) MarshalText() ([]byte, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("kind: invalid value %d", uint8(k))
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *Kind) UnmarshalText(b []byte) error {
	for i := KindTCPConn; int(i) < len(kindNames); i++ {
		if string(b) == kindNames[i] {
			*k = i
			return nil
		}
	}
	return fmt.Errorf("kind: %q is not one of tcp-conn, tcp-syn, bitmap, magic", b)
}

var classNames = [...]string{
	classInvalid: "invalid",
	ClassPureACK: "pure-ack",
	ClassData:    "data",
	ClassFIN:     "fin",
	ClassRST:     "rst",
	ClassSYN:     "syn",
}

// String returns the class's name ("pure-ack", "data", "fin", "rst", "syn").
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}
