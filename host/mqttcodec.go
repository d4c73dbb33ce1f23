package host

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The MQTT packet codec of the mqtt protocol: MQTT 3.1.1 (protocol level
// 4) and 5.0 (level 5), the packets a subscribing client needs. It is
// written here rather than taken from a library because no approved
// module speaks 5.0 (paho.mqtt.golang's packets package, used by the
// tests as the reference decoder for 3.1.1, has no properties), and
// because the reader's path for PINGRESP and PUBLISH must not allocate:
// decoded packets are views into one reused buffer. See
// docs/architecture.md.
//
// Fixed header (both versions):
//
//	byte 0: packet type (high nibble) and flags (low nibble)
//	byte 1…4: Remaining Length, a variable byte integer (7 bits a byte,
//	          high bit "more"), minimal encoding, at most 268 435 455
//
// MQTT 5 adds a Properties field (a variable byte integer length, then
// identifier-value pairs) to CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE,
// SUBACK and DISCONNECT.

// MQTT packet types.
const (
	mqttCONNECT     = 1
	mqttCONNACK     = 2
	mqttPUBLISH     = 3
	mqttPUBACK      = 4
	mqttPUBREC      = 5
	mqttPUBREL      = 6
	mqttPUBCOMP     = 7
	mqttSUBSCRIBE   = 8
	mqttSUBACK      = 9
	mqttUNSUBSCRIBE = 10
	mqttUNSUBACK    = 11
	mqttPINGREQ     = 12
	mqttPINGRESP    = 13
	mqttDISCONNECT  = 14
	mqttAUTH        = 15
)

// MQTT 5 property identifiers the codec reads or writes.
const (
	propSessionExpiry    = 0x11
	propAssignedClientID = 0x12
	propServerKeepAlive  = 0x13
	propReasonString     = 0x1f
	propTopicAlias       = 0x23
)

// MaxMQTTPacket is the largest packet the reader accepts (its Remaining
// Length plus the fixed header).
const MaxMQTTPacket = 1 << 20

// Errors of the MQTT codec.
var (
	ErrMQTTMalformed = errors.New("malformed MQTT packet")
	ErrMQTTProtocol  = errors.New("MQTT protocol error")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMQTTMalformed, fmt.Sprintf(format, args...))
}

// mqttPacket is a decoded packet: its byte slices are views into the
// buffer it was decoded from, valid until the next read.
type mqttPacket struct {
	Type  byte
	Flags byte

	// CONNACK
	SessionPresent bool
	ReasonCode     byte // CONNACK return/reason code, PUBACK, DISCONNECT reason
	// ServerKeepAlive is the MQTT 5 CONNACK's Server Keep Alive in
	// seconds, -1 when absent.
	ServerKeepAlive int
	// AssignedClientID is the MQTT 5 CONNACK's Assigned Client Identifier.
	AssignedClientID []byte
	// ReasonString is an MQTT 5 Reason String (CONNACK, SUBACK, PUBACK,
	// DISCONNECT).
	ReasonString []byte

	PacketID uint16
	// PUBLISH
	QoS        byte
	Retain     bool
	Dup        bool
	Topic      []byte
	TopicAlias uint16
	Payload    []byte
	// SUBACK
	ReasonCodes []byte
}

// readVarint reads a variable byte integer from b; n is its length.
func readVarint(b []byte) (v, n int, err error) {
	mul := 1
	for n < 4 {
		if n >= len(b) {
			return 0, 0, io.ErrUnexpectedEOF
		}
		c := b[n]
		n++
		v += int(c&0x7f) * mul
		if c&0x80 == 0 {
			if n > 1 && c == 0 {
				return 0, 0, malformed("variable byte integer not minimal")
			}
			return v, n, nil
		}
		mul <<= 7
	}
	return 0, 0, malformed("variable byte integer longer than 4 bytes")
}

// appendVarint appends v (0..268 435 455) as a variable byte integer.
func appendVarint(b []byte, v int) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

// splitPacket returns the fixed header byte and the body of the packet at
// the front of b, and the packet's whole length; io.ErrUnexpectedEOF says
// b holds only a prefix.
func splitPacket(b []byte) (hdr byte, body []byte, n int, err error) {
	if len(b) < 2 {
		return 0, nil, 0, io.ErrUnexpectedEOF
	}
	l, vn, err := readVarint(b[1:])
	if err != nil {
		return 0, nil, 0, err
	}
	if 1+vn+l > MaxMQTTPacket {
		return 0, nil, 0, malformed("remaining length %d above the limit %d", l, MaxMQTTPacket-1-vn)
	}
	if len(b) < 1+vn+l {
		return 0, nil, 0, io.ErrUnexpectedEOF
	}
	return b[0], b[1+vn : 1+vn+l], 1 + vn + l, nil
}

