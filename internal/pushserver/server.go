package pushserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Transport is the kind of a channel's connection. The zero value is
// invalid.
type Transport uint8

// Transports.
const (
	_         Transport = iota
	TCP                 // plain TCP stream of lines
	WebSocket           // RFC 6455 text messages
)

// String returns a short lowercase name of t.
func (t Transport) String() string {
	switch t {
	case TCP:
		return "tcp"
	case WebSocket:
		return "websocket"
	}
	return "Transport(" + strconv.Itoa(int(t)) + ")"
}

// Limits.
const (
	MaxChannel = 64   // characters of a channel id
	MaxPayload = 4096 // bytes of a push payload
	maxLine    = 8192 // longest line or message read from a client
)

// Errors.
var (
	ErrUnknownChannel = errors.New("unknown channel")
	ErrNotConnected   = errors.New("channel not connected")
	ErrBadPayload     = errors.New("bad payload")
	ErrClosed         = errors.New("server closed")
	ErrNotWebSocket   = errors.New("channel is not a websocket")
)

// Config configures a Server. Zero fields take defaults.
type Config struct {
	// TCPAddr, WSAddr and HTTPAddr are the listen addresses of the stream
	// transport, the WebSocket transport (path /ws) and the HTTP API;
	// "" means "127.0.0.1:0". Listeners are opened by New, in the caller's
	// network namespace.
	TCPAddr, WSAddr, HTTPAddr string
	// PingInterval, when positive, makes the server Ping every connected
	// WebSocket channel at that interval (payload "p<n>").
	PingInterval time.Duration
	// PushInterval, when positive, makes the server push "tick <n>" to
	// every connected channel at that interval.
	PushInterval time.Duration
	// WriteTimeout bounds each write to a client (default 5 s).
	WriteTimeout time.Duration
	// Logger receives the server's logs (default: discard).
	Logger *slog.Logger
}

// Message is one push.
type Message struct {
	ID      uint64
	Payload string
}

// Channel is what the server knows of one channel: a copy.
type Channel struct {
	Name      string
	Transport Transport
	Connected bool
	// Connections counts the connections that said hello for it.
	Connections int
	// Pushed are the pushes written to it, in order; Acked the ids the
	// client acknowledged, in order of arrival.
	Pushed []Message
	Acked  []uint64
	// Lines are the other lines (TCP) or text messages (WebSocket) the
	// client sent after its hello, in order.
	Lines []string
	// Pings are the payloads of the Pings sent, Pongs those of the Pongs
	// received, in order; PingsReceived those of the client's Pings
	// (answered with Pongs).
	Pings, Pongs  []string
	PingsReceived []string
	// Sent and Received are every byte written to and read from the
	// current (or last) connection, handshake included.
	Sent, Received []byte
	// Resets counts Reset calls.
	Resets int
}

// Server is the reference push server. It is safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	tcpLn, wsLn, httpLn net.Listener
	httpSrv             *http.Server
	upgrader            websocket.Upgrader

	mu       sync.Mutex
	closed   bool
	nextID   uint64
	pingN    uint64
	tickN    uint64
	channels map[string]*channel
	conns    map[*conn]struct{}
	changed  chan struct{} // closed and replaced on every change

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type channel struct {
	info Channel
	c    *conn // current connection, nil when none
}

