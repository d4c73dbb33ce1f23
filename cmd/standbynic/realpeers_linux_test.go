package main

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/peers"
)

// The host against software nobody here wrote (issue 11): mosquitto, nginx
// in front of a node-ws server, and a plain TCP service, each started by
// internal/peers in the lab's srv namespace; "standbynic nic" in nic and
// "standbynic host" in host, as a person runs them.

// labDaemons is a NIC daemon and a host daemon on a lab.
type labDaemons struct {
	lab        *netlab.Lab
	nic, host  *daemon
	standbyAt  time.Time // when the host first logged "host in standby"
	dir        string
	configPath string
}

// startLabDaemons starts the NIC daemon with slots hardware slots and the
// host daemon with the config cfg, and waits until the host is in standby.
func startLabDaemons(t *testing.T, lab *netlab.Lab, slots int, cfg string) *labDaemons {
	t.Helper()
	d := &labDaemons{lab: lab, dir: t.TempDir()}
	sock := filepath.Join(d.dir, "nic.sock")
	hostIf, err := lab.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		t.Fatal(err)
	}
	d.nic = startDaemon(t, lab, netlab.NIC, "nic", "--wire", netlab.WireLink, "--host", netlab.HostPortLink,
		"--slots", strconv.Itoa(slots), "--control", sock, "--host-mac", hostIf.HardwareAddr.String(),
		"--host-addr", lab.Addr.Host4.String(), "--wire-rx", "immediate", "--log-level", "debug")
	d.nic.stderr.waitFor(t, regexp.MustCompile(`msg="nic running"`), 20*time.Second)
	d.configPath = filepath.Join(d.dir, "host.json")
	if err := writeFile(d.configPath, cfg); err != nil {
		t.Fatal(err)
	}
	d.host = startDaemon(t, lab, netlab.Host, "host", "--nic", sock, "--config", d.configPath, "--log-level", "debug")
	waitOrExit(t, d.host, regexp.MustCompile(`msg="host in standby"`), 30*time.Second)
	d.standbyAt = time.Now()
	return d
}

// waitOrExit waits until re matches p's stderr; it fails t at the
// timeout or as soon as p exits.
func waitOrExit(t *testing.T, p *daemon, re *regexp.Regexp, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.stderr.mu.Lock()
		ok, ch := re.MatchString(p.stderr.b.String()), p.stderr.changed
		p.stderr.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-p.done:
			if re.MatchString(p.stderr.String()) {
				return
			}
			t.Fatalf("exited (%v) before %s:\n%s", p.err, re, p.stderr)
		case <-deadline.C:
			t.Fatalf("no %s within %v:\n%s", re, timeout, p.stderr)
		}
	}
}

// sleepFor lets the host sleep until dur has passed since it first went to
// standby (the duration under test, not a wait for an event); it fails t
// if the host exits meanwhile.
func (d *labDaemons) sleepFor(t *testing.T, dur time.Duration) {
	t.Helper()
	timer := time.NewTimer(time.Until(d.standbyAt.Add(dur)))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-d.host.done:
		t.Fatalf("host exited while asleep: %v\nstderr:\n%s", d.host.err, d.host.stderr)
	}
}

// stop ends the host (summary on stdout) and then the NIC.
func (d *labDaemons) stop(t *testing.T) {
	t.Helper()
	if code := d.host.stop(t); code != exitOK {
		t.Errorf("host exit %d; stderr:\n%s", code, d.host.stderr)
	}
	if code := d.nic.stop(t); code != exitOK {
		t.Errorf("nic exit %d; stderr:\n%s", code, d.nic.stderr)
	}
}

