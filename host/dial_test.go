package host

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"

	"github.com/standbynic/standbynic/internal/pushserver"
	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/slotmgr"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in   string
		want Endpoint
		str  string
	}{
		{"tcp://192.0.2.1:5000", Endpoint{"tcp", "192.0.2.1", 5000, ""}, "tcp://192.0.2.1:5000"},
		{"tcp://[2001:2::1]:7", Endpoint{"tcp", "2001:2::1", 7, ""}, "tcp://[2001:2::1]:7"},
		{"ws://example.org", Endpoint{"ws", "example.org", 80, "/"}, "ws://example.org:80/"},
		{"ws://h:8080/ws?x=1", Endpoint{"ws", "h", 8080, "/ws?x=1"}, "ws://h:8080/ws?x=1"},
		{"wss://[::1]/push", Endpoint{"wss", "::1", 443, "/push"}, "wss://[::1]:443/push"},
		{"mqtt://broker", Endpoint{"mqtt", "broker", 1883, ""}, "mqtt://broker:1883"},
		{"mqtts://broker/", Endpoint{"mqtts", "broker", 8883, ""}, "mqtts://broker:8883"},
		{"mqtts://198.18.0.1:18883", Endpoint{"mqtts", "198.18.0.1", 18883, ""}, "mqtts://198.18.0.1:18883"},
	}
	for _, tt := range tests {
		got, err := ParseEndpoint(tt.in)
		if err != nil {
			t.Errorf("ParseEndpoint(%q): %v", tt.in, err)
			continue
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("ParseEndpoint(%q) (-want +got):\n%s", tt.in, d)
		}
		if got.String() != tt.str {
			t.Errorf("String() = %q, want %q", got.String(), tt.str)
		}
		if got.TLS() != (got.Scheme == "wss" || got.Scheme == "mqtts") {
			t.Errorf("%q: TLS() = %v", tt.in, got.TLS())
		}
	}
	bad := []struct{ in, msg string }{
		{"", "empty"},
		{"http://h:1", `scheme "http": want tcp, ws, wss, mqtt or mqtts`},
		{"h:1", `scheme "h"`},
		{"//h:1", "no scheme"},
		{"tcp://h", "tcp needs a port"},
		{"tcp://h:0", "want 1..65535"},
		{"tcp://h:70000", "want 1..65535"},
		{"tcp://h:", "empty port"},
		{"tcp://:5", "no host"},
		{"mqtt://h:1/topic", "takes no path"},
		{"tcp://u:p@h:1", "user info"},
		{"ws://h/x#frag", "fragment"},
		{"tcp://[fe80::1%25eth0]:1", "IPv6"},
	}
	for _, b := range bad {
		_, err := ParseEndpoint(b.in)
		if err == nil || !strings.Contains(err.Error(), b.msg) {
			t.Errorf("ParseEndpoint(%q) = %v, want an error with %q", b.in, err, b.msg)
		}
	}
	for _, s := range []string{"line", "raw", "websocket", "mqtt"} {
		p, err := ParseProtocol(s)
		if err != nil || p.String() != s {
			t.Errorf("ParseProtocol(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParseProtocol("amqp"); err == nil || !strings.Contains(err.Error(), "want line, raw, websocket or mqtt") {
		t.Errorf("ParseProtocol(amqp): %v", err)
	}
	for _, s := range []string{"tcp-probe", "websocket", "payload", "mqtt"} {
		k, err := ParseKeepAliveKind(s)
		if err != nil || k.String() != s {
			t.Errorf("ParseKeepAliveKind(%q) = %v, %v", s, k, err)
		}
	}
	if _, err := ParseKeepAliveKind("icmp"); err == nil {
		t.Error("ParseKeepAliveKind(icmp) succeeded")
	}
}

func mustEndpoint(t *testing.T, s string) Endpoint {
	t.Helper()
	e, err := ParseEndpoint(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDialConfigValidate(t *testing.T) {
	mq := func(m MQTTConfig) DialConfig { return DialConfig{Endpoint: mustEndpoint(t, "mqtt://b"), MQTT: m} }
	okMQTT := MQTTConfig{ClientID: "c", KeepAlive: 30 * time.Second, Subscriptions: []MQTTSubscription{{"a/#", 1}}}
	tests := []struct {
		name string
		c    DialConfig
		msg  string // "" valid
	}{
		{"line", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), Hello: "m1", LineKeepAlive: []byte("ka")}, ""},
		{"raw payload", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), Protocol: ProtocolRaw,
			KeepAlive: KeepAliveConfig{Kind: KeepAlivePayload, Request: []byte("p"), Reply: []byte("ok"), ReplyMask: []byte{0xff, 0}}}, ""},
		{"mqtt", mq(okMQTT), ""},
		{"wss tls", DialConfig{Endpoint: mustEndpoint(t, "wss://h/"), TLS: &TLSConfig{ServerName: "h", MinVersion: tls.VersionTLS13}}, ""},
		{"no endpoint", DialConfig{}, "endpoint: "},
		{"websocket on tcp", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), Protocol: ProtocolWebSocket}, "protocol: websocket does not run on tcp://"},
		{"line on mqtt", DialConfig{Endpoint: mustEndpoint(t, "mqtt://h"), Protocol: ProtocolLine}, "protocol: line does not run on mqtt://"},
		{"tls on tcp", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), TLS: &TLSConfig{}}, "tls: set for tcp://"},
		{"tls ca", DialConfig{Endpoint: mustEndpoint(t, "wss://h"), TLS: &TLSConfig{CAFile: "/nonexistent/ca.pem"}}, "tls.ca_file: "},
		{"tls version", DialConfig{Endpoint: mustEndpoint(t, "wss://h"), TLS: &TLSConfig{MinVersion: tls.VersionTLS11}}, "tls.min_version: 0x0302"},
		{"tls min>max", DialConfig{Endpoint: mustEndpoint(t, "wss://h"), TLS: &TLSConfig{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}}, "tls.min_version: 0x0304 above max_version"},
		{"mask length", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), Protocol: ProtocolRaw,
			KeepAlive: KeepAliveConfig{Kind: KeepAlivePayload, Request: []byte("p"), Reply: []byte("ok"), ReplyMask: []byte{1, 2, 3}}}, "keepalive.reply_mask: 3 bytes, reply has 2"},
		{"line reply without newline", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), KeepAlive: KeepAliveConfig{Kind: KeepAlivePayload, Request: []byte("ping\n"), Reply: []byte("pong")}}, "keepalive.reply: a line protocol keep-alive is one line"},
		{"line request two lines", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), KeepAlive: KeepAliveConfig{Kind: KeepAlivePayload, Request: []byte("a\nb\n"), Reply: []byte("pong\n")}}, "keepalive.request: a line protocol keep-alive is one line"},
		{"no request", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), KeepAlive: KeepAliveConfig{Kind: KeepAlivePayload, Reply: []byte("x")}}, "keepalive.request: 0 bytes outside 1..512"},
		{"request for probes", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), KeepAlive: KeepAliveConfig{Request: []byte("x")}}, "keepalive.request: set for kind tcp-probe"},
		{"ws kind on raw", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), Protocol: ProtocolRaw, KeepAlive: KeepAliveConfig{Kind: KeepAliveWebSocket}}, "keepalive.kind: websocket needs protocol websocket"},
		{"mqtt kind on ws", DialConfig{Endpoint: mustEndpoint(t, "ws://h"), KeepAlive: KeepAliveConfig{Kind: KeepAliveMQTT}}, "keepalive.kind: mqtt needs protocol mqtt"},
		{"payload on ws", DialConfig{Endpoint: mustEndpoint(t, "ws://h"), KeepAlive: KeepAliveConfig{Kind: KeepAlivePayload, Request: []byte("x"), Reply: []byte("y")}}, "keepalive.kind: payload bytes cannot"},
		{"ws mode on mqtt", DialConfig{Endpoint: mustEndpoint(t, "mqtt://h"), KeepAlive: KeepAliveConfig{WSMode: offload.WSPong}, MQTT: okMQTT}, "keepalive.ws_mode: set for kind mqtt"},
		{"hello on raw", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), Protocol: ProtocolRaw, Hello: "x"}, "hello: only the line protocol"},
		{"raw keepalive on line", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), RawKeepAlive: []byte("x")}, "raw_keepalive: set for protocol line"},
		{"line keepalive newline", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), LineKeepAlive: []byte("a\nb")}, "line_keepalive: has a newline"},
		{"mqtt on line", DialConfig{Endpoint: mustEndpoint(t, "tcp://h:1"), MQTT: okMQTT}, "mqtt: set for protocol line"},
		{"mqtt version", mq(MQTTConfig{Version: 3, ClientID: "c", KeepAlive: time.Second}), "mqtt.version: 3"},
		{"mqtt keepalive 0", mq(MQTTConfig{ClientID: "c"}), "mqtt.keepalive: 0s: want whole seconds 1s..65535s"},
		{"mqtt keepalive fraction", mq(MQTTConfig{ClientID: "c", KeepAlive: 1500 * time.Millisecond}), "mqtt.keepalive: 1.5s"},
		{"mqtt empty id", mq(MQTTConfig{KeepAlive: time.Second}), "mqtt.client_id: empty needs clean_start"},
		{"mqtt password only", mq(MQTTConfig{ClientID: "c", KeepAlive: time.Second, Password: "p"}), "mqtt.password: MQTT 3.1.1 needs a username"},
		{"mqtt filter #", mq(MQTTConfig{ClientID: "c", KeepAlive: time.Second, Subscriptions: []MQTTSubscription{{"a", 0}, {"a/#/b", 0}}}), "mqtt.subscriptions[1].filter: \"a/#/b\": '#' must be the whole last level"},
		{"mqtt filter +", mq(MQTTConfig{ClientID: "c", KeepAlive: time.Second, Subscriptions: []MQTTSubscription{{"a+", 0}}}), "mqtt.subscriptions[0].filter: \"a+\": '+' must be a whole level"},
		{"mqtt filter empty", mq(MQTTConfig{ClientID: "c", KeepAlive: time.Second, Subscriptions: []MQTTSubscription{{"", 0}}}), "mqtt.subscriptions[0].filter: empty"},
		{"mqtt qos 2", mq(MQTTConfig{ClientID: "c", KeepAlive: time.Second, Subscriptions: []MQTTSubscription{{"a", 2}}}), "mqtt.subscriptions[0].qos: 2: want 0 or 1"},
		{"mqtt id nul", mq(MQTTConfig{ClientID: "a\x00", KeepAlive: time.Second}), "mqtt.client_id: not UTF-8 without NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			switch {
			case tt.msg == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.msg != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.msg)):
				t.Errorf("Validate = %v, want an error starting %q", err, tt.msg)
			}
		})
	}
}