// New opens the listeners and starts serving.
func New(cfg *Config) (*Server, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.PingInterval < 0 || c.PushInterval < 0 {
		return nil, errors.New("new push server: negative interval")
	}
	s := &Server{
		cfg:      c,
		log:      c.Logger,
		channels: map[string]*channel{},
		conns:    map[*conn]struct{}{},
		changed:  make(chan struct{}),
		stop:     make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	listen := func(addr string) (net.Listener, error) {
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		return net.Listen("tcp", addr)
	}
	var err error
	if s.tcpLn, err = listen(c.TCPAddr); err != nil {
		return nil, fmt.Errorf("new push server: tcp: %w", err)
	}
	if s.wsLn, err = listen(c.WSAddr); err != nil {
		s.tcpLn.Close()
		return nil, fmt.Errorf("new push server: websocket: %w", err)
	}
	if s.httpLn, err = listen(c.HTTPAddr); err != nil {
		s.tcpLn.Close()
		s.wsLn.Close()
		return nil, fmt.Errorf("new push server: http: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /push", s.handlePush)
	mux.HandleFunc("POST /reset", s.handleReset)
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	s.wg.Add(4)
	go func() { defer s.wg.Done(); s.acceptLoop(s.tcpLn, TCP) }()
	go func() { defer s.wg.Done(); s.acceptLoop(s.wsLn, WebSocket) }()
	go func() { defer s.wg.Done(); s.httpSrv.Serve(s.httpLn) }()
	go func() { defer s.wg.Done(); s.schedule() }()
	return s, nil
}

// TCPAddr returns the stream transport's address.
func (s *Server) TCPAddr() *net.TCPAddr { return s.tcpLn.Addr().(*net.TCPAddr) }

// WSAddr returns the WebSocket transport's address.
func (s *Server) WSAddr() *net.TCPAddr { return s.wsLn.Addr().(*net.TCPAddr) }

// WSURL returns the WebSocket URL clients dial ("ws://host:port/ws").
func (s *Server) WSURL() string { return "ws://" + s.WSAddr().String() + "/ws" }

// HTTPAddr returns the HTTP API's address.
func (s *Server) HTTPAddr() *net.TCPAddr { return s.httpLn.Addr().(*net.TCPAddr) }

// Close stops the listeners, closes every connection and waits for the
// server's goroutines. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		close(s.stop)
		s.tcpLn.Close()
		s.wsLn.Close()
		s.httpSrv.Close()
		for _, c := range conns {
			c.tcp.Close()
		}
		s.wg.Wait()
	})
	return nil
}

// notifyLocked wakes the waiters; s.mu is held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Channel returns a copy of what the server knows of name.
func (s *Server) Channel(name string) (Channel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.channels[name]
	if !ok {
		return Channel{}, false
	}
	return ch.copyInfo(), true
}

func (ch *channel) copyInfo() Channel {
	in := ch.info
	in.Pushed = append([]Message(nil), in.Pushed...)
	in.Acked = append([]uint64(nil), in.Acked...)
	in.Lines = append([]string(nil), in.Lines...)
	in.Pings = append([]string(nil), in.Pings...)
	in.Pongs = append([]string(nil), in.Pongs...)
	in.PingsReceived = append([]string(nil), in.PingsReceived...)
	in.Sent = append([]byte(nil), in.Sent...)
	in.Received = append([]byte(nil), in.Received...)
	return in
}

// Wait blocks until cond holds for channel name (it is called with a copy,
// and with ok false while the channel is unknown), ctx ends or the server
// closes.
func (s *Server) Wait(ctx context.Context, name string, cond func(c Channel, ok bool) bool) error {
	for {
		s.mu.Lock()
		ch, ok := s.channels[name]
		var in Channel
		if ok {
			in = ch.copyInfo()
		}
		changed, closed := s.changed, s.closed
		s.mu.Unlock()
		if cond(in, ok) {
			return nil
		}
		if closed {
			return fmt.Errorf("wait %s: %w", name, ErrClosed)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait %s: %w", name, ctx.Err())
		}
	}
}

// WaitConnected waits until channel name has said hello on a live
// connection.
func (s *Server) WaitConnected(ctx context.Context, name string) error {
	return s.Wait(ctx, name, func(c Channel, ok bool) bool { return ok && c.Connected })
}

// WaitAcked waits until the client of name acknowledged id.
func (s *Server) WaitAcked(ctx context.Context, name string, id uint64) error {
	return s.Wait(ctx, name, func(c Channel, ok bool) bool {
		for _, a := range c.Acked {
			if a == id {
				return true
			}
		}
		return false
	})
}

