package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/offload"
)

func TestProcessConfig(t *testing.T) {
	const good = `{"policy": {"interval_unit": "1s", "min_interval": 1, "max_interval": 3600}, "processes": [
	  {"name": "sub", "run": ["mosquitto_sub", "-h", "198.18.0.1", "-t", "t"], "interval": "45s", "thaw_window": "300ms",
	   "endpoints": [{"remote": "198.18.0.1:1883"}, {"remote": ":8080", "keepalive": {"kind": "websocket", "ws_mode": "responder"}, "keep_absorbed": true}]},
	  {"name": "client", "adopt": 4242, "mode": "cgroup1-freezer"}]}`
	c, err := loadHostConfig([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := []processConfig{
		{Name: "sub", Run: []string{"mosquitto_sub", "-h", "198.18.0.1", "-t", "t"}, Interval: duration(45 * time.Second), ThawWindow: duration(300 * time.Millisecond),
			Endpoints: []processEndpointConfig{{Remote: "198.18.0.1:1883"}, {Remote: ":8080", KeepAlive: &keepAliveConfig{Kind: "websocket", WSMode: "responder"}, KeepAbsorbed: true}}},
		{Name: "client", Adopt: 4242, Mode: "cgroup1-freezer"},
	}
	if diff := cmp.Diff(want, c.Processes); diff != "" {
		t.Errorf("processes (-want +got):\n%s", diff)
	}
	ka, errs := processKeepAlive(c.Processes[0].Endpoints[1].KeepAlive)
	if len(errs) > 0 || ka.Kind != host.KeepAliveWebSocket || ka.WSMode != offload.WSResponder {
		t.Errorf("keep-alive %+v, errors %v", ka, errs)
	}

	tests := []struct {
		name, procs, want string
	}{
		{"neither run nor adopt", `[{"name": "a"}]`, "config: processes[0]: want run (a command line) or adopt (a PID)"},
		{"both", `[{"name": "a", "run": ["x"], "adopt": 5}]`, "config: processes[0]: run and adopt both given: want one"},
		{"bad name", `[{"name": "A b", "adopt": 5}]`, `config: processes[0].name: "A b": byte 0 is 'A', want [a-z0-9_-]`},
		{"duplicate name", `[{"name": "a", "adopt": 5}, {"name": "a", "adopt": 6}]`, `config: processes[1].name: "a" already used by processes[0]`},
		{"pid range", `[{"name": "a", "adopt": -3}]`, "config: processes[0].adopt: -3 out of range 2–4194304"},
		{"mode", `[{"name": "a", "adopt": 5, "mode": "cgroup3"}]`, `config: processes[0].mode: freeze mode "cgroup3": want auto, cgroup2, cgroup1-freezer or signal`},
		{"thaw window", `[{"name": "a", "adopt": 5, "thaw_window": "2m"}]`, "config: processes[0].thaw_window: 2m0s out of range 0–1m0s"},
		{"interval", `[{"name": "a", "adopt": 5, "interval": "2h"}]`, "config: processes[0].interval: 2h above maximum 1h"},
		{"remote name", `[{"name": "a", "adopt": 5, "endpoints": [{"remote": "broker:1883"}]}]`, `config: processes[0].endpoints[0].remote: "broker:1883": want ADDRESS:PORT or :PORT (an IP address, not a name)`},
		{"remote port", `[{"name": "a", "adopt": 5, "endpoints": [{"remote": ":0"}]}]`, `config: processes[0].endpoints[0].remote: ":0": port "0": want 1–65535`},
		{"keepalive kind", `[{"name": "a", "adopt": 5, "endpoints": [{"keepalive": {"kind": "icmp"}}]}]`, `config: processes[0].endpoints[0].keepalive.kind: keep-alive kind "icmp": want tcp-probe, websocket, payload or mqtt`},
		{"payload without reply", `[{"name": "a", "adopt": 5, "endpoints": [{"keepalive": {"kind": "payload", "request": {"text": "x"}}}]}]`, "config: processes[0].endpoints[0].keepalive: payload needs a request and a reply"},
		{"line keepalive", `[{"name": "a", "adopt": 5, "endpoints": [{"keepalive": "noop"}]}]`, `config: processes[0].endpoints[0].keepalive: a process endpoint takes an object {"kind": …}, not a line`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := `{"policy": {"interval_unit": "1s", "min_interval": 1, "max_interval": 3600}, "processes": ` + tt.procs + `}`
			_, err := loadHostConfig([]byte(cfg))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("error %q, want it to start with %q", got, tt.want)
			}
		})
	}
	if _, err := loadHostConfig([]byte(`{"processes": []}`)); err == nil || !strings.Contains(err.Error(), "apps: empty") {
		t.Errorf("no apps and no processes: %v", err)
	}
}

func TestParseProcessFlag(t *testing.T) {
	tests := []struct {
		in    string
		adopt bool
		want  processConfig
		err   string
	}{
		{"sub=mosquitto_sub -h 198.18.0.1 -t t", false, processConfig{Name: "sub", Run: []string{"mosquitto_sub", "-h", "198.18.0.1", "-t", "t"}}, ""},
		{"cli=1234", true, processConfig{Name: "cli", Adopt: 1234}, ""},
		{"cli=1", true, processConfig{}, `"cli=1": PID "1" out of range 2–4194304`},
		{"cli", true, processConfig{}, `"cli": want NAME=PID`},
		{"sub=  ", false, processConfig{}, `"sub=  ": empty command line`},
	}
	for _, tt := range tests {
		got, err := parseProcessFlag(tt.in, tt.adopt)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if diff := cmp.Diff(tt.want, got); diff != "" || gotErr != tt.err {
			t.Errorf("parseProcessFlag(%q): err %q want %q; (-want +got):\n%s", tt.in, gotErr, tt.err, diff)
		}
	}
	ap, err := parseProcessRemote(":1883")
	if err != nil || ap.Addr().IsValid() || ap.Port() != 1883 {
		t.Errorf("parseProcessRemote(:1883) = %v, %v", ap, err)
	}
	if ap, err := parseProcessRemote("[::ffff:198.18.0.1]:80"); err != nil || ap != netip.MustParseAddrPort("198.18.0.1:80") {
		t.Errorf("mapped address: %v, %v", ap, err)
	}
}