// testCA makes a CA and a server certificate for 127.0.0.1 and ::1
// ("broker.test"); it returns the server's TLS config and the CA's PEM
// file.
func testCA(t testing.TB) (*tls.Config, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "standbynic test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), DNSNames: []string{"broker.test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.ParseIP("198.18.0.1"), net.ParseIP("2001:2::1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, file
}

func listenLoopback(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dialT(t *testing.T, c *DialConfig) Transport {
	t.Helper()
	tr, err := Dial(ctxT(t), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestDialLine: the line protocol says hello, reads pushes, sends its
// keep-alive line.
func TestDialLine(t *testing.T) {
	s := newPushServer(t)
	e := mustEndpoint(t, "tcp://"+s.TCPAddr().String())
	tr := dialT(t, &DialConfig{Endpoint: e, Hello: "l1", LineKeepAlive: []byte("ka")})
	if err := s.WaitConnected(ctxT(t), "l1"); err != nil {
		t.Fatal(err)
	}
	id, err := s.Push("l1", "hi there")
	if err != nil {
		t.Fatal(err)
	}
	m, err := tr.Read()
	if err != nil || string(m.Data) != "push "+strconv.FormatUint(id, 10)+" hi there" {
		t.Fatalf("Read = %q, %v", m.Data, err)
	}
	if sent, err := tr.KeepAlive(); !sent || err != nil {
		t.Fatalf("KeepAlive = %v, %v", sent, err)
	}
	if err := s.Wait(ctxT(t), "l1", func(c pushserver.Channel, ok bool) bool {
		return ok && len(c.Lines) > 0 && c.Lines[len(c.Lines)-1] == "ka"
	}); err != nil {
		t.Fatal(err)
	}
	if k := tr.NICKeepAlive(); k.Kind != offload.KindTCPProbe || k.Level != LevelTCP {
		t.Errorf("NIC keep-alive %+v, want TCP probes", k)
	}
}

// rawPeer accepts one connection on ln.
func rawPeer(t *testing.T, ln net.Listener) <-chan net.Conn {
	c := make(chan net.Conn, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			close(c)
			return
		}
		t.Cleanup(func() { conn.Close() })
		c <- conn
	}()
	return c
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	for got := 0; got < n; {
		k, err := c.Read(b[got:])
		if err != nil {
			t.Fatalf("peer read: %v", err)
		}
		got += k
	}
	return b
}

// TestDialRaw: no greeting; every read is a push; the app keep-alive
// bytes; a payload keep-alive's reply, whether the host or the NIC sent
// the request, is consumed and never pushed.
func TestDialRaw(t *testing.T) {
	ln := listenLoopback(t)
	peerC := rawPeer(t, ln)
	e := mustEndpoint(t, "tcp://"+ln.Addr().String())
	k := KeepAliveConfig{Kind: KeepAlivePayload, Request: []byte("PING?"), Reply: []byte("PONG!x"), ReplyMask: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0}}
	tr := dialT(t, &DialConfig{Endpoint: e, Protocol: ProtocolRaw, KeepAlive: k})
	peer := <-peerC
	if tr.Protocol() != ProtocolRaw {
		t.Errorf("protocol %v", tr.Protocol())
	}
	if _, err := peer.Write([]byte("\x00\x01binary")); err != nil {
		t.Fatal(err)
	}
	m, err := tr.Read()
	if err != nil || string(m.Data) != "\x00\x01binary" {
		t.Fatalf("Read = %q, %v", m.Data, err)
	}
	// The host's own keep-alive: the request goes out, the reply (any
	// last byte: the mask) is consumed.
	if sent, err := tr.KeepAlive(); !sent || err != nil {
		t.Fatalf("KeepAlive = %v, %v", sent, err)
	}
	if got := readN(t, peer, 5); string(got) != "PING?" {
		t.Fatalf("peer read %q", got)
	}
	peer.Write([]byte("PONG!z"))
	// The NIC's: two replies it absorbed, then data.
	tr.HandBack([]byte("PING?PING?"), []byte("PONG!aPONG!b"))
	peer.Write([]byte("PONG!aPONG!bnext"))
	m, err = tr.Read()
	if err != nil || string(m.Data) != "next" {
		t.Fatalf("Read = %q, %v; want only the data after the replies", m.Data, err)
	}
	st := tr.Stats()
	if d := cmp.Diff(TransportStats{ConsumedReplies: 3, AbsorbedReplies: 2, KeepAlives: 1, Messages: 2}, st); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
	if k := tr.NICKeepAlive(); k.Kind != offload.KindPayload || string(k.Payload.Request) != "PING?" || k.Level != LevelApp {
		t.Errorf("NIC keep-alive %+v", k)
	}
	// A push and the reply to the host's own request in one read: the
	// reply at the end is consumed, the push is whole.
	if sent, err := tr.KeepAlive(); !sent || err != nil {
		t.Fatalf("KeepAlive = %v, %v", sent, err)
	}
	readN(t, peer, 5)
	peer.Write([]byte("push!PONG!q"))
	if m, err := tr.Read(); err != nil || string(m.Data) != "push!" {
		t.Fatalf("Read = %q, %v; want the push without the reply at its end", m.Data, err)
	}
	// The NIC sent three requests and absorbed two replies: the third
	// reply, arriving after the thaw, is consumed too.
	tr.HandBack([]byte("PING?PING?PING?"), []byte("PONG!aPONG!b"))
	peer.Write([]byte("PONG!aPONG!b"))
	peer.Write([]byte("PONG!c"))
	peer.Write([]byte("more"))
	var got []byte
	for len(got) < len("more") {
		m, err := tr.Read()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Data...)
	}
	if string(got) != "more" {
		t.Fatalf("read %q after the hand-back, want only \"more\"", got)
	}
	if st := tr.Stats(); st.ConsumedReplies != 7 || st.AbsorbedReplies != 4 {
		t.Errorf("consumed %d replies (want 7), absorbed %d (want 4)", st.ConsumedReplies, st.AbsorbedReplies)
	}

	// App keep-alive bytes, TCP probes (one-byte form).
	peerC = rawPeer(t, ln)
	tr2 := dialT(t, &DialConfig{Endpoint: e, Protocol: ProtocolRaw, RawKeepAlive: []byte{0xff, 0x00}, KeepAlive: KeepAliveConfig{Probe: offload.ProbeOneByte}})
	peer2 := <-peerC
	if sent, err := tr2.KeepAlive(); !sent || err != nil {
		t.Fatal(sent, err)
	}
	if got := readN(t, peer2, 2); !bytes.Equal(got, []byte{0xff, 0}) {
		t.Errorf("peer read %x", got)
	}
	if k := tr2.NICKeepAlive(); k.Kind != offload.KindTCPProbe || k.Probe != offload.ProbeOneByte {
		t.Errorf("NIC keep-alive %+v", k)
	}
}

// wsEcho is a generic WebSocket server (not the push server): it sends
// what it gets on msgs, pings on demand and records Pongs.
type wsEcho struct {
	srv   *httptest.Server
	conns chan *websocket.Conn
	pings chan string // Pings the server answered
}

func newWSEcho(t *testing.T, useTLS bool) *wsEcho {
	w := &wsEcho{conns: make(chan *websocket.Conn, 4), pings: make(chan string, 16)}
	up := websocket.Upgrader{}
	h := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(rw, r, nil)
		if err != nil {
			return
		}
		c.SetPingHandler(func(p string) error {
			err := c.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(time.Second))
			w.pings <- p
			return err
		})
		w.conns <- c
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})
	if useTLS {
		w.srv = httptest.NewTLSServer(h)
	} else {
		w.srv = httptest.NewServer(h)
	}
	t.Cleanup(w.srv.Close)
	return w
}

