package main

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/standbynic/standbynic/internal/pushserver"
)

// hostRig runs "standbynic host --nic none" against an in-process push
// server on loopback.
type hostRig struct {
	srv            *pushserver.Server
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan int
}

func startHost(t *testing.T, hostSection string) *hostRig {
	t.Helper()
	checkGoroutines(t)
	srv, err := pushserver.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cfg := fmt.Sprintf(`{
  "server": {"tcp": %q, "websocket": %q},
  "policy": {"interval_unit": "1s", "min_interval": 1},
  "host": %s,
  "apps": [
    {"name": "mail", "channels": [
      {"id": "m-ws", "transport": "websocket", "slot": "software", "interval": "30s"},
      {"id": "m-tcp", "transport": "tcp", "slot": "software", "interval": "30s", "keepalive": "noop"}
    ]},
    {"name": "chat", "priority": 3, "channels": [{"id": "chat", "transport": "tcp", "slot": "hardware", "interval": "30s"}]}
  ]
}`, srv.TCPAddr().String(), srv.WSURL(), hostSection)
	path := t.TempDir() + "/host.json"
	if err := writeFile(path, cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &hostRig{srv: srv, stdout: newSyncBuffer(), stderr: newSyncBuffer(), cancel: cancel, done: make(chan int, 1)}
	go func() {
		r.done <- run(ctx, r.stdout, r.stderr, []string{"host", "--nic", "none", "--config", path, "--log-level", "debug"})
	}()
	t.Cleanup(func() { r.stop(t) })
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	for _, ch := range []string{"m-ws", "m-tcp", "chat"} {
		if err := srv.WaitConnected(wctx, ch); err != nil {
			t.Fatalf("channel %s never connected: %v\nstderr:\n%s", ch, err, r.stderr)
		}
	}
	return r
}

func (r *hostRig) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(15 * time.Second):
		t.Fatalf("host did not stop; stderr:\n%s", r.stderr)
	}
	return -1
}

