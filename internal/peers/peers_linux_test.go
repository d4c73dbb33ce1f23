package peers

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/standbynic/standbynic/internal/netlab"
)

// The peers run in the lab's srv namespace and their clients dial from it
// too (no NIC forwards between srv and host here).

func TestIntegrationMosquitto(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	ca := NewCA(t, t.TempDir())
	m := StartMosquitto(t, lab, netlab.Srv, MosquittoConfig{TLSPort: 8883, CA: ca})
	for _, p := range []Publication{
		{Addr: m.Addr, QoS: 1, Topic: "a/b", Payload: []byte("plain"), ID: "pub-plain"},
		{Addr: m.TLSAddr, TLS: ca, Version: 5, QoS: 1, Topic: "a/b", Payload: []byte("tls"), ID: "pub-tls"},
	} {
		Publish(t, lab, netlab.Srv, p)
		if n := m.Received("PUBLISH", p.ID); n != 1 {
			t.Errorf("%s: %d PUBLISH received, want 1; log:\n%s", p.ID, n, m.Log)
		}
		if got := m.Connected(p.ID); len(got) != 1 {
			t.Errorf("%s: connected %q, want one line", p.ID, got)
		}
	}
}

func TestIntegrationNginxNodeWS(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	ca := NewCA(t, t.TempDir())
	node := StartNodeWS(t, lab, netlab.Srv, netip.AddrPortFrom(lab.Addr.Srv4, 9000))
	ngx := StartNginx(t, lab, netlab.Srv, NginxConfig{TLSPort: 8443, CA: ca, Upstream: node.Addr, ReadTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return lab.DialTCP(ctx, netlab.Srv, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "proxy.test"},
	}
	ws, _, err := d.DialContext(ctx, "wss://"+ngx.TLSAddr.String()+"/ws?ping=200", nil)
	if err != nil {
		t.Fatalf("dial wss through nginx: %v\nerror log:\n%s", err, ngx.ErrorLog)
	}
	defer ws.Close()
	node.Proc.WaitOutput(t, regexp.MustCompile(`(?m)^open 1 /ws\?ping=200$`), 5*time.Second)
	node.Push(t, 1, []byte("hello \x00 world"), true)
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, msg, err := ws.ReadMessage()
	if err != nil || typ != websocket.BinaryMessage || !bytes.Equal(msg, []byte("hello \x00 world")) {
		t.Fatalf("read = %d %q %v", typ, msg, err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("up")); err != nil {
		t.Fatal(err)
	}
	node.Proc.WaitOutput(t, regexp.MustCompile(`(?m)^message 1 text 7570$`), 5*time.Second)
	// Without reads the proxy's read timeout is kept off by node's Pings;
	// with ?ping off, nginx closes a silent connection after 1 s.
	ws2, _, err := d.DialContext(ctx, "ws://"+ngx.Addr.String()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	ws2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := ws2.ReadMessage(); err == nil {
		t.Fatal("a silent connection through nginx got a message, want it closed")
	}
	ngx.ErrorLog.Wait(t, regexp.MustCompile(`upstream timed out`), 5*time.Second)
}

func TestIntegrationRawService(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	s := StartRawService(t, lab, netlab.Srv, RawConfig{Request: []byte("PING\r\n"), Reply: []byte("PONG\r\n"), IdleTimeout: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := lab.DialTCP(ctx, netlab.Srv, s.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hiPING\r\nPI"))
	c.Write([]byte("NG\r\nyo"))
	got := make([]byte, 12)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "PONG\r\nPONG\r\n" {
		t.Fatalf("replies %q, %v", got, err)
	}
	s.Wait(t, "data", 5*time.Second, func() bool { d, _, _ := s.Conns()[0].Stats(); return string(d) == "hiyo" })
	s.Wait(t, "idle close", 5*time.Second, func() bool { _, _, end := s.Conns()[0].Stats(); return end == "idle" })
	if _, kas, _ := s.Conns()[0].Stats(); kas != 2 {
		t.Errorf("keep-alives %d, want 2", kas)
	}
}