func (w *wsEcho) caFile(t *testing.T) string {
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestDialWebSocket: ws:// and wss:// to a generic server: any text or
// binary message is a push, no greeting; the keep-alive runs at the app
// level on ws:// (the NIC's Ping) and at the TCP level on wss://, where
// the host sends the Pings itself; Pongs are consumed.
func TestDialWebSocket(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run("tls="+strconv.FormatBool(useTLS), func(t *testing.T) {
			w := newWSEcho(t, useTLS)
			u := strings.Replace(w.srv.URL, "http", "ws", 1) + "/any/path"
			c := &DialConfig{Endpoint: mustEndpoint(t, u)}
			if useTLS {
				c.TLS = &TLSConfig{CAFile: w.caFile(t), ServerName: "example.com", MinVersion: tls.VersionTLS13}
			}
			tr := dialT(t, c)
			if tr.Conn() == nil {
				t.Fatal("no TCP connection")
			}
			srv := <-w.conns
			srv.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
			srv.WriteMessage(websocket.TextMessage, []byte("text"))
			for _, want := range []string{"\x01\x02\x03", "text"} {
				m, err := tr.Read()
				if err != nil || string(m.Data) != want {
					t.Fatalf("Read = %q, %v; want %q", m.Data, err, want)
				}
			}
			k := tr.NICKeepAlive()
			want := NICKeepAlive{Kind: offload.KindWebSocket, WebSocket: offload.WebSocketSpec{Mode: offload.WSPing, Payload: []byte("nic")}, Level: LevelApp}
			if useTLS {
				want = NICKeepAlive{Kind: offload.KindTCPProbe, Level: LevelTCP, HostAppKeepAlive: true}
			}
			if d := cmp.Diff(want, k); d != "" {
				t.Errorf("NIC keep-alive (-want +got):\n%s", d)
			}
			if _, err := tr.KeepAlive(); err != nil {
				t.Fatal(err)
			}
			select {
			case p := <-w.pings:
				if p != "ka1" {
					t.Errorf("server got Ping %q", p)
				}
			case <-ctxT(t).Done():
				t.Fatal("no Ping")
			}
			// The server's Pong (written before "after") is consumed.
			srv.WriteMessage(websocket.TextMessage, []byte("after"))
			if m, err := tr.Read(); err != nil || string(m.Data) != "after" {
				t.Fatalf("Read = %q, %v", m.Data, err)
			}
			if d := cmp.Diff(TransportStats{ConsumedReplies: 1, KeepAlives: 1, Messages: 3}, tr.Stats()); d != "" {
				t.Errorf("stats (-want +got):\n%s", d)
			}
		})
	}
}

