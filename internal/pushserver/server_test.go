package pushserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
)

func newServer(t *testing.T, cfg *Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// recorder keeps every byte a client connection read and wrote.
type recorder struct {
	net.Conn
	in, out []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.in = append(r.in, p[:n]...)
	return n, err
}

func (r *recorder) Write(p []byte) (int, error) {
	n, err := r.Conn.Write(p)
	r.out = append(r.out, p[:n]...)
	return n, err
}

func TestTCPPushAckByteExact(t *testing.T) {
	s := newServer(t, nil)
	ctx := testCtx(t)
	nc, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rc := &recorder{Conn: nc}
	br := bufio.NewReader(rc)
	if _, err := io.WriteString(rc, "hello chan-1\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitConnected(ctx, "chan-1"); err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, p := range []string{"first", "second message", ""} {
		id, err := s.Push("chan-1", p)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if want := "push " + itoa(id) + " " + p + "\n"; line != want {
			t.Fatalf("line = %q, want %q", line, want)
		}
		if _, err := io.WriteString(rc, "ack "+itoa(id)+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	io.WriteString(rc, "ka\n")
	if err := s.Wait(ctx, "chan-1", func(c Channel, ok bool) bool { return len(c.Lines) == 1 }); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Channel("chan-1")
	if diff := cmp.Diff(ids, got.Acked); diff != "" {
		t.Errorf("acked (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ka"}, got.Lines); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(string(rc.out), string(got.Received)); diff != "" {
		t.Errorf("server received vs client wrote (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(string(rc.in), string(got.Sent)); diff != "" {
		t.Errorf("server sent vs client read (-want +got):\n%s", diff)
	}
	if got.Transport != TCP || !got.Connected || got.Connections != 1 {
		t.Errorf("channel = %v connected %v connections %d", got.Transport, got.Connected, got.Connections)
	}
}

func itoa(u uint64) string { return strconv.FormatUint(u, 10) }

func dialWS(t *testing.T, s *Server) (*websocket.Conn, *recorder) {
	t.Helper()
	var rc *recorder
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		rc = &recorder{Conn: c}
		return rc, nil
	}}
	ws, _, err := d.DialContext(testCtx(t), s.WSURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws, rc
}

func TestWebSocketPushPingAck(t *testing.T) {
	s := newServer(t, nil)
	ctx := testCtx(t)
	ws, rc := dialWS(t, s)
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hello ws-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitConnected(ctx, "ws-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping("ws-1", "p-a"); err != nil {
		t.Fatal(err)
	}
	id, err := s.Push("ws-1", "hello there")
	if err != nil {
		t.Fatal(err)
	}
	// ReadMessage runs the default ping handler (a Pong) on the way.
	typ, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if want := "push " + itoa(id) + " hello there"; typ != websocket.TextMessage || string(msg) != want {
		t.Fatalf("message = %d %q, want text %q", typ, msg, want)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("ack "+itoa(id))); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitAcked(ctx, "ws-1", id); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(ctx, "ws-1", func(c Channel, _ bool) bool { return len(c.Pongs) == 1 }); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Channel("ws-1")
	if diff := cmp.Diff([]string{"p-a"}, got.Pongs); diff != "" {
		t.Errorf("pongs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(string(rc.in), string(got.Sent)); diff != "" {
		t.Errorf("server sent vs client read (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(string(rc.out), string(got.Received)); diff != "" {
		t.Errorf("server received vs client wrote (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(string(got.Sent), "HTTP/1.1 101 ") {
		t.Errorf("sent does not start with the handshake: %q", got.Sent[:min(len(got.Sent), 20)])
	}
}

func TestScheduledPingsAndPushes(t *testing.T) {
	s := newServer(t, &Config{PingInterval: 20 * time.Millisecond, PushInterval: 20 * time.Millisecond})
	ctx := testCtx(t)
	ws, _ := dialWS(t, s)
	ws.WriteMessage(websocket.TextMessage, []byte("hello sched"))
	if err := s.WaitConnected(ctx, "sched"); err != nil {
		t.Fatal(err)
	}
	// Two scheduled pushes read; pings answered by the reader on the way.
	for i := 0; i < 2; i++ {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(msg), " tick ") {
			t.Fatalf("message %q is not a tick", msg)
		}
	}
	if err := s.Wait(ctx, "sched", func(c Channel, _ bool) bool { return len(c.Pongs) >= 1 }); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Channel("sched")
	if !strings.HasPrefix(got.Pongs[0], "p") || got.Pongs[0] != got.Pings[0] {
		t.Errorf("pong %q does not echo ping %q", got.Pongs[0], got.Pings[0])
	}
}

func TestResetSendsRST(t *testing.T) {
	s := newServer(t, nil)
	ctx := testCtx(t)
	nc, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "hello r\n")
	if err := s.WaitConnected(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reset("r"); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = nc.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after reset: %v, want ECONNRESET", err)
	}
	if err := s.Wait(ctx, "r", func(c Channel, _ bool) bool { return !c.Connected }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push("r", "x"); !errors.Is(err, ErrNotConnected) {
		t.Errorf("push after reset: %v, want ErrNotConnected", err)
	}
	got, _ := s.Channel("r")
	if got.Resets != 1 {
		t.Errorf("resets = %d, want 1", got.Resets)
	}
}

func TestHTTPPush(t *testing.T) {
	s := newServer(t, nil)
	ctx := testCtx(t)
	nc, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "hello h\n")
	if err := s.WaitConnected(ctx, "h"); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.HTTPAddr().String()
	tests := []struct {
		name, channel, body string
		code                int
	}{
		{"ok", "h", "via http", http.StatusOK},
		{"unknown channel", "nope", "x", http.StatusNotFound},
		{"newline", "h", "a\nb", http.StatusBadRequest},
		{"too long", "h", strings.Repeat("x", MaxPayload+1), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(base+"/push?channel="+tt.channel, "text/plain", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.code)
			}
			if tt.code != http.StatusOK {
				return
			}
			var r struct{ ID uint64 }
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(nc).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if want := "push " + itoa(r.ID) + " via http\n"; line != want {
				t.Errorf("line = %q, want %q", line, want)
			}
		})
	}
}

func TestBadHelloAndErrors(t *testing.T) {
	s := newServer(t, nil)
	nc, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "bonjour x\n")
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection with a bad hello stayed open")
	}
	if _, err := s.Push("x", "p"); !errors.Is(err, ErrUnknownChannel) {
		t.Errorf("push to unknown: %v", err)
	}
	if err := s.Ping("x", "p"); !errors.Is(err, ErrUnknownChannel) {
		t.Errorf("ping to unknown: %v", err)
	}
	if err := s.Reset("x"); !errors.Is(err, ErrUnknownChannel) {
		t.Errorf("reset unknown: %v", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	s, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "hello c\n")
	if err := s.WaitConnected(testCtx(t), "c"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push("c", "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("push after close: %v, want ErrClosed", err)
	}
	if err := s.WaitConnected(testCtx(t), "never"); !errors.Is(err, ErrClosed) {
		t.Errorf("wait after close: %v, want ErrClosed", err)
	}
}