// mqttReader reads packets from a buffered stream into one reused buffer.
type mqttReader struct {
	br  *bufio.Reader
	buf []byte
}

// next reads the next packet's fixed header and body; body is valid until
// the next call.
func (r *mqttReader) next() (hdr byte, body []byte, err error) {
	hdr, err = r.br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	l, mul := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, nil, malformed("variable byte integer longer than 4 bytes")
		}
		c, err := r.br.ReadByte()
		if err != nil {
			return 0, nil, unexpected(err)
		}
		if i > 0 && c == 0 {
			return 0, nil, malformed("variable byte integer not minimal")
		}
		l += int(c&0x7f) * mul
		mul <<= 7
		if c&0x80 == 0 {
			break
		}
	}
	if l > MaxMQTTPacket-5 {
		return 0, nil, malformed("remaining length %d above the limit %d", l, MaxMQTTPacket-5)
	}
	if cap(r.buf) < l {
		r.buf = make([]byte, l, max(l, 2*cap(r.buf)))
	}
	body = r.buf[:l]
	if _, err := io.ReadFull(r.br, body); err != nil {
		return 0, nil, unexpected(err)
	}
	return hdr, body, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// cursor reads the fields of a packet body.
type cursor struct {
	b   []byte
	err error
}

func (c *cursor) fail(format string, args ...any) {
	if c.err == nil {
		c.err = malformed(format, args...)
	}
}

func (c *cursor) u8(what string) byte {
	if c.err != nil || len(c.b) < 1 {
		c.fail("%s: truncated", what)
		return 0
	}
	v := c.b[0]
	c.b = c.b[1:]
	return v
}

func (c *cursor) u16(what string) uint16 {
	if c.err != nil || len(c.b) < 2 {
		c.fail("%s: truncated", what)
		return 0
	}
	v := binary.BigEndian.Uint16(c.b)
	c.b = c.b[2:]
	return v
}

func (c *cursor) u32(what string) uint32 {
	if c.err != nil || len(c.b) < 4 {
		c.fail("%s: truncated", what)
		return 0
	}
	v := binary.BigEndian.Uint32(c.b)
	c.b = c.b[4:]
	return v
}

// bin reads a length-prefixed (two bytes) binary field or string.
func (c *cursor) bin(what string) []byte {
	n := int(c.u16(what))
	if c.err != nil {
		return nil
	}
	if len(c.b) < n {
		c.fail("%s: %d bytes, %d left", what, n, len(c.b))
		return nil
	}
	v := c.b[:n:n]
	c.b = c.b[n:]
	return v
}

// str reads an MQTT UTF-8 string: no NUL, valid UTF-8 (§1.5.3).
func (c *cursor) str(what string) []byte {
	v := c.bin(what)
	if c.err == nil && !validMQTTString(v) {
		c.fail("%s: not valid UTF-8 without NUL", what)
	}
	return v
}

func (c *cursor) varint(what string) int {
	if c.err != nil {
		return 0
	}
	v, n, err := readVarint(c.b)
	if err != nil {
		c.fail("%s: %v", what, err)
		return 0
	}
	c.b = c.b[n:]
	return v
}

// validMQTTString reports b is UTF-8 without U+0000 (without allocating).
func validMQTTString(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		if c == 0 {
			return false
		}
		if c < 0x80 {
			i++
			continue
		}
		r, size := decodeRune(b[i:])
		if r < 0 {
			return false
		}
		i += size
	}
	return true
}

// decodeRune decodes one multi-byte UTF-8 sequence; r < 0 when invalid
// (overlong, surrogate, above U+10FFFF, truncated).
func decodeRune(b []byte) (r rune, size int) {
	c := b[0]
	var n int
	var min rune
	switch {
	case c&0xe0 == 0xc0:
		n, r, min = 2, rune(c&0x1f), 0x80
	case c&0xf0 == 0xe0:
		n, r, min = 3, rune(c&0x0f), 0x800
	case c&0xf8 == 0xf0:
		n, r, min = 4, rune(c&0x07), 0x10000
	default:
		return -1, 1
	}
	if len(b) < n {
		return -1, 1
	}
	for i := 1; i < n; i++ {
		if b[i]&0xc0 != 0x80 {
			return -1, 1
		}
		r = r<<6 | rune(b[i]&0x3f)
	}
	if r < min || r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff) {
		return -1, 1
	}
	return r, n
}

