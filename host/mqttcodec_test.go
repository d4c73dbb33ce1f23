package host

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/google/go-cmp/cmp"
)

// readPaho decodes one packet with paho.mqtt.golang's packets package,
// the reference decoder for MQTT 3.1.1.
func readPaho(t *testing.T, b []byte) packets.ControlPacket {
	t.Helper()
	cp, err := packets.ReadPacket(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("paho cannot read %x: %v", b, err)
	}
	return cp
}

func pahoBytes(t *testing.T, cp packets.ControlPacket) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := cp.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decodeAll(t *testing.T, b []byte, version uint8) mqttPacket {
	t.Helper()
	hdr, body, n, err := splitPacket(b)
	if err != nil || n != len(b) {
		t.Fatalf("split %x: n %d, %v", b, n, err)
	}
	p, err := decodeMQTT(hdr, body, version)
	if err != nil {
		t.Fatalf("decode %x: %v", b, err)
	}
	return p
}

// TestMQTTEncodeAgainstPaho: what the client encodes, paho (3.1.1) reads
// back field by field.
func TestMQTTEncodeAgainstPaho(t *testing.T) {
	m := &MQTTConfig{ClientID: "standbynic-1", KeepAlive: 60 * time.Second, CleanStart: true, Username: "u", Password: "p@ss"}
	cp := readPaho(t, appendConnect(nil, m, 4)).(*packets.ConnectPacket)
	got := [...]any{cp.ProtocolName, cp.ProtocolVersion, cp.CleanSession, cp.Keepalive, cp.ClientIdentifier, cp.UsernameFlag, cp.Username, cp.PasswordFlag, string(cp.Password)}
	want := [...]any{"MQTT", byte(4), true, uint16(60), "standbynic-1", true, "u", true, "p@ss"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("CONNECT (-want +got):\n%s", d)
	}
	if rc := cp.Validate(); rc != packets.Accepted {
		t.Errorf("paho validates the CONNECT with %d", rc)
	}
	subs := []MQTTSubscription{{"a/b", 0}, {"c/+/d", 1}, {"#", 1}}
	sp := readPaho(t, appendSubscribe(nil, 7, subs, 4)).(*packets.SubscribePacket)
	if d := cmp.Diff([]any{uint16(7), []string{"a/b", "c/+/d", "#"}, []byte{0, 1, 1}}, []any{sp.MessageID, sp.Topics, sp.Qoss}); d != "" {
		t.Errorf("SUBSCRIBE (-want +got):\n%s", d)
	}
	if pa := readPaho(t, appendPuback(nil, 0xbeef)).(*packets.PubackPacket); pa.MessageID != 0xbeef {
		t.Errorf("PUBACK id %#x", pa.MessageID)
	}
	if _, ok := readPaho(t, mqttPingreq).(*packets.PingreqPacket); !ok {
		t.Error("PINGREQ not read as one")
	}
	if _, ok := readPaho(t, mqttDisconnect).(*packets.DisconnectPacket); !ok {
		t.Error("DISCONNECT not read as one")
	}
	big := bytes.Repeat([]byte{0xa5}, 200_000) // a 3-byte remaining length
	pp := readPaho(t, appendPublish(nil, "t/x", big, 1, 9, 4)).(*packets.PublishPacket)
	if pp.TopicName != "t/x" || pp.Qos != 1 || pp.MessageID != 9 || !bytes.Equal(pp.Payload, big) {
		t.Errorf("PUBLISH: topic %q qos %d id %d payload %d bytes", pp.TopicName, pp.Qos, pp.MessageID, len(pp.Payload))
	}
}

