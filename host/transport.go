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

	"github.com/standbynic/standbynic/offload"
)

// Message is one message read from a channel's transport.
type Message struct {
	// Data is the message: a line without its newline, the bytes of one
	// raw read, a WebSocket message, an MQTT PUBLISH's payload.
	Data []byte
	// Topic is the MQTT PUBLISH's topic ("" for the other protocols).
	Topic string
	// QoS is the MQTT PUBLISH's QoS (0 or 1; a QoS 1 message was
	// acknowledged with PUBACK when Read returned it).
	QoS byte
	// At is the host-clock time the read completed (set by the host).
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
	// KindWebSocket: RFC 6455 over plain TCP or TLS; the system's
	// WebSocket keep-alive serves it (the NIC on a hardware slot, the
	// host's Pings on a software slot).
	KindWebSocket
	// KindMQTT: MQTT 3.1.1 or 5.0 over plain TCP or TLS; PINGREQ and
	// PINGRESP keep it alive.
	KindMQTT
)

// String returns a short lowercase name of k.
func (k TransportKind) String() string {
	switch k {
	case KindStream:
		return "stream"
	case KindWebSocket:
		return "websocket"
	case KindMQTT:
		return "mqtt"
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
	// Protocol is the application protocol the transport speaks.
	Protocol() Protocol
	// Read blocks until the next message arrives (the posted receive).
	// Replies to keep-alives (PINGRESP, Pong, a payload reply) are
	// consumed, never returned.
	Read() (Message, error)
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
	// NICKeepAlive is the keep-alive the transport asks of a NIC slot
	// and of the host's software wakes.
	NICKeepAlive() NICKeepAlive
	// Stats returns the transport's counters.
	Stats() TransportStats
	// Close closes the connection.
	Close() error
}

// Keep-alive levels (NICKeepAlive.Level, Channel.KeepAliveLevel).
const (
	// LevelTCP: the NIC keeps the connection alive with TCP probes (TLS
	// channels, whose app keep-alives the NIC cannot write).
	LevelTCP = "tcp"
	// LevelApp: the NIC sends the app's keep-alive (PINGREQ, a
	// WebSocket Ping, payload bytes).
	LevelApp = "app"
)

// NICKeepAlive is the keep-alive a transport wants: the pieces of an
// offload.Spec (the host adds the interval and retries) and what the host
// must do itself.
type NICKeepAlive struct {
	Kind      offload.Kind
	Probe     offload.ProbeForm
	Payload   offload.PayloadSpec
	WebSocket offload.WebSocketSpec
	// Level is LevelTCP or LevelApp.
	Level string
	// MaxInterval, when positive, caps the channel's keep-alive
	// interval: MQTT's 0.75× the negotiated keep-alive.
	MaxInterval time.Duration
	// HostAppKeepAlive says the host must send the app's keep-alive
	// itself on its own wakes even while a slot guards the connection
	// at the TCP level (TLS channels whose server needs app keep-alives:
	// MQTT's PINGREQ, a WebSocket Ping).
	HostAppKeepAlive bool
}

// TransportStats are a transport's counters.
type TransportStats struct {
	// ConsumedReplies counts the keep-alive replies the codec consumed
	// instead of returning them (PINGRESP, Pong, payload replies), those
	// the NIC absorbed while the host slept included.
	ConsumedReplies uint64
	// AbsorbedReplies counts the replies among them the NIC had absorbed
	// (found in the hand-back's absorbed bytes).
	AbsorbedReplies uint64
	// KeepAlives counts the keep-alives the transport itself wrote.
	KeepAlives uint64
	// Messages counts the messages Read returned.
	Messages uint64
}

// ErrMessage is wrapped by errors about a message a transport cannot send.
var ErrMessage = errors.New("bad message")

// replyFilter consumes the replies of a payload keep-alive in a byte
// stream (line and raw channels): the replies the NIC absorbed while the
// host slept are the first bytes the thawed socket yields (skipped at the
// socket, skipReader), and the reply to a request the host sent itself is
// recognised at the front of the next read.
type replyFilter struct {
	reply, mask []byte

	mu       sync.Mutex
	skip     int // absorbed bytes still to drop
	expect   int // requests the host sent whose reply is still due
	consumed uint64
	absorbed uint64
	kas      uint64
	msgs     uint64
}

// handBack records what a payload slot did for the connection: every
// byte it absorbed is a reply (anything else wakes the host), skipped
// when the thawed socket yields it; a request it sent whose reply had not
// come by the hand-back is still due, and its reply, arriving after the
// thaw, is consumed like the reply to the host's own request. request is
// the slot's request (its length counts the requests in sent).
func (f *replyFilter) handBack(request, sent, absorbed []byte) {
	if len(f.reply) == 0 {
		return // probes: nothing absorbed is a reply
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skip += len(absorbed)
	k := len(absorbed) / len(f.reply)
	f.consumed += uint64(k)
	f.absorbed += uint64(k)
	if len(request) > 0 {
		if due := len(sent)/len(request) - k; due > 0 {
			f.expect += due
		}
	}
}

// take returns how many of n bytes just read are absorbed bytes to drop.
func (f *replyFilter) take(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := min(f.skip, n)
	f.skip -= d
	return d
}

// strip takes off p's front and end the replies the host's (or the
// NIC's) requests are waiting for, as many as are due, counts them and
// returns what is left. A reply in the middle of other bytes stays: in a
// raw stream it cannot be told from data.
func (f *replyFilter) strip(p []byte) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.reply)
	if n == 0 {
		return p
	}
	for f.expect > 0 && len(p) >= n && matchMasked(p[:n], f.reply, f.mask) {
		p = p[n:]
		f.expect--
		f.consumed++
	}
	for f.expect > 0 && len(p) >= n && matchMasked(p[len(p)-n:], f.reply, f.mask) {
		p = p[:len(p)-n]
		f.expect--
		f.consumed++
	}
	return p
}

