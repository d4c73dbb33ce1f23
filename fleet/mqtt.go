package fleet

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The few MQTT 3.1.1 packets a fleet device speaks (OASIS MQTT 3.1.1
// §3): it connects, subscribes to its own topic at QoS 0, sends PINGREQ
// and reads PINGRESP and PUBLISH. The full codec with QoS 1, MQTT 5 and
// TLS is host's; a fleet keeps only this much so that a device costs a
// few hundred bytes.

// Fixed-header first bytes (type << 4 | flags).
const (
	mqttConnect   = 0x10
	mqttConnack   = 0x20
	mqttPublish   = 0x30 // QoS 0, no DUP, no RETAIN
	mqttSubscribe = 0x82 // flags 0010 (§3.8.1)
	mqttSuback    = 0x90
	mqttPingreq   = 0xc0
	mqttPingresp  = 0xd0
)

// maxPacket bounds a packet a device accepts (fixed header included): a
// fleet push is a topic of at most maxTopic bytes and a pushPayload.
const (
	maxTopic  = 96
	maxPacket = 2 + 2 + maxTopic + pushPayload
)

// pushPayload is a push's body: the engine time it was published
// (nanoseconds since the run began, big endian) and its kind.
const pushPayload = 9

// Push kinds (the payload's last byte).
const (
	kindPush  = 'p'
	kindProbe = 'q'
)

var pingreq = []byte{mqttPingreq, 0}

// errShort says a buffer holds no whole packet yet.
var errShort = errors.New("mqtt: short packet")

// appendString appends an MQTT UTF-8 string (2-byte length, bytes).
func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// appendRemaining appends the variable-length Remaining Length (§2.2.3).
func appendRemaining(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// appendConnect appends a clean-session CONNECT of client id with a
// keep-alive of keepAlive seconds (0: none).
func appendConnect(b []byte, id string, keepAlive uint16) []byte {
	body := make([]byte, 0, 12+len(id))
	body = appendString(body, "MQTT")
	body = append(body, 4, 0x02) // level 4 (3.1.1), clean session
	body = binary.BigEndian.AppendUint16(body, keepAlive)
	body = appendString(body, id)
	b = append(b, mqttConnect)
	b = appendRemaining(b, len(body))
	return append(b, body...)
}

// appendSubscribe appends a SUBSCRIBE of topic at QoS 0 (packet id 1).
func appendSubscribe(b []byte, topic string) []byte {
	b = append(b, mqttSubscribe)
	b = appendRemaining(b, 2+2+len(topic)+1)
	b = append(b, 0, 1)
	b = appendString(b, topic)
	return append(b, 0)
}

// appendPublish appends a QoS 0 PUBLISH of a push published at the engine
// time at (ns) of kind.
func appendPublish(b []byte, topic string, at int64, kind byte) []byte {
	b = append(b, mqttPublish)
	b = appendRemaining(b, 2+len(topic)+pushPayload)
	b = appendString(b, topic)
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	return append(b, kind)
}

// packet is one decoded packet of the server's.
type packet struct {
	typ byte // first byte with the flags of a PUBLISH cleared
	// rc is CONNACK's return code or SUBACK's granted QoS (0x80: refused).
	rc byte
	// at and kind are a push's (PUBLISH).
	at   int64
	kind byte
}

// decode reads one packet from the front of b and returns it with its
// length. It returns errShort when b holds no whole packet and an error
// naming the field for anything a fleet device does not accept; it never
// panics and does not allocate.
func decode(b []byte) (packet, int, error) {
	var p packet
	if len(b) < 2 {
		return p, 0, errShort
	}
	n, mult, i := 0, 1, 1
	for {
		if i >= len(b) {
			return p, 0, errShort
		}
		if i > 4 {
			return p, 0, errors.New("mqtt: remaining length longer than 4 bytes")
		}
		d := b[i]
		n += int(d&0x7f) * mult
		mult *= 128
		i++
		if d&0x80 == 0 {
			break
		}
	}
	if i+n > maxPacket {
		return p, 0, fmt.Errorf("mqtt: packet of %d bytes, limit %d", i+n, maxPacket)
	}
	if len(b) < i+n {
		return p, 0, errShort
	}
	body := b[i : i+n]
	p.typ = b[0]
	switch {
	case b[0] == mqttConnack:
		if n != 2 {
			return p, 0, fmt.Errorf("mqtt: CONNACK remaining length %d, want 2", n)
		}
		p.rc = body[1]
	case b[0] == mqttSuback:
		if n != 3 {
			return p, 0, fmt.Errorf("mqtt: SUBACK remaining length %d, want 3", n)
		}
		p.rc = body[2]
	case b[0] == mqttPingresp:
		if n != 0 {
			return p, 0, fmt.Errorf("mqtt: PINGRESP remaining length %d, want 0", n)
		}
	case b[0]&0xf0 == mqttPublish:
		if b[0]&0x06 != 0 {
			return p, 0, fmt.Errorf("mqtt: PUBLISH QoS %d, want 0", b[0]>>1&3)
		}
		p.typ = mqttPublish
		if n < 2 {
			return p, 0, errors.New("mqtt: PUBLISH without a topic length")
		}
		tl := int(binary.BigEndian.Uint16(body))
		if 2+tl+pushPayload != n {
			return p, 0, fmt.Errorf("mqtt: PUBLISH payload of %d bytes, want %d", n-2-tl, pushPayload)
		}
		pl := body[2+tl:]
		p.at = int64(binary.BigEndian.Uint64(pl))
		p.kind = pl[8]
		if p.kind != kindPush && p.kind != kindProbe {
			return p, 0, fmt.Errorf("mqtt: push kind %#x, want %q or %q", p.kind, kindPush, kindProbe)
		}
	default:
		return p, 0, fmt.Errorf("mqtt: packet type %#x, want CONNACK, SUBACK, PINGRESP or PUBLISH", b[0])
	}
	return p, i + n, nil
}
