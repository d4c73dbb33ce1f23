package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/standbynic/standbynic/internal/pushserver"
)

const (
	minEvery    = 10 * time.Millisecond
	maxEvery    = 24 * time.Hour
	maxAckWait  = time.Minute
	maxChannels = 4096 // names the push-server command keeps books for
)

func runPushServer(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	fs := newFlagSet("push-server", stderr, "[flags]",
		`Run the reference push server: channels connect over plain TCP (lines:
"hello <channel>", "push <id> <payload>", "ack <id>") or WebSocket (ws://ADDR/ws,
the same words as text messages). Pushes go out every --push-every to every
connected channel, or on request:

  curl -X POST --data 'hello' 'http://ADDR/push?channel=NAME'   -> {"id":N}
  curl -X POST 'http://ADDR/reset?channel=NAME'                 (RST the connection)
  curl 'http://ADDR/acks'                                       (ids pushed and acked)
  curl 'http://ADDR/acks?channel=NAME&wait=ID&timeout=10s'      (wait for an ack)

On exit it prints, per channel, the message ids pushed, acknowledged and not.`)
	// The defaults are the srv namespace of `standbynic lab up` (no
	// router), the server of the example host configuration.
	tcpAddr := fs.String("tcp", "198.18.0.1:7000", "listen address `ADDR` (host:port) of the TCP line transport")
	wsAddr := fs.String("ws", "198.18.0.1:7001", "listen address `ADDR` (host:port) of the WebSocket transport, path /ws")
	httpAddr := fs.String("http", "198.18.0.1:7002", "listen address `ADDR` (host:port) of the HTTP API (push, reset, acks)")
	pushEvery := newDurationFlag(fs, "push-every", 0, minEvery, maxEvery, true, `push "tick <n>" to every connected channel at this interval`)
	pingEvery := newDurationFlag(fs, "ping-every", 0, minEvery, maxEvery, true, "send a WebSocket Ping to every connected WebSocket channel at this interval")
	var names []string
	fs.Var(&stringsFlag{&names, checkChannelName}, "channel", "a channel to report on at exit and on GET /acks (repeatable; channels named in HTTP requests are added)")
	lf := addLogFlags(fs)
	if code, done := parse(fs, args); done {
		return code
	}
	for _, a := range []struct{ flag, addr string }{{"tcp", *tcpAddr}, {"ws", *wsAddr}, {"http", *httpAddr}} {
		if err := checkListenAddr(a.addr); err != nil {
			return usageError(fs, "-%s %q: %v", a.flag, a.addr, err)
		}
	}
	log := lf.logger(stderr)

	// The server's own HTTP API is bound to a free port beside --http; the
	// command serves its own API on --http (the server's push and reset,
	// plus acks), because it must learn the channel names to report on.
	host, _, _ := net.SplitHostPort(*httpAddr)
	srv, err := pushserver.New(&pushserver.Config{
		TCPAddr: *tcpAddr, WSAddr: *wsAddr, HTTPAddr: net.JoinHostPort(host, "0"),
		PushInterval: *pushEvery, PingInterval: *pingEvery,
		Logger: log.With("component", "pushserver"),
	})
	if err != nil {
		log.Error("push server", "err", err)
		notLabHint(stderr, err)
		return exitFailure
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		log.Error("push server: http", "err", err)
		notLabHint(stderr, err)
		return exitFailure
	}
	api := &pushAPI{srv: srv, names: map[string]bool{}}
	for _, n := range names {
		api.names[n] = true
	}
	hs := &http.Server{Handler: api.handler(), ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("push server listening", "tcp", srv.TCPAddr().String(), "ws", srv.WSURL(),
		"http", "http://"+ln.Addr().String(), "push_every", *pushEvery, "ping_every", *pingEvery)

	code := exitOK
	select {
	case <-ctx.Done():
	case err := <-served:
		log.Error("push server: http", "err", err)
		code = exitFailure
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	hs.Shutdown(shut)
	cancel()
	if err := srv.Close(); err != nil {
		log.Error("push server: close", "err", err)
		code = exitFailure
	}
	writeAckReport(stdout, api.report())
	log.Info("push server stopped")
	return code
}

// notLabHint explains a listen address that does not exist here: the
// defaults are the lab's srv address.
func notLabHint(w io.Writer, err error) {
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		fmt.Fprintln(w, "standbynic push-server: the default addresses (198.18.0.1:7000–7002) are the srv namespace of 'standbynic lab up': run it there with 'standbynic lab exec NAME srv -- standbynic push-server', or pass --tcp, --ws and --http")
	}
}

// checkChannelName applies the push server's rule for channel ids.
func checkChannelName(s string) error {
	switch {
	case s == "":
		return errors.New("empty channel name")
	case len([]rune(s)) > pushserver.MaxChannel:
		return fmt.Errorf("channel name longer than %d characters", pushserver.MaxChannel)
	case strings.ContainsAny(s, " \t\r\n"):
		return errors.New("channel name contains white space")
	}
	return nil
}

// checkListenAddr checks host:port with a numeric port 0–65535.
func checkListenAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("not host:port")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return errors.New("port must be a number 0–65535")
	}
	return nil
}

