package host

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"

	"github.com/gorilla/websocket"
)

// gateConn is the TCP connection under a host transport. While the host
// holds the socket frozen (TCP_REPAIR), a read the kernel refuses with
// EPERM (the posted receive racing the freeze) waits for the thaw and
// retries, instead of failing the transport.
type gateConn struct {
	*net.TCPConn
	tap *streamTap // nil: no recording (tests set it)

	mu     sync.Mutex
	thawed chan struct{} // non-nil while frozen; closed at the thaw
}

// streamTap records the stream bytes the host itself read and wrote on a
// connection (tests compare them with the peer's record).
type streamTap struct {
	mu            sync.Mutex
	read, written []byte
}

func (t *streamTap) record(dst *[]byte, p []byte) {
	if t == nil || len(p) == 0 {
		return
	}
	t.mu.Lock()
	*dst = append(*dst, p...)
	t.mu.Unlock()
}

// bytes returns copies of what was read and written.
func (t *streamTap) bytes() (read, written []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.read...), append([]byte(nil), t.written...)
}

func (g *gateConn) Write(p []byte) (int, error) {
	n, err := g.TCPConn.Write(p)
	if g.tap != nil {
		g.tap.record(&g.tap.written, p[:n])
	}
	return n, err
}

func (g *gateConn) Read(p []byte) (int, error) {
	for {
		n, err := g.TCPConn.Read(p)
		if g.tap != nil {
			g.tap.record(&g.tap.read, p[:max(n, 0)])
		}
		if err == nil || !errors.Is(err, syscall.EPERM) {
			return n, err
		}
		g.mu.Lock()
		ch := g.thawed
		g.mu.Unlock()
		if ch == nil {
			return n, err
		}
		<-ch
	}
}

// hold marks the socket frozen; release ends it (idempotent).
func (g *gateConn) hold() {
	g.mu.Lock()
	if g.thawed == nil {
		g.thawed = make(chan struct{})
	}
	g.mu.Unlock()
}

func (g *gateConn) release() {
	g.mu.Lock()
	if g.thawed != nil {
		close(g.thawed)
		g.thawed = nil
	}
	g.mu.Unlock()
}

// releaseIf releases g when there is one.
func (g *gateConn) releaseIf() {
	if g != nil {
		g.release()
	}
}

// gater is implemented by the transports of this package.
type gater interface{ gate() *gateConn }

func gateOf(t Transport) *gateConn {
	if g, ok := t.(gater); ok {
		return g.gate()
	}
	return nil
}

// DialWebSocket dials a ws:// URL with d (nil: websocket.DefaultDialer)
// and returns the WebSocket transport on it, with the freeze-aware
// connection under gorilla's reader.
func DialWebSocket(ctx context.Context, d *websocket.Dialer, url string) (*WebSocket, error) {
	return dialWebSocketTap(ctx, d, url, nil)
}

func dialWebSocketTap(ctx context.Context, d *websocket.Dialer, url string, tap *streamTap) (*WebSocket, error) {
	var dd websocket.Dialer
	if d != nil {
		dd = *d
	} else {
		dd = *websocket.DefaultDialer
	}
	inner := dd.NetDialContext
	dd.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		var err error
		if inner != nil {
			c, err = inner(ctx, network, addr)
		} else {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		}
		if err != nil {
			return nil, err
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			c.Close()
			return nil, errors.New("dial websocket: not a TCP connection")
		}
		return &gateConn{TCPConn: tc, tap: tap}, nil
	}
	ws, _, err := dd.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	return NewWebSocket(ws)
}
