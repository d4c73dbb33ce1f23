package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
				{ID: "mail-sync", Transport: "tcp", Slot: "software", Interval: duration(time.Minute), KeepAlive: ptr("noop")},
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
		{"bad slot", ch(`{"id": "c1", "transport": "tcp", "slot": "firmware", "interval": "30s"}`),
			[]string{`config: apps[1].channels[0].slot: "firmware": want hardware or software`}},
		{"duplicate channel", ch(`{"id": "c0", "transport": "tcp", "interval": "30s"}`),
			[]string{`config: apps[1].channels[0].id: "c0" already used by apps[0].channels[0]`}},
		{"channel id too long", ch(`{"id": "` + strings.Repeat("x", 65) + `", "transport": "tcp", "interval": "30s"}`),
			[]string{"config: apps[1].channels[0].id: channel name longer than 64 characters"}},
		{"channel id with a space", ch(`{"id": "a b", "transport": "tcp", "interval": "30s"}`),
			[]string{"config: apps[1].channels[0].id: channel name contains white space"}},
		{"keepalive on websocket", ch(`{"id": "c1", "transport": "websocket", "interval": "30s", "keepalive": "x"}`),
			[]string{"config: apps[1].channels[0].keepalive: only for tcp channels"}},
		{"keepalive with newline", ch(`{"id": "c1", "transport": "tcp", "interval": "30s", "keepalive": "a\nb"}`),
			[]string{"config: apps[1].channels[0].keepalive: contains a line break"}},
		{"keepalive that reads as an ack", ch(`{"id": "c1", "transport": "tcp", "interval": "30s", "keepalive": "ack 1"}`),
			[]string{`config: apps[1].channels[0].keepalive: "ack 1" would read as a protocol line`}},
		{"no channels", ch(``), []string{"config: apps[1].channels: empty"}},
		{"no apps", `{"server": {"tcp": "127.0.0.1:1"}}`, []string{"config: apps: empty"}},
		{"duplicate app", strings.Replace(ch(good), `"name": "b"`, `"name": "a"`, 1), []string{`config: apps[1].name: "a" already used by apps[0]`}},
		{"websocket without server", strings.Replace(ch(good), `, "websocket": "ws://127.0.0.1:7001/ws"`, "", 1),
			[]string{"config: apps[1].channels[0].transport: websocket needs server.websocket"}},
		{"wss refused", strings.Replace(ch(good), "ws://127.0.0.1:7001/ws", "wss://127.0.0.1:7001/ws", 1),
			[]string{`config: server.websocket: "wss://127.0.0.1:7001/ws": wss:// is refused`}},
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

func TestLoadHostConfigTooLarge(t *testing.T) {
	_, err := loadHostConfig(make([]byte, maxConfigBytes+1))
	if err == nil || !strings.Contains(err.Error(), "more than 1048576") {
		t.Fatalf("err = %v, want the size limit named", err)
	}
}

func FuzzLoadHostConfig(f *testing.F) {
	for _, s := range []string{minimal, `{}`, `{"apps":[{"name":"a","channels":[{"id":"x","transport":"tcp","interval":"1m"}]}]}`, `[`, `{"apps": null}`} {
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
