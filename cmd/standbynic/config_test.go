package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/internal/peers"
	"github.com/standbynic/standbynic/offload"
)

func ptr[T any](v T) *T { return &v }

func TestLoadHostConfigExample(t *testing.T) {
	data, err := os.ReadFile("testdata/host.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadHostConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	want := &hostConfig{
		Server: serverConfig{TCP: "198.18.0.1:7000", WebSocket: "ws://198.18.0.1:7001/ws"},
		Policy: policyConfig{IntervalUnit: duration(time.Second), MinInterval: 15, MaxInterval: 3600, AppHardwareQuota: 2},
		Host: runtimeConfig{ResumeLatency: duration(50 * time.Millisecond), PushCheckInterval: duration(20 * time.Second),
			WakeHold: duration(time.Second), Power: powerConfig{AwakeMW: 1000, StandbyMW: 15, ResumeMJ: 200}},
		Apps: []appConfig{
			{Name: "mail", Priority: 2, Channels: []channelConfig{
				{ID: "mail-push", Transport: "websocket", Slot: "hardware", Interval: duration(30 * time.Second)},
				{ID: "mail-sync", Transport: "tcp", Slot: "software", Interval: duration(time.Minute), KeepAlive: &keepAliveConfig{Line: ptr("noop")}},
			}},
			{Name: "chat", Channels: []channelConfig{
				{ID: "chat", Transport: "tcp", Slot: "hardware", Interval: duration(20 * time.Second), Priority: ptr(5)},
			}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("loadHostConfig (-want +got):\n%s", diff)
	}
	// The docs' example is this file: docs/cli.md must hold it verbatim.
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), string(data)) {
		t.Error("docs/cli.md does not contain testdata/host.json verbatim")
	}
}

// minimal is a valid config that the table below breaks one field at a time.
const minimal = `{"server": {"tcp": "127.0.0.1:7000", "websocket": "ws://127.0.0.1:7001/ws"},
 "policy": {"interval_unit": "1s"},
 "apps": [{"name": "a", "channels": [{"id": "c0", "transport": "tcp", "interval": "30s"}]},
          {"name": "b", "channels": [%s]}]}`

