package offload

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSpecValidate(t *testing.T) {
	long := make([]byte, MaxPayload+1)
	cases := []struct {
		name string
		mod  func(*Spec)
		want string // substring of the error; "" = valid
	}{
		{"probe ok", func(*Spec) {}, ""},
		{"kind zero", func(s *Spec) { s.Kind = 0 }, "Kind"},
		{"interval short", func(s *Spec) { s.Interval = 999 * time.Millisecond }, "Interval: 999ms outside 1s..24h0m0s"},
		{"interval long", func(s *Spec) { s.Interval = 25 * time.Hour }, "Interval"},
		{"first due ok", func(s *Spec) { s.FirstDue = 3 * time.Second }, ""},
		{"first due at interval", func(s *Spec) { s.FirstDue = 10 * time.Second }, ""},
		{"first due above interval", func(s *Spec) { s.FirstDue = 10*time.Second + 1 }, "FirstDue: 10.000000001s outside 0..Interval (10s)"},
		{"first due negative", func(s *Spec) { s.FirstDue = -time.Second }, "FirstDue: -1s outside 0..Interval (10s)"},
		{"retry interval above interval", func(s *Spec) { s.RetryInterval = 11 * time.Second }, "RetryInterval: 11s outside 100ms..Interval (10s)"},
		{"retry interval short", func(s *Spec) { s.RetryInterval = time.Millisecond }, "RetryInterval"},
		{"retry count", func(s *Spec) { s.RetryCount = 17 }, "RetryCount: 17 outside 0..16"},
		{"retry count negative", func(s *Spec) { s.RetryCount = -1 }, "RetryCount"},
		{"tolerance", func(s *Spec) { s.Tolerance = 6 * time.Second }, "Tolerance: 6s outside 0..Interval/2 (5s)"},
		{"probe form", func(s *Spec) { s.Probe = 2 }, "Probe"},
		{"payload on probe", func(s *Spec) { s.Payload.Request = []byte{1} }, "Payload: set for kind tcp-probe"},
		{"payload ok", func(s *Spec) { *s = mqttSpec() }, ""},
		{"payload empty", func(s *Spec) { *s = mqttSpec(); s.Payload.Request = nil }, "Payload.Request: 0 bytes outside 1..512"},
		{"payload long", func(s *Spec) { *s = mqttSpec(); s.Payload.Request = long }, "Payload.Request: 513 bytes"},
		{"reply long", func(s *Spec) { *s = mqttSpec(); s.Payload.Reply = long }, "Payload.Reply: 513 bytes"},
		{"mask length", func(s *Spec) { *s = mqttSpec(); s.Payload.ReplyMask = []byte{0xff} }, "Payload.ReplyMask: 1 bytes, want 0 or len(Reply) = 2"},
		{"ws ok", func(s *Spec) { *s = wsSpec(WSPing, []byte("x")) }, ""},
		{"ws mode", func(s *Spec) { *s = wsSpec(0, nil) }, "WebSocket.Mode"},
		{"ws control payload", func(s *Spec) { *s = wsSpec(WSPing, make([]byte, 126)) }, "WebSocket.Payload: 126 bytes above 125"},
		{"ws responder payload", func(s *Spec) { *s = wsSpec(WSResponder, []byte{1}) }, "WebSocket.Payload: set for mode responder"},
		{"ws on payload kind", func(s *Spec) { *s = mqttSpec(); s.WebSocket.Mode = WSPing }, "WebSocket: set for kind payload"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := probeSpec()
			c.mod(&s)
			err := s.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want an ErrInvalidSpec containing %q", err, c.want)
			}
		})
	}
}

