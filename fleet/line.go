package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// The line protocol of the reference push server (internal/pushserver,
// `standbynic push-server`): the device opens with "hello <channel>\n",
// keeps the stream alive with "ka\n" (the server answers nothing), and
// acknowledges each "push <id> <payload>\n" with "ack <id>\n". A fleet
// push's payload is its kind and its publish time in decimal
// nanoseconds ("p123456"); pushes are posted to the server's HTTP API
// (POST /push?channel=<name>), which answers 409 for a channel without a
// live connection.

var lineKeepAlive = []byte("ka\n")

// maxLine bounds a line a device accepts, newline included.
const maxLine = 64

// decodeLine reads one "push <id> <kind><ns>\n" line from the front of b
// and returns the push id, its publish time and kind, and the line's
// length. errShort: no whole line yet. It never panics and does not
// allocate.
func decodeLine(b []byte) (id uint64, at int64, kind byte, n int, err error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if len(b) >= maxLine {
			return 0, 0, 0, 0, fmt.Errorf("line: longer than %d bytes", maxLine)
		}
		return 0, 0, 0, 0, errShort
	}
	line := b[:i]
	rest, ok := bytes.CutPrefix(line, []byte("push "))
	if !ok {
		return 0, 0, 0, 0, errors.New(`line: want "push <id> <payload>"`)
	}
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 || sp+2 > len(rest) {
		return 0, 0, 0, 0, errors.New("line: push without an id and a payload")
	}
	id, ok = parseUint(rest[:sp])
	if !ok {
		return 0, 0, 0, 0, errors.New("line: push id not a decimal number")
	}
	kind = rest[sp+1]
	if kind != kindPush && kind != kindProbe {
		return 0, 0, 0, 0, fmt.Errorf("line: push kind %#x, want %q or %q", kind, kindPush, kindProbe)
	}
	v, ok := parseUint(rest[sp+2:])
	if !ok || v > 1<<62 {
		return 0, 0, 0, 0, errors.New("line: push time not a decimal number of nanoseconds")
	}
	return id, int64(v), kind, i + 1, nil
}

func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// pushReq is one push for the HTTP API.
type pushReq struct {
	name    string
	payload string
}

// lineName is channel j's name at the push server.
func (e *Engine) lineName(j int) string {
	b := []byte(e.topic(j))
	for i := range b {
		if b[i] == '/' {
			b[i] = '-'
		}
	}
	return string(b)
}

// startPushAPI starts the workers that post pushes to the HTTP API.
func (w *realWire) startPushAPI(e *Engine) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return nil, err
			}
			if e.cfg.Dial != nil {
				return e.cfg.Dial(ctx, netip.Addr{}, ap)
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		MaxIdleConnsPerHost: 8,
	}
	w.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	w.pushQ = make(chan pushReq, len(e.chans)+1024)
	url := "http://" + e.cfg.PushAPI.String() + "/push?channel="
	for range 4 {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for r := range w.pushQ {
				resp, err := w.client.Post(url+r.name, "text/plain", bytes.NewReader([]byte(r.payload)))
				if err == nil {
					_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					e.mu.Lock()
					e.c.PushesRefused++
					e.mu.Unlock()
				}
			}
		}()
	}
}

// publishLine queues a push to channel j (called with e.mu held; never
// blocks: a full queue counts a write error).
func (w *realWire) publishLine(e *Engine, j int, at time.Duration, kind byte) {
	r := pushReq{e.lineName(j), string(kind) + strconv.FormatInt(int64(at), 10)}
	select {
	case w.pushQ <- r:
	default:
		e.c.WriteErrors++
	}
}

// readLines is channel j's reader on the line protocol.
func (w *realWire) readLines(e *Engine, j int, c net.Conn) {
	var buf [maxLine]byte
	var ack [32]byte
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			w.lost(e, j)
			return
		}
		n += m
		for {
			id, at, kind, l, err := decodeLine(buf[:n])
			if errors.Is(err, errShort) {
				break
			}
			if err != nil {
				e.mu.Lock()
				e.c.ProtocolErrors++
				e.mu.Unlock()
				c.Close()
				break
			}
			n = copy(buf[:], buf[l:n])
			a := strconv.AppendUint(append(ack[:0], "ack "...), id, 10)
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Write(append(a, '\n'))
			w.arrived(e, j, at, kind)
		}
	}
}
