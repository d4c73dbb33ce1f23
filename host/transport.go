package host

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Message is one message read from a channel's transport.
type Message struct {
	Data []byte
	// At is the host-clock time the read completed.
	At time.Duration
}

// TransportKind says what a transport speaks on its TCP connection. The
// zero value is invalid.
type TransportKind uint8

// Transport kinds.
const (
	_ TransportKind = iota
	// KindStream: a TCP byte stream of lines; the NIC guards it with TCP
	// keep-alive probes, the app's KeepAlive task keeps it alive on a
	// software slot.
	KindStream
	// KindWebSocket: RFC 6455 over plain TCP; the system's WebSocket
	// keep-alive serves it (the NIC on a hardware slot, the host's Pings
	// on a software slot).
	KindWebSocket
)

// String returns a short lowercase name of k.
func (k TransportKind) String() string {
	switch k {
	case KindStream:
		return "stream"
	case KindWebSocket:
		return "websocket"
	}
	return "TransportKind(" + strconv.Itoa(int(k)) + ")"
}

// Transport is a channel's connection. The host keeps a receive posted on
// it (one goroutine in Read) for as long as the channel uses it.
type Transport interface {
	// Kind tells what the transport speaks.
	Kind() TransportKind
	// Conn is the kernel TCP socket under the transport, which the host
	// freezes while a hardware slot guards it.
	Conn() *net.TCPConn
	// Read blocks until the next message arrives (the posted receive).
	Read() ([]byte, error)
	// Write sends one message.
	Write(p []byte) error
	// KeepAlive sends the system keep-alive of the transport (a WebSocket
	// Ping) and reports true, or reports false when the transport has
	// none and the app's KeepAlive task must keep it alive.
	KeepAlive() (bool, error)
	// HandBack tells the transport the stream bytes the NIC exchanged for
	// it while the host slept; it is called just before the socket is
	// thawed, so before the reader can read the absorbed bytes.
	HandBack(sent, absorbed []byte)
	// Close closes the connection.
	Close() error
}

// ErrMessage is wrapped by errors about a message a transport cannot send.
var ErrMessage = errors.New("bad message")

// Stream is a Transport over a TCP stream of newline-terminated
// messages: Read returns one line without its newline, Write appends one.
type Stream struct {
	conn *net.TCPConn
	g    *gateConn
	br   *bufio.Reader
	ka   []byte

	wmu sync.Mutex
}

// MaxLine is the longest line a Stream reads.
const MaxLine = 64 << 10

// NewStream returns a stream transport on conn. keepAlive, when not nil,
// is the message the system writes as the channel's software keep-alive;
// nil leaves it to the app's KeepAlive task.
func NewStream(conn *net.TCPConn, keepAlive []byte) (*Stream, error) {
	if conn == nil {
		return nil, errors.New("new stream: nil connection")
	}
	for _, c := range keepAlive {
		if c == '\n' {
			return nil, fmt.Errorf("new stream: %w: keep-alive has a newline", ErrMessage)
		}
	}
	g := &gateConn{TCPConn: conn}
	return &Stream{conn: conn, g: g, br: bufio.NewReaderSize(g, 4096), ka: keepAlive}, nil
}

func (s *Stream) gate() *gateConn { return s.g }

// Kind implements Transport.Kind.
func (s *Stream) Kind() TransportKind { return KindStream }

// Conn implements Transport.Conn.
func (s *Stream) Conn() *net.TCPConn { return s.conn }

