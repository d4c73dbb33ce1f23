package host

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/standbynic/standbynic/offload"
)

// MQTT is a Transport that is an MQTT 3.1.1 or 5.0 client session over
// plain TCP (mqtt://) or TLS (mqtts://): every PUBLISH it receives is a
// push (topic, payload, QoS; a QoS 1 PUBLISH is acknowledged with PUBACK
// as it is read), its keep-alive is PINGREQ, and the PINGRESPs are
// consumed by the reader. On a plain connection the NIC sends the
// PINGREQs and absorbs the PINGRESPs (offload.KindPayload c0 00 / d0 00);
// inside TLS it cannot, so a slot guards the TCP connection with probes
// and the host sends the PINGREQs on its own wakes.
type MQTT struct {
	conn *net.TCPConn
	g    *gateConn
	nc   net.Conn // g, or the TLS client over it
	tls  bool
	rd   mqttReader

	version   uint8
	keepAlive time.Duration // negotiated
	clientID  string        // the server's assigned id when it chose one
	present   bool          // CONNACK's session present
	nka       NICKeepAlive
	pending   []Message // PUBLISHes read before the SUBACK

	wmu    sync.Mutex
	wbuf   []byte
	closed bool

	mu       sync.Mutex
	pingreqs uint64
	pingresp uint64
	absorbed uint64
	msgs     uint64
	pubacks  uint64
	granted  []byte
}

// MQTTInfo is what the session negotiated.
type MQTTInfo struct {
	Version uint8
	// KeepAlive is the keep-alive in force: the client's, or the MQTT 5
	// server's Server Keep Alive.
	KeepAlive time.Duration
	// ClientID is the client identifier (the server's assigned one when
	// the client sent none).
	ClientID       string
	SessionPresent bool
	// Granted are the SUBACK return codes, one per subscription.
	Granted []byte
}

// Info returns what the session negotiated.
func (t *MQTT) Info() MQTTInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	return MQTTInfo{Version: t.version, KeepAlive: t.keepAlive, ClientID: t.clientID, SessionPresent: t.present, Granted: append([]byte(nil), t.granted...)}
}

// MQTTCounts returns the PINGREQs the host wrote, the PINGRESPs read (all
// consumed), those among them the NIC had absorbed, and the PUBACKs sent.
func (t *MQTT) MQTTCounts() (pingreqs, pingresps, absorbed, pubacks uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pingreqs, t.pingresp, t.absorbed, t.pubacks
}

// handshake runs CONNECT/CONNACK and SUBSCRIBE/SUBACK on t.
func (t *MQTT) handshake(ctx context.Context, m *MQTTConfig, k KeepAliveConfig, kind KeepAliveKind) error {
	if dl, ok := ctx.Deadline(); ok {
		t.nc.SetDeadline(dl)
	}
	// ctx ending interrupts the reads and writes below.
	stop := context.AfterFunc(ctx, func() { t.nc.SetDeadline(time.Unix(1, 0)) })
	err := t.exchange(m, k, kind)
	if !stop() && err == nil {
		err = ctx.Err() // the deadline may be set: the connection is spent
	}
	t.nc.SetDeadline(time.Time{})
	return err
}