// TestMQTTDecodeAgainstPaho: what paho (3.1.1) encodes, the client's
// decoder reads back field by field.
func TestMQTTDecodeAgainstPaho(t *testing.T) {
	ca := packets.NewControlPacket(packets.Connack).(*packets.ConnackPacket)
	ca.SessionPresent, ca.ReturnCode = true, 0
	if p := decodeAll(t, pahoBytes(t, ca), 4); p.Type != mqttCONNACK || !p.SessionPresent || p.ReasonCode != 0 {
		t.Errorf("CONNACK %+v", p)
	}
	for _, qos := range []byte{0, 1} {
		pp := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		pp.TopicName, pp.Qos, pp.Payload = "home/door", qos, []byte("open\x00\xff")
		if qos > 0 {
			pp.MessageID = 513
		}
		p := decodeAll(t, pahoBytes(t, pp), 4)
		got := []any{p.Type, string(p.Topic), p.QoS, p.PacketID, string(p.Payload)}
		want := []any{byte(mqttPUBLISH), "home/door", qos, pp.MessageID, "open\x00\xff"}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("PUBLISH QoS %d (-want +got):\n%s", qos, d)
		}
	}
	sa := packets.NewControlPacket(packets.Suback).(*packets.SubackPacket)
	sa.MessageID, sa.ReturnCodes = 1, []byte{0, 1, 0x80}
	if p := decodeAll(t, pahoBytes(t, sa), 4); p.PacketID != 1 || !bytes.Equal(p.ReasonCodes, []byte{0, 1, 0x80}) {
		t.Errorf("SUBACK %+v", p)
	}
	if p := decodeAll(t, pahoBytes(t, packets.NewControlPacket(packets.Pingresp)), 4); p.Type != mqttPINGRESP {
		t.Errorf("PINGRESP %+v", p)
	}
}

// TestMQTT5Properties: an MQTT 5 CONNACK's Server Keep Alive and
// Assigned Client Identifier are read; other properties are skipped; a
// bad property is an error.
func TestMQTT5Properties(t *testing.T) {
	props := []byte{0x21, 0, 10} // Receive Maximum 10
	props = binary.BigEndian.AppendUint16(append(props, propServerKeepAlive), 25)
	props = appendString(append(props, propAssignedClientID), "srv-id")
	props = appendString(appendString(append(props, 0x26), "k"), "v") // user property
	props = append(props, 0x27, 0, 1, 0, 0)                           // Maximum Packet Size
	body := append(appendVarint([]byte{0, 0}, len(props)), props...)
	p := decodeAll(t, appendPacket(nil, mqttCONNACK<<4, body), 5)
	if p.ServerKeepAlive != 25 || string(p.AssignedClientID) != "srv-id" {
		t.Errorf("server keep alive %d, client id %q", p.ServerKeepAlive, p.AssignedClientID)
	}
	bad := append(appendVarint([]byte{0, 0}, 2), 0x7f, 0)
	if _, err := decodeMQTT(mqttCONNACK<<4, bad, 5); !errors.Is(err, ErrMQTTMalformed) {
		t.Errorf("unknown property: %v", err)
	}
	// PUBLISH with a property (Message Expiry) and a v5 PUBACK with a
	// reason code.
	pub := appendString(nil, "t")
	pub = binary.BigEndian.AppendUint16(pub, 3)
	pub = append(pub, 5, 0x02, 0, 0, 0, 60)
	pub = append(pub, "hi"...)
	p = decodeAll(t, appendPacket(nil, mqttPUBLISH<<4|2, pub), 5)
	if string(p.Topic) != "t" || p.PacketID != 3 || string(p.Payload) != "hi" {
		t.Errorf("v5 PUBLISH %+v", p)
	}
	p = decodeAll(t, []byte{0x40, 3, 0, 3, 0x10}, 5)
	if p.PacketID != 3 || p.ReasonCode != 0x10 {
		t.Errorf("v5 PUBACK %+v", p)
	}
	p = decodeAll(t, []byte{0xe0, 1, 0x8e}, 5)
	if p.Type != mqttDISCONNECT || p.ReasonCode != 0x8e {
		t.Errorf("v5 DISCONNECT %+v", p)
	}
}

func TestMQTTDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		b       []byte
		version uint8
	}{
		{"qos 3", []byte{0x36, 5, 0, 1, 't', 0, 1}, 4},
		{"dup qos 0", []byte{0x38, 3, 0, 1, 't'}, 4},
		{"wildcard topic", []byte{0x30, 3, 0, 1, '#'}, 4},
		{"empty topic", []byte{0x30, 2, 0, 0}, 4},
		{"packet id 0", []byte{0x32, 5, 0, 1, 't', 0, 0}, 4},
		{"topic past the end", []byte{0x30, 3, 0, 9, 't'}, 4},
		{"nul in topic", []byte{0x30, 3, 0, 1, 0}, 4},
		{"bad utf-8", []byte{0x30, 4, 0, 2, 0xc0, 0x80}, 4},
		{"connack flags", []byte{0x20, 2, 2, 0}, 4},
		{"connack short", []byte{0x20, 1, 0}, 4},
		{"suback empty", []byte{0x90, 2, 0, 1}, 4},
		{"pingresp body", []byte{0xd0, 1, 0}, 4},
		{"puback flags", []byte{0x41, 2, 0, 1}, 4},
		{"v4 disconnect", []byte{0xe0, 0}, 4},
		{"connect from server", []byte{0x10, 0}, 4},
		{"auth", []byte{0xf0, 0}, 5},
		{"v5 props overrun", []byte{0x20, 3, 0, 0, 9}, 5},
		{"trailing bytes", []byte{0x40, 3, 0, 1, 0}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr, body, _, err := splitPacket(tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if p, err := decodeMQTT(hdr, body, tt.version); err == nil {
				t.Errorf("decoded %x as %+v, want an error", tt.b, p)
			}
		})
	}
	for _, b := range [][]byte{{0x30, 0x80, 0x80, 0x80, 0x80, 1}, {0x30, 0x80, 0}} {
		if _, _, _, err := splitPacket(b); !errors.Is(err, ErrMQTTMalformed) {
			t.Errorf("split %x: %v, want malformed", b, err)
		}
		r := mqttReader{br: bufio.NewReader(bytes.NewReader(b))}
		if _, _, err := r.next(); !errors.Is(err, ErrMQTTMalformed) {
			t.Errorf("read %x: %v, want malformed", b, err)
		}
	}
	r := mqttReader{br: bufio.NewReader(bytes.NewReader([]byte{0x30, 5, 0}))}
	if _, _, err := r.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated: %v", err)
	}
}

// TestMQTTReadAllocs: reading and decoding a PINGRESP or a PUBLISH does
// not allocate (the reader reuses its buffer; packets are views).
func TestMQTTReadAllocs(t *testing.T) {
	var stream []byte
	for range 1000 {
		stream = append(stream, mqttPingresp...)
		stream = appendPublish(stream, "a/b", []byte("payload"), 1, 7, 5)
	}
	br := bufio.NewReader(bytes.NewReader(stream))
	r := mqttReader{br: br}
	allocs := testing.AllocsPerRun(500, func() {
		for range 2 {
			hdr, body, err := r.next()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decodeMQTT(hdr, body, 5); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per PINGRESP + PUBLISH, want 0", allocs)
	}
	if n := countPingresps([]byte{0xd0, 0, 0xd0, 0, 0xd0}); n != 2 {
		t.Errorf("countPingresps = %d", n)
	}
}

// FuzzMQTTDecode: the decoder never panics, never reads past a packet,
// and a 3.1.1 PUBLISH it accepts is one paho reads the same way and that
// re-encodes to the same bytes.
func FuzzMQTTDecode(f *testing.F) {
	f.Add([]byte{0xd0, 0})
	f.Add([]byte{0x20, 2, 1, 0})
	f.Add(appendPublish(nil, "a/b", []byte("x"), 1, 5, 4))
	f.Add(appendPublish(nil, "a/b", []byte("x"), 0, 0, 5))
	f.Add([]byte{0x90, 5, 0, 1, 0, 1, 0x80})
	f.Add([]byte{0x20, 8, 0, 0, 5, 0x13, 0, 30, 0x21, 0})
	f.Add([]byte{0xe0, 2, 0x8e, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, body, n, err := splitPacket(b)
		if err != nil {
			return
		}
		if n > len(b) || len(body) > n {
			t.Fatalf("split past the input: n %d of %d", n, len(b))
		}
		for _, v := range []uint8{4, 5} {
			p, err := decodeMQTT(hdr, body, v)
			if err != nil || v != 4 || p.Type != mqttPUBLISH {
				continue
			}
			re := appendPublish(nil, string(p.Topic), p.Payload, p.QoS, p.PacketID, 4)
			re[0] |= hdr & 0x09 // DUP, RETAIN
			if !bytes.Equal(re, b[:n]) {
				t.Fatalf("re-encoded %x, input %x", re, b[:n])
			}
			cp, err := packets.ReadPacket(bytes.NewReader(b[:n]))
			if err != nil {
				t.Fatalf("paho refuses a PUBLISH the decoder took: %x: %v", b[:n], err)
			}
			pp := cp.(*packets.PublishPacket)
			if pp.TopicName != string(p.Topic) || !bytes.Equal(pp.Payload, p.Payload) || pp.Qos != p.QoS || pp.MessageID != p.PacketID {
				t.Fatalf("paho reads %v, the decoder %+v", pp, p)
			}
		}
	})
}
