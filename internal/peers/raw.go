//go:build linux

package peers

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/standbynic/standbynic/internal/netlab"
)

// RawConfig configures a RawService.
type RawConfig struct {
	// Addr to listen on; zero: the lab's Srv4 on an ephemeral port.
	Addr netip.AddrPort
	// Request is the app's keep-alive; each one read at a message
	// boundary is answered with Reply and counted, never recorded as
	// data.
	Request, Reply []byte
	// IdleTimeout closes a connection that sent nothing for that long
	// (the service's own liveness rule); 0: never.
	IdleTimeout time.Duration
}

// RawService is a plain TCP service in a lab namespace, run by the test
// process: the peer of a raw channel.
type RawService struct {
	Addr netip.AddrPort
	cfg  RawConfig
	ln   *net.TCPListener
	wg   sync.WaitGroup

	mu      sync.Mutex
	conns   []*RawConn
	changed chan struct{}
	closed  bool
}

// RawConn is one accepted connection's books.
type RawConn struct {
	s    *RawService
	c    *net.TCPConn
	wmu  sync.Mutex
	data []byte // guarded by s.mu: bytes other than keep-alives
	kas  int    // keep-alives answered
	end  string // why it ended: "idle", "eof", "error: …", "closed"
	last time.Time
}

// StartRawService listens in ns and serves until t's cleanup.
func StartRawService(t testing.TB, lab *netlab.Lab, ns netlab.Namespace, cfg RawConfig) *RawService {
	t.Helper()
	if len(cfg.Request) == 0 || len(cfg.Reply) == 0 {
		t.Fatal("peers: raw service needs a keep-alive request and reply")
	}
	addr := cfg.Addr
	if !addr.IsValid() {
		addr = netip.AddrPortFrom(lab.Addr.Srv4, 0)
	}
	ln, err := lab.ListenTCP(ns, addr.String())
	if err != nil {
		t.Fatalf("peers: raw service: %v", err)
	}
	s := &RawService{Addr: ln.Addr().(*net.TCPAddr).AddrPort(), cfg: cfg, ln: ln, changed: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// Close stops the service and closes its connections; it is idempotent.
func (s *RawService) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	conns := append([]*RawConn(nil), s.conns...)
	s.mu.Unlock()
	s.ln.Close()
	for _, c := range conns {
		c.c.Close()
	}
	s.wg.Wait()
}

func (s *RawService) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *RawService) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptTCP()
		if err != nil {
			return
		}
		rc := &RawConn{s: s, c: c, last: time.Now()}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns = append(s.conns, rc)
		s.notifyLocked()
		s.mu.Unlock()
		s.wg.Add(1)
		go rc.serve()
	}
}

func (rc *RawConn) serve() {
	s := rc.s
	defer s.wg.Done()
	defer rc.c.Close()
	var pending []byte
	buf := make([]byte, 4096)
	for {
		if s.cfg.IdleTimeout > 0 {
			rc.c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
		n, err := rc.c.Read(buf)
		if n > 0 {
			pending = append(pending, buf[:n]...)
			var data []byte
			kas := 0
			for len(pending) > 0 {
				if bytes.HasPrefix(pending, s.cfg.Request) {
					pending = pending[len(s.cfg.Request):]
					kas++
					continue
				}
				if bytes.HasPrefix(s.cfg.Request, pending) {
					break // maybe the start of a keep-alive
				}
				i := bytes.Index(pending[1:], s.cfg.Request[:1])
				if i < 0 {
					i = len(pending) - 1
				}
				data = append(data, pending[:i+1]...)
				pending = pending[i+1:]
			}
			for range kas {
				rc.wmu.Lock()
				_, werr := rc.c.Write(s.cfg.Reply)
				rc.wmu.Unlock()
				if werr != nil {
					err = werr
					break
				}
			}
			s.mu.Lock()
			rc.kas += kas
			rc.data = append(rc.data, data...)
			rc.last = time.Now()
			s.notifyLocked()
			s.mu.Unlock()
		}
		if err != nil {
			end := "error: " + err.Error()
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				end = "idle"
			case errors.Is(err, net.ErrClosed):
				end = "closed"
			case n == 0 && err.Error() == "EOF":
				end = "eof"
			}
			s.mu.Lock()
			rc.end = end
			s.notifyLocked()
			s.mu.Unlock()
			return
		}
	}
}

// Conns returns the connections accepted so far.
func (s *RawService) Conns() []*RawConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*RawConn(nil), s.conns...)
}

// Wait waits until cond holds, calling it after every change; it fails t
// after timeout.
func (s *RawService) Wait(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("peers: raw service: no %s within %v", what, timeout)
		}
	}
}

// Push writes data on the connection.
func (rc *RawConn) Push(data []byte) error {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	_, err := rc.c.Write(data)
	return err
}

// Stats returns the data bytes received (keep-alives excluded), the
// keep-alives answered and why the connection ended ("" while open).
func (rc *RawConn) Stats() (data []byte, keepAlives int, end string) {
	rc.s.mu.Lock()
	defer rc.s.mu.Unlock()
	return append([]byte(nil), rc.data...), rc.kas, rc.end
}