func (t *MQTT) exchange(m *MQTTConfig, k KeepAliveConfig, kind KeepAliveKind) error {
	if err := t.write(appendConnect(nil, m, t.version)); err != nil {
		return fmt.Errorf("mqtt connect: %w", err)
	}
	hdr, body, err := t.rd.next()
	if err != nil {
		return fmt.Errorf("mqtt connack: %w", err)
	}
	p, err := decodeMQTT(hdr, body, t.version)
	if err != nil {
		return fmt.Errorf("mqtt connack: %w", err)
	}
	if p.Type != mqttCONNACK {
		return fmt.Errorf("mqtt connack: %w: got packet type %d first", ErrMQTTProtocol, p.Type)
	}
	if p.ReasonCode != 0 {
		return fmt.Errorf("mqtt connack: refused: %s", connackReason(p.ReasonCode, t.version, p.ReasonString))
	}
	t.present = p.SessionPresent
	t.keepAlive = m.KeepAlive
	if p.ServerKeepAlive >= 0 {
		t.keepAlive = time.Duration(p.ServerKeepAlive) * time.Second
	}
	t.clientID = m.ClientID
	if len(p.AssignedClientID) > 0 {
		t.clientID = string(p.AssignedClientID)
	}
	t.nka = mqttKeepAlive(k, kind, t.tls, t.keepAlive)
	if len(m.Subscriptions) == 0 {
		return nil
	}
	const subID = 1
	if err := t.write(appendSubscribe(nil, subID, m.Subscriptions, t.version)); err != nil {
		return fmt.Errorf("mqtt subscribe: %w", err)
	}
	for {
		hdr, body, err := t.rd.next()
		if err != nil {
			return fmt.Errorf("mqtt suback: %w", err)
		}
		p, err := decodeMQTT(hdr, body, t.version)
		if err != nil {
			return fmt.Errorf("mqtt suback: %w", err)
		}
		switch p.Type {
		case mqttPUBLISH:
			msg, err := t.publish(&p)
			if err != nil {
				return fmt.Errorf("mqtt suback: %w", err)
			}
			t.pending = append(t.pending, msg)
			continue
		case mqttPINGRESP:
			continue
		case mqttSUBACK:
		default:
			return fmt.Errorf("mqtt suback: %w: got packet type %d", ErrMQTTProtocol, p.Type)
		}
		if p.PacketID != subID {
			return fmt.Errorf("mqtt suback: %w: packet identifier %d, want %d", ErrMQTTProtocol, p.PacketID, subID)
		}
		if len(p.ReasonCodes) != len(m.Subscriptions) {
			return fmt.Errorf("mqtt suback: %w: %d return codes for %d subscriptions", ErrMQTTProtocol, len(p.ReasonCodes), len(m.Subscriptions))
		}
		t.granted = append([]byte(nil), p.ReasonCodes...)
		for i, rc := range p.ReasonCodes {
			if rc >= 0x80 {
				return fmt.Errorf("mqtt suback: subscription %d (%q) refused: return code %#x", i, m.Subscriptions[i].Filter, rc)
			}
		}
		return nil
	}
}

func connackReason(rc byte, version uint8, reason []byte) string {
	s := fmt.Sprintf("return code %#x", rc)
	if version == 4 {
		names := map[byte]string{1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}
		if n, ok := names[rc]; ok {
			s += " (" + n + ")"
		}
	}
	if len(reason) > 0 {
		s += ": " + string(reason)
	}
	return s
}

// mqttKeepAlive returns the NIC keep-alive of an MQTT channel.
func mqttKeepAlive(k KeepAliveConfig, kind KeepAliveKind, isTLS bool, ka time.Duration) NICKeepAlive {
	n := NICKeepAlive{MaxInterval: ka * 3 / 4}
	switch {
	case isTLS || kind == KeepAliveTCPProbe:
		n.Kind, n.Probe, n.Level = offload.KindTCPProbe, k.Probe, LevelTCP
		n.HostAppKeepAlive = ka > 0
	case kind == KeepAlivePayload:
		n.Kind, n.Level = offload.KindPayload, LevelApp
		n.Payload = offload.PayloadSpec{Request: k.Request, Reply: k.Reply, ReplyMask: k.ReplyMask}
	default:
		n.Kind, n.Level = offload.KindPayload, LevelApp
		n.Payload = offload.PayloadSpec{Request: mqttPingreq, Reply: mqttPingresp}
	}
	return n
}

// publish turns a PUBLISH into a message, acknowledging QoS 1.
func (t *MQTT) publish(p *mqttPacket) (Message, error) {
	if p.TopicAlias != 0 {
		return Message{}, fmt.Errorf("%w: topic alias %d, but the client allows none", ErrMQTTProtocol, p.TopicAlias)
	}
	if p.QoS > 1 {
		return Message{}, fmt.Errorf("%w: PUBLISH QoS %d above the subscriptions' 1", ErrMQTTProtocol, p.QoS)
	}
	m := Message{Data: append([]byte(nil), p.Payload...), Topic: string(p.Topic), QoS: p.QoS}
	if p.QoS == 1 {
		t.wmu.Lock()
		t.wbuf = appendPuback(t.wbuf[:0], p.PacketID)
		_, err := t.nc.Write(t.wbuf)
		t.wmu.Unlock()
		if err != nil {
			return Message{}, fmt.Errorf("puback: %w", err)
		}
		t.mu.Lock()
		t.pubacks++
		t.mu.Unlock()
	}
	return m, nil
}

