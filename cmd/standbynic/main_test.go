package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is an io.Writer safe for concurrent use whose readers can wait
// for some text to appear.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until re matches the text written so far and returns the
// submatches, failing t after timeout.
func (s *syncBuffer) waitFor(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		m := re.FindStringSubmatch(s.b.String())
		ch := s.changed
		s.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("no %q within %v in:\n%s", re, timeout, s.String())
		}
	}
}

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = run(ctx, &o, &e, args)
	return code, o.String(), e.String()
}

func TestRunTopLevel(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		inStdout []string
		inStderr []string
	}{
		{"no command", nil, exitUsage, nil, []string{"usage: standbynic <command>", "demo", "nic", "host", "push-server", "bench", "version", "Exit codes"}},
		{"unknown command", []string{"frobnicate"}, exitUsage, nil, []string{`unknown command "frobnicate"`, "push-server"}},
		{"help", []string{"help"}, exitOK, []string{"usage: standbynic <command>", "push-server"}, nil},
		{"-h", []string{"-h"}, exitOK, []string{"commands:"}, nil},
		{"version", []string{"version"}, exitOK, []string{"standbynic ", "go1."}, nil},
		{"version with an argument", []string{"version", "x"}, exitUsage, nil, []string{`unexpected argument "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.args...)
			if code != tt.code {
				t.Errorf("run(%q) = %d, want %d\nstderr: %s", tt.args, code, tt.code, stderr)
			}
			for _, w := range tt.inStdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tt.inStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestRunHelp checks that every subcommand's -h exits 0 and names each
// flag with its unit and default.
func TestRunHelp(t *testing.T) {
	tests := []struct {
		cmd  string
		want []string
	}{
		{"nic", []string{"usage: standbynic nic --wire IF --host IF", "--wire IF", "--host IF",
			"--wire-rx batch|immediate", "(default batch)",
			"--slots N", "hardware keep-alive slots, 1–64 (default 8)",
			"--control PATH", "(default /run/standbynic/nic.sock)", "--control-group GROUP", "--host-mac MAC", "--host-addr ADDR",
			"--wire-pcap FILE", "--wake-pcap FILE",
			"--loss P", "a probability in [0, 1]", "--delay DURATION", "0s–10s (0: off)", "--jitter DURATION",
			"--dup P", "--reorder P", "--corrupt P", "--seed N", "(default 1)",
			"--log-format text|json", "(default text)", "--log-level debug|info|warn|error", "(default info)",
			"durations take a unit", "CAP_NET_RAW and CAP_NET_ADMIN"}},
		{"host", []string{"usage: standbynic host --nic SOCKET --config FILE", "--nic SOCKET", `"none"`, "--config FILE",
			"--duration DURATION", "1s–8760h (0: off)", "--dial-timeout DURATION", "100ms–1m (default 5s)", "docs/cli.md"}},
		{"push-server", []string{"usage: standbynic push-server", "--tcp ADDR", "(default 198.18.0.1:7000)", "--ws ADDR", "(default 198.18.0.1:7001)",
			"--http ADDR", "(default 198.18.0.1:7002)", "--push-every DURATION", "10ms–24h (0: off)", "--ping-every DURATION",
			"--channel NAME", "GET /acks", "curl"}},
		{"version", []string{"usage: standbynic version"}},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			for _, h := range []string{"-h", "--help"} {
				code, stdout, stderr := runCmd(t, tt.cmd, h)
				if code != exitOK {
					t.Errorf("%s %s: exit %d, want 0", tt.cmd, h, code)
				}
				if stdout != "" {
					t.Errorf("%s %s wrote to stdout: %q", tt.cmd, h, stdout)
				}
				for _, w := range tt.want {
					if !strings.Contains(stderr, w) {
						t.Errorf("%s %s: help lacks %q:\n%s", tt.cmd, h, w, stderr)
					}
				}
			}
		})
	}
}

// TestRunBadFlags checks that bad flags exit 2 with an error naming the
// flag and the limit, before anything is opened.
func TestRunBadFlags(t *testing.T) {
	nic := []string{"nic", "--wire", "wire0", "--host", "hport0"}
	with := func(base []string, extra ...string) []string { return append(append([]string{}, base...), extra...) }
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"nic: unknown flag", with(nic, "--slot", "4"), []string{"flag provided but not defined: -slot", "Run 'standbynic nic -h' for help."}},
		{"nic: no wire", []string{"nic", "--host", "h"}, []string{"-wire is required"}},
		{"nic: no host", []string{"nic", "--wire", "w"}, []string{"-host is required"}},
		{"nic: same interface", []string{"nic", "--wire", "x", "--host", "x"}, []string{`-wire and -host name the same interface "x"`}},
		{"nic: long interface name", []string{"nic", "--wire", strings.Repeat("w", 16), "--host", "h"}, []string{"-wire", "longer than 15 bytes"}},
		{"nic: slash in interface name", []string{"nic", "--wire", "a/b", "--host", "h"}, []string{"-wire", "not a valid interface name"}},
		{"nic: slots 0", with(nic, "--slots", "0"), []string{`invalid value "0" for flag -slots: 0 out of range 1–64`}},
		{"nic: slots 65", with(nic, "--slots", "65"), []string{"-slots: 65 out of range 1–64"}},
		{"nic: slots not a number", with(nic, "--slots", "many"), []string{"-slots: not an integer"}},
		{"nic: loss above 1", with(nic, "--loss", "1.5"), []string{"-loss: 1.5 is not a probability in [0, 1]"}},
		{"nic: negative dup", with(nic, "--dup", "-0.1"), []string{"-dup: -0.1 is not a probability"}},
		{"nic: NaN reorder", with(nic, "--reorder", "NaN"), []string{"-reorder: NaN is not a probability"}},
		{"nic: corrupt not a number", with(nic, "--corrupt", "x"), []string{"-corrupt: not a number"}},
		{"nic: delay too long", with(nic, "--delay", "11s"), []string{"-delay: 11s above maximum 10s"}},
		{"nic: negative delay", with(nic, "--delay", "-1ms"), []string{"-delay: -1ms below minimum 0s"}},
		{"nic: delay without unit", with(nic, "--delay", "5"), []string{"-delay: not a duration"}},
		{"nic: jitter without delay", with(nic, "--jitter", "1ms"), []string{"-jitter 1ms needs a -delay"}},
		{"nic: bad seed", with(nic, "--seed", "-1"), []string{"-seed"}},
		{"nic: bad MAC", with(nic, "--host-mac", "zz:00:00:00:00:00"), []string{"-host-mac: not a 6-byte MAC address"}},
		{"nic: multicast MAC", with(nic, "--host-mac", "01:00:5e:00:00:01"), []string{"-host-mac: not a unicast MAC address"}},
		{"nic: bad address", with(nic, "--host-addr", "198.18.0.300"), []string{"-host-addr: not an IP address"}},
		{"nic: multicast address", with(nic, "--host-addr", "224.0.0.1", "--host-mac", "02:00:00:00:00:01"), []string{"-host-addr: 224.0.0.1 is not a unicast address"}},
		{"nic: address without MAC", with(nic, "--host-addr", "198.18.0.2"), []string{"-host-addr needs -host-mac"}},
		{"nic: too many IPv4", with(nic, "--host-mac", "02:00:00:00:00:01", "--host-addr", "198.18.0.1", "--host-addr", "198.18.0.2",
			"--host-addr", "198.18.0.3", "--host-addr", "198.18.0.4", "--host-addr", "198.18.0.5", "--host-addr", "198.18.0.6",
			"--host-addr", "198.18.0.7", "--host-addr", "198.18.0.8", "--host-addr", "198.18.0.9"),
			[]string{"-host-addr: 9 IPv4 addresses, at most 8 (ARP offloads)"}},
		{"nic: control path too long", with(nic, "--control", "/"+strings.Repeat("s", 107)), []string{"-control: path of 108 bytes, longer than the 107"}},
		{"nic: unknown group", with(nic, "--control-group", "no-such-group-sbn"), []string{`-control-group "no-such-group-sbn": no such group`}},
		{"nic: bad log format", with(nic, "--log-format", "xml"), []string{"-log-format: want one of text|json"}},
		{"nic: bad wire-rx", with(nic, "--wire-rx", "v2"), []string{`invalid value "v2" for flag -wire-rx: want one of batch|immediate`}},
		{"nic: bad log level", with(nic, "--log-level", "trace"), []string{"-log-level: want one of debug|info|warn|error"}},
		{"nic: extra argument", with(nic, "eth0"), []string{`unexpected argument "eth0"`}},

		{"push-server: push-every too short", []string{"push-server", "--push-every", "1ms"}, []string{"-push-every: 1ms below minimum 10ms"}},
		{"push-server: ping-every too long", []string{"push-server", "--ping-every", "25h"}, []string{"-ping-every: 25h0m0s above maximum 24h"}},
		{"push-server: bad tcp address", []string{"push-server", "--tcp", "localhost"}, []string{`-tcp "localhost": not host:port`}},
		{"push-server: bad ws port", []string{"push-server", "--ws", "127.0.0.1:99999"}, []string{`-ws "127.0.0.1:99999": port must be a number 0–65535`}},
		{"push-server: bad http address", []string{"push-server", "--http", ""}, []string{`-http "": not host:port`}},
		{"push-server: bad channel", []string{"push-server", "--channel", "a b"}, []string{"-channel: channel name contains white space"}},

		{"host: no nic", []string{"host", "--config", "testdata/host.json"}, []string{`-nic is required`}},
		{"host: no config", []string{"host", "--nic", "none"}, []string{"-config is required"}},
		{"host: missing config file", []string{"host", "--nic", "none", "--config", "testdata/nope.json"}, []string{"-config: open testdata/nope.json: no such file"}},
		{"host: bad duration", []string{"host", "--nic", "none", "--config", "testdata/host.json", "--duration", "10ms"}, []string{"-duration: 10ms below minimum 1s"}},
		{"host: long socket path", []string{"host", "--nic", "/" + strings.Repeat("n", 107), "--config", "testdata/host.json"}, []string{"-nic: path of 108 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.args...)
			if code != exitUsage {
				t.Errorf("run(%q) = %d, want %d\nstderr: %s", tt.args, code, exitUsage, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout: %q, want nothing", stdout)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestRunHostBadConfig checks that a bad config file exits 2 naming the
// file and the field.
func TestRunHostBadConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, data string
		want       []string
	}{
		{"interval", strings.Replace(minimal, "%s", `{"id": "c1", "transport": "tcp", "interval": "5s"}`, 1),
			[]string{"config: apps[1].channels[0].interval: 5s below minimum 15s"}},
		{"unknown field", `{"apps": [], "sever": {}}`, []string{"config: sever: unknown field"}},
		{"two errors", strings.Replace(minimal, "%s", `{"id": "c1", "transport": "x", "interval": "5s"}`, 1),
			[]string{"config: apps[1].channels[0].transport", "\n  config: apps[1].channels[0].interval: 5s below minimum 15s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := dir + "/" + strings.ReplaceAll(tt.name, " ", "-") + ".json"
			if err := writeFile(path, tt.data); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runCmd(t, "host", "--nic", "none", "--config", path)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout: %q", stdout)
			}
			for _, w := range append([]string{"standbynic host: " + path + ": "}, tt.want...) {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func writeFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o600) }

// checkGoroutines registers, first, a cleanup that fails t unless every
// goroutine started since has ended within 5 s of the test's end (after
// the other cleanups).
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			runtime.Gosched()
			time.Sleep(time.Millisecond)
		}
	})
}