// Push writes a push with a fresh id to channel name and returns the id.
// The payload must be valid for a line: no newline, at most MaxPayload
// bytes.
func (s *Server) Push(name, payload string) (uint64, error) {
	if len(payload) > MaxPayload || strings.ContainsAny(payload, "\r\n") {
		return 0, fmt.Errorf("push %s: %w: %d bytes, newlines not allowed, at most %d", name, ErrBadPayload, len(payload), MaxPayload)
	}
	s.mu.Lock()
	ch, err := s.liveLocked(name)
	if err != nil {
		s.mu.Unlock()
		return 0, fmt.Errorf("push %s: %w", name, err)
	}
	s.nextID++
	id := s.nextID
	c := ch.c
	s.mu.Unlock()

	// Record before writing: a fast client may acknowledge before Write
	// returns.
	msg := Message{ID: id, Payload: payload}
	s.mu.Lock()
	ch.info.Pushed = append(ch.info.Pushed, msg)
	s.notifyLocked()
	s.mu.Unlock()
	if err := c.writeText("push " + strconv.FormatUint(id, 10) + " " + payload); err != nil {
		return id, fmt.Errorf("push %s: %w", name, err)
	}
	return id, nil
}

// Ping sends a WebSocket Ping with payload to channel name.
func (s *Server) Ping(name, payload string) error {
	if len(payload) > 125 {
		return fmt.Errorf("ping %s: %w: %d bytes above 125", name, ErrBadPayload, len(payload))
	}
	s.mu.Lock()
	ch, err := s.liveLocked(name)
	if err == nil && ch.info.Transport != WebSocket {
		err = ErrNotWebSocket
	}
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("ping %s: %w", name, err)
	}
	c := ch.c
	ch.info.Pings = append(ch.info.Pings, payload)
	s.notifyLocked()
	s.mu.Unlock()
	if err := c.ping(payload); err != nil {
		return fmt.Errorf("ping %s: %w", name, err)
	}
	return nil
}

// Reset aborts channel name's connection with a RST (SO_LINGER 0, close).
func (s *Server) Reset(name string) error {
	s.mu.Lock()
	ch, err := s.liveLocked(name)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("reset %s: %w", name, err)
	}
	c := ch.c
	ch.info.Resets++
	s.mu.Unlock()
	if err := c.tcp.SetLinger(0); err != nil {
		return fmt.Errorf("reset %s: %w", name, err)
	}
	if err := c.tcp.Close(); err != nil {
		return fmt.Errorf("reset %s: %w", name, err)
	}
	return nil
}

func (s *Server) liveLocked(name string) (*channel, error) {
	if s.closed {
		return nil, ErrClosed
	}
	ch, ok := s.channels[name]
	if !ok {
		return nil, ErrUnknownChannel
	}
	if ch.c == nil {
		return nil, ErrNotConnected
	}
	return ch, nil
}

// schedule runs the configured ping and push schedules.
func (s *Server) schedule() {
	var pingC, pushC <-chan time.Time
	if s.cfg.PingInterval > 0 {
		t := time.NewTicker(s.cfg.PingInterval)
		defer t.Stop()
		pingC = t.C
	}
	if s.cfg.PushInterval > 0 {
		t := time.NewTicker(s.cfg.PushInterval)
		defer t.Stop()
		pushC = t.C
	}
	for {
		select {
		case <-s.stop:
			return
		case <-pingC:
			s.mu.Lock()
			s.pingN++
			payload := "p" + strconv.FormatUint(s.pingN, 10)
			names := s.liveNames(WebSocket)
			s.mu.Unlock()
			for _, n := range names {
				if err := s.Ping(n, payload); err != nil {
					s.log.Debug("scheduled ping", "channel", n, "err", err)
				}
			}
		case <-pushC:
			s.mu.Lock()
			s.tickN++
			payload := "tick " + strconv.FormatUint(s.tickN, 10)
			names := s.liveNames(0)
			s.mu.Unlock()
			for _, n := range names {
				if _, err := s.Push(n, payload); err != nil {
					s.log.Debug("scheduled push", "channel", n, "err", err)
				}
			}
		}
	}
}

// liveNames lists the connected channels of transport t (0: all).
func (s *Server) liveNames(t Transport) []string {
	var out []string
	for n, ch := range s.channels {
		if ch.c != nil && (t == 0 || ch.info.Transport == t) {
			out = append(out, n)
		}
	}
	return out
}