func (t *MQTT) write(b []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	_, err := t.nc.Write(b)
	return err
}

func (t *MQTT) gate() *gateConn { return t.g }

// Kind implements Transport.Kind.
func (t *MQTT) Kind() TransportKind { return KindMQTT }

// Protocol implements Transport.Protocol.
func (t *MQTT) Protocol() Protocol { return ProtocolMQTT }

// Conn implements Transport.Conn: the TCP socket, under TLS for mqtts.
func (t *MQTT) Conn() *net.TCPConn { return t.conn }

// Read implements Transport.Read: the next PUBLISH; PINGRESPs and
// acknowledgements are consumed.
func (t *MQTT) Read() (Message, error) {
	if len(t.pending) > 0 {
		m := t.pending[0]
		t.pending = t.pending[1:]
		t.count(&t.msgs)
		return m, nil
	}
	for {
		hdr, body, err := t.rd.next()
		if err != nil {
			return Message{}, fmt.Errorf("mqtt read: %w", err)
		}
		p, err := decodeMQTT(hdr, body, t.version)
		if err != nil {
			return Message{}, fmt.Errorf("mqtt read: %w", err)
		}
		switch p.Type {
		case mqttPINGRESP:
			t.count(&t.pingresp)
		case mqttPUBLISH:
			m, err := t.publish(&p)
			if err != nil {
				return Message{}, fmt.Errorf("mqtt read: %w", err)
			}
			t.count(&t.msgs)
			return m, nil
		case mqttDISCONNECT:
			return Message{}, fmt.Errorf("mqtt read: the server disconnected: reason code %#x %s", p.ReasonCode, p.ReasonString)
		case mqttPUBACK, mqttSUBACK, mqttUNSUBACK:
			// Nothing the client waits for after the handshake.
		default:
			return Message{}, fmt.Errorf("mqtt read: %w: unexpected packet type %d", ErrMQTTProtocol, p.Type)
		}
	}
}

func (t *MQTT) count(c *uint64) {
	t.mu.Lock()
	*c++
	t.mu.Unlock()
}

// Write implements Transport.Write: the channel's messages go to the
// server as they are, so they must be whole MQTT packets (a PUBLISH the
// app encoded).
func (t *MQTT) Write(p []byte) error {
	if _, _, n, err := splitPacket(p); err != nil || n != len(p) {
		return fmt.Errorf("mqtt write: %w: not one whole MQTT packet", ErrMessage)
	}
	return t.write(p)
}

// KeepAlive implements Transport.KeepAlive: a PINGREQ.
func (t *MQTT) KeepAlive() (bool, error) {
	t.count(&t.pingreqs)
	return true, t.write(mqttPingreq)
}

// HandBack implements Transport.HandBack: the NIC's PINGRESPs are in the
// absorbed bytes; the reader consumes them as it reads them.
func (t *MQTT) HandBack(sent, absorbed []byte) {
	if n := countPingresps(absorbed); n > 0 {
		t.mu.Lock()
		t.absorbed += uint64(n)
		t.mu.Unlock()
	}
}

// NICKeepAlive implements Transport.NICKeepAlive.
func (t *MQTT) NICKeepAlive() NICKeepAlive { return t.nka }

// Stats implements Transport.Stats.
func (t *MQTT) Stats() TransportStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TransportStats{ConsumedReplies: t.pingresp, AbsorbedReplies: t.absorbed, KeepAlives: t.pingreqs, Messages: t.msgs}
}

// Close implements Transport.Close: a DISCONNECT (bounded by a short
// write deadline), then the connection closes. Idempotent.
func (t *MQTT) Close() error {
	t.wmu.Lock()
	if !t.closed {
		t.closed = true
		t.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		t.nc.Write(mqttDisconnect)
	}
	t.wmu.Unlock()
	return t.nc.Close()
}

// newMQTT wraps a connected socket (g; nc is g or TLS over it).
func newMQTT(conn *net.TCPConn, g *gateConn, nc net.Conn, isTLS bool, version uint8) *MQTT {
	return &MQTT{conn: conn, g: g, nc: nc, tls: isTLS, version: version, rd: mqttReader{br: bufio.NewReaderSize(nc, 4096)}}
}

var _ Transport = (*MQTT)(nil)
