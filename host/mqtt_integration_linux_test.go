package host

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/slotmgr"
)

// mqttLab is a lab host with the in-process MQTT broker in the server
// namespace and a push task recording topic and payload.
type mqttLab struct {
	*labHost
	broker *testBroker
	ca     string

	mu   sync.Mutex
	msgs []Message
	gotC chan struct{}
}

func newMQTTLab(t *testing.T, useTLS, v6 bool) *mqttLab {
	lh := newLabHost(t, 1, nil)
	ml := &mqttLab{labHost: lh, gotC: make(chan struct{})}
	var ln net.Listener
	addr := lh.lab.Addr.Srv4
	if v6 {
		addr = lh.lab.Addr.Srv6
	}
	if err := lh.lab.Do(netlab.Srv, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var cfg *tls.Config
	if useTLS {
		cfg, ml.ca = testCA(t)
	}
	ml.broker = newTestBroker(t, ln, cfg)
	if err := lh.h.RegisterTask("mqtt", func(ctx context.Context, ti *TaskInstance) {
		for {
			m, ok := ti.Receive()
			if !ok {
				return
			}
			ml.mu.Lock()
			ml.msgs = append(ml.msgs, Message{Data: m.Data, Topic: m.Topic, QoS: m.QoS})
			close(ml.gotC)
			ml.gotC = make(chan struct{})
			ml.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	return ml
}

func (ml *mqttLab) dial(ctx context.Context, keepAlive time.Duration, tap *streamTap) *MQTT {
	ml.t.Helper()
	scheme := "mqtt"
	var tc *TLSConfig
	if ml.ca != "" {
		scheme, tc = "mqtts", &TLSConfig{CAFile: ml.ca}
	}
	c := &DialConfig{
		Endpoint: mustEndpoint(ml.t.(*testing.T), scheme+"://"+ml.broker.addr().String()),
		TLS:      tc,
		MQTT:     MQTTConfig{Version: 5, ClientID: "sbn", KeepAlive: keepAlive, CleanStart: true, Subscriptions: []MQTTSubscription{{"alerts/#", 1}}},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return ml.lab.DialTCP(ctx, netlab.Host, addr)
		},
	}
	tr, err := dialTap(ctx, c, tap)
	if err != nil {
		ml.t.Fatal(err)
	}
	return tr.(*MQTT)
}

func (ml *mqttLab) waitMsg(ctx context.Context, n int) []Message {
	ml.t.Helper()
	for {
		ml.mu.Lock()
		if len(ml.msgs) >= n {
			out := append([]Message(nil), ml.msgs...)
			ml.mu.Unlock()
			return out
		}
		c := ml.gotC
		ml.mu.Unlock()
		select {
		case <-c:
		case <-ctx.Done():
			ml.t.Fatalf("push task got %d messages, want %d; wakes %v", len(ml.msgs), n, ml.h.Stats().Wakes)
		}
	}
}

// TestIntegrationMQTTHardwareSlot: an MQTT channel's hardware slot is
// armed with the mqtt preset: in standby the NIC sends the PINGREQs (at
// 0.75× the 2 s keep-alive), absorbs the broker's PINGRESPs and the host
// stays asleep; a PUBLISH wakes it, the push task gets topic and payload
// byte-exact, the QoS 1 message is acknowledged, and the hand-back's
// PINGRESPs are consumed and counted, never pushed. Both streams are
// byte-exact: the app read exactly what the broker sent, and the broker
// got exactly the host's bytes plus the NIC's PINGREQs.
func TestIntegrationMQTTHardwareSlot(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) { testMQTTHardwareSlot(t, v6) })
	}
}