func (s *Server) handlePush(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("channel")
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxPayload+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, err := s.Push(name, string(body))
	if err != nil {
		code := http.StatusBadGateway
		switch {
		case errors.Is(err, ErrUnknownChannel):
			code = http.StatusNotFound
		case errors.Is(err, ErrBadPayload):
			code = http.StatusBadRequest
		case errors.Is(err, ErrNotConnected):
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		ID uint64 `json:"id"`
	}{id})
}

func (s *Server) handleReset(w http.ResponseWriter, r *http.Request) {
	if err := s.Reset(r.URL.Query().Get("channel")); err != nil {
		code := http.StatusConflict
		if errors.Is(err, ErrUnknownChannel) {
			code = http.StatusNotFound
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) acceptLoop(ln net.Listener, t Transport) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		tc := nc.(*net.TCPConn)
		c := &conn{s: s, tcp: tc, transport: t}
		c.rc = &recConn{TCPConn: tc, c: c}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			tc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			c.serve()
		}()
	}
}

// recordLocked appends raw bytes to the connection's channel, or to its
// pre-hello buffer; s.mu is held.
func (s *Server) recordLocked(c *conn, p []byte, sent bool) {
	if c.ch == nil {
		if sent {
			c.preSent = append(c.preSent, p...)
		} else {
			c.preRecv = append(c.preRecv, p...)
		}
		return
	}
	if c.ch.c != c {
		return // an older connection of the channel
	}
	if sent {
		c.ch.info.Sent = append(c.ch.info.Sent, p...)
	} else {
		c.ch.info.Received = append(c.ch.info.Received, p...)
	}
	s.notifyLocked()
}

