package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// realWire is a run against a real MQTT broker: one connection per
// channel, each read by its own goroutine, and one publisher connection
// per shard that sends the pushes (QoS 0) and the final probe.
type realWire struct {
	pub    net.Conn
	pubMu  sync.Mutex
	pubBuf []byte
	wg     sync.WaitGroup
	once   sync.Once
	probes chan struct{} // one per probe received
	line   bool          // the push server's line protocol, not MQTT
	client *http.Client  // line: the push server's HTTP API
	pushQ  chan pushReq  // line: pushes for the HTTP API
}

// topic is channel j's topic: unique in the fleet (seed, global device
// index, channel number).
func (e *Engine) topic(j int) string {
	ch := &e.chans[j]
	k := int(ch.dev)
	return "sbn/" + strconv.FormatUint(e.cfg.Seed, 10) + "/" + strconv.Itoa(e.globals[k]) + "/" + strconv.Itoa(j-int(e.devs[k].first))
}

func (e *Engine) dial(ctx context.Context, laddr netip.Addr) (net.Conn, error) {
	if e.cfg.Dial != nil {
		return e.cfg.Dial(ctx, laddr, e.cfg.Broker)
	}
	d := net.Dialer{}
	if laddr.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: laddr.AsSlice()}
	}
	return d.DialContext(ctx, "tcp", e.cfg.Broker.String())
}

// handshake sends CONNECT (and SUBSCRIBE when topic is set) and reads
// CONNACK (and SUBACK) with a deadline.
func handshake(c net.Conn, id string, keepAlive uint16, topic string, deadline time.Time) error {
	_ = c.SetDeadline(deadline)
	defer c.SetDeadline(time.Time{})
	b := appendConnect(nil, id, keepAlive)
	if topic != "" {
		b = appendSubscribe(b, topic)
	}
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("connect %s: %w", id, err)
	}
	want := []byte{mqttConnack}
	if topic != "" {
		want = append(want, mqttSuback)
	}
	var buf [64]byte
	n := 0
	for len(want) > 0 {
		m, err := c.Read(buf[n:])
		if err != nil {
			return fmt.Errorf("connect %s: %w", id, err)
		}
		n += m
		for len(want) > 0 {
			p, l, err := decode(buf[:n])
			if errors.Is(err, errShort) {
				break
			}
			if err != nil {
				return fmt.Errorf("connect %s: %w", id, err)
			}
			if p.typ != want[0] {
				return fmt.Errorf("connect %s: packet %#x, want %#x", id, p.typ, want[0])
			}
			if p.rc != 0 {
				return fmt.Errorf("connect %s: refused (code %#x)", id, p.rc)
			}
			want = want[1:]
			n = copy(buf[:], buf[l:n])
		}
	}
	return nil
}

// connect opens every channel of the shard and the publisher.
func connect(ctx context.Context, e *Engine) (*realWire, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	w := &realWire{probes: make(chan struct{}, len(e.chans)), line: e.cfg.Protocol == ProtocolLine}
	if w.line {
		w.startPushAPI(e)
	} else if err := w.startPublisher(ctx, e, deadline); err != nil {
		return nil, err
	}
	if err := w.openAll(ctx, e, deadline); err != nil {
		e.closeConns(w)
		return nil, fmt.Errorf("fleet: %w", err)
	}
	return w, nil
}

// startPublisher opens the MQTT publisher connection.
func (w *realWire) startPublisher(ctx context.Context, e *Engine, deadline time.Time) error {
	pub, err := e.dial(ctx, netip.Addr{})
	if err != nil {
		return fmt.Errorf("fleet: publisher: %w", err)
	}
	id := "sbn-" + strconv.FormatUint(e.cfg.Seed, 10) + "-pub-" + e.cfg.Shard.String()
	if err := handshake(pub, strings.ReplaceAll(id, "/", "of"), 0, "", deadline); err != nil {
		pub.Close()
		return fmt.Errorf("fleet: publisher: %w", err)
	}
	w.pub = pub
	w.wg.Add(1)
	go func() { // the broker sends the publisher nothing we need
		defer w.wg.Done()
		var b [256]byte
		for {
			if _, err := pub.Read(b[:]); err != nil {
				return
			}
		}
	}()
	return nil
}