func TestLoadHostConfigErrors(t *testing.T) {
	ch := func(s string) string { return strings.Replace(minimal, "%s", s, 1) }
	good := `{"id": "c1", "transport": "websocket", "interval": "30s"}`
	tests := []struct {
		name string
		data string
		want []string // substrings of the error, in order
	}{
		{"interval below minimum", ch(`{"id": "c1", "transport": "tcp", "interval": "5s"}`),
			[]string{"config: apps[1].channels[0].interval: 5s below minimum 15s"}},
		{"interval above maximum", ch(`{"id": "c1", "transport": "tcp", "interval": "30m"}`),
			[]string{"config: apps[1].channels[0].interval: 30m above maximum 23m59s"}},
		{"interval missing", ch(`{"id": "c1", "transport": "tcp"}`), []string{"apps[1].channels[0].interval: missing"}},
		{"interval not a duration", ch(`{"id": "c1", "transport": "tcp", "interval": "5 minutes"}`),
			[]string{`config: apps[1].channels[0].interval: "5 minutes" is not a duration`}},
		{"interval a number", ch(`{"id": "c1", "transport": "tcp", "interval": 30}`),
			[]string{`config: apps[1].channels[0].interval: want a duration string like "30s"`}},
		{"unknown field", ch(`{"id": "c1", "transport": "tcp", "interval": "30s", "intervall": "30s"}`),
			[]string{"config: apps[1].channels[0].intervall: unknown field"}},
		{"field in the wrong case", ch(`{"ID": "c1", "transport": "tcp", "interval": "30s"}`),
			[]string{"config: apps[1].channels[0].ID: unknown field"}},
		{"unknown top-level field", `{"servers": {}}`, []string{"config: servers: unknown field"}},
		{"wrong type", ch(`{"id": 7, "transport": "tcp", "interval": "30s"}`), []string{"config: apps[1].channels[0].id: want a string"}},
		{"priority not an integer", ch(`{"id": "c1", "transport": "tcp", "interval": "30s", "priority": 1.5}`),
			[]string{"config: apps[1].channels[0].priority: 1.5 is not an integer"}},
		{"priority out of range", ch(`{"id": "c1", "transport": "tcp", "interval": "30s", "priority": 2000000}`),
			[]string{"config: apps[1].channels[0].priority: 2000000 out of range -1048576–1048576"}},
		{"bad transport", ch(`{"id": "c1", "transport": "udp", "interval": "30s"}`),
			[]string{`config: apps[1].channels[0].transport: "udp": want tcp or websocket`}},
		{"no transport nor endpoint", ch(`{"id": "c1", "interval": "30s"}`),
			[]string{`config: apps[1].channels[0].transport: missing: an endpoint, or tcp or websocket`}},
		{"transport against endpoint", ch(`{"id": "c1", "transport": "tcp", "endpoint": "ws://198.18.0.1/ws", "interval": "30s"}`),
			[]string{`config: apps[1].channels[0].transport: "tcp" does not match the endpoint's ws://`}},
		{"bad endpoint scheme", ch(`{"id": "c1", "endpoint": "udp://198.18.0.1:5", "interval": "30s"}`),
			[]string{`config: apps[1].channels[0].endpoint: scheme "udp": want tcp, ws, wss, mqtt or mqtts`}},
		{"endpoint without port", ch(`{"id": "c1", "endpoint": "tcp://198.18.0.1", "interval": "30s"}`),
			[]string{`config: apps[1].channels[0].endpoint: "tcp://198.18.0.1": tcp needs a port`}},
		{"endpoint bad IPv6", ch(`{"id": "c1", "endpoint": "mqtt://[2001:2::1%eth0]:1883", "interval": "30s"}`),
			[]string{`config: apps[1].channels[0].endpoint: `}},
		{"unknown protocol", ch(`{"id": "c1", "endpoint": "tcp://198.18.0.1:5", "protocol": "http", "interval": "30s"}`),
			[]string{`config: apps[1].channels[0].protocol: protocol "http": want line, raw, websocket or mqtt`}},
		{"protocol against scheme", ch(`{"id": "c1", "endpoint": "tcp://198.18.0.1:5", "protocol": "mqtt", "interval": "30s"}`),
			[]string{`config: apps[1].channels[0].protocol: mqtt does not run on tcp://`}},
		{"unknown keep-alive kind", ch(`{"id": "c1", "endpoint": "tcp://198.18.0.1:5", "protocol": "raw", "interval": "30s", "keepalive": {"kind": "icmp"}}`),
			[]string{`config: apps[1].channels[0].keepalive.kind: keep-alive kind "icmp": want tcp-probe, websocket, payload or mqtt`}},
		{"keep-alive a number", ch(`{"id": "c1", "transport": "tcp", "interval": "30s", "keepalive": 5}`),
			[]string{`config: apps[1].channels[0].keepalive: want a string (the keep-alive line) or an object`}},
		{"keep-alive unknown field", ch(`{"id": "c1", "transport": "tcp", "interval": "30s", "keepalive": {"knid": "mqtt"}}`),
			[]string{`config: apps[1].channels[0].keepalive.knid: unknown field`}},
		{"bad probe form", ch(`{"id": "c1", "transport": "tcp", "interval": "30s", "keepalive": {"kind": "tcp-probe", "probe": "two-byte"}}`),
			[]string{`config: apps[1].channels[0].keepalive.probe: "two-byte": want zero-byte or one-byte`}},
		{"bad ws mode", ch(`{"id": "c1", "transport": "websocket", "interval": "30s", "keepalive": {"ws_mode": "pang"}}`),
			[]string{`config: apps[1].channels[0].keepalive.ws_mode: "pang": want ping, pong or responder`}},
		{"bad hex", ch(`{"id": "c1", "endpoint": "tcp://198.18.0.1:5", "protocol": "raw", "interval": "30s",
			"keepalive": {"kind": "payload", "request": {"hex": "50zz"}, "reply": {"text": "x"}}}`),
			[]string{`config: apps[1].channels[0].keepalive.request: hex "50zz": 'z' is not a hex digit`}},
		{"odd hex", ch(`{"id": "c1", "endpoint": "tcp://198.18.0.1:5", "protocol": "raw", "interval": "30s",
			"keepalive": {"kind": "payload", "request": {"hex": "505"}, "reply": {"text": "x"}}}`),
			[]string{`config: apps[1].channels[0].keepalive.request: hex "505": odd number of digits`}},
		{"text and hex", ch(`{"id": "c1", "endpoint": "tcp://198.18.0.1:5", "protocol": "raw", "interval": "30s",
			"keepalive": {"kind": "payload", "request": {"hex": "50", "text": "P"}, "reply": {"text": "x"}}}`),
			[]string{`config: apps[1].channels[0].keepalive.request: both text and hex: want one`}},
		{"payload without reply", ch(`{"id": "c1", "endpoint": "tcp://198.18.0.1:5", "protocol": "raw", "interval": "30s",
			"keepalive": {"kind": "payload", "request": {"text": "PING"}}}`),
			[]string{`config: apps[1].channels[0].keepalive.reply: 0 bytes outside 1..`}},
		{"reply mask length", ch(`{"id": "c1", "endpoint": "tcp://198.18.0.1:5", "protocol": "raw", "interval": "30s",
			"keepalive": {"kind": "payload", "request": {"text": "PING"}, "reply": {"text": "PONG"}, "reply_mask": {"hex": "ffff"}}}`),
			[]string{`config: apps[1].channels[0].keepalive.reply_mask: 2 bytes, reply has 4`}},
		{"raw keep-alive on a line channel", ch(`{"id": "c1", "transport": "tcp", "interval": "30s", "raw_keepalive": {"text": "x"}}`),
			[]string{`config: apps[1].channels[0].raw_keepalive: only for protocol raw, not line`}},
		{"empty raw keep-alive", ch(`{"id": "c1", "endpoint": "tcp://198.18.0.1:5", "protocol": "raw", "interval": "30s", "raw_keepalive": {"hex": ""}}`),
			[]string{`config: apps[1].channels[0].raw_keepalive: empty hex`}},
		{"tls on plain", ch(`{"id": "c1", "endpoint": "mqtt://198.18.0.1", "interval": "30s", "tls": {}}`),
			[]string{`config: apps[1].channels[0].tls: only for wss:// and mqtts:// endpoints, not mqtt://`}},
		{"tls missing CA file", ch(`{"id": "c1", "endpoint": "mqtts://198.18.0.1", "interval": "30s", "tls": {"ca_file": "/nonexistent/ca.pem"}}`),
			[]string{`config: apps[1].channels[0].tls.ca_file: open /nonexistent/ca.pem: no such file or directory`}},
		{"tls CA file without certificates", ch(`{"id": "c1", "endpoint": "wss://198.18.0.1/ws", "interval": "30s", "tls": {"ca_file": "testdata/host.json"}}`),
			[]string{`config: apps[1].channels[0].tls.ca_file: testdata/host.json: no PEM certificate in it`}},
		{"tls version", ch(`{"id": "c1", "endpoint": "mqtts://198.18.0.1", "interval": "30s", "tls": {"min_version": "1.1"}}`),
			[]string{`config: apps[1].channels[0].tls.min_version: "1.1": want 1.2 or 1.3`}},
		{"mqtt on websocket", ch(`{"id": "c1", "transport": "websocket", "interval": "30s", "mqtt": {"version": "5"}}`),
			[]string{`config: apps[1].channels[0].mqtt: only for protocol mqtt, not websocket`}},
		{"mqtt version", ch(`{"id": "c1", "endpoint": "mqtt://198.18.0.1", "mqtt": {"version": "3.1"}}`),
			[]string{`config: apps[1].channels[0].mqtt.version: "3.1": want 3.1.1 or 5`}},
		{"mqtt keep-alive fraction", ch(`{"id": "c1", "endpoint": "mqtt://198.18.0.1", "mqtt": {"keepalive": "1500ms"}}`),
			[]string{`config: apps[1].channels[0].mqtt.keepalive: 1.5s: want whole seconds 1s–18h12m15s`}},
		{"mqtt keep-alive too long", ch(`{"id": "c1", "endpoint": "mqtt://198.18.0.1", "interval": "30s", "mqtt": {"keepalive": "20h"}}`),
			[]string{`config: apps[1].channels[0].mqtt.keepalive: 20h0m0s: want whole seconds`}},
		{"mqtt bad topic", ch(`{"id": "c1", "endpoint": "mqtt://198.18.0.1", "interval": "30s", "mqtt": {"subscriptions": [{"topic": "a/#"}, {"topic": "a/#/b", "qos": 1}]}}`),
			[]string{`config: apps[1].channels[0].mqtt.subscriptions[1].topic: "a/#/b": '#' must be the whole last level`}},
		{"mqtt empty topic", ch(`{"id": "c1", "endpoint": "mqtt://198.18.0.1", "interval": "30s", "mqtt": {"subscriptions": [{"topic": ""}]}}`),
			[]string{`config: apps[1].channels[0].mqtt.subscriptions[0].topic: empty`}},
		{"mqtt plus inside a level", ch(`{"id": "c1", "endpoint": "mqtt://198.18.0.1", "interval": "30s", "mqtt": {"subscriptions": [{"topic": "a+/b"}]}}`),
			[]string{`config: apps[1].channels[0].mqtt.subscriptions[0].topic: "a+/b": '+' must be a whole level`}},
		{"mqtt qos 2", ch(`{"id": "c1", "endpoint": "mqtt://198.18.0.1", "interval": "30s", "mqtt": {"subscriptions": [{"topic": "a", "qos": 2}]}}`),
			[]string{`config: apps[1].channels[0].mqtt.subscriptions[0].qos: 2: want 0 or 1`}},
		{"mqtt subscription field", ch(`{"id": "c1", "endpoint": "mqtt://198.18.0.1", "interval": "30s", "mqtt": {"subscriptions": [{"filter": "a"}]}}`),
			[]string{`config: apps[1].channels[0].mqtt.subscriptions[0].filter: unknown field`}},
		{"mqtt keep-alive kind on raw", ch(`{"id": "c1", "endpoint": "tcp://198.18.0.1:5", "protocol": "raw", "interval": "30s", "keepalive": {"kind": "mqtt"}}`),
			[]string{`config: apps[1].channels[0].keepalive.kind: mqtt needs protocol mqtt, not raw`}},
		{"bad slot", ch(`{"id": "c1", "transport": "tcp", "slot": "firmware", "interval": "30s"}`),
			[]string{`config: apps[1].channels[0].slot: "firmware": want hardware or software`}},
		{"duplicate channel", ch(`{"id": "c0", "transport": "tcp", "interval": "30s"}`),
			[]string{`config: apps[1].channels[0].id: "c0" already used by apps[0].channels[0]`}},
		{"channel id too long", ch(`{"id": "` + strings.Repeat("x", 65) + `", "transport": "tcp", "interval": "30s"}`),
			[]string{"config: apps[1].channels[0].id: channel name longer than 64 characters"}},
		{"channel id with a space", ch(`{"id": "a b", "transport": "tcp", "interval": "30s"}`),
			[]string{"config: apps[1].channels[0].id: channel name contains white space"}},
		{"keepalive line on websocket", ch(`{"id": "c1", "transport": "websocket", "interval": "30s", "keepalive": "x"}`),
			[]string{"config: apps[1].channels[0].keepalive: a string is the keep-alive line of a line channel (tcp); protocol websocket takes an object"}},
		{"keepalive with newline", ch(`{"id": "c1", "transport": "tcp", "interval": "30s", "keepalive": "a\nb"}`),
			[]string{"config: apps[1].channels[0].keepalive: contains a line break"}},
		{"keepalive that reads as an ack", ch(`{"id": "c1", "transport": "tcp", "interval": "30s", "keepalive": "ack 1"}`),
			[]string{`config: apps[1].channels[0].keepalive: "ack 1" would read as a protocol line`}},
		{"no channels", ch(``), []string{"config: apps[1].channels: empty"}},
		{"no apps", `{"server": {"tcp": "127.0.0.1:1"}}`, []string{"config: apps: empty"}},
		{"duplicate app", strings.Replace(ch(good), `"name": "b"`, `"name": "a"`, 1), []string{`config: apps[1].name: "a" already used by apps[0]`}},
		{"websocket without server", strings.Replace(ch(good), `, "websocket": "ws://127.0.0.1:7001/ws"`, "", 1),
			[]string{"config: apps[1].channels[0].transport: websocket needs server.websocket"}},
		{"websocket server scheme", strings.Replace(ch(good), "ws://127.0.0.1:7001/ws", "tcp://127.0.0.1:7001", 1),
			[]string{`config: server.websocket: "tcp://127.0.0.1:7001": scheme must be ws:// or wss://`}},
		{"tcp server without port", strings.Replace(ch(good), "127.0.0.1:7000", "127.0.0.1", 1),
			[]string{`config: server.tcp: "127.0.0.1": not host:port`}},
		{"hardware slots", strings.Replace(ch(good), `"interval_unit": "1s"`, `"interval_unit": "1s", "hardware_slots": 65`, 1),
			[]string{"config: policy.hardware_slots: 65 out of range 0–64"}},
		{"interval unit", strings.Replace(ch(good), `"interval_unit": "1s"`, `"interval_unit": "2h"`, 1),
			[]string{"config: policy.interval_unit: 2h0m0s out of range 1ms–1h0m0s"}},
		{"max below min", strings.Replace(ch(good), `"interval_unit": "1s"`, `"interval_unit": "1s", "min_interval": 60, "max_interval": 30`, 1),
			[]string{"config: policy.max_interval: 30s below policy.min_interval 1m"}},
		{"negative resume latency", strings.Replace(ch(good), `"policy"`, `"host": {"resume_latency": "-1s"}, "policy"`, 1),
			[]string{"config: host.resume_latency: -1s out of range 0s–1m0s"}},
		{"push check too often", strings.Replace(ch(good), `"policy"`, `"host": {"push_check_interval": "1ms"}, "policy"`, 1),
			[]string{"config: host.push_check_interval: 1ms out of range 100ms–1h0m0s (0: off)"}},
		{"reconnect max below min", strings.Replace(ch(good), `"policy"`, `"host": {"reconnect_min": "2s", "reconnect_max": "1s"}, "policy"`, 1),
			[]string{"config: host.reconnect_max: 1s below host.reconnect_min 2s"}},
		{"reconnect max below the default min", strings.Replace(ch(good), `"policy"`, `"host": {"reconnect_max": "100ms"}, "policy"`, 1),
			[]string{"config: host.reconnect_max: 100ms below host.reconnect_min 500ms"}},
		{"negative power", strings.Replace(ch(good), `"policy"`, `"host": {"power": {"awake_mw": -1}}, "policy"`, 1),
			[]string{"config: host.power.awake_mw: -1 out of range"}},
		{"several errors", ch(`{"id": "c1", "transport": "udp", "interval": "1s"}`),
			[]string{"apps[1].channels[0].transport", "\nconfig: apps[1].channels[0].interval: 1s below minimum 15s"}},
		{"syntax error", "{\n  \"apps\": [,]\n}", []string{"config: line 2, column 12: invalid character ','"}},
		{"truncated", `{"apps": [`, []string{"config: empty or truncated JSON"}},
		{"empty", ``, []string{"config: empty or truncated JSON"}},
		{"trailing data", `{} {}`, []string{"config: trailing data after the JSON object"}},
		{"not an object", `[]`, []string{"config: (top level): want an object"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadHostConfig([]byte(tt.data))
			if err == nil {
				t.Fatalf("loadHostConfig(%s) = nil error, want %q", tt.data, tt.want)
			}
			msg := err.Error()
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q\ndoes not contain %q (in order)", msg, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
	// The valid base passes.
	if _, err := loadHostConfig([]byte(ch(good))); err != nil {
		t.Fatalf("base config: %v", err)
	}
}

// TestHostConfigDial checks what each kind of channel asks host.Dial for.
func TestHostConfigDial(t *testing.T) {
	ca := peers.NewCA(t, t.TempDir()).CertFile
	mustEndpoint := func(s string) host.Endpoint {
		e, err := host.ParseEndpoint(s)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	tests := []struct {
		name     string
		channel  string
		want     host.DialConfig
		interval time.Duration
	}{
		{"line on the default server", `{"id": "c1", "transport": "tcp", "interval": "30s"}`,
			host.DialConfig{Endpoint: mustEndpoint("tcp://127.0.0.1:7000"), Protocol: host.ProtocolLine, Hello: "c1", LineKeepAlive: []byte("ka")}, 30 * time.Second},
		{"line with its keep-alive line", `{"id": "c1", "transport": "tcp", "interval": "30s", "keepalive": "noop"}`,
			host.DialConfig{Endpoint: mustEndpoint("tcp://127.0.0.1:7000"), Protocol: host.ProtocolLine, Hello: "c1", LineKeepAlive: []byte("noop")}, 30 * time.Second},
		{"websocket on the default server", `{"id": "c1", "transport": "websocket", "interval": "30s", "keepalive": {"ws_mode": "responder", "probe": "one-byte"}}`,
			host.DialConfig{Endpoint: mustEndpoint("ws://127.0.0.1:7001/ws"), Protocol: host.ProtocolWebSocket,
				KeepAlive: host.KeepAliveConfig{WSMode: offload.WSResponder, Probe: offload.ProbeOneByte}}, 30 * time.Second},
		{"wss through a proxy", `{"id": "c1", "endpoint": "wss://[2001:2::1]:8443/ws?ping=1", "interval": "30s", "tls": {"ca_file": "` + ca + `", "server_name": "proxy.test", "min_version": "1.3"}}`,
			host.DialConfig{Endpoint: mustEndpoint("wss://[2001:2::1]:8443/ws?ping=1"), Protocol: host.ProtocolWebSocket,
				TLS: &host.TLSConfig{CAFile: ca, ServerName: "proxy.test", MinVersion: tls.VersionTLS13}}, 30 * time.Second},
		{"raw with a payload keep-alive", `{"id": "c1", "endpoint": "tcp://198.18.0.1:7100", "protocol": "raw", "interval": "30s",
			"keepalive": {"kind": "payload", "request": {"text": "PING\r\n"}, "reply": {"hex": "504f4e470d0a"}, "reply_mask": {"hex": "ffffffff0000"}}}`,
			host.DialConfig{Endpoint: mustEndpoint("tcp://198.18.0.1:7100"), Protocol: host.ProtocolRaw,
				KeepAlive:    host.KeepAliveConfig{Kind: host.KeepAlivePayload, Request: []byte("PING\r\n"), Reply: []byte("PONG\r\n"), ReplyMask: []byte{0xff, 0xff, 0xff, 0xff, 0, 0}},
				RawKeepAlive: []byte("PING\r\n")}, 30 * time.Second},
		{"raw with its own keep-alive bytes", `{"id": "c1", "endpoint": "tcp://198.18.0.1:7100", "protocol": "raw", "interval": "30s", "raw_keepalive": {"hex": "00"}}`,
			host.DialConfig{Endpoint: mustEndpoint("tcp://198.18.0.1:7100"), Protocol: host.ProtocolRaw, RawKeepAlive: []byte{0}}, 30 * time.Second},
		{"mqtt defaults", `{"id": "c1", "endpoint": "mqtt://198.18.0.1"}`,
			host.DialConfig{Endpoint: mustEndpoint("mqtt://198.18.0.1:1883"), Protocol: host.ProtocolMQTT,
				MQTT: host.MQTTConfig{Version: 4, ClientID: "c1", KeepAlive: time.Minute}}, 45 * time.Second},
		{"mqtt 5 over TLS", `{"id": "c1", "endpoint": "mqtts://198.18.0.1:8883", "tls": {"ca_file": "` + ca + `"},
			"mqtt": {"version": "5", "client_id": "dev-1", "keepalive": "4s", "clean_start": true, "username": "u", "password": "p",
			"subscriptions": [{"topic": "dev/1/#", "qos": 1}, {"topic": "all/+/x"}]}}`,
			host.DialConfig{Endpoint: mustEndpoint("mqtts://198.18.0.1:8883"), Protocol: host.ProtocolMQTT, TLS: &host.TLSConfig{CAFile: ca},
				MQTT: host.MQTTConfig{Version: 5, ClientID: "dev-1", KeepAlive: 4 * time.Second, CleanStart: true, Username: "u", Password: "p",
					Subscriptions: []host.MQTTSubscription{{Filter: "dev/1/#", QoS: 1}, {Filter: "all/+/x"}}}}, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := strings.Replace(minimal, "%s", tt.channel, 1)
			data = strings.Replace(data, `"interval_unit": "1s"`, `"interval_unit": "1s", "min_interval": 1`, 1)
			c, err := loadHostConfig([]byte(data))
			if err != nil {
				t.Fatal(err)
			}
			ch := &c.Apps[1].Channels[0]
			got, errs := c.dialConfig(ch)
			if len(errs) > 0 {
				t.Fatalf("dialConfig: %v", errs)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("dialConfig (-want +got):\n%s", diff)
			}
			if iv := c.interval(ch); iv != tt.interval {
				t.Errorf("interval %v, want %v", iv, tt.interval)
			}
		})
	}
}

func TestLoadHostConfigTooLarge(t *testing.T) {
	_, err := loadHostConfig(make([]byte, maxConfigBytes+1))
	if err == nil || !strings.Contains(err.Error(), "more than 1048576") {
		t.Fatalf("err = %v, want the size limit named", err)
	}
}

func FuzzLoadHostConfig(f *testing.F) {
	for _, s := range []string{minimal, `{}`, `{"apps":[{"name":"a","channels":[{"id":"x","transport":"tcp","interval":"1m"}]}]}`, `[`, `{"apps": null}`,
		`{"policy":{"interval_unit":"1s","min_interval":1},"apps":[{"name":"a","channels":[{"id":"m","endpoint":"mqtts://[2001:2::1]:8883","tls":{"server_name":"b","min_version":"1.3"},` +
			`"mqtt":{"version":"5","client_id":"c","keepalive":"4s","clean_start":true,"username":"u","password":"p","subscriptions":[{"topic":"a/+/#","qos":1}]}}]}]}`,
		`{"apps":[{"name":"a","channels":[{"id":"r","endpoint":"tcp://198.18.0.1:7100","protocol":"raw","interval":"30s",` +
			`"keepalive":{"kind":"payload","request":{"text":"PING\r\n"},"reply":{"hex":"504f4e47"},"reply_mask":{"hex":"ffff0000"}},"raw_keepalive":{"hex":"00"}}]}]}`,
		`{"apps":[{"name":"a","channels":[{"id":"w","endpoint":"ws://198.18.0.1/ws","interval":"30s","keepalive":{"kind":"websocket","ws_mode":"responder","probe":"one-byte"}}]}]}`,
		`{"server":{"tcp":"198.18.0.1:7000"},"apps":[{"name":"a","channels":[{"id":"l","transport":"tcp","interval":"30s","keepalive":"noop"},{"id":"l2","transport":"tcp","interval":"30s","keepalive":{"kind":"tcp-probe"}}]}]}`,
		`{"apps":[{"name":"a","channels":[{"id":"m","endpoint":"mqtt://h","mqtt":{"subscriptions":[{"topic":"a/#/b","qos":2}]},"keepalive":{"request":{"hex":"zz"}}}]}]}`,
	} {
		f.Add([]byte(s))
	}
	if data, err := os.ReadFile("testdata/host.json"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := loadHostConfig(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error %q does not start with \"config: \"", err)
			}
			return
		}
		// A valid config survives a round trip through its JSON form.
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := loadHostConfig(out)
		if err != nil {
			t.Fatalf("re-encoded config rejected: %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, c2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// TestHostConfigDocExamples loads every JSON example of docs/cli.md's host
// section (their CA files replaced by a real one).
func TestHostConfigDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	start := strings.Index(s, "\n## standbynic host\n")
	if start < 0 {
		t.Fatal("docs/cli.md has no host section")
	}
	s = s[start+1:]
	if end := strings.Index(s, "\n## "); end >= 0 {
		s = s[:end]
	}
	ca := peers.NewCA(t, t.TempDir()).CertFile
	caRE := regexp.MustCompile(`"ca_file": "[^"]*"`)
	n := 0
	for {
		i := strings.Index(s, "```json\n")
		if i < 0 {
			break
		}
		s = s[i+len("```json\n"):]
		j := strings.Index(s, "```")
		if j < 0 {
			t.Fatal("unterminated json block")
		}
		block := caRE.ReplaceAllString(s[:j], fmt.Sprintf(`"ca_file": %q`, ca))
		s = s[j:]
		n++
		if _, err := loadHostConfig([]byte(block)); err != nil {
			t.Errorf("example %d: %v\n%s", n, err, block)
		}
	}
	if n < 4 {
		t.Errorf("%d JSON examples in the host section, want the default one and the three worked ones", n)
	}
}