// hello binds c to channel name.
func (s *Server) hello(c *conn, name string) error {
	if name == "" || len([]rune(name)) > MaxChannel || strings.ContainsAny(name, " \t\r\n") {
		return fmt.Errorf("bad hello: channel %q", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.channels[name]
	if !ok {
		ch = &channel{info: Channel{Name: name}}
		s.channels[name] = ch
	}
	if old := ch.c; old != nil && old != c {
		old.tcp.Close()
	}
	ch.c = c
	c.ch = ch
	ch.info.Transport = c.transport
	ch.info.Connected = true
	ch.info.Connections++
	ch.info.Sent = append([]byte(nil), c.preSent...)
	ch.info.Received = append([]byte(nil), c.preRecv...)
	c.preSent, c.preRecv = nil, nil
	s.notifyLocked()
	return nil
}

func (s *Server) gone(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if c.ch != nil && c.ch.c == c {
		c.ch.c = nil
		c.ch.info.Connected = false
	}
	s.notifyLocked()
}

// line handles one line or text message after the hello.
func (s *Server) line(c *conn, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.ch == nil || c.ch.c != c {
		return
	}
	if rest, ok := strings.CutPrefix(text, "ack "); ok {
		if id, err := strconv.ParseUint(rest, 10, 64); err == nil {
			c.ch.info.Acked = append(c.ch.info.Acked, id)
			s.notifyLocked()
			return
		}
	}
	c.ch.info.Lines = append(c.ch.info.Lines, text)
	s.notifyLocked()
}

// pong records a Pong from c's client.
func (s *Server) pong(c *conn, payload string) {
	s.recordControl(c, func(info *Channel) { info.Pongs = append(info.Pongs, payload) })
}

// pingReceived records a Ping from c's client.
func (s *Server) pingReceived(c *conn, payload string) {
	s.recordControl(c, func(info *Channel) { info.PingsReceived = append(info.PingsReceived, payload) })
}

// recordControl applies add to the channel of c, when c is still its live
// connection, and tells the waiters.
func (s *Server) recordControl(c *conn, add func(*Channel)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.ch == nil || c.ch.c != c {
		return
	}
	add(&c.ch.info)
	s.notifyLocked()
}

// conn is one client connection.
type conn struct {
	s         *Server
	tcp       *net.TCPConn
	rc        *recConn
	transport Transport
	ws        *websocket.Conn

	wmu sync.Mutex // serializes stream writes

	// Guarded by s.mu.
	ch               *channel
	preSent, preRecv []byte
}

func (c *conn) serve() {
	defer c.s.gone(c)
	defer c.tcp.Close()
	var err error
	if c.transport == TCP {
		err = c.serveTCP()
	} else {
		err = c.serveWS()
	}
	if err != nil {
		c.s.log.Debug("connection ended", "transport", c.transport, "err", err)
	}
}

func (c *conn) serveTCP() error {
	br := bufio.NewReaderSize(c.rc, maxLine)
	first := true
	for {
		l, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if err := c.received(strings.TrimSuffix(string(l), "\n"), &first); err != nil {
			return err
		}
	}
}

// received handles one line from the client: the first must be
// "hello <name>", the others go to the server.
func (c *conn) received(text string, first *bool) error {
	if !*first {
		c.s.line(c, text)
		return nil
	}
	name, ok := strings.CutPrefix(text, "hello ")
	if !ok {
		return fmt.Errorf("bad hello %q", text)
	}
	*first = false
	return c.s.hello(c, name)
}

// hijacker hands gorilla's Upgrade the recording connection.
type hijacker struct {
	c   *conn
	brw *bufio.ReadWriter
	h   http.Header
}

func (h *hijacker) Header() http.Header { return h.h }
func (h *hijacker) Write(p []byte) (int, error) {
	return 0, errors.New("write before hijack")
}
func (h *hijacker) WriteHeader(code int) {
	fmt.Fprintf(h.c.rc, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", code, http.StatusText(code))
}
func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) { return h.c.rc, h.brw, nil }

func (c *conn) serveWS() error {
	c.tcp.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c.rc)
	req, err := http.ReadRequest(br)
	if err != nil {
		return err
	}
	c.tcp.SetReadDeadline(time.Time{})
	if req.URL.Path != "/ws" {
		(&hijacker{c: c}).WriteHeader(http.StatusNotFound)
		return fmt.Errorf("path %q", req.URL.Path)
	}
	h := &hijacker{c: c, h: http.Header{}, brw: bufio.NewReadWriter(br, bufio.NewWriter(c.rc))}
	up := websocket.Upgrader{HandshakeTimeout: c.s.cfg.WriteTimeout}
	ws, err := up.Upgrade(h, req, nil)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	c.ws = ws
	c.wmu.Unlock()
	ws.SetReadLimit(maxLine)
	ws.SetPongHandler(func(p string) error {
		c.s.pong(c, p)
		return nil
	})
	ws.SetPingHandler(func(p string) error {
		c.s.pingReceived(c, p)
		return ws.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(c.s.cfg.WriteTimeout))
	})
	first := true
	for {
		typ, msg, err := ws.ReadMessage()
		if err != nil {
			return err
		}
		if typ != websocket.TextMessage {
			continue
		}
		if err := c.received(string(msg), &first); err != nil {
			return err
		}
	}
}

func (c *conn) writeText(text string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	deadline := time.Now().Add(c.s.cfg.WriteTimeout)
	if c.transport == WebSocket {
		if c.ws == nil {
			return ErrNotConnected
		}
		c.ws.SetWriteDeadline(deadline)
		return c.ws.WriteMessage(websocket.TextMessage, []byte(text))
	}
	c.tcp.SetWriteDeadline(deadline)
	_, err := c.rc.Write([]byte(text + "\n"))
	return err
}

func (c *conn) ping(payload string) error {
	c.wmu.Lock()
	ws := c.ws
	c.wmu.Unlock()
	if ws == nil {
		return ErrNotConnected
	}
	return ws.WriteControl(websocket.PingMessage, []byte(payload), time.Now().Add(c.s.cfg.WriteTimeout))
}

// recConn records every byte read and written.
type recConn struct {
	*net.TCPConn
	c *conn
}

func (r *recConn) Read(p []byte) (int, error) {
	n, err := r.TCPConn.Read(p)
	if n > 0 {
		r.c.s.mu.Lock()
		r.c.s.recordLocked(r.c, p[:n], false)
		r.c.s.mu.Unlock()
	}
	return n, err
}

func (r *recConn) Write(p []byte) (int, error) {
	n, err := r.TCPConn.Write(p)
	if n > 0 {
		r.c.s.mu.Lock()
		r.c.s.recordLocked(r.c, p[:n], true)
		r.c.s.mu.Unlock()
	}
	return n, err
}