// Read implements Transport.Read.
func (s *Stream) Read() ([]byte, error) {
	var line []byte
	for {
		part, err := s.br.ReadSlice('\n')
		line = append(line, part...)
		if err == nil {
			return line[:len(line)-1], nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		if len(line) > MaxLine {
			return nil, fmt.Errorf("read: %w: line longer than %d bytes", ErrMessage, MaxLine)
		}
	}
}

// Write implements Transport.Write.
func (s *Stream) Write(p []byte) error {
	for _, c := range p {
		if c == '\n' {
			return fmt.Errorf("write: %w: newline in a line message", ErrMessage)
		}
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.g.Write(append(append(make([]byte, 0, len(p)+1), p...), '\n'))
	return err
}

// KeepAlive implements Transport.KeepAlive.
func (s *Stream) KeepAlive() (bool, error) {
	if s.ka == nil {
		return false, nil
	}
	return true, s.Write(s.ka)
}

// HandBack implements Transport.HandBack: a stream has nothing to adjust
// (probes carry no stream bytes).
func (s *Stream) HandBack(sent, absorbed []byte) {}

// Close implements Transport.Close.
func (s *Stream) Close() error { return s.conn.Close() }

// WebSocket is a Transport over a gorilla/websocket client connection on
// plain TCP (ws://): the NIC must see the frames to answer Pings.
type WebSocket struct {
	ws   *websocket.Conn
	conn *net.TCPConn
	g    *gateConn // nil unless dialled by DialWebSocket

	wmu sync.Mutex

	mu         sync.Mutex
	suppress   int // Pings already answered by the NIC, not to answer again
	pings      uint64
	pongs      uint64
	kaN        uint64
	answered   uint64
	suppressed uint64
}

// WriteWait bounds the WebSocket control writes of the host.
const WriteWait = 5 * time.Second

// NewWebSocket returns a WebSocket transport on ws, whose underlying
// connection must be a *net.TCPConn (ws://, no TLS).
func NewWebSocket(ws *websocket.Conn) (*WebSocket, error) {
	if ws == nil {
		return nil, errors.New("new websocket: nil connection")
	}
	var t *WebSocket
	switch c := ws.NetConn().(type) {
	case *net.TCPConn:
		t = &WebSocket{ws: ws, conn: c}
	case *gateConn:
		t = &WebSocket{ws: ws, conn: c.TCPConn, g: c}
	default:
		return nil, fmt.Errorf("new websocket: underlying connection is %T, not a plain *net.TCPConn", c)
	}
	ws.SetPingHandler(t.onPing)
	ws.SetPongHandler(func(string) error {
		t.mu.Lock()
		t.pongs++
		t.mu.Unlock()
		return nil
	})
	return t, nil
}

func (t *WebSocket) onPing(payload string) error {
	t.mu.Lock()
	t.pings++
	if t.suppress > 0 {
		t.suppress--
		t.suppressed++
		t.mu.Unlock()
		return nil
	}
	t.answered++
	t.mu.Unlock()
	err := t.ws.WriteControl(websocket.PongMessage, []byte(payload), time.Now().Add(WriteWait))
	if errors.Is(err, websocket.ErrCloseSent) {
		return nil
	}
	return err
}

func (t *WebSocket) gate() *gateConn { return t.g }

// Kind implements Transport.Kind.
func (t *WebSocket) Kind() TransportKind { return KindWebSocket }

// Conn implements Transport.Conn.
func (t *WebSocket) Conn() *net.TCPConn { return t.conn }

// Read implements Transport.Read: the next text or binary message.
func (t *WebSocket) Read() ([]byte, error) {
	_, p, err := t.ws.ReadMessage()
	return p, err
}

// Write implements Transport.Write: one text message.
func (t *WebSocket) Write(p []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return t.ws.WriteMessage(websocket.TextMessage, p)
}

// KeepAlive implements Transport.KeepAlive: a Ping ("ka<n>").
func (t *WebSocket) KeepAlive() (bool, error) {
	t.mu.Lock()
	t.kaN++
	p := "ka" + strconv.FormatUint(t.kaN, 10)
	t.mu.Unlock()
	return true, t.ws.WriteControl(websocket.PingMessage, []byte(p), time.Now().Add(WriteWait))
}

// HandBack implements Transport.HandBack: the server Pings among the
// absorbed bytes were answered by the NIC (its Pongs are in sent), so the
// reader must not answer them a second time when it reads them.
func (t *WebSocket) HandBack(sent, absorbed []byte) {
	n := countServerPings(absorbed)
	t.mu.Lock()
	t.suppress += n
	t.mu.Unlock()
}

// PingCounts returns the server Pings read, those answered by the host and
// those the NIC had already answered, and the Pongs read.
func (t *WebSocket) PingCounts() (pings, answered, byNIC, pongs uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pings, t.answered, t.suppressed, t.pongs
}

// Close implements Transport.Close.
func (t *WebSocket) Close() error { return t.ws.Close() }

// countServerPings counts the complete Ping frames in a run of server
// (unmasked) WebSocket frames; it stops at anything malformed.
func countServerPings(b []byte) int {
	n := 0
	for len(b) >= 2 {
		op := b[0] & 0x0f
		l := int(b[1] & 0x7f)
		hdr := 2
		switch l {
		case 126:
			if len(b) < 4 {
				return n
			}
			l, hdr = int(b[2])<<8|int(b[3]), 4
		case 127:
			return n // no keep-alive traffic is that long
		}
		if b[1]&0x80 != 0 {
			hdr += 4
		}
		if len(b) < hdr+l {
			return n
		}
		if op == 0x9 {
			n++
		}
		b = b[hdr+l:]
	}
	return n
}

var (
	_ Transport = (*Stream)(nil)
	_ Transport = (*WebSocket)(nil)
)
