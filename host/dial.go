package host

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"

	"github.com/gorilla/websocket"
)

// Dial connects a channel to its server: the TCP connection (and TLS for
// wss and mqtts), then the protocol's handshake: the line greeting, the
// WebSocket upgrade, or MQTT's CONNECT/CONNACK and SUBSCRIBE/SUBACK. ctx
// bounds all of it. c must pass Validate.
func Dial(ctx context.Context, c *DialConfig) (Transport, error) {
	return dialTap(ctx, c, nil)
}

func dialTap(ctx context.Context, c *DialConfig, tap *streamTap) (Transport, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	e := c.Endpoint
	p := c.protocol()
	kind := c.keepAliveKind()
	var tlsCfg *tls.Config
	if e.TLS() {
		var err error
		if tlsCfg, err = c.TLS.client(e.Host); err != nil {
			return nil, fmt.Errorf("dial %s: tls: %w", e, err)
		}
	}
	if p == ProtocolWebSocket {
		return dialWS(ctx, c, tlsCfg, tap)
	}
	tc, err := dialTCP(ctx, c.NetDialContext, e.Addr())
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", e, err)
	}
	switch p {
	case ProtocolLine:
		s, err := newStream(tc, c.LineKeepAlive, c.KeepAlive, kind)
		if err != nil {
			tc.Close()
			return nil, fmt.Errorf("dial %s: %w", e, err)
		}
		s.g.tap = tap
		if c.Hello != "" {
			if err := s.Write([]byte("hello " + c.Hello)); err != nil {
				tc.Close()
				return nil, fmt.Errorf("dial %s: hello: %w", e, err)
			}
		}
		return s, nil
	case ProtocolRaw:
		k := c.KeepAlive
		k.Kind = kind
		r, err := NewRaw(tc, c.RawKeepAlive, k)
		if err != nil {
			tc.Close()
			return nil, fmt.Errorf("dial %s: %w", e, err)
		}
		r.g.tap = tap
		return r, nil
	case ProtocolMQTT:
		g := &gateConn{TCPConn: tc, tap: tap}
		var nc net.Conn = g
		if tlsCfg != nil {
			tconn := tls.Client(g, tlsCfg)
			if err := tconn.HandshakeContext(ctx); err != nil {
				tc.Close()
				return nil, fmt.Errorf("dial %s: tls handshake: %w", e, err)
			}
			nc = tconn
		}
		m := newMQTT(tc, g, nc, tlsCfg != nil, c.mqttVersion())
		if err := m.handshake(ctx, &c.MQTT, c.KeepAlive, kind); err != nil {
			tc.Close()
			return nil, fmt.Errorf("dial %s: %w", e, err)
		}
		return m, nil
	}
	tc.Close()
	return nil, fmt.Errorf("dial %s: protocol %v", e, p)
}

func dialTCP(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), addr string) (*net.TCPConn, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("not a TCP connection: %T", conn)
	}
	return tc, nil
}

// client returns the crypto/tls client configuration (t may be nil).
func (t *TLSConfig) client(host string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13}
	if t == nil {
		return cfg, nil
	}
	if t.ServerName != "" {
		cfg.ServerName = t.ServerName
	}
	if t.MinVersion != 0 {
		cfg.MinVersion = t.MinVersion
	}
	if t.MaxVersion != 0 {
		cfg.MaxVersion = t.MaxVersion
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// dialWS dials a ws:// or wss:// endpoint with the freeze-aware
// connection under gorilla's reader (and under TLS for wss).
func dialWS(ctx context.Context, c *DialConfig, tlsCfg *tls.Config, tap *streamTap) (*WebSocket, error) {
	e := c.Endpoint
	var g *gateConn
	d := websocket.Dialer{
		TLSClientConfig: tlsCfg,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			tc, err := dialTCP(ctx, c.NetDialContext, addr)
			if err != nil {
				return nil, err
			}
			g = &gateConn{TCPConn: tc, tap: tap}
			return g, nil
		},
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
	}
	ws, _, err := d.DialContext(ctx, e.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", e, err)
	}
	if g == nil {
		ws.Close()
		return nil, fmt.Errorf("dial %s: %w", e, errors.New("no TCP connection under the WebSocket"))
	}
	k := c.KeepAlive
	return newWebSocket(ws, g.TCPConn, g, tlsCfg != nil, k), nil
}