// pushAPI is the push-server command's HTTP API: the server's push and
// reset, and the acknowledgment report.
type pushAPI struct {
	srv   *pushserver.Server
	mu    sync.Mutex
	names map[string]bool
}

func (a *pushAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /push", a.push)
	mux.HandleFunc("POST /reset", a.reset)
	mux.HandleFunc("GET /acks", a.acks)
	return mux
}

// learn records a channel name for the report.
func (a *pushAPI) learn(name string) error {
	if err := checkChannelName(name); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.names[name] && len(a.names) >= maxChannels {
		return fmt.Errorf("more than %d channels", maxChannels)
	}
	a.names[name] = true
	return nil
}

func httpStatus(err error) int {
	switch {
	case errors.Is(err, pushserver.ErrUnknownChannel):
		return http.StatusNotFound
	case errors.Is(err, pushserver.ErrBadPayload):
		return http.StatusBadRequest
	case errors.Is(err, pushserver.ErrNotConnected), errors.Is(err, pushserver.ErrNotWebSocket):
		return http.StatusConflict
	case errors.Is(err, pushserver.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

func (a *pushAPI) push(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("channel")
	if err := a.learn(name); err != nil {
		http.Error(w, "channel: "+err.Error(), http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, pushserver.MaxPayload))
	if err != nil {
		http.Error(w, fmt.Sprintf("payload: longer than %d bytes", pushserver.MaxPayload), http.StatusRequestEntityTooLarge)
		return
	}
	id, err := a.srv.Push(name, string(body))
	if err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID uint64 `json:"id"`
	}{id})
}

func (a *pushAPI) reset(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("channel")
	if err := a.learn(name); err != nil {
		http.Error(w, "channel: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := a.srv.Reset(name); err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// acks answers the report; with channel and wait=ID it first waits (at
// most timeout, default 10 s, at most a minute) for that ack.
func (a *pushAPI) acks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if ws := q.Get("wait"); ws != "" {
		name := q.Get("channel")
		if err := a.learn(name); err != nil {
			http.Error(w, "channel: "+err.Error(), http.StatusBadRequest)
			return
		}
		id, err := strconv.ParseUint(ws, 10, 64)
		if err != nil || id == 0 {
			http.Error(w, "wait: want a message id ≥ 1", http.StatusBadRequest)
			return
		}
		timeout := 10 * time.Second
		if ts := q.Get("timeout"); ts != "" {
			if timeout, err = time.ParseDuration(ts); err != nil || timeout <= 0 || timeout > maxAckWait {
				http.Error(w, fmt.Sprintf("timeout: want a duration in (0, %v]", maxAckWait), http.StatusBadRequest)
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		err = a.srv.WaitAcked(ctx, name, id)
		cancel()
		if err != nil {
			http.Error(w, fmt.Sprintf("wait for ack %d on %s: %v", id, name, err), http.StatusGatewayTimeout)
			return
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Channels []ackReport `json:"channels"`
	}{a.report()})
}

// ackReport is what one channel pushed and got acknowledged.
type ackReport struct {
	Channel     string   `json:"channel"`
	Transport   string   `json:"transport"`
	Connected   bool     `json:"connected"`
	Connections int      `json:"connections"`
	Pushed      []uint64 `json:"pushed"`
	Acked       []uint64 `json:"acked"`
	Unacked     []uint64 `json:"unacked"`
}

// report returns the books of every known channel the server has seen,
// by name.
func (a *pushAPI) report() []ackReport {
	a.mu.Lock()
	names := make([]string, 0, len(a.names))
	for n := range a.names {
		names = append(names, n)
	}
	a.mu.Unlock()
	slices.Sort(names)
	out := []ackReport{}
	for _, n := range names {
		c, ok := a.srv.Channel(n)
		if !ok {
			continue
		}
		rep := ackReport{Channel: n, Transport: c.Transport.String(), Connected: c.Connected,
			Connections: c.Connections, Pushed: []uint64{}, Acked: append([]uint64{}, c.Acked...), Unacked: []uint64{}}
		for _, m := range c.Pushed {
			rep.Pushed = append(rep.Pushed, m.ID)
			if !slices.Contains(c.Acked, m.ID) {
				rep.Unacked = append(rep.Unacked, m.ID)
			}
		}
		out = append(out, rep)
	}
	return out
}

func writeAckReport(w io.Writer, reps []ackReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tTRANSPORT\tCONNECTIONS\tPUSHED\tACKED\tUNACKED")
	ids := func(v []uint64) string {
		if len(v) == 0 {
			return "-"
		}
		s := make([]string, len(v))
		for i, id := range v {
			s[i] = strconv.FormatUint(id, 10)
		}
		return strings.Join(s, ",")
	}
	for _, r := range reps {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", r.Channel, r.Transport, r.Connections, ids(r.Pushed), ids(r.Acked), ids(r.Unacked))
	}
	tw.Flush()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