// openAll opens every channel, ConnectWorkers at a time.
func (w *realWire) openAll(ctx context.Context, e *Engine, deadline time.Time) error {
	jobs := make(chan int)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range e.cfg.ConnectWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := w.open(ctx, e, j, deadline); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for j := range e.chans {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	return firstErr
}

// open connects channel j and starts its reader.
func (w *realWire) open(ctx context.Context, e *Engine, j int, deadline time.Time) error {
	ch := &e.chans[j]
	k := int(ch.dev)
	c, err := e.dial(ctx, e.cfg.sourceAddr(e.globals[k]))
	if err != nil {
		return fmt.Errorf("device %d channel %d: dial: %w", e.globals[k], j-int(e.devs[k].first), err)
	}
	topic := e.topic(j)
	if w.line {
		_ = c.SetWriteDeadline(deadline)
		if _, err := c.Write([]byte("hello " + e.lineName(j) + "\n")); err != nil {
			c.Close()
			return fmt.Errorf("hello %s: %w", e.lineName(j), err)
		}
		_ = c.SetWriteDeadline(time.Time{})
	} else {
		ka := uint16((ch.interval*4/3 + time.Second - 1) / time.Second) // interval ≤ 0.75 × keep-alive
		if err := handshake(c, strings.ReplaceAll(topic, "/", "-"), ka, topic, deadline); err != nil {
			c.Close()
			return err
		}
	}
	e.mu.Lock()
	ch.conn = c
	ch.alive = true
	e.mu.Unlock()
	w.wg.Add(1)
	go w.read(e, j, c)
	return nil
}

// read is channel j's reader: PINGRESPs are counted, pushes handed to the
// model, and an error ends the channel.
func (w *realWire) read(e *Engine, j int, c net.Conn) {
	defer w.wg.Done()
	if w.line {
		w.readLines(e, j, c)
		return
	}
	var buf [maxPacket]byte
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			w.lost(e, j)
			return
		}
		n += m
		for {
			p, l, err := decode(buf[:n])
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
			switch p.typ {
			case mqttPingresp:
				e.mu.Lock()
				e.c.KeepAliveAnswers++
				e.mu.Unlock()
			case mqttPublish:
				w.arrived(e, j, p.at, p.kind)
			}
		}
	}
}

// lost marks channel j gone (its read failed).
func (w *realWire) lost(e *Engine, j int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.chans[j].alive {
		e.chans[j].alive = false
		if !e.closing() {
			e.c.Disconnects++
		}
	}
}

// arrived hands a push (published at the engine time at) that reached
// channel j to the model.
func (w *realWire) arrived(e *Engine, j int, at int64, kind byte) {
	e.mu.Lock()
	e.now = min(time.Since(e.start), e.cfg.Duration)
	if e.ending {
		e.now = time.Since(e.start)
	}
	e.arrive(j, time.Duration(at), kind)
	e.mu.Unlock()
	if kind == kindProbe {
		select {
		case w.probes <- struct{}{}:
		default:
		}
	}
}

func (e *Engine) closing() bool { return e.closed }

// keepAlive writes channel j's PINGREQ (called with e.mu held).
func (w *realWire) keepAlive(e *Engine, j int) {
	ch := &e.chans[j]
	_ = ch.conn.SetWriteDeadline(time.Now().Add(time.Second))
	ka := pingreq
	if w.line {
		ka = lineKeepAlive
	}
	if _, err := ch.conn.Write(ka); err != nil {
		e.c.WriteErrors++
	}
}

// publish sends a push to channel j's topic (called with e.mu held).
func (w *realWire) publish(e *Engine, j int, at time.Duration, kind byte) {
	if w.line {
		w.publishLine(e, j, at, kind)
		return
	}
	w.pubMu.Lock()
	defer w.pubMu.Unlock()
	w.pubBuf = appendPublish(w.pubBuf[:0], e.topic(j), int64(at), kind)
	_ = w.pub.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := w.pub.Write(w.pubBuf); err != nil {
		e.c.WriteErrors++
	}
}

// probe publishes a probe to every live channel and waits (bounded by
// Timeout) for each to come back through the broker, and for the pushes
// still in flight: the server-side survival of the connections.
func (w *realWire) probe(ctx context.Context, e *Engine) {
	e.mu.Lock()
	sent := 0
	for j := range e.chans {
		if e.chans[j].alive {
			e.c.ProbesSent++
			sent++
			w.publish(e, j, time.Since(e.start), kindProbe)
		}
	}
	e.mu.Unlock()
	timer := time.NewTimer(min(e.cfg.Timeout, 30*time.Second))
	defer timer.Stop()
	for got := 0; got < sent; got++ {
		select {
		case <-w.probes:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
	// Pushes published before the probes reached their channels before
	// them (one publisher, in order, per subscriber).
}

// close ends every connection and waits for the readers.
func (w *realWire) close() {
	w.once.Do(func() {
		if w.pub != nil {
			w.pub.Close()
		}
		if w.pushQ != nil {
			close(w.pushQ)
		}
	})
}

func (e *Engine) closeConns(w *realWire) {
	e.mu.Lock()
	e.closed = true
	conns := make([]net.Conn, 0, len(e.chans))
	for j := range e.chans {
		if c := e.chans[j].conn; c != nil {
			conns = append(conns, c)
		}
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	w.close()
	w.wg.Wait()
}

// rssBytes is the process's resident set (Linux /proc; 0 elsewhere).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
