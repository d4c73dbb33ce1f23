package host

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/slotmgr"
)

// rawService is a plain TCP service in the lab's server namespace: it
// answers every keep-alive request (req) with reply and sends data on
// demand; it records both streams.
type rawService struct {
	ln         net.Listener
	req, reply []byte

	mu         sync.Mutex
	conn       net.Conn
	sent, recv []byte
	requests   int
	changed    chan struct{}
	wg         sync.WaitGroup
}

func newRawService(t *testing.T, lab *netlab.Lab, req, reply []byte) *rawService {
	s := &rawService{req: req, reply: reply, changed: make(chan struct{})}
	if err := lab.Do(netlab.Srv, func() error {
		var err error
		s.ln, err = net.Listen("tcp", netip.AddrPortFrom(lab.Addr.Srv4, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conn = c
		s.mu.Unlock()
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			s.mu.Lock()
			s.recv = append(s.recv, buf[:max(n, 0)]...)
			for len(s.recv) >= (s.requests+1)*len(s.req) {
				s.requests++
				c.Write(s.reply)
				s.sent = append(s.sent, s.reply...)
			}
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawService) send(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, p...)
	_, err := s.conn.Write(p)
	return err
}

func (s *rawService) waitRequests(ctx context.Context, n int) (int, error) {
	for {
		s.mu.Lock()
		got, c := s.requests, s.changed
		s.mu.Unlock()
		if got >= n {
			return got, nil
		}
		select {
		case <-c:
		case <-ctx.Done():
			return got, ctx.Err()
		}
	}
}

// TestIntegrationRawPayloadKeepAlive: a raw channel to a plain TCP
// service with an app-defined keep-alive (request, reply under a mask):
// the NIC sends the requests and absorbs the replies while the host
// sleeps; data from the service wakes the host, and the push task reads
// exactly the data: the absorbed replies are consumed at the hand-back,
// the stream is byte-exact.
func TestIntegrationRawPayloadKeepAlive(t *testing.T) {
	lh := newLabHost(t, 1, nil)
	ctx := labDeadline(t)
	req, reply := []byte{0x01, 'K', 'A', '?'}, []byte{0x02, 'O', 'K', '!'}
	svc := newRawService(t, lh.lab, req, reply)
	tap := &streamTap{}
	tr, err := dialTap(ctx, &DialConfig{
		Endpoint: mustEndpoint(t, "tcp://"+svc.ln.Addr().String()), Protocol: ProtocolRaw,
		KeepAlive: KeepAliveConfig{Kind: KeepAlivePayload, Request: req, Reply: reply, ReplyMask: []byte{0xff, 0xff, 0xff, 0}},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return lh.lab.DialTCP(ctx, netlab.Host, addr)
		},
	}, tap)
	if err != nil {
		t.Fatal(err)
	}
	ch := lh.channel("raw", slotmgr.RequestHardwareSlot, "svc", 0, tr)
	lh.standby(ctx, ch)
	resumes := lh.h.Stats().Resumes
	n, err := svc.waitRequests(ctx, 3)
	if err != nil {
		t.Fatalf("service got %d requests: %v; counters %v", n, err, nonZeroCounters(lh.dev.Counters()))
	}
	deadline := time.Now().Add(5 * time.Second)
	for lh.counter("slot1_replies_absorbed") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if lh.counter("slot1_replies_absorbed") < 3 {
		t.Fatalf("slot absorbed %d replies", lh.counter("slot1_replies_absorbed"))
	}
	if d := lh.h.Stats().Resumes - resumes; d != 0 {
		t.Fatalf("host woke %d times for the keep-alives", d)
	}
	if err := svc.send([]byte("DATA-1\x00")); err != nil {
		t.Fatal(err)
	}
	lh.waitMessage(ctx, "raw", "DATA-1\x00")
	if got := lh.messages("raw"); len(got) != 1 {
		t.Errorf("push task read %q, want only the data", got)
	}
	svc.mu.Lock()
	requests := svc.requests
	sent, recv := append([]byte(nil), svc.sent...), append([]byte(nil), svc.recv...)
	svc.mu.Unlock()
	st := ch.Stats()
	if st.Transport.AbsorbedReplies != uint64(requests) || st.Transport.ConsumedReplies != uint64(requests) {
		t.Errorf("transport stats %+v, want %d replies absorbed and consumed", st.Transport, requests)
	}
	read, written := tap.bytes()
	if !bytes.Equal(read, sent) {
		t.Errorf("app's stream %q, service sent %q", read, sent)
	}
	if len(written) != 0 || !bytes.Equal(recv, bytes.Repeat(req, requests)) {
		t.Errorf("service got %q (host wrote %q), want %d requests from the NIC", recv, written, requests)
	}
}

// TestIntegrationWSSServerPings: a wss:// channel: the slot guards the
// TCP connection (probes), so every Ping the server sends inside TLS is a
// TLS record that wakes the host, which answers it itself. The cost of a
// server that pings inside TLS: one wake per Ping (measured here).
func TestIntegrationWSSServerPings(t *testing.T) {
	lh := newLabHost(t, 1, nil)
	ctx := labDeadline(t)
	srvTLS, ca := testCA(t)
	var ln net.Listener
	if err := lh.lab.Do(netlab.Srv, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(lh.lab.Addr.Srv4, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	conns := make(chan *websocket.Conn, 1)
	pongs := make(chan string, 16)
	up := websocket.Upgrader{}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c.SetPongHandler(func(p string) error { pongs <- p; return nil })
		conns <- c
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})}
	go hs.Serve(tls.NewListener(ln, srvTLS))
	t.Cleanup(func() { hs.Close() })
	tr, err := Dial(ctx, &DialConfig{
		Endpoint: mustEndpoint(t, "wss://"+ln.Addr().String()+"/live"), TLS: &TLSConfig{CAFile: ca},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return lh.lab.DialTCP(ctx, netlab.Host, addr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := <-conns
	t.Cleanup(func() { srv.Close() })
	ch := lh.channelEvery("wss", 30*time.Second, slotmgr.RequestHardwareSlot, "chat", 0, tr)
	for i := range 3 {
		lh.standby(ctx, ch)
		if l := ch.KeepAliveLevel(); l != LevelTCP {
			t.Fatalf("keep-alive level %q, want tcp", l)
		}
		before := lh.h.Stats()
		p := "srv-" + string(rune('a'+i))
		if err := srv.WriteControl(websocket.PingMessage, []byte(p), time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-pongs:
			if got != p {
				t.Errorf("Pong %q, want %q", got, p)
			}
		case <-ctx.Done():
			t.Fatalf("no Pong for %s; wakes %v", p, lh.h.Stats().Wakes)
		}
		after := lh.h.Stats()
		if d := after.Wake(WakeHardwarePush) - before.Wake(WakeHardwarePush); d != 1 {
			t.Errorf("Ping %d: %d hardware wakes, want 1 (a TLS record wakes the host)", i+1, d)
		}
		if err := lh.h.Wait(ctx, func(s *Stats) bool { return s.State == Standby }); err != nil {
			t.Fatal(err)
		}
	}
	st := lh.h.Stats()
	t.Logf("wss: %d server Pings inside TLS cost %d hardware wakes (%v)", 3, st.Wake(WakeHardwarePush), st.Wakes)
	if err := srv.WriteMessage(websocket.TextMessage, []byte("after the pings")); err != nil {
		t.Fatal(err)
	}
	lh.waitMessage(ctx, "wss", "after the pings")
	if got := lh.messages("wss"); strings.Join(got, "|") != "after the pings" {
		t.Errorf("push task read %q: a Ping or Pong was pushed", got)
	}
}