// books returns the host's "channel books" line of channel id as numbers
// and words (the host must have stopped).
func (d *labDaemons) books(t *testing.T, id string) map[string]string {
	t.Helper()
	m := regexp.MustCompile(`msg="channel books" channel=` + regexp.QuoteMeta(id) + ` (.*)`).FindStringSubmatch(d.host.stderr.String())
	if m == nil {
		t.Fatalf("no books of %s in:\n%s", id, d.host.stderr)
	}
	out := map[string]string{}
	for _, kv := range strings.Fields(m[1]) {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

func num(t *testing.T, b map[string]string, k string) int {
	t.Helper()
	n, err := strconv.Atoi(b[k])
	if err != nil {
		t.Fatalf("books %v: %s is not a number", b, k)
	}
	return n
}

// wakes returns the host's wake count by reason, from its last "wake" log
// line of each reason.
func (d *labDaemons) wakes(reason string) int {
	m := regexp.MustCompile(`msg=wake reason=`+regexp.QuoteMeta(reason)+` count=(\d+)`).FindAllStringSubmatch(d.host.stderr.String(), -1)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

// waitPush waits for the host's push task to log a message on channel id
// and checks it byte for byte (and its topic and QoS for MQTT).
func (d *labDaemons) waitPush(t *testing.T, id, topic string, qos int, payload []byte, timeout time.Duration) {
	t.Helper()
	re := `msg=push channel=` + regexp.QuoteMeta(id)
	if topic != "" {
		re += ` topic=` + regexp.QuoteMeta(topic) + ` qos=` + strconv.Itoa(qos)
	}
	re += fmt.Sprintf(` bytes=%d payload=\S.* hex=%s\n`, len(payload), hex.EncodeToString(payload))
	d.host.stderr.waitFor(t, regexp.MustCompile(re), timeout)
}

// An MQTT keep-alive of 2 s: mosquitto drops a client silent for 1.5× it
// (3 s), so a 16 s sleep is more than 3× the broker's grace. The broker's
// max_keepalive (10 s, its lowest) holds an MQTT 5 client that asks for
// 60 s to 10 s: its grace, 15 s, ends within the sleep too.
const (
	mqttKeepAlive    = 2 * time.Second
	mqttMaxKeepAlive = 10 * time.Second
	mqttSleep        = 16 * time.Second
)

// TestIntegrationHostMQTT: four MQTT channels on mosquitto — 3.1.1 and
// 5.0, QoS 0 and 1, plain and TLS — sleep for 16 s on hardware slots.
// The broker never drops them (its log), the NIC's PINGREQs and the
// PINGRESPs it absorbed match the codec's books and the broker's log
// exactly, an MQTT 5 client that asks for 60 s is held to the broker's
// max_keepalive of 10 s, and a publish from another client wakes the host
// and reaches the push task byte for byte, QoS 1 acknowledged.
func TestIntegrationHostMQTT(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	ca := peers.NewCA(t, t.TempDir())
	broker := peers.StartMosquitto(t, lab, netlab.Srv, peers.MosquittoConfig{TLSPort: 8883, CA: ca, MaxKeepAlive: int(mqttMaxKeepAlive / time.Second)})
	type channel struct {
		id, version string
		tls         bool
		qos         int
		keepalive   time.Duration // asked for in CONNECT
	}
	chans := []channel{
		{"m311q0", "3.1.1", false, 0, mqttKeepAlive},
		{"m5q1", "5", false, 1, time.Minute}, // the broker says 10 s in CONNACK
		{"s311q1", "3.1.1", true, 1, mqttKeepAlive},
		{"s5q0", "5", true, 0, mqttKeepAlive},
	}
	var list []string
	for _, c := range chans {
		ep := "mqtt://" + broker.Addr.String()
		tlsPart := ""
		if c.tls {
			ep = "mqtts://" + broker.TLSAddr.String()
			tlsPart = fmt.Sprintf(`, "tls": {"ca_file": %q, "server_name": "broker.test"}`, ca.CertFile)
		}
		list = append(list, fmt.Sprintf(`{"id": %q, "endpoint": %q, "slot": "hardware"%s,
        "mqtt": {"version": %q, "keepalive": %q, "clean_start": true, "subscriptions": [{"topic": "sbn/%s/#", "qos": %d}]}}`,
			c.id, ep, tlsPart, c.version, c.keepalive.String(), c.id, c.qos))
	}
	cfg := `{
  "policy": {"interval_unit": "1s", "min_interval": 1},
  "host": {"wake_hold": "200ms", "software_wake_hold": "100ms"},
  "apps": [{"name": "iot", "channels": [
      ` + strings.Join(list, ",\n      ") + `
  ]}]
}`
	d := startLabDaemons(t, lab, 4, cfg)
	for _, c := range chans {
		if got := broker.Connected(c.id); len(got) != 1 {
			t.Fatalf("%s: broker connections %q, want one", c.id, got)
		}
	}
	d.host.stderr.waitFor(t, regexp.MustCompile(`msg="mqtt session" channel=m5q1 version=5 client_id=m5q1 keepalive=10s `), time.Second)
	d.sleepFor(t, mqttSleep)

	// Still connected, never dropped, after more than 3× the grace.
	for _, c := range chans {
		if got := broker.Dropped(c.id); len(got) != 0 {
			t.Errorf("%s: the broker dropped the client while the host slept:\n%s", c.id, strings.Join(got, "\n"))
		}
		if got := broker.Connected(c.id); len(got) != 1 {
			t.Errorf("%s: broker connections %q, want one (no reconnect)", c.id, got)
		}
	}
	// A publish from another client wakes the host; the push task gets
	// topic and payload byte for byte.
	for i, c := range chans {
		payload := []byte(fmt.Sprintf("\x00\x01 wake %s \xff\xfe ü %d", c.id, i))
		topic := "sbn/" + c.id + "/alert"
		peers.Publish(t, lab, netlab.Srv, peers.Publication{Addr: broker.Addr, Version: 5, QoS: c.qos, Topic: topic, Payload: payload, ID: "pub-" + c.id})
		d.waitPush(t, c.id, topic, c.qos, payload, 15*time.Second)
		if c.qos == 1 {
			broker.Log.Wait(t, regexp.MustCompile(`Received PUBACK from `+c.id+` \(Mid: \d+, RC:0\)`), 5*time.Second)
		}
	}
	d.stop(t)
	out := d.host.stdout.String()
	t.Logf("host summary:\n%s", out)
	for _, c := range chans {
		b := d.books(t, c.id)
		wantLevel := "app"
		if c.tls {
			wantLevel = "tcp"
		}
		if b["keepalive_level"] != wantLevel || b["protocol"] != "mqtt" {
			t.Errorf("%s: books %v, want protocol mqtt, keep-alive level %s", c.id, b, wantLevel)
		}
		nicReqs, nicResps := num(t, b, "nic_sent")/2, num(t, b, "nic_absorbed")/2
		hostReqs := num(t, b, "host_keepalives")
		// Every PINGRESP the NIC absorbed was consumed by the codec as an
		// absorbed reply (exactly: both count the same hand-backs); the
		// others it read itself.
		if got := num(t, b, "absorbed_replies"); got != nicResps {
			t.Errorf("%s: codec counted %d absorbed PINGRESPs, the NIC absorbed %d", c.id, got, nicResps)
		}
		// The broker saw every PINGREQ, the NIC's and the host's, and
		// answered each; the codec consumed every answer. One PINGREQ may
		// be in flight when the host stops (sent, its PINGRESP unread, or
		// sent by the NIC after the last hand-back).
		broker.Log.Wait(t, regexp.MustCompile(fmt.Sprintf(`(?s)(Received PINGREQ from %s\n.*){%d}`, c.id, nicReqs+hostReqs)), 2*time.Second)
		if n := broker.Received("PINGREQ", c.id); n < nicReqs+hostReqs || n > nicReqs+hostReqs+1 {
			t.Errorf("%s: broker received %d PINGREQs, the NIC sent %d and the host %d", c.id, n, nicReqs, hostReqs)
		}
		sent := broker.Log.Count(regexp.MustCompile(`Sending PINGRESP to ` + c.id + `$`))
		if got := num(t, b, "consumed_replies"); got > sent || got < sent-1 {
			t.Errorf("%s: codec consumed %d PINGRESPs, the broker sent %d", c.id, got, sent)
		}
		// The session was kept alive through the sleep, by the NIC on the
		// plain channels whenever the host slept (the TLS channels wake
		// the host every second, and the host sends the keep-alives that
		// fall due while it is awake itself).
		if ka := min(c.keepalive, mqttMaxKeepAlive); nicReqs+hostReqs < int(mqttSleep/ka) {
			t.Errorf("%s: %d PINGREQs (NIC %d, host %d) in %v asleep with a %v keep-alive", c.id, nicReqs+hostReqs, nicReqs, hostReqs, mqttSleep, ka)
		}
		if !c.tls && c.keepalive == mqttKeepAlive && nicReqs < 3 {
			t.Errorf("%s: the NIC sent %d PINGREQs in %v; want it to keep the session while the host sleeps", c.id, nicReqs, mqttSleep)
		}
		if c.tls && nicReqs != 0 {
			t.Errorf("%s: the NIC wrote %d PINGREQs into a TLS stream", c.id, nicReqs)
		}
		t.Logf("%s: PINGREQ by the NIC %d, by the host %d; PINGRESP absorbed by the NIC %d, consumed %d", c.id, nicReqs, hostReqs, nicResps, num(t, b, "consumed_replies"))
	}
	t.Logf("wakes: hardware-push %d, software-keep-alive %d", d.wakes("hardware-push"), d.wakes("software-keep-alive"))
}

// TestIntegrationHostWebSocket: a node-ws server behind nginx, whose
// proxy_read_timeout (2 s) is far shorter than the sleep (7 s). On ws://
// the NIC's Pings keep the proxied connection alive and a push after the
// sleep arrives byte for byte; on wss:// (nginx's TLS) the connection
// survives too (the server's Pings every 1.5 s keep nginx's upstream
// side busy; the host's own Pings inside TLS are due every 30 s only), and
// each Ping the server sends inside TLS wakes the host.
func TestIntegrationHostWebSocket(t *testing.T) {
	const (
		readTimeout = 2 * time.Second
		sleep       = 7 * time.Second
		serverPing  = 1500 * time.Millisecond
	)
	lab := netlab.NewForTest(t, nil)
	ca := peers.NewCA(t, t.TempDir())
	node := peers.StartNodeWS(t, lab, netlab.Srv, netip.AddrPortFrom(lab.Addr.Srv4, 9000))
	ngx := peers.StartNginx(t, lab, netlab.Srv, peers.NginxConfig{TLSPort: 8443, CA: ca, Upstream: node.Addr, ReadTimeout: readTimeout})
	cfg := fmt.Sprintf(`{
  "policy": {"interval_unit": "1s", "min_interval": 1},
  "host": {"wake_hold": "200ms", "software_wake_hold": "100ms"},
  "apps": [{"name": "web", "channels": [
      {"id": "ws", "endpoint": "ws://%s/ws", "slot": "hardware", "interval": "1s"},
      {"id": "wss", "endpoint": "wss://%s/ws?ping=%d", "slot": "hardware", "interval": "30s",
       "tls": {"ca_file": %q, "server_name": "proxy.test"}}
  ]}]
}`, ngx.Addr, ngx.TLSAddr, serverPing.Milliseconds(), ca.CertFile)
	d := startLabDaemons(t, lab, 2, cfg)
	node.Proc.WaitOutput(t, regexp.MustCompile(`(?m)^open 2 /ws\?ping=1500$`), 5*time.Second)
	pingsBefore, wakesBefore := node.Count("sent-ping", 2), d.wakes("hardware-push")
	d.sleepFor(t, sleep)
	pingsAsleep, wakesAsleep := node.Count("sent-ping", 2)-pingsBefore, d.wakes("hardware-push")-wakesBefore

	if n := node.Count("close", 0); n != 0 {
		t.Fatalf("node saw %d connections close while the host slept; nginx:\n%s\nnode:\n%s", n, ngx.ErrorLog, node.Proc.Output())
	}
	if strings.Contains(ngx.ErrorLog.String(), "timed out") {
		t.Fatalf("nginx timed a connection out:\n%s", ngx.ErrorLog)
	}
	// The Pings that kept ws alive came from the NIC (the host slept).
	if n := node.Count("ping", 1); n < int(sleep/readTimeout) {
		t.Errorf("node got %d Pings on ws, want at least %d in %v", n, int(sleep/readTimeout), sleep)
	}
	// A push after the sleep, byte for byte, on each.
	for i, id := range []string{"ws", "wss"} {
		payload := []byte("after the sleep \x00\x7f ✓ " + id)
		node.Push(t, i+1, payload, i == 1)
		// The ws push wakes the host; the wss push can reach its socket
		// while the host is already entering standby again, which keeps
		// wss on a software slot for that sleep ("socket not idle: N
		// unread"), and then it is delivered at the host's next wake for
		// wss: within its 30 s interval.
		d.waitPush(t, id, "", 0, payload, 35*time.Second)
	}
	d.stop(t)
	t.Logf("host summary:\n%s", d.host.stdout)
	ws, wss := d.books(t, "ws"), d.books(t, "wss")
	if ws["keepalive_level"] != "app" || wss["keepalive_level"] != "tcp" {
		t.Errorf("keep-alive levels ws %s, wss %s; want app and tcp", ws["keepalive_level"], wss["keepalive_level"])
	}
	if got, want := num(t, ws, "absorbed_replies"), num(t, ws, "nic_absorbed"); want > 0 && got == 0 {
		t.Errorf("ws: the NIC absorbed %d bytes of Pongs, the codec counted %d absorbed replies", want, got)
	}
	// Each server Ping inside TLS is a TLS record the NIC cannot read: it
	// wakes the host (allow one at either edge of the window).
	t.Logf("wss: node sent %d Pings in %v asleep, the host woke %d times for pushes (ws: %d Pings from the NIC and the host, %d Pongs absorbed by the NIC)",
		pingsAsleep, sleep, wakesAsleep, node.Count("ping", 1), num(t, ws, "absorbed_replies"))
	if pingsAsleep < int(sleep/serverPing)-1 || wakesAsleep < pingsAsleep-1 || wakesAsleep > pingsAsleep+1 {
		t.Errorf("wss: %d server Pings asleep, %d push wakes; want one wake per Ping", pingsAsleep, wakesAsleep)
	}
}

// TestIntegrationHostRaw: raw channels, over IPv4 and IPv6, to a plain
// TCP service that closes connections idle for 3 s; the NIC sends the
// app's keep-alive bytes ("PING\r\n", answered "PONG\r\n") for 7 s while
// the host sleeps, and a push of arbitrary bytes after it reaches the push
// task byte for byte.
func TestIntegrationHostRaw(t *testing.T) {
	lab := netlab.NewForTest(t, nil)
	rc := peers.RawConfig{Request: []byte("PING\r\n"), Reply: []byte("PONG\r\n"), IdleTimeout: 3 * time.Second}
	svcs := map[string]*peers.RawService{}
	rc.Addr = netip.AddrPortFrom(lab.Addr.Srv4, 0)
	svcs["raw"] = peers.StartRawService(t, lab, netlab.Srv, rc)
	rc.Addr = netip.AddrPortFrom(lab.Addr.Srv6, 0)
	svcs["raw6"] = peers.StartRawService(t, lab, netlab.Srv, rc)
	cfg := fmt.Sprintf(`{
  "policy": {"interval_unit": "1s", "min_interval": 1},
  "host": {"wake_hold": "200ms"},
  "apps": [{"name": "legacy", "channels": [
      {"id": "raw", "endpoint": "tcp://%s", "protocol": "raw", "slot": "hardware", "interval": "1s",
       "keepalive": {"kind": "payload", "request": {"text": "PING\r\n"}, "reply": {"hex": "504f4e470d0a"}}},
      {"id": "raw6", "endpoint": "tcp://%s", "protocol": "raw", "slot": "hardware", "interval": "1s",
       "keepalive": {"kind": "payload", "request": {"hex": "50494e470d0a"}, "reply": {"text": "PONG\r\n"}, "reply_mask": {"hex": "ffffffff0000"}}}
  ]}]
}`, svcs["raw"].Addr, svcs["raw6"].Addr)
	d := startLabDaemons(t, lab, 2, cfg)
	d.sleepFor(t, 7*time.Second)
	kas := map[string]int{}
	var conns []*peers.RawConn
	for _, id := range []string{"raw", "raw6"} {
		cs := svcs[id].Conns()
		if len(cs) != 1 {
			t.Fatalf("%s: %d connections, want 1", id, len(cs))
		}
		data, n, end := cs[0].Stats()
		if end != "" || len(data) != 0 || n < 5 {
			t.Fatalf("%s service: ended %q, data %q, %d keep-alives; want open, no data, at least 5 keep-alives", id, end, data, n)
		}
		kas[id] = n
		conns = append(conns, cs[0])
	}
	// Both pushes while the host sleeps: the first wakes it. (A push
	// written while the host is awake can share a read with the reply to
	// the host's own keep-alive queued behind it; the raw codec strips an
	// expected reply only at the front of a read, so the push task would
	// get the reply's bytes too.)
	for i, id := range []string{"raw", "raw6"} {
		if err := conns[i].Push([]byte("\x00raw push\r\n\xff " + id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"raw", "raw6"} {
		d.waitPush(t, id, "", 0, []byte("\x00raw push\r\n\xff "+id), 10*time.Second)
	}
	d.stop(t)
	for _, id := range []string{"raw", "raw6"} {
		b := d.books(t, id)
		t.Logf("%s: %d keep-alives answered by the service; books %v", id, kas[id], b)
		if b["keepalive_level"] != "app" || num(t, b, "nic_sent") < 5*len("PING\r\n") || num(t, b, "absorbed_replies") != num(t, b, "nic_absorbed")/len("PONG\r\n") {
			t.Errorf("%s books %v: want level app, the NIC's PINGs sent and every absorbed PONG consumed", id, b)
		}
	}
}