// TestDialTLSRefused: a wrong server name or an unknown CA fails the dial.
func TestDialTLSRefused(t *testing.T) {
	w := newWSEcho(t, true)
	u := strings.Replace(w.srv.URL, "http", "ws", 1)
	if _, err := Dial(ctxT(t), &DialConfig{Endpoint: mustEndpoint(t, u)}); err == nil {
		t.Error("dial with the system roots succeeded against a test CA")
	}
	_, err := Dial(ctxT(t), &DialConfig{Endpoint: mustEndpoint(t, u), TLS: &TLSConfig{CAFile: w.caFile(t), ServerName: "wrong.test"}})
	if err == nil || !strings.Contains(err.Error(), "wrong.test") {
		t.Errorf("wrong server name: %v", err)
	}
}

// TestDialMQTT: 3.1.1 and 5.0, plain and TLS, against the in-process
// broker: CONNECT's fields, SUBSCRIBE, PUBLISH → message with topic and
// payload, PUBACK for QoS 1, PINGREQ with its PINGRESP consumed, MQTT 5's
// Server Keep Alive, DISCONNECT on Close.
func TestDialMQTT(t *testing.T) {
	for _, version := range []uint8{4, 5} {
		for _, useTLS := range []bool{false, true} {
			t.Run("v"+strconv.Itoa(int(version))+"/tls="+strconv.FormatBool(useTLS), func(t *testing.T) {
				ln := listenLoopback(t)
				var srvTLS *tls.Config
				var ca string
				scheme := "mqtt"
				if useTLS {
					srvTLS, ca = testCA(t)
					scheme = "mqtts"
				}
				b := newTestBroker(t, ln, srvTLS)
				if version == 5 {
					b.serverKeepAlive = 20
				}
				c := &DialConfig{
					Endpoint: mustEndpoint(t, scheme+"://"+ln.Addr().String()),
					MQTT: MQTTConfig{Version: version, ClientID: "sbn-1", KeepAlive: 60 * time.Second, CleanStart: true,
						Username: "user", Password: "secret", Subscriptions: []MQTTSubscription{{"home/+/door", 1}, {"news/#", 0}}},
				}
				if useTLS {
					c.TLS = &TLSConfig{CAFile: ca}
				}
				tr := dialT(t, c).(*MQTT)
				b.mu.Lock()
				got := b.connects[0]
				b.mu.Unlock()
				want := brokerConnect{Version: version, ClientID: "sbn-1", KeepAlive: 60, Clean: true, Username: "user", Password: "secret",
					Filters: []string{"home/+/door", "news/#"}, QoS: []byte{1, 0}}
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("CONNECT + SUBSCRIBE (-want +got):\n%s", d)
				}
				wantKA := 60 * time.Second
				if version == 5 {
					wantKA = 20 * time.Second
				}
				info := tr.Info()
				if info.KeepAlive != wantKA || !bytes.Equal(info.Granted, []byte{1, 0}) {
					t.Errorf("info %+v, want keep-alive %v", info, wantKA)
				}
				k := tr.NICKeepAlive()
				wantK := NICKeepAlive{Kind: offload.KindPayload, Payload: offload.PayloadSpec{Request: []byte{0xc0, 0}, Reply: []byte{0xd0, 0}}, Level: LevelApp, MaxInterval: wantKA * 3 / 4}
				if useTLS {
					wantK = NICKeepAlive{Kind: offload.KindTCPProbe, Level: LevelTCP, MaxInterval: wantKA * 3 / 4, HostAppKeepAlive: true}
				}
				if d := cmp.Diff(wantK, k); d != "" {
					t.Errorf("NIC keep-alive (-want +got):\n%s", d)
				}
				bc := b.conn(0)
				if _, err := tr.KeepAlive(); err != nil {
					t.Fatal(err)
				}
				if err := b.wait(ctxT(t).Done(), func(b *testBroker) bool { return b.pingreqs == 1 }); err != nil {
					t.Fatal(err)
				}
				payload := []byte("opened\x00\xff")
				bc.publish("home/front/door", payload, 1, 42)
				bc.publish("news/today", []byte("q0"), 0, 0)
				m, err := tr.Read()
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(Message{Data: payload, Topic: "home/front/door", QoS: 1}, m); d != "" {
					t.Errorf("message (-want +got):\n%s", d)
				}
				if m, err = tr.Read(); err != nil || m.Topic != "news/today" || string(m.Data) != "q0" || m.QoS != 0 {
					t.Errorf("second message %+v, %v", m, err)
				}
				if err := b.wait(ctxT(t).Done(), func(b *testBroker) bool { return len(b.pubacks) == 1 && b.pubacks[0] == 42 }); err != nil {
					t.Fatalf("PUBACK: %v (%v)", err, b.pubacks)
				}
				// The NIC's PINGRESPs among absorbed bytes are counted.
				tr.HandBack(nil, []byte{0xd0, 0, 0xd0, 0})
				if d := cmp.Diff(TransportStats{ConsumedReplies: 1, AbsorbedReplies: 2, KeepAlives: 1, Messages: 2}, tr.Stats()); d != "" {
					t.Errorf("stats (-want +got):\n%s", d)
				}
				tr.Close()
				if err := b.wait(ctxT(t).Done(), func(b *testBroker) bool { return b.disconnects == 1 }); err != nil {
					t.Fatalf("DISCONNECT: %v", err)
				}
			})
		}
	}
}

