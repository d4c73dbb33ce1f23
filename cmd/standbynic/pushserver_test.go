package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
)

var listeningRE = regexp.MustCompile(`"push server listening" tcp=(\S+) ws=(\S+) http=(\S+)`)

// startPushServer runs "standbynic push-server" on loopback until the
// returned stop is called; stop returns the exit code and stdout.
func startPushServer(t *testing.T, extra ...string) (tcpAddr, wsURL, httpURL string, stop func() (int, string)) {
	t.Helper()
	checkGoroutines(t)
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	done := make(chan int, 1)
	args := append([]string{"push-server", "--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0"}, extra...)
	go func() { done <- run(ctx, stdout, stderr, args) }()
	m := stderr.waitFor(t, listeningRE, 10*time.Second)
	stopped := false
	var code int
	stop = func() (int, string) {
		if !stopped {
			stopped = true
			cancel()
			select {
			case code = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("push-server did not stop; stderr:\n%s", stderr)
			}
		}
		return code, stdout.String()
	}
	t.Cleanup(func() { stop() })
	return m[1], m[2], m[3], stop
}

func httpDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// lineClient is a TCP channel client of the push server.
type lineClient struct {
	c  net.Conn
	br *bufio.Reader
}

func (l *lineClient) read(t *testing.T) string {
	t.Helper()
	l.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	s, err := l.br.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(s, "\n")
}

func (l *lineClient) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(l.c, s+"\n"); err != nil {
		t.Fatal(err)
	}
}

func pushID(t *testing.T, line string) uint64 {
	t.Helper()
	id, _, ok := parsePush(line)
	if !ok {
		t.Fatalf("not a push: %q", line)
	}
	return id
}