func testMQTTHardwareSlot(t *testing.T, v6 bool) {
	ml := newMQTTLab(t, false, v6)
	ctx := labDeadline(t)
	tap := &streamTap{}
	tr := ml.dial(ctx, 2*time.Second, tap)
	if got := tr.Conn().RemoteAddr().(*net.TCPAddr).IP.To4() == nil; got != v6 {
		t.Fatalf("connected to %v, want IPv6 %v", tr.Conn().RemoteAddr(), v6)
	}
	ch := ml.channelEvery("mq", 10*time.Second, slotmgr.RequestHardwareSlot, "iot", 0, nil)
	ch.SetPushTask("mqtt")
	if err := ch.UsingTransport(tr); err != nil {
		t.Fatal(err)
	}
	if iv := ch.KeepAliveInterval(); iv != 1500*time.Millisecond {
		t.Errorf("interval %v, want 0.75 × 2 s", iv)
	}
	ml.standby(ctx, ch)
	if l := ch.KeepAliveLevel(); l != LevelApp {
		t.Errorf("keep-alive level %q, want app", l)
	}
	_, writtenBefore := tap.bytes()
	resumes := ml.h.Stats().Resumes
	// Three PINGREQs from the NIC, three PINGRESPs absorbed, no wake.
	if err := ml.broker.wait(ctx.Done(), func(b *testBroker) bool { return b.pingreqs >= 3 }); err != nil {
		t.Fatalf("broker got %d PINGREQs; counters %v", ml.broker.pingreqs, nonZeroCounters(ml.dev.Counters()))
	}
	deadline := time.Now().Add(5 * time.Second)
	for ml.counter("slot1_replies_absorbed") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := ml.h.Stats().Resumes - resumes; n != 0 {
		t.Fatalf("host woke %d times during the NIC's keep-alives (%v)", n, ml.h.Stats().Wakes)
	}
	sentByNIC, absorbedByNIC := ml.counter("slot1_keepalives_sent"), ml.counter("slot1_replies_absorbed")
	if absorbedByNIC < 3 {
		t.Fatalf("slot absorbed %d replies", absorbedByNIC)
	}
	// A publish wakes the host.
	payload := []byte("smoke \x00 detected \xff")
	ml.broker.mu.Lock()
	pings := ml.broker.pingreqs
	ml.broker.mu.Unlock()
	if err := ml.broker.conn(0).publish("alerts/kitchen", payload, 1, 77); err != nil {
		t.Fatal(err)
	}
	msgs := ml.waitMsg(ctx, 1)
	if d := cmp.Diff([]Message{{Data: payload, Topic: "alerts/kitchen", QoS: 1}}, msgs); d != "" {
		t.Errorf("push task (-want +got):\n%s", d)
	}
	if err := ml.broker.wait(ctx.Done(), func(b *testBroker) bool { return len(b.pubacks) == 1 && b.pubacks[0] == 77 }); err != nil {
		t.Fatalf("no PUBACK: %v", err)
	}
	if st := ml.h.Stats(); st.Wake(WakeHardwarePush) != 1 {
		t.Errorf("hardware push wakes %d (%v)", st.Wake(WakeHardwarePush), st.Wakes)
	}
	cs := ch.Stats()
	if cs.Transport.AbsorbedReplies != uint64(pings) || cs.Transport.ConsumedReplies < uint64(pings) || cs.Transport.Messages != 1 {
		t.Errorf("transport stats %+v: want %d PINGRESPs absorbed by the NIC and consumed, 1 message", cs.Transport, pings)
	}
	if sentByNIC < absorbedByNIC {
		t.Errorf("slot sent %d keep-alives, absorbed %d replies", sentByNIC, absorbedByNIC)
	}
	// Byte-exact both ways.
	read, written := tap.bytes()
	sent, recv := ml.broker.conn(0).streams()
	if !bytes.Equal(read, sent) {
		t.Errorf("app read %d bytes, broker sent %d: streams differ\napp %x\nbrk %x", len(read), len(sent), read, sent)
	}
	nicSent, nicAbsorbed := ch.NICBytes()
	if nicAbsorbed != 2*uint64(pings) || nicSent != 2*uint64(pings) {
		t.Errorf("NIC sent %d and absorbed %d bytes, want %d PINGREQs and PINGRESPs (2 bytes each)", nicSent, nicAbsorbed, pings)
	}
	k := len(writtenBefore)
	want := append(append(append([]byte(nil), written[:k]...), bytes.Repeat([]byte{0xc0, 0}, pings)...), written[k:]...)
	if !bytes.Equal(recv, want) {
		t.Errorf("broker's stream is not the host's with the NIC's PINGREQs at the standby\nbrk  %x\nwant %x", recv, want)
	}
}

