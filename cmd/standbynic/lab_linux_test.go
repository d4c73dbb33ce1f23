package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/internal/netlab"
)

// TestIntegrationLab runs the documented walkthrough with the built
// command: lab up, the three daemons started exactly as it prints them,
// a push through the NIC to the sleeping host and its acknowledgment,
// lab status, lab down; then nothing is left: no namespace, no state, no
// process.
func TestIntegrationLab(t *testing.T) {
	netlab.RequirePrivileges(t)
	bin := labBuild(t)
	for _, tc := range []struct {
		name string
		args []string
		api  string // the push server's HTTP API, as seen from srv
	}{
		{"direct", nil, "198.18.0.1:7002"},
		{"router NAT IPv6", []string{"--router", "--nat-timeout", "45s", "--ipv6"}, "[2001:2:0:1::2]:7002"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if labHasArg(tc.args, "--router") {
				if _, err := exec.LookPath("nft"); err != nil {
					t.Fatal("nft not found: install the Debian package nftables")
				}
			}
			name := labTestName(t)
			file, dir := labPaths(name)
			t.Cleanup(func() {
				if netlab.NamedExists(name) {
					netlab.DeleteNamed(context.Background(), name, time.Second)
				}
				os.RemoveAll(dir)
				os.Remove(file)
			})
			linksBefore := rootLinks(t)
			out := labRunBin(t, bin, append([]string{"lab", "up", "--name", name}, tc.args...)...)
			st, err := readLabState(name)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Commands) != 3 {
				t.Fatalf("state has %d commands, want 3", len(st.Commands))
			}
			var pids []int
			var daemons []*labDaemon
			for _, c := range st.Commands {
				if !strings.Contains(out, "  "+shellLine(c.Argv)+"\n") {
					t.Errorf("lab up did not print the %s command line %q:\n%s", c.Daemon, shellLine(c.Argv), out)
				}
				d := startLabDaemon(t, c)
				daemons = append(daemons, d)
				pids = append(pids, d.cmd.Process.Pid)
				if c.Daemon == "nic" {
					labWaitFile(t, filepath.Join(st.Dir, "nic.sock"), 10*time.Second)
				}
			}
			if st.Router {
				want := "45s"
				if st.NATTimeout != want {
					t.Errorf("state nat_timeout %q, want %q", st.NATTimeout, want)
				}
			}

			l, err := netlab.OpenNamed(name)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release()
			hc := &http.Client{Timeout: 40 * time.Second, Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
					return l.DialTCP(ctx, netlab.Srv, addr)
				},
			}}
			// The host connects its channels through the NIC: wait for chat,
			// push to it, and wait for the acknowledgment.
			labWaitHTTP(t, hc, "http://"+tc.api+"/acks?channel=chat", `"connected":true`, 20*time.Second)
			resp := labHTTPDo(t, hc, http.MethodPost, "http://"+tc.api+"/push?channel=chat", "hello")
			var pushed struct{ ID uint64 }
			if err := json.Unmarshal([]byte(resp), &pushed); err != nil || pushed.ID == 0 {
				t.Fatalf("push answer %q: %v", resp, err)
			}
			acks := labHTTPDo(t, hc, http.MethodGet, fmt.Sprintf("http://%s/acks?channel=chat&wait=%d&timeout=30s", tc.api, pushed.ID), "")
			if !strings.Contains(acks, fmt.Sprintf(`"acked":[%d]`, pushed.ID)) {
				t.Errorf("acks after the push: %s", acks)
			}
			hc.CloseIdleConnections()
			l.Release()

			status := labRunBin(t, bin, "lab", "status", name)
			for _, pid := range pids {
				if !strings.Contains(status, strconv.Itoa(pid)+" ") {
					t.Errorf("lab status does not list process %d:\n%s", pid, status)
				}
			}

			down := labRunBin(t, bin, "lab", "down", name)
			for _, d := range daemons {
				if err := d.wait(30 * time.Second); err != nil {
					t.Errorf("%s after lab down: %v\nstderr:\n%s", d.name, err, d.stderr.String())
				}
			}
			if !strings.Contains(down, "lab "+name+" removed") {
				t.Errorf("lab down said:\n%s", down)
			}
			if netlab.NamedExists(name) {
				t.Error("a namespace of the lab is still mounted")
			}
			for _, p := range []string{file, dir} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left behind (%v)", p, err)
				}
			}
			for _, pid := range pids {
				if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
					t.Errorf("process %d still exists", pid)
				}
			}
			if diff := cmp.Diff(linksBefore, rootLinks(t)); diff != "" {
				t.Errorf("the root namespace's links changed (-before +after):\n%s", diff)
			}
			if st := labRunBin(t, bin, "lab", "status"); strings.Contains(st, name) {
				t.Errorf("lab status still lists %s:\n%s", name, st)
			}
		})
	}
}

func labHasArg(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// rootLinks returns the names of this namespace's links.
func rootLinks(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(ifs))
	for i, ifi := range ifs {
		names[i] = ifi.Name
	}
	return names
}

// labTestName returns a lab name no other test uses.
func labTestName(t *testing.T) string {
	var b [4]byte
	rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// labBuild builds this command into a temporary folder.
func labBuild(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "standbynic")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// labRunBin runs the built command to its end (at most a minute) and
// returns its standard output; a failure fails t.
func labRunBin(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("standbynic %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// labDaemon is a daemon the test started from a lab command line.
type labDaemon struct {
	name   string
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

// startLabDaemon starts c's command line as printed; t.Cleanup kills it if
// it is still running.
func startLabDaemon(t *testing.T, c labCommand) *labDaemon {
	t.Helper()
	d := &labDaemon{name: c.Daemon, cmd: exec.Command(c.Argv[0], c.Argv[1:]...), stderr: newSyncBuffer(), done: make(chan error, 1)}
	d.cmd.Stdout = io.Discard
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", c.Daemon, err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Signal(syscall.SIGKILL)
			<-d.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", d.name, d.stderr.String())
		}
	})
	return d
}

// wait waits for the daemon to exit and returns an error unless it
// exited with status 0.
func (d *labDaemon) wait(timeout time.Duration) error {
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-time.After(timeout):
		return fmt.Errorf("still running after %v", timeout)
	}
}

// labWaitFile polls for path to exist.
func labWaitFile(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not created within %v", path, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// labWaitHTTP polls url until its body contains want.
func labWaitHTTP(t *testing.T, hc *http.Client, url, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		resp, err := hc.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if strings.Contains(last, want) {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("GET %s: no %q within %v; last: %s", url, want, timeout, last)
}

// labHTTPDo makes one request and returns the body of a 2xx answer.
func labHTTPDo(t *testing.T, hc *http.Client, method, url, body string) string {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, b)
	}
	return string(b)
}