func (f *replyFilter) sent() {
	f.mu.Lock()
	f.kas++
	if len(f.reply) > 0 {
		f.expect++
	}
	f.mu.Unlock()
}

func (f *replyFilter) stats() TransportStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return TransportStats{ConsumedReplies: f.consumed, AbsorbedReplies: f.absorbed, KeepAlives: f.kas, Messages: f.msgs}
}

// matchMasked reports got[i]&mask[i] == want[i]&mask[i] for every i (an
// empty mask is all ones); len(got) == len(want).
func matchMasked(got, want, mask []byte) bool {
	for i := range want {
		m := byte(0xff)
		if len(mask) > 0 {
			m = mask[i]
		}
		if got[i]&m != want[i]&m {
			return false
		}
	}
	return true
}

// skipReader drops, below any buffering, the absorbed reply bytes the
// thawed socket yields first.
type skipReader struct {
	g *gateConn
	f *replyFilter
}

func (r skipReader) Read(p []byte) (int, error) {
	for {
		n, err := r.g.Read(p)
		if n > 0 {
			if d := r.f.take(n); d > 0 {
				copy(p, p[d:n])
				n -= d
				if n == 0 && err == nil {
					continue
				}
			}
		}
		return n, err
	}
}

// streamKeepAlive returns the NIC keep-alive of a line or raw channel.
func streamKeepAlive(k KeepAliveConfig, kind KeepAliveKind) NICKeepAlive {
	if kind == KeepAlivePayload {
		return NICKeepAlive{
			Kind:    offload.KindPayload,
			Payload: offload.PayloadSpec{Request: k.Request, Reply: k.Reply, ReplyMask: k.ReplyMask},
			Level:   LevelApp,
		}
	}
	return NICKeepAlive{Kind: offload.KindTCPProbe, Probe: k.Probe, Level: LevelTCP}
}

// Stream is a Transport over a TCP stream of newline-terminated
// messages (the line protocol): Read returns one line without its
// newline, Write appends one.
type Stream struct {
	conn *net.TCPConn
	g    *gateConn
	br   *bufio.Reader
	ka   []byte
	req  []byte // payload keep-alive request (software slot), or nil
	nka  NICKeepAlive
	f    *replyFilter

	wmu sync.Mutex
}

// MaxLine is the longest line a Stream reads.
const MaxLine = 64 << 10

// NewStream returns a stream transport on conn. keepAlive, when not nil,
// is the message the system writes as the channel's software keep-alive;
// nil leaves it to the app's KeepAlive task. A NIC guards it with TCP
// probes.
func NewStream(conn *net.TCPConn, keepAlive []byte) (*Stream, error) {
	return newStream(conn, keepAlive, KeepAliveConfig{}, KeepAliveTCPProbe)
}

