package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLabFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string // in stderr ("" when the output is stdout)
	}{
		{"no command", []string{"lab"}, exitUsage, "usage: standbynic lab <up|down|status|exec>"},
		{"unknown command", []string{"lab", "warp"}, exitUsage, `unknown command "warp"`},
		{"up help", []string{"lab", "up", "-h"}, exitOK, "--nat-timeout DURATION"},
		{"empty name", []string{"lab", "up", "--name", ""}, exitUsage, "-name: lab name: empty"},
		{"name too long", []string{"lab", "up", "--name", strings.Repeat("a", 17)}, exitUsage, "17 characters, at most 16"},
		{"name upper case", []string{"lab", "up", "--name", "Lab"}, exitUsage, "must start with a letter a–z"},
		{"name with slash", []string{"lab", "up", "--name", "a/b"}, exitUsage, `character '/' not allowed`},
		{"nat timeout without router", []string{"lab", "up", "--nat-timeout", "30s"}, exitUsage, "-nat-timeout needs -router"},
		{"nat timeout too short", []string{"lab", "up", "--router", "--nat-timeout", "500ms"}, exitUsage, "-nat-timeout: 500ms below minimum 1s"},
		{"nat timeout too long", []string{"lab", "up", "--router", "--nat-timeout", "121h"}, exitUsage, "-nat-timeout: 121h0m0s above maximum 120h0m0s"},
		{"nat timeout fraction", []string{"lab", "up", "--router", "--nat-timeout", "1500ms"}, exitUsage, "-nat-timeout 1.5s: want whole seconds"},
		{"nat timeout not a duration", []string{"lab", "up", "--router", "--nat-timeout", "30"}, exitUsage, "not a duration"},
		{"up stray argument", []string{"lab", "up", "now"}, exitUsage, `unexpected argument "now"`},
		{"down without name", []string{"lab", "down"}, exitUsage, "NAME is required"},
		{"down two names", []string{"lab", "down", "a", "b"}, exitUsage, `unexpected argument "b"`},
		{"down bad name", []string{"lab", "down", "../x"}, exitUsage, "NAME: lab name"},
		{"status bad name", []string{"lab", "status", "X"}, exitUsage, "NAME: lab name"},
		{"exec help", []string{"lab", "exec", "-h"}, exitOK, "usage: standbynic lab exec NAME ROLE -- COMMAND"},
		{"exec without role", []string{"lab", "exec", "lab"}, exitUsage, "NAME and ROLE are required"},
		{"exec bad name", []string{"lab", "exec", "Lab", "srv", "--", "true"}, exitUsage, "NAME: lab name"},
		{"exec bad role", []string{"lab", "exec", "lab", "web", "--", "true"}, exitUsage, `ROLE "web": want srv, nic, host or rtr`},
		{"exec without dashes", []string{"lab", "exec", "lab", "srv", "true"}, exitUsage, "want '--' after ROLE"},
		{"exec without command", []string{"lab", "exec", "lab", "srv", "--"}, exitUsage, "COMMAND is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), &stdout, &stderr, tt.args)
			out := stderr.String()
			if code == exitOK {
				out += stdout.String()
			}
			if code != tt.wantCode || !strings.Contains(out, tt.wantErr) {
				t.Errorf("run(%q) = %d, output %q; want %d and %q", tt.args, code, out, tt.wantCode, tt.wantErr)
			}
		})
	}
}

// TestLabAddressesAgree: the lab's host configuration, the example host
// configuration (testdata/host.json, shown in docs/cli.md) and the push
// server's default listen addresses name the same server.
func TestLabAddressesAgree(t *testing.T) {
	cfg, err := labHostConfig(labSrv4)
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join("testdata", "host.json"))
	if err != nil {
		t.Fatal(err)
	}
	type server struct {
		Server map[string]any `json:"server"`
	}
	var got, want server
	if err := json.Unmarshal(cfg, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(example, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.Server, got.Server); diff != "" {
		t.Errorf("lab host config server vs testdata/host.json (-want +got):\n%s", diff)
	}
	var stdout, stderr bytes.Buffer
	run(context.Background(), &stdout, &stderr, []string{"push-server", "-h"})
	defaults := map[string]string{}
	for _, m := range regexp.MustCompile(`--(tcp|ws|http) ADDR\n.*\(default ([^)]+)\)`).FindAllStringSubmatch(stderr.String(), -1) {
		defaults[m[1]] = m[2]
	}
	wantDefaults := map[string]string{"tcp": "198.18.0.1:7000", "ws": "198.18.0.1:7001", "http": "198.18.0.1:7002"}
	if diff := cmp.Diff(wantDefaults, defaults); diff != "" {
		t.Errorf("push-server defaults (-want +got):\n%s", diff)
	}
	if got.Server["tcp"] != defaults["tcp"] || got.Server["websocket"] != "ws://"+defaults["ws"]+"/ws" {
		t.Errorf("host config server %v does not name the push server's defaults %v", got.Server, defaults)
	}
	v6, err := labHostConfig(netip.MustParseAddr("2001:2::1"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(v6, []byte(`"tcp": "[2001:2::1]:7000"`)) || !bytes.Contains(v6, []byte(`"websocket": "ws://[2001:2::1]:7001/ws"`)) {
		t.Errorf("IPv6 host config:\n%s", v6)
	}
}

func TestShellLine(t *testing.T) {
	got := shellLine([]string{"/usr/bin/standbynic", "lab", "exec", "x", "srv", "--", "echo", "a b", "it's", "", "[2001:2::1]:7000"})
	want := `/usr/bin/standbynic lab exec x srv -- echo 'a b' 'it'\''s' '' [2001:2::1]:7000`
	if got != want {
		t.Errorf("shellLine = %s\nwant        %s", got, want)
	}
}