func TestDialMQTTRefused(t *testing.T) {
	ln := listenLoopback(t)
	b := newTestBroker(t, ln, nil)
	b.rejectCode = 5
	_, err := Dial(ctxT(t), &DialConfig{Endpoint: mustEndpoint(t, "mqtt://"+ln.Addr().String()), MQTT: MQTTConfig{ClientID: "x", KeepAlive: time.Second}})
	if err == nil || !strings.Contains(err.Error(), "not authorized") {
		t.Errorf("Dial: %v, want a refusal naming the code", err)
	}
	// An MQTT 5 client without an id gets the server's.
	ln2 := listenLoopback(t)
	newTestBroker(t, ln2, nil)
	tr, err := Dial(ctxT(t), &DialConfig{Endpoint: mustEndpoint(t, "mqtt://"+ln2.Addr().String()), MQTT: MQTTConfig{Version: 5, CleanStart: true, KeepAlive: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if id := tr.(*MQTT).Info().ClientID; id != "auto-1" {
		t.Errorf("client id %q, want the assigned auto-1", id)
	}
}

// TestSpecFor: the slot a channel's transport asks for, per protocol and
// keep-alive kind; MQTT's interval is capped at 0.75× its keep-alive.
func TestSpecFor(t *testing.T) {
	s := newPushServer(t)
	ws := newWSEcho(t, false)
	wss := newWSEcho(t, true)
	ln := listenLoopback(t)
	newTestBroker(t, ln, nil)
	lnTLS := listenLoopback(t)
	srvTLS, ca := testCA(t)
	newTestBroker(t, lnTLS, srvTLS)
	line := "tcp://" + s.TCPAddr().String()
	mqttCfg := MQTTConfig{ClientID: "c", KeepAlive: 8 * time.Second}
	wsURL := strings.Replace(ws.srv.URL, "http", "ws", 1)
	tests := []struct {
		name  string
		c     DialConfig
		want  offload.Spec // Interval, Kind and the kind's fields
		level string
	}{
		{"line", DialConfig{Endpoint: mustEndpoint(t, line)}, offload.Spec{Kind: offload.KindTCPProbe, Interval: 10 * time.Second}, LevelTCP},
		{"line one-byte", DialConfig{Endpoint: mustEndpoint(t, line), KeepAlive: KeepAliveConfig{Probe: offload.ProbeOneByte}},
			offload.Spec{Kind: offload.KindTCPProbe, Interval: 10 * time.Second, Probe: offload.ProbeOneByte}, LevelTCP},
		{"line payload", DialConfig{Endpoint: mustEndpoint(t, line), KeepAlive: KeepAliveConfig{Kind: KeepAlivePayload, Request: []byte("ping\n"), Reply: []byte("pong\n")}},
			offload.Spec{Kind: offload.KindPayload, Interval: 10 * time.Second, Payload: offload.PayloadSpec{Request: []byte("ping\n"), Reply: []byte("pong\n")}}, LevelApp},
		{"websocket", DialConfig{Endpoint: mustEndpoint(t, wsURL)},
			offload.Spec{Kind: offload.KindWebSocket, Interval: 10 * time.Second, WebSocket: offload.WebSocketSpec{Mode: offload.WSPing, Payload: []byte("nic")}}, LevelApp},
		{"websocket pong", DialConfig{Endpoint: mustEndpoint(t, wsURL), KeepAlive: KeepAliveConfig{WSMode: offload.WSPong}},
			offload.Spec{Kind: offload.KindWebSocket, Interval: 10 * time.Second, WebSocket: offload.WebSocketSpec{Mode: offload.WSPong, Payload: []byte("nic")}}, LevelApp},
		{"websocket responder", DialConfig{Endpoint: mustEndpoint(t, wsURL), KeepAlive: KeepAliveConfig{WSMode: offload.WSResponder, Probe: offload.ProbeOneByte}},
			offload.Spec{Kind: offload.KindWebSocket, Interval: 10 * time.Second, Probe: offload.ProbeOneByte, WebSocket: offload.WebSocketSpec{Mode: offload.WSResponder}}, LevelApp},
		{"wss", DialConfig{Endpoint: mustEndpoint(t, strings.Replace(wss.srv.URL, "https", "wss", 1)), TLS: &TLSConfig{CAFile: wss.caFile(t), ServerName: "example.com"}},
			offload.Spec{Kind: offload.KindTCPProbe, Interval: 10 * time.Second}, LevelTCP},
		{"mqtt", DialConfig{Endpoint: mustEndpoint(t, "mqtt://"+ln.Addr().String()), MQTT: mqttCfg},
			offload.Spec{Kind: offload.KindPayload, Interval: 6 * time.Second, Payload: offload.PayloadSpec{Request: []byte{0xc0, 0}, Reply: []byte{0xd0, 0}}}, LevelApp},
		{"mqtt tcp-probe", DialConfig{Endpoint: mustEndpoint(t, "mqtt://"+ln.Addr().String()), MQTT: mqttCfg, KeepAlive: KeepAliveConfig{Kind: KeepAliveTCPProbe}},
			offload.Spec{Kind: offload.KindTCPProbe, Interval: 6 * time.Second}, LevelTCP},
		{"mqtts", DialConfig{Endpoint: mustEndpoint(t, "mqtts://"+lnTLS.Addr().String()), MQTT: mqttCfg, TLS: &TLSConfig{CAFile: ca}},
			offload.Spec{Kind: offload.KindTCPProbe, Interval: 6 * time.Second}, LevelTCP},
	}
	h := newHost(t, &Config{Clock: NewFakeClock(0), Pool: secondsPool(len(tests))})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := dialT(t, &tt.c)
			ch, err := h.NewChannel("c"+strconv.Itoa(i), 10*time.Second, slotmgr.RequestHardwareSlot, "app", 0)
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			if err := ch.UsingTransport(tr); err != nil {
				t.Fatal(err)
			}
			h.mu.Lock()
			spec := h.specFor(ch, h.clock.Now())
			h.mu.Unlock()
			if err := spec.Validate(); err != nil {
				t.Errorf("spec does not validate: %v", err)
			}
			got := offload.Spec{Kind: spec.Kind, Interval: spec.Interval, Probe: spec.Probe, Payload: spec.Payload, WebSocket: spec.WebSocket}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("spec (-want +got):\n%s", d)
			}
			if l := ch.KeepAliveLevel(); l != tt.level {
				t.Errorf("keep-alive level %q, want %q", l, tt.level)
			}
		})
	}
}