// props reads MQTT 5 properties into p (the ones the client uses) and
// checks the others are well formed.
func (c *cursor) props(p *mqttPacket) {
	n := c.varint("properties length")
	if c.err != nil {
		return
	}
	if n > len(c.b) {
		c.fail("properties: %d bytes, %d left", n, len(c.b))
		return
	}
	pc := cursor{b: c.b[:n]}
	c.b = c.b[n:]
	for len(pc.b) > 0 && pc.err == nil {
		id := pc.varint("property identifier")
		switch id {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2a: // byte
			pc.u8("property")
		case 0x13: // Server Keep Alive
			p.ServerKeepAlive = int(pc.u16("server keep alive"))
		case 0x21, 0x22: // two-byte integer
			pc.u16("property")
		case 0x23:
			p.TopicAlias = pc.u16("topic alias")
		case 0x02, 0x11, 0x18, 0x27: // four-byte integer
			pc.u32("property")
		case 0x0b: // Subscription Identifier
			pc.varint("subscription identifier")
		case 0x12:
			p.AssignedClientID = pc.str("assigned client identifier")
		case 0x1f:
			p.ReasonString = pc.str("reason string")
		case 0x03, 0x08, 0x15, 0x1a, 0x1c: // UTF-8 string
			pc.str("property")
		case 0x09, 0x16: // binary data
			pc.bin("property")
		case 0x26: // user property: a string pair
			pc.str("user property name")
			pc.str("user property value")
		default:
			pc.fail("unknown property identifier %#x", id)
		}
	}
	if pc.err != nil && c.err == nil {
		c.err = pc.err
	}
}

// decodeMQTT decodes a packet the server sent (hdr, body) for protocol
// level version (4 or 5). It does not allocate.
func decodeMQTT(hdr byte, body []byte, version uint8) (mqttPacket, error) {
	p := mqttPacket{Type: hdr >> 4, Flags: hdr & 0x0f, ServerKeepAlive: -1}
	c := cursor{b: body}
	v5 := version == 5
	switch p.Type {
	case mqttCONNACK:
		if p.Flags != 0 {
			return p, malformed("CONNACK flags %#x", p.Flags)
		}
		f := c.u8("connack flags")
		if f&^1 != 0 {
			c.fail("connack flags %#x: reserved bits set", f)
		}
		p.SessionPresent = f&1 != 0
		p.ReasonCode = c.u8("connack return code")
		if v5 && len(c.b) > 0 {
			c.props(&p)
		}
	case mqttPUBLISH:
		p.QoS = (p.Flags >> 1) & 3
		p.Retain = p.Flags&1 != 0
		p.Dup = p.Flags&8 != 0
		if p.QoS == 3 {
			return p, malformed("PUBLISH QoS 3")
		}
		if p.QoS == 0 && p.Dup {
			return p, malformed("PUBLISH DUP with QoS 0")
		}
		p.Topic = c.str("topic")
		if c.err == nil {
			for _, b := range p.Topic {
				if b == '+' || b == '#' {
					c.fail("topic %q has a wildcard", p.Topic)
					break
				}
			}
		}
		if p.QoS > 0 {
			p.PacketID = c.u16("packet identifier")
			if c.err == nil && p.PacketID == 0 {
				c.fail("packet identifier 0")
			}
		}
		if v5 {
			c.props(&p)
		}
		if c.err == nil && len(p.Topic) == 0 && (!v5 || p.TopicAlias == 0) {
			c.fail("empty topic without a topic alias")
		}
		p.Payload = c.b
		c.b = nil
	case mqttPUBACK, mqttPUBREC, mqttPUBREL, mqttPUBCOMP, mqttUNSUBACK:
		want := byte(0)
		if p.Type == mqttPUBREL {
			want = 2
		}
		if p.Flags != want {
			return p, malformed("packet type %d flags %#x", p.Type, p.Flags)
		}
		p.PacketID = c.u16("packet identifier")
		if v5 && len(c.b) > 0 {
			if p.Type == mqttUNSUBACK {
				c.props(&p)
				p.ReasonCodes = c.b
				c.b = nil
			} else {
				p.ReasonCode = c.u8("reason code")
				if len(c.b) > 0 {
					c.props(&p)
				}
			}
		} else if p.Type == mqttUNSUBACK && !v5 && len(c.b) > 0 {
			c.fail("UNSUBACK: %d extra bytes", len(c.b))
		}
	case mqttSUBACK:
		if p.Flags != 0 {
			return p, malformed("SUBACK flags %#x", p.Flags)
		}
		p.PacketID = c.u16("packet identifier")
		if v5 {
			c.props(&p)
		}
		if c.err == nil && len(c.b) == 0 {
			c.fail("SUBACK without return codes")
		}
		p.ReasonCodes = c.b
		c.b = nil
	case mqttPINGRESP:
		if p.Flags != 0 {
			return p, malformed("PINGRESP flags %#x", p.Flags)
		}
	case mqttDISCONNECT:
		if !v5 {
			return p, fmt.Errorf("%w: a 3.1.1 server sent DISCONNECT", ErrMQTTProtocol)
		}
		if p.Flags != 0 {
			return p, malformed("DISCONNECT flags %#x", p.Flags)
		}
		if len(c.b) > 0 {
			p.ReasonCode = c.u8("reason code")
			if len(c.b) > 0 {
				c.props(&p)
			}
		}
	case mqttAUTH:
		if !v5 {
			return p, fmt.Errorf("%w: AUTH in MQTT 3.1.1", ErrMQTTProtocol)
		}
		return p, fmt.Errorf("%w: AUTH (enhanced authentication) is not supported", ErrMQTTProtocol)
	default:
		return p, fmt.Errorf("%w: a server does not send packet type %d", ErrMQTTProtocol, p.Type)
	}
	if c.err != nil {
		return p, c.err
	}
	if len(c.b) > 0 {
		return p, malformed("packet type %d: %d bytes left over", p.Type, len(c.b))
	}
	return p, nil
}