// pushAndWait pushes to ch and waits until the host acknowledged it.
func (r *hostRig) pushAndWait(t *testing.T, ch, payload string) uint64 {
	t.Helper()
	id, err := r.srv.Push(ch, payload)
	if err != nil {
		t.Fatalf("push %s: %v", ch, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := r.srv.WaitAcked(ctx, ch, id); err != nil {
		t.Fatalf("push %d on %s never acknowledged: %v\nstderr:\n%s", id, ch, err, r.stderr)
	}
	return id
}

func TestRunHostAwake(t *testing.T) {
	r := startHost(t, `{"stay_awake": true}`)
	for _, ch := range []string{"m-ws", "m-tcp", "chat"} {
		id := r.pushAndWait(t, ch, "hello "+ch)
		r.stderr.waitFor(t, regexp.MustCompile(fmt.Sprintf(`msg=push channel=%s id=%d payload="hello %s"`, ch, id, ch)), 5*time.Second)
	}
	// A reset connection is dialled again by the reset task.
	if err := r.srv.Reset("chat"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.srv.Wait(ctx, "chat", func(c pushserver.Channel, ok bool) bool { return ok && c.Connected && c.Connections == 2 }); err != nil {
		t.Fatalf("chat not reconnected: %v\nstderr:\n%s", err, r.stderr)
	}
	r.pushAndWait(t, "chat", "after reset")
	if code := r.stop(t); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, r.stderr)
	}
	out := r.stdout.String()
	for _, re := range []string{
		`(?m)^CHANNEL\s+APP\s+TRANSPORT\s+REQUESTED\s+STATUS\s+PUSHES\s+ACKS\s+RECONNECTS\s+PROTOCOL\s+KEEPALIVE\s+REPLIES\s+NIC-SENT\s+NIC-ABSORBED\s+ENDPOINT\s+NOTE$`,
		`(?m)^m-ws\s+mail\s+websocket\s+RequestSoftwareSlot\s+SoftwareSlotAllocated\s+1\s+1\s+0\s+websocket\s+app\s+0\s+0\s+0\s+ws://127\.0\.0\.1:\d+/ws\s+-$`,
		`(?m)^m-tcp\s+mail\s+tcp\s+RequestSoftwareSlot\s+SoftwareSlotAllocated\s+1\s+1\s+0\s+line\s+tcp\s+0\s+0\s+0\s+tcp://127\.0\.0\.1:\d+\s+-$`,
		`(?m)^chat\s+chat\s+tcp\s+RequestHardwareSlot\s+HardwareSlotAllocated\s+2\s+2\s+1\s+line\s+tcp\s`,
		`(?m)^wakes: 0$`,
		`(?m)^energy: [0-9.]+ mJ; an all-software host: [0-9.]+ mJ with \d+ wakes$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("summary does not match %s:\n%s", re, out)
		}
	}
}

// TestRunHostStandby puts the host to sleep: without a NIC every channel is
// kept alive by the host's own wakes, and pushes are collected at the push
// checks.
func TestRunHostStandby(t *testing.T) {
	r := startHost(t, `{"push_check_interval": "200ms", "software_wake_hold": "50ms"}`)
	r.stderr.waitFor(t, regexp.MustCompile(`msg="host in standby"`), 10*time.Second)
	r.pushAndWait(t, "m-tcp", "while asleep")
	r.stderr.waitFor(t, regexp.MustCompile(`msg=wake reason=software-push-check`), 5*time.Second)
	if code := r.stop(t); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^wakes: [1-9]\d*, .*software-push-check [1-9]`).MatchString(r.stdout.String()) {
		t.Errorf("summary lacks the push-check wakes:\n%s", r.stdout)
	}
}

// TestRunHostReconnect stops the push server under a running host and starts
// a new one on the same ports: every channel's reset task dials again, one
// attempt each time the host's reconnect schedule runs it, until the new
// server answers.
func TestRunHostReconnect(t *testing.T) {
	r := startHost(t, `{"stay_awake": true}`)
	tcpAddr, wsAddr := r.srv.TCPAddr().String(), r.srv.WSAddr().String()
	r.srv.Close()
	// Both transports see the loss and the first dial fails.
	r.stderr.waitFor(t, regexp.MustCompile(`(?s)msg=reconnect channel=\S+ attempt=1 .*msg=reconnect channel=\S+ attempt=1 .*msg=reconnect channel=\S+ attempt=1 `), 10*time.Second)
	srv, err := pushserver.New(&pushserver.Config{TCPAddr: tcpAddr, WSAddr: wsAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	r.srv = srv
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, ch := range []string{"m-ws", "m-tcp", "chat"} {
		if err := srv.WaitConnected(ctx, ch); err != nil {
			t.Fatalf("%s did not reconnect: %v\nstderr:\n%s", ch, err, r.stderr)
		}
		r.pushAndWait(t, ch, "back")
	}
	if code := r.stop(t); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, r.stderr)
	}
	for _, ch := range []string{"m-ws", "m-tcp", "chat"} {
		if !regexp.MustCompile(`(?m)^` + ch + `\s+\S+\s+\S+\s+\S+\s+\S+\s+1\s+1\s+1\s`).MatchString(r.stdout.String()) {
			t.Errorf("summary: %s lacks 1 push, 1 ack, 1 reconnect:\n%s", ch, r.stdout)
		}
	}
}

// TestRunHostReconnectAsleep loses the server while the host sleeps: the
// host wakes on its own reconnect schedule ("reconnect" wakes) to run the
// reset tasks, and the channels come back once a new server answers.
func TestRunHostReconnectAsleep(t *testing.T) {
	r := startHost(t, `{"reconnect_min": "100ms", "reconnect_max": "400ms", "software_wake_hold": "50ms"}`)
	r.stderr.waitFor(t, regexp.MustCompile(`msg="host in standby"`), 10*time.Second)
	tcpAddr, wsAddr := r.srv.TCPAddr().String(), r.srv.WSAddr().String()
	r.srv.Close()
	r.stderr.waitFor(t, regexp.MustCompile(`(?s)msg=wake reason=reconnect .*msg=reconnect channel=\S+ attempt=2 `), 10*time.Second)
	srv, err := pushserver.New(&pushserver.Config{TCPAddr: tcpAddr, WSAddr: wsAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	r.srv = srv
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, ch := range []string{"m-ws", "m-tcp", "chat"} {
		if err := srv.WaitConnected(ctx, ch); err != nil {
			t.Fatalf("%s did not reconnect: %v\nstderr:\n%s", ch, err, r.stderr)
		}
		// The server sees the hello before the channel takes the transport.
		r.stderr.waitFor(t, regexp.MustCompile(`msg=reconnected channel=`+ch+` `), 5*time.Second)
	}
	if code := r.stop(t); code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^wakes: \d+, .*reconnect [1-9]`).MatchString(r.stdout.String()) {
		t.Errorf("summary lacks the reconnect wakes:\n%s", r.stdout)
	}
	for _, ch := range []string{"m-ws", "m-tcp", "chat"} {
		if !regexp.MustCompile(`msg="channel books" channel=` + ch + ` .* reconnect_attempts=([2-9]|\d\d+) reconnects=1`).MatchString(r.stderr.String()) {
			t.Errorf("%s: books lack at least 2 attempts and 1 reconnect:\n%s", ch, r.stderr)
		}
	}
}