// TestDialLinePayload: a line channel's payload keep-alive: the reply
// line to the host's own request and the replies the NIC absorbed are
// consumed; the other lines are pushes.
func TestDialLinePayload(t *testing.T) {
	ln := listenLoopback(t)
	peerC := rawPeer(t, ln)
	k := KeepAliveConfig{Kind: KeepAlivePayload, Request: []byte("ping\n"), Reply: []byte("pong\n")}
	tr := dialT(t, &DialConfig{Endpoint: mustEndpoint(t, "tcp://"+ln.Addr().String()), KeepAlive: k})
	peer := <-peerC
	if _, err := tr.KeepAlive(); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, peer, 5); string(got) != "ping\n" {
		t.Fatalf("peer read %q", got)
	}
	peer.Write([]byte("pong\nhello\n"))
	if m, err := tr.Read(); err != nil || string(m.Data) != "hello" {
		t.Fatalf("Read = %q, %v", m.Data, err)
	}
	tr.HandBack([]byte("ping\nping\n"), []byte("pong\npong\n"))
	peer.Write([]byte("pong\npong\nx\npong\n"))
	if m, err := tr.Read(); err != nil || string(m.Data) != "x" {
		t.Fatalf("Read = %q, %v", m.Data, err)
	}
	// An unasked-for "pong" line is the app's: it is pushed.
	if m, err := tr.Read(); err != nil || string(m.Data) != "pong" {
		t.Fatalf("Read = %q, %v", m.Data, err)
	}
	if d := cmp.Diff(TransportStats{ConsumedReplies: 3, AbsorbedReplies: 2, KeepAlives: 1, Messages: 3}, tr.Stats()); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
}
