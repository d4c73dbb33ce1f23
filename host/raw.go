package host

import (
	"errors"
	"net"
	"sync"
)

// Raw is a Transport over a plain TCP byte stream with no framing and no
// greeting: every read is a push of the bytes read. The app's keep-alive
// bytes (DialConfig.RawKeepAlive) are its software keep-alive; a payload
// keep-alive's replies are consumed, never pushed.
type Raw struct {
	conn *net.TCPConn
	g    *gateConn
	r    skipReader
	ka   []byte
	req  []byte
	nka  NICKeepAlive
	f    *replyFilter
	buf  []byte

	wmu sync.Mutex
}

// RawReadSize is the most a Raw transport reads at once (one message).
const RawReadSize = 16 << 10

// NewRaw returns a raw transport on conn with keepAlive as its software
// keep-alive bytes (nil: the app's KeepAlive task) and k as its keep-alive
// (KeepAliveTCPProbe or KeepAlivePayload).
func NewRaw(conn *net.TCPConn, keepAlive []byte, k KeepAliveConfig) (*Raw, error) {
	if conn == nil {
		return nil, errors.New("new raw: nil connection")
	}
	kind := k.Kind
	if kind == KeepAliveDefault {
		kind = KeepAliveTCPProbe
	}
	if kind != KeepAliveTCPProbe && kind != KeepAlivePayload {
		return nil, errors.New("new raw: keep-alive kind " + kind.String() + ": want tcp-probe or payload")
	}
	g := &gateConn{TCPConn: conn}
	t := &Raw{conn: conn, g: g, ka: keepAlive, nka: streamKeepAlive(k, kind), f: &replyFilter{}, buf: make([]byte, RawReadSize)}
	if kind == KeepAlivePayload {
		t.req = k.Request
		t.f.reply, t.f.mask = k.Reply, k.ReplyMask
	}
	t.r = skipReader{g: g, f: t.f}
	return t, nil
}

func (t *Raw) gate() *gateConn { return t.g }

// Kind implements Transport.Kind.
func (t *Raw) Kind() TransportKind { return KindStream }

// Protocol implements Transport.Protocol.
func (t *Raw) Protocol() Protocol { return ProtocolRaw }

// Conn implements Transport.Conn.
func (t *Raw) Conn() *net.TCPConn { return t.conn }

// Read implements Transport.Read: the bytes of the next read, a reply to
// the host's or the NIC's payload keep-alive at their front or end taken
// off.
func (t *Raw) Read() (Message, error) {
	for {
		n, err := t.r.Read(t.buf)
		p := t.buf[:n]
		if n > 0 {
			p = t.f.strip(p)
		}
		if len(p) > 0 {
			t.f.mu.Lock()
			t.f.msgs++
			t.f.mu.Unlock()
			return Message{Data: append([]byte(nil), p...)}, nil
		}
		if err != nil {
			return Message{}, err
		}
	}
}

// Write implements Transport.Write: the bytes as they are.
func (t *Raw) Write(p []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	_, err := t.g.Write(p)
	return err
}

// KeepAlive implements Transport.KeepAlive: the payload keep-alive's
// request, or the app's keep-alive bytes, or nothing (the app's
// KeepAlive task).
func (t *Raw) KeepAlive() (bool, error) {
	p := t.req
	if p == nil {
		p = t.ka
	}
	if p == nil {
		return false, nil
	}
	t.f.sent()
	return true, t.Write(p)
}

// HandBack implements Transport.HandBack.
func (t *Raw) HandBack(sent, absorbed []byte) { t.f.handBack(t.nka.Payload.Request, sent, absorbed) }

// NICKeepAlive implements Transport.NICKeepAlive.
func (t *Raw) NICKeepAlive() NICKeepAlive { return t.nka }

// Stats implements Transport.Stats.
func (t *Raw) Stats() TransportStats { return t.f.stats() }

// Close implements Transport.Close.
func (t *Raw) Close() error { return t.conn.Close() }

var _ Transport = (*Raw)(nil)