// Encoders. Each appends one whole packet to b.

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// appendPacket appends the fixed header hdr and body.
func appendPacket(b []byte, hdr byte, body []byte) []byte {
	b = append(b, hdr)
	b = appendVarint(b, len(body))
	return append(b, body...)
}

// appendConnect appends a CONNECT for m at protocol level version.
func appendConnect(b []byte, m *MQTTConfig, version uint8) []byte {
	var body []byte
	body = appendString(body, "MQTT")
	body = append(body, version)
	var flags byte
	if m.CleanStart {
		flags |= 0x02
	}
	if m.Password != "" {
		flags |= 0x40
	}
	if m.Username != "" {
		flags |= 0x80
	}
	body = append(body, flags)
	body = binary.BigEndian.AppendUint16(body, uint16(m.KeepAlive.Seconds()))
	if version == 5 {
		if !m.CleanStart {
			// A persistent session outlives the connection (MQTT 5's
			// default expiry of 0 would end it at the disconnection).
			body = append(body, 5, propSessionExpiry, 0xff, 0xff, 0xff, 0xff)
		} else {
			body = append(body, 0)
		}
	}
	body = appendString(body, m.ClientID)
	if m.Username != "" {
		body = appendString(body, m.Username)
	}
	if m.Password != "" {
		body = appendString(body, m.Password)
	}
	return appendPacket(b, mqttCONNECT<<4, body)
}

// appendSubscribe appends a SUBSCRIBE of subs with packet identifier id.
func appendSubscribe(b []byte, id uint16, subs []MQTTSubscription, version uint8) []byte {
	var body []byte
	body = binary.BigEndian.AppendUint16(body, id)
	if version == 5 {
		body = append(body, 0)
	}
	for _, s := range subs {
		body = appendString(body, s.Filter)
		body = append(body, s.QoS&3)
	}
	return appendPacket(b, mqttSUBSCRIBE<<4|0x2, body)
}

// appendPuback appends a PUBACK of id (success; MQTT 5 omits the reason
// code then, §3.4.2.1).
func appendPuback(b []byte, id uint16) []byte {
	return append(b, mqttPUBACK<<4, 2, byte(id>>8), byte(id))
}

// appendPublish appends a PUBLISH (tests and the in-process brokers).
func appendPublish(b []byte, topic string, payload []byte, qos byte, id uint16, version uint8) []byte {
	var body []byte
	body = appendString(body, topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, id)
	}
	if version == 5 {
		body = append(body, 0)
	}
	body = append(body, payload...)
	return appendPacket(b, mqttPUBLISH<<4|qos<<1, body)
}

// Packets without a body.
var (
	mqttPingreq    = []byte{mqttPINGREQ << 4, 0}
	mqttPingresp   = []byte{mqttPINGRESP << 4, 0}
	mqttDisconnect = []byte{mqttDISCONNECT << 4, 0}
)

// countPingresps counts the PINGRESPs in b (the bytes a NIC absorbed for
// an MQTT channel, PINGRESPs only); it stops at anything else.
func countPingresps(b []byte) int {
	n := 0
	for len(b) >= 2 && b[0] == mqttPINGRESP<<4 && b[1] == 0 {
		n++
		b = b[2:]
	}
	return n
}