func newStream(conn *net.TCPConn, keepAlive []byte, k KeepAliveConfig, kind KeepAliveKind) (*Stream, error) {
	if conn == nil {
		return nil, errors.New("new stream: nil connection")
	}
	for _, c := range keepAlive {
		if c == '\n' {
			return nil, fmt.Errorf("new stream: %w: keep-alive has a newline", ErrMessage)
		}
	}
	g := &gateConn{TCPConn: conn}
	s := &Stream{conn: conn, g: g, ka: keepAlive, nka: streamKeepAlive(k, kind), f: &replyFilter{}}
	if kind == KeepAlivePayload {
		s.req = k.Request
		s.f.reply, s.f.mask = k.Reply, k.ReplyMask
	}
	s.br = bufio.NewReaderSize(skipReader{g: g, f: s.f}, 4096)
	return s, nil
}

func (s *Stream) gate() *gateConn { return s.g }

// Kind implements Transport.Kind.
func (s *Stream) Kind() TransportKind { return KindStream }

// Protocol implements Transport.Protocol.
func (s *Stream) Protocol() Protocol { return ProtocolLine }

// Conn implements Transport.Conn.
func (s *Stream) Conn() *net.TCPConn { return s.conn }

// Read implements Transport.Read.
func (s *Stream) Read() (Message, error) {
	for {
		line, err := s.readLine()
		if err != nil {
			return Message{}, err
		}
		// A reply to the host's own payload keep-alive (a line ending
		// the reply's way) is consumed.
		if n := len(s.f.reply); n > 0 && len(line)+1 == n && s.f.reply[n-1] == '\n' {
			full := line[:len(line):len(line)]
			full = append(full, '\n')
			if len(s.f.strip(full)) == 0 {
				continue
			}
		}
		s.f.mu.Lock()
		s.f.msgs++
		s.f.mu.Unlock()
		return Message{Data: line}, nil
	}
}