func TestRunPushServer(t *testing.T) {
	tcpAddr, wsURL, httpURL, stop := startPushServer(t, "--push-every", "50ms", "--channel", "c1", "--channel", "never-seen")

	c, err := net.DialTimeout("tcp", tcpAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := &lineClient{c, bufio.NewReader(c)}
	tc.send(t, "hello c1")
	// The first scheduled tick proves the channel is connected.
	first := tc.read(t)
	if !strings.Contains(first, " tick ") {
		t.Fatalf("first line %q, want a scheduled tick", first)
	}
	acked := []uint64{pushID(t, first)}
	tc.send(t, fmt.Sprintf("ack %d", acked[0]))

	code, body := httpDo(t, "POST", httpURL+"/push?channel=c1", "hello there")
	if code != http.StatusOK {
		t.Fatalf("POST /push: %d %s", code, body)
	}
	var pr struct{ ID uint64 }
	if err := json.Unmarshal([]byte(body), &pr); err != nil || pr.ID == 0 {
		t.Fatalf("POST /push answered %q (%v)", body, err)
	}
	for {
		l := tc.read(t)
		if l == fmt.Sprintf("push %d hello there", pr.ID) {
			break
		}
		if !strings.Contains(l, " tick ") {
			t.Fatalf("unexpected line %q", l)
		}
	}
	tc.send(t, fmt.Sprintf("ack %d", pr.ID))
	acked = append(acked, pr.ID)

	// A WebSocket channel, named only by an HTTP request.
	ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hello w1")); err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	wsID := pushID(t, string(msg))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("ack %d", wsID))); err != nil {
		t.Fatal(err)
	}
	code, body = httpDo(t, "GET", fmt.Sprintf("%s/acks?channel=w1&wait=%d&timeout=10s", httpURL, wsID), "")
	if code != http.StatusOK {
		t.Fatalf("GET /acks wait: %d %s", code, body)
	}
	code, body = httpDo(t, "GET", fmt.Sprintf("%s/acks?channel=c1&wait=%d&timeout=10s", httpURL, pr.ID), "")
	if code != http.StatusOK {
		t.Fatalf("GET /acks wait: %d %s", code, body)
	}
	var rep struct{ Channels []ackReport }
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rep.Channels {
		names = append(names, r.Channel)
		if r.Channel == "c1" {
			if diff := cmp.Diff(acked, r.Acked); diff != "" {
				t.Errorf("c1 acked (-want +got):\n%s", diff)
			}
			for _, id := range r.Pushed {
				if slices.Contains(r.Acked, id) == slices.Contains(r.Unacked, id) {
					t.Errorf("c1: id %d in acked %v and unacked %v (or neither)", id, r.Acked, r.Unacked)
				}
			}
			if r.Transport != "tcp" || !r.Connected {
				t.Errorf("c1: %+v", r)
			}
		}
	}
	// never-seen said no hello: it is not reported.
	if diff := cmp.Diff([]string{"c1", "w1"}, names); diff != "" {
		t.Errorf("channels reported (-want +got):\n%s", diff)
	}

	// Bad requests get a 4xx naming the field and the limit.
	bad := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/push?channel=", "x", http.StatusBadRequest, "channel: empty channel name"},
		{"POST", "/push?channel=" + strings.Repeat("x", 65), "x", http.StatusBadRequest, "channel: channel name longer than 64 characters"},
		{"POST", "/push?channel=nobody", "x", http.StatusNotFound, "unknown channel"},
		{"POST", "/push?channel=c1", strings.Repeat("x", 4097), http.StatusRequestEntityTooLarge, "payload: longer than 4096 bytes"},
		{"POST", "/push?channel=c1", "a\nb", http.StatusBadRequest, "bad payload"},
		{"POST", "/reset?channel=nobody", "", http.StatusNotFound, "unknown channel"},
		{"GET", "/acks?channel=c1&wait=0", "", http.StatusBadRequest, "wait: want a message id ≥ 1"},
		{"GET", "/acks?channel=c1&wait=1&timeout=2m", "", http.StatusBadRequest, "timeout: want a duration in (0, 1m0s]"},
		{"GET", "/acks?channel=c1&wait=999999&timeout=20ms", "", http.StatusGatewayTimeout, "wait for ack 999999 on c1"},
		{"GET", "/push", "", http.StatusMethodNotAllowed, ""},
	}
	for _, b := range bad {
		code, body := httpDo(t, b.method, httpURL+b.path, b.body)
		if code != b.code || !strings.Contains(body, b.want) {
			t.Errorf("%s %s: %d %q, want %d with %q", b.method, b.path, code, body, b.code, b.want)
		}
	}

	exit, out := stop()
	if exit != exitOK {
		t.Errorf("exit %d, want 0", exit)
	}
	// The exit report lists c1's acknowledged ids.
	var ids []string
	for _, id := range acked {
		ids = append(ids, strconv.FormatUint(id, 10))
	}
	re := regexp.MustCompile(`(?m)^c1\s+tcp\s+1\s+\S+\s+` + strings.Join(ids, ",") + `\s`)
	if !re.MatchString(out) || !strings.Contains(out, "CHANNEL") || !regexp.MustCompile(`(?m)^w1\s+websocket\s+1\s`).MatchString(out) {
		t.Errorf("exit report does not match %q:\n%s", re, out)
	}
}

func TestRunPushServerListenFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, stderr := runCmd(t, "push-server", "--tcp", ln.Addr().String(), "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0")
	if code != exitFailure || !strings.Contains(stderr, "address already in use") {
		t.Errorf("exit %d, want 1 with the listen error; stderr: %s", code, stderr)
	}
}

// TestRunPushServerJSONLog checks --log-format json: every log line is one
// JSON object.
func TestRunPushServerJSONLog(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, stdout, stderr, []string{"push-server", "--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-format", "json"})
	}()
	stderr.waitFor(t, regexp.MustCompile(`"msg":"push server listening"`), 10*time.Second)
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["level"] == nil || m["time"] == nil {
			t.Errorf("not a JSON log record: %q (%v)", l, err)
		}
	}
	if len(lines) < 2 {
		t.Errorf("%d log lines, want the start and the stop:\n%s", len(lines), stderr)
	}
}