func TestParseSpec(t *testing.T) {
	cases := []struct {
		name, in string
		want     Spec
		err      string
	}{
		{"mqtt", `{"kind":"payload","interval":"10s","retry_interval":"2s","retry_count":2,"payload":{"request":"c000","reply":"d000"}}`, mqttSpec(), ""},
		{"probe one byte", `{"kind":"tcp-probe","interval":"10s","retry_interval":"2s","retry_count":2,"probe":"one-byte","tolerance":"1s"}`,
			func() Spec { s := probeSpec(); s.Probe = ProbeOneByte; s.Tolerance = time.Second; return s }(), ""},
		{"first due", `{"kind":"tcp-probe","interval":"10s","first_due":"2.5s","retry_interval":"2s","retry_count":2}`,
			func() Spec { s := probeSpec(); s.FirstDue = 2500 * time.Millisecond; return s }(), ""},
		{"first due above interval", `{"kind":"tcp-probe","interval":"10s","first_due":"11s","retry_interval":"2s","retry_count":2}`, Spec{}, "FirstDue: 11s outside 0..Interval (10s)"},
		{"bad first due", `{"kind":"tcp-probe","interval":"10s","first_due":"soon","retry_interval":"2s"}`, Spec{}, `first_due: "soon" is not a duration`},
		{"ws ping", `{"kind":"websocket","interval":"10s","retry_interval":"2s","retry_count":2,"websocket":{"mode":"ping","payload":"6869"}}`, wsSpec(WSPing, []byte("hi")), ""},
		{"ws responder", `{"kind":"websocket","interval":"10s","retry_interval":"2s","retry_count":2,"websocket":{"mode":"responder"}}`, wsSpec(WSResponder, nil), ""},
		{"unknown field", `{"kind":"tcp-probe","interval":"10s","retry_interval":"2s","retry_count":2,"extra":1}`, Spec{}, `unknown field "extra"`},
		{"trailing", `{"kind":"tcp-probe","interval":"10s","retry_interval":"2s","retry_count":2} {}`, Spec{}, "data after"},
		{"bad kind", `{"kind":"udp","interval":"10s","retry_interval":"2s"}`, Spec{}, `kind: "udp" is not one of`},
		{"bad duration", `{"kind":"tcp-probe","interval":"ten","retry_interval":"2s"}`, Spec{}, `interval: "ten" is not a duration`},
		{"missing interval", `{"kind":"tcp-probe","retry_interval":"2s"}`, Spec{}, "interval: missing"},
		{"bad hex", `{"kind":"payload","interval":"10s","retry_interval":"2s","payload":{"request":"zz","reply":"00"}}`, Spec{}, "payload.request"},
		{"invalid after decode", `{"kind":"tcp-probe","interval":"10s","retry_interval":"2s","retry_count":99}`, Spec{}, "RetryCount: 99"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseSpec([]byte(c.in))
			if c.err != "" {
				if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("ParseSpec() error = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("ParseSpec (-want +got):\n%s", diff)
			}
			// Round trip.
			b, err := got.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseSpec(b)
			if err != nil {
				t.Fatalf("ParseSpec(MarshalJSON) = %v for %s", err, b)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("round trip (-first +second):\n%s", diff)
			}
		})
	}
}

func TestSnapshotValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Snapshot)
		want string
	}{
		{"ok v4", func(*Snapshot) {}, ""},
		{"ok v6", func(s *Snapshot) { *s = snap6() }, ""},
		{"local MAC", func(s *Snapshot) { s.LocalMAC = [6]byte{} }, "LocalMAC: zero"},
		{"remote multicast", func(s *Snapshot) { s.RemoteMAC[0] = 1 }, "RemoteMAC"},
		{"vlan", func(s *Snapshot) { s.VLAN = 4095 }, "VLAN: 4095 above 4094"},
		{"no local", func(s *Snapshot) { s.Local = netip.AddrPort{} }, "Local: no address"},
		{"port 0", func(s *Snapshot) { s.Remote = netip.MustParseAddrPort("198.18.0.1:0") }, "Remote: port 0"},
		{"mixed family", func(s *Snapshot) { s.Remote = netip.MustParseAddrPort("[2001:db8::1]:443") }, "Remote: [2001:db8::1]:443 is not of the family"},
		{"mapped", func(s *Snapshot) { s.Remote = netip.MustParseAddrPort("[::ffff:198.18.0.1]:443") }, "IPv4-mapped"},
		{"wscale", func(s *Snapshot) { s.SndWScale = 15 }, "SndWScale: 15 above 14"},
		{"rcv window", func(s *Snapshot) { s.RcvWScale = 0; s.RcvWnd = 70000 }, "RcvWnd: 70000 above 65535"},
		{"ts rate", func(s *Snapshot) { s.Timestamps.Rate = 0 }, "Timestamps.Rate: 0 Hz outside 1..1000000"},
		{"ts rate unused", func(s *Snapshot) { s.Timestamps = Timestamps{} }, ""},
		{"ttl", func(s *Snapshot) { s.TTL = 0 }, "TTL: zero"},
		{"mss", func(s *Snapshot) { s.MSS = 40 }, "MSS: 40 below 88"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := snap4()
			c.mod(&s)
			err := s.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidSnapshot) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want an ErrInvalidSnapshot containing %q", err, c.want)
			}
		})
	}
}

func TestArmErrors(t *testing.T) {
	e, _ := newTest(t, &Config{MaxSlots: 1})
	if err := e.Arm(1, snap4(), probeSpec()); err != nil {
		t.Fatal(err)
	}
	if err := e.Arm(1, snap4(), probeSpec()); !errors.Is(err, ErrSlotInUse) {
		t.Errorf("re-Arm: %v, want ErrSlotInUse", err)
	}
	if err := e.Arm(2, snap4(), probeSpec()); !errors.Is(err, ErrNoSlot) {
		t.Errorf("Arm beyond MaxSlots: %v, want ErrNoSlot", err)
	}
	if err := e.Arm(3, Snapshot{}, probeSpec()); !errors.Is(err, ErrInvalidSnapshot) || !strings.Contains(err.Error(), "arm slot 3") {
		t.Errorf("Arm(bad snapshot): %v", err)
	}
	snap := snap4()
	snap.MSS = 100
	s := mqttSpec()
	s.Payload.Request = make([]byte, 200)
	e2, _ := newTest(t, nil)
	if err := e2.Arm(1, snap, s); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "above MSS 100") {
		t.Errorf("Arm(payload above MSS): %v", err)
	}
}