func (s *Stream) readLine() ([]byte, error) {
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

// KeepAlive implements Transport.KeepAlive: the payload keep-alive's
// request, or the configured keep-alive line, or nothing (the app's
// KeepAlive task).
func (s *Stream) KeepAlive() (bool, error) {
	if s.req != nil {
		s.f.sent()
		s.wmu.Lock()
		defer s.wmu.Unlock()
		_, err := s.g.Write(s.req)
		return true, err
	}
	if s.ka == nil {
		return false, nil
	}
	s.f.mu.Lock()
	s.f.kas++
	s.f.mu.Unlock()
	return true, s.Write(s.ka)
}

// HandBack implements Transport.HandBack: probes carry no stream bytes;
// the replies a payload slot absorbed are skipped.
func (s *Stream) HandBack(sent, absorbed []byte) { s.f.handBack(s.nka.Payload.Request, sent, absorbed) }

// NICKeepAlive implements Transport.NICKeepAlive.
func (s *Stream) NICKeepAlive() NICKeepAlive { return s.nka }

// Stats implements Transport.Stats.
func (s *Stream) Stats() TransportStats { return s.f.stats() }

// Close implements Transport.Close.
func (s *Stream) Close() error { return s.conn.Close() }

// WebSocket is a Transport over a gorilla/websocket client connection,
// on plain TCP (ws://: the NIC sees the frames and keeps it alive with
// Pings) or TLS (wss://: the NIC guards the TCP connection with probes;
// the host sends the Pings on its own wakes).
type WebSocket struct {
	ws   *websocket.Conn
	conn *net.TCPConn
	g    *gateConn // nil unless dialled by this package
	tls  bool
	mode offload.WSMode
	nka  NICKeepAlive

	wmu sync.Mutex

	mu         sync.Mutex
	suppress   int // Pings already answered by the NIC, not to answer again
	pings      uint64
	pongs      uint64
	kaN        uint64
	answered   uint64
	suppressed uint64
	absorbed   uint64 // Pongs among the absorbed bytes
	msgs       uint64
}

// WriteWait bounds the WebSocket control writes of the host.
const WriteWait = 5 * time.Second

// nicPingPayload is the payload of the NIC's Pings and Pongs.
var nicPingPayload = []byte("nic")

// NewWebSocket returns a WebSocket transport on ws, whose underlying
// connection must be a *net.TCPConn (ws://, no TLS); its keep-alive is a
// Ping.
func NewWebSocket(ws *websocket.Conn) (*WebSocket, error) {
	if ws == nil {
		return nil, errors.New("new websocket: nil connection")
	}
	switch c := ws.NetConn().(type) {
	case *net.TCPConn:
		return newWebSocket(ws, c, nil, false, KeepAliveConfig{}), nil
	case *gateConn:
		return newWebSocket(ws, c.TCPConn, c, false, KeepAliveConfig{}), nil
	default:
		return nil, fmt.Errorf("new websocket: underlying connection is %T, not a plain *net.TCPConn", c)
	}
}

func newWebSocket(ws *websocket.Conn, conn *net.TCPConn, g *gateConn, isTLS bool, k KeepAliveConfig) *WebSocket {
	mode := k.WSMode
	if mode == 0 {
		mode = offload.WSPing
	}
	t := &WebSocket{ws: ws, conn: conn, g: g, tls: isTLS, mode: mode}
	switch {
	case isTLS:
		t.nka = NICKeepAlive{Kind: offload.KindTCPProbe, Probe: k.Probe, Level: LevelTCP, HostAppKeepAlive: mode != offload.WSResponder}
	case mode == offload.WSResponder:
		t.nka = NICKeepAlive{Kind: offload.KindWebSocket, Probe: k.Probe, WebSocket: offload.WebSocketSpec{Mode: mode}, Level: LevelApp}
	default:
		t.nka = NICKeepAlive{Kind: offload.KindWebSocket, WebSocket: offload.WebSocketSpec{Mode: mode, Payload: nicPingPayload}, Level: LevelApp}
	}
	ws.SetPingHandler(t.onPing)
	ws.SetPongHandler(func(string) error {
		t.mu.Lock()
		t.pongs++
		t.mu.Unlock()
		return nil
	})
	return t
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

// Protocol implements Transport.Protocol.
func (t *WebSocket) Protocol() Protocol { return ProtocolWebSocket }

// Conn implements Transport.Conn.
func (t *WebSocket) Conn() *net.TCPConn { return t.conn }

// Read implements Transport.Read: the next text or binary message
// (Pings are answered and Pongs consumed by the handlers meanwhile).
func (t *WebSocket) Read() (Message, error) {
	_, p, err := t.ws.ReadMessage()
	if err != nil {
		return Message{}, err
	}
	t.mu.Lock()
	t.msgs++
	t.mu.Unlock()
	return Message{Data: p}, nil
}

// Write implements Transport.Write: one text message.
func (t *WebSocket) Write(p []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return t.ws.WriteMessage(websocket.TextMessage, p)
}

// KeepAlive implements Transport.KeepAlive: a Ping ("ka<n>"), or an
// unsolicited Pong in pong mode; the responder mode sends nothing (the
// server's Pings are answered as they come).
func (t *WebSocket) KeepAlive() (bool, error) {
	if t.mode == offload.WSResponder {
		return true, nil
	}
	t.mu.Lock()
	t.kaN++
	p := "ka" + strconv.FormatUint(t.kaN, 10)
	t.mu.Unlock()
	op := websocket.PingMessage
	if t.mode == offload.WSPong {
		op = websocket.PongMessage
	}
	return true, t.ws.WriteControl(op, []byte(p), time.Now().Add(WriteWait))
}

// HandBack implements Transport.HandBack: the server Pings among the
// absorbed bytes were answered by the NIC (its Pongs are in sent), so the
// reader must not answer them a second time when it reads them; the
// Pongs among them (answers to the NIC's Pings) are consumed by the
// reader's Pong handler.
func (t *WebSocket) HandBack(sent, absorbed []byte) {
	pings, pongs := countServerControl(absorbed)
	t.mu.Lock()
	t.suppress += pings
	t.absorbed += uint64(pongs)
	t.mu.Unlock()
}

// NICKeepAlive implements Transport.NICKeepAlive.
func (t *WebSocket) NICKeepAlive() NICKeepAlive { return t.nka }

// Stats implements Transport.Stats: the consumed replies are the Pongs
// read.
func (t *WebSocket) Stats() TransportStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TransportStats{ConsumedReplies: t.pongs, AbsorbedReplies: t.absorbed, KeepAlives: t.kaN, Messages: t.msgs}
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
	n, _ := countServerControl(b)
	return n
}

// countServerControl counts the complete Ping and Pong frames in a run
// of server WebSocket frames; it stops at anything malformed.
func countServerControl(b []byte) (pings, pongs int) {
	for len(b) >= 2 {
		op := b[0] & 0x0f
		l := int(b[1] & 0x7f)
		hdr := 2
		switch l {
		case 126:
			if len(b) < 4 {
				return
			}
			l, hdr = int(b[2])<<8|int(b[3]), 4
		case 127:
			return // no keep-alive traffic is that long
		}
		if b[1]&0x80 != 0 {
			hdr += 4
		}
		if len(b) < hdr+l {
			return
		}
		switch op {
		case 0x9:
			pings++
		case 0xa:
			pongs++
		}
		b = b[hdr+l:]
	}
	return
}

var (
	_ Transport = (*Stream)(nil)
	_ Transport = (*WebSocket)(nil)
)