// TestIntegrationMQTTOverTLS: an mqtts channel's slot guards the TCP
// connection only (probes; the NIC cannot write PINGREQ inside TLS): the
// host wakes on its own to send the PINGREQs inside TLS (counted as
// software keep-alive wakes), the broker keeps the session, and a
// PUBLISH (a TLS record) wakes the host and reaches the push task.
func TestIntegrationMQTTOverTLS(t *testing.T) {
	ml := newMQTTLab(t, true, false)
	ctx := labDeadline(t)
	tr := ml.dial(ctx, 2*time.Second, nil)
	ch := ml.channelEvery("mqs", 10*time.Second, slotmgr.RequestHardwareSlot, "iot", 0, nil)
	ch.SetPushTask("mqtt")
	if err := ch.UsingTransport(tr); err != nil {
		t.Fatal(err)
	}
	ml.standby(ctx, ch)
	if l := ch.KeepAliveLevel(); l != LevelTCP {
		t.Errorf("keep-alive level %q, want tcp", l)
	}
	if err := ml.broker.wait(ctx.Done(), func(b *testBroker) bool { return b.pingreqs >= 3 }); err != nil {
		t.Fatalf("broker got %d PINGREQs; wakes %v", ml.broker.pingreqs, ml.h.Stats().Wakes)
	}
	st := ml.h.Stats()
	if st.Wake(WakeSoftwareKeepAlive) < 3 || st.TLSAppKeepAlives < 3 || hardwareWakes(&st) != 0 {
		t.Errorf("wakes %v, TLS app keep-alives %d: want ≥ 3 software keep-alive wakes, no hardware wake", st.Wakes, st.TLSAppKeepAlives)
	}
	if err := ml.h.Wait(ctx, func(s *Stats) bool { return s.State == Standby && ch.slot != 0 }); err != nil {
		t.Fatal(err)
	}
	if err := ml.broker.conn(0).publish("alerts/door", []byte("open"), 0, 0); err != nil {
		t.Fatal(err)
	}
	msgs := ml.waitMsg(ctx, 1)
	if d := cmp.Diff([]Message{{Data: []byte("open"), Topic: "alerts/door"}}, msgs); d != "" {
		t.Errorf("push task (-want +got):\n%s", d)
	}
	if st := ml.h.Stats(); st.Wake(WakeHardwarePush) != 1 {
		t.Errorf("hardware push wakes %d (%v)", st.Wake(WakeHardwarePush), st.Wakes)
	}
	pingreqs, pingresps, _, _ := tr.MQTTCounts()
	st = ml.h.Stats()
	t.Logf("mqtts, keep-alive 2 s: %d PINGREQs inside TLS by the host on %d software keep-alive wakes (%d TLS app keep-alives), %d hardware wakes", pingreqs, st.Wake(WakeSoftwareKeepAlive), st.TLSAppKeepAlives, hardwareWakes(&st))
	if pingreqs < 3 || pingresps+1 < pingreqs {
		t.Errorf("host sent %d PINGREQs, consumed %d PINGRESPs", pingreqs, pingresps)
	}
	ml.broker.mu.Lock()
	d := ml.broker.disconnects
	ml.broker.mu.Unlock()
	if d != 0 || ch.Status() != slotmgr.HardwareSlotAllocated {
		t.Errorf("session lost: broker disconnects %d, status %v", d, ch.Status())
	}
}
