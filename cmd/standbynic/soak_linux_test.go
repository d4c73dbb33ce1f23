//go:build soak

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/nic"
)

// The soak (scripts/soak.sh; built only with -tags soak): the daemons as
// in the fault tests, with 8 hardware and 200 software channels, 1 % loss
// and FIFO jitter on the wire, pushes all along and one NIC restart (SIGKILL,
// started again) half-way. It checks that no push is lost (every one
// acknowledged and logged once by the host) and that the host's
// goroutines, fds and RSS, and the NIC's threads, fds and RSS, stay flat
// (sampled and printed).

var (
	soakDuration = flag.Duration("soak.duration", 10*time.Minute, "how long the soak runs")
	soakSample   = flag.Duration("soak.sample", 10*time.Second, "how often the daemons are sampled")
)

// soakSampleEnv, set in a host daemon's environment, makes it append a
// sample line ("unix-ms goroutines fds rss-kB") to the file it names
// every soakSampleEveryEnv.
const (
	soakSampleEnv      = "STANDBYNIC_SOAK_SAMPLE"
	soakSampleEveryEnv = "STANDBYNIC_SOAK_SAMPLE_EVERY"
)

func init() {
	path := os.Getenv(soakSampleEnv)
	if path == "" {
		return
	}
	every, err := time.ParseDuration(os.Getenv(soakSampleEveryEnv))
	if err != nil || every <= 0 {
		every = 10 * time.Second
	}
	go func() { // lives as long as the daemon process
		for {
			fds, rss, _ := procUsage(os.Getpid())
			if f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
				fmt.Fprintf(f, "%d %d %d %d\n", time.Now().UnixMilli(), runtime.NumGoroutine(), fds, rss)
				f.Close()
			}
			time.Sleep(every)
		}
	}()
}

// procUsage returns the fds, VmRSS (kB) and threads of pid.
func procUsage(pid int) (fds, rssKB, threads int) {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	fds = len(ents)
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			rssKB, _ = strconv.Atoi(f[0])
		case "Threads":
			threads, _ = strconv.Atoi(f[0])
		}
	}
	return fds, rssKB, threads
}

// startDaemonEnv is startDaemon with extra environment.
func startDaemonEnv(t *testing.T, lab *netlab.Lab, ns netlab.Namespace, env []string, args ...string) *daemon {
	t.Helper()
	a, _ := json.Marshal(args)
	d := &daemon{stdout: newSyncBuffer(), stderr: newSyncBuffer(), done: make(chan struct{})}
	d.cmd = exec.Command(os.Args[0], "-test.run=^$")
	d.cmd.Env = append(append(os.Environ(), env...), runEnv+"="+string(a))
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	if err := lab.Do(ns, d.cmd.Start); err != nil {
		t.Fatalf("start %q: %v", args, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

type hostSample struct {
	at                   time.Time
	goroutines, fds, rss int
}

func TestIntegrationSoak(t *testing.T) {
	const hw, sw = 8, 200
	lab := netlab.NewForTest(t, nil)
	srv := startLabPushServer(t, lab)
	dir := t.TempDir()
	sock := filepath.Join(dir, "nic.sock")
	hostIf, err := lab.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		t.Fatal(err)
	}
	nicArgs := []string{"nic", "--wire", netlab.WireLink, "--host", netlab.HostPortLink, "--slots", strconv.Itoa(hw), "--control", sock,
		"--host-mac", hostIf.HardwareAddr.String(), "--host-addr", lab.Addr.Host4.String(),
		"--loss", "0.01", "--delay", "1ms", "--jitter", "200us", "--seed", "13"}
	startNIC := func() *daemon {
		d := startDaemon(t, lab, netlab.NIC, nicArgs...)
		d.stderr.waitFor(t, regexp.MustCompile(`msg="nic running"`), 20*time.Second)
		return d
	}
	nicd := startNIC()

	type app struct {
		Name     string           `json:"name"`
		Priority int              `json:"priority"`
		Channels []map[string]any `json:"channels"`
	}
	var apps []app
	var names []string
	for i := range hw {
		n := fmt.Sprintf("hw%d", i)
		names = append(names, n)
		apps = append(apps, app{Name: n, Priority: 2, Channels: []map[string]any{{"id": n, "transport": "tcp", "slot": "hardware", "interval": "20s"}}})
	}
	for i := range sw / 10 {
		a := app{Name: fmt.Sprintf("sw%d", i)}
		for j := range 10 {
			n := fmt.Sprintf("sw%d-%d", i, j)
			names = append(names, n)
			a.Channels = append(a.Channels, map[string]any{"id": n, "transport": "tcp", "slot": "software", "interval": "60s"})
		}
		apps = append(apps, a)
	}
	cfg := map[string]any{
		"server": map[string]any{"tcp": srv.TCPAddr().String()},
		"policy": map[string]any{"interval_unit": "1s", "min_interval": 1, "permitted_apps": len(apps), "app_channel_quota": 10},
		"host":   map[string]any{"wake_hold": "300ms", "push_check_interval": "5s", "reconnect_min": "500ms", "reconnect_max": "5s"},
		"apps":   apps,
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(dir, "host.json")
	if err := writeFile(cfgPath, string(b)); err != nil {
		t.Fatal(err)
	}
	samplePath := filepath.Join(dir, "host.samples")
	hostd := startDaemonEnv(t, lab, netlab.Host, []string{soakSampleEnv + "=" + samplePath, soakSampleEveryEnv + "=" + soakSample.String()},
		"host", "--nic", sock, "--config", cfgPath, "--lease-owner", "soak", "--lease-period", "3s")
	hostd.stderr.waitFor(t, regexp.MustCompile(`msg="host in standby"`), 60*time.Second)
	t.Logf("soak: %d hardware and %d software channels, 1%% loss, 1ms ± 200µs FIFO jitter, %v", hw, sw, *soakDuration)

	rng := rand.New(rand.NewPCG(13, 13))
	type sent struct {
		ch string
		id uint64
	}
	var pushes []sent
	pushFailed := 0
	start := time.Now()
	end := start.Add(*soakDuration)
	restartAt := start.Add(*soakDuration / 2)
	restarted := false
	var nicSamples []string
	nextSample := start
	for time.Now().Before(end) {
		if !restarted && time.Now().After(restartAt) {
			nicd.cmd.Process.Signal(syscall.SIGKILL)
			nicd.waitExit(t)
			nicd = startNIC()
			restarted = true
			t.Logf("soak: NIC killed and restarted at %v", time.Since(start).Round(time.Second))
		}
		if time.Now().After(nextSample) {
			fds, rss, thr := procUsage(nicd.cmd.Process.Pid)
			nicSamples = append(nicSamples, fmt.Sprintf("%6.0fs threads %d fds %d rss %d kB", time.Since(start).Seconds(), thr, fds, rss))
			nextSample = nextSample.Add(*soakSample)
		}
		// Two hardware and four software channels a second.
		for k := range 6 {
			var n string
			if k < 2 {
				n = names[rng.IntN(hw)]
			} else {
				n = names[hw+rng.IntN(sw)]
			}
			id, err := srv.Push(n, "soak")
			if err != nil {
				pushFailed++ // not connected now (reconnecting): never sent
				continue
			}
			pushes = append(pushes, sent{n, id})
		}
		time.Sleep(time.Second) // the push rate
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lost := 0
	for _, p := range pushes {
		if err := srv.WaitAcked(ctx, p.ch, p.id); err != nil {
			lost++
			t.Errorf("push %d on %s not acknowledged: %v", p.id, p.ch, err)
		}
	}
	counts := map[string]int{}
	re := regexp.MustCompile(`msg=push channel=(\S+) id=(\d+) `)
	for _, m := range re.FindAllStringSubmatch(hostd.stderr.String(), -1) {
		counts[m[1]+"/"+m[2]]++
	}
	dups := 0
	for k, n := range counts {
		if n > 1 {
			dups++
			t.Errorf("push %s logged %d times", k, n)
		}
	}
	// Every hardware channel armed on the restarted NIC again.
	armed := 0
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) { // polling the NIC
		c, err := nic.DialControl(sock)
		if err != nil {
			continue
		}
		ss, err := c.LeaseSlots(ctx, "soak")
		c.Close()
		if armed = len(ss); err == nil && armed == hw {
			break
		}
	}
	if armed != hw {
		t.Errorf("%d hardware channels armed under the lease after the NIC's restart, want %d", armed, hw)
	}
	st := hostd.stderr.String()
	t.Logf("soak: %d pushes sent, %d acknowledged, %d lost, %d duplicated, %d not sent (channel reconnecting); %d of %d hardware channels armed at the end; host: nic lost %d, thawed without books %d, reconnects %d, not recovered %d",
		len(pushes), len(pushes)-lost, lost, dups, pushFailed, armed, hw, strings.Count(st, `msg="nic lost: taking back`), strings.Count(st, "thawed without the slot's books"),
		strings.Count(st, "msg=reconnected "), strings.Count(st, "connection not recovered"))

	// Flat: the last sample against the first one after the warm-up.
	f, err := os.Open(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	var hs []hostSample
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ms int64
		var s hostSample
		if _, err := fmt.Sscan(sc.Text(), &ms, &s.goroutines, &s.fds, &s.rss); err == nil {
			s.at = time.UnixMilli(ms)
			hs = append(hs, s)
		}
	}
	f.Close()
	for _, s := range hs {
		t.Logf("soak host %6.0fs goroutines %d fds %d rss %d kB", s.at.Sub(start).Seconds(), s.goroutines, s.fds, s.rss)
	}
	for _, s := range nicSamples {
		t.Logf("soak nic  %s", s)
	}
	// The first sample a whole period after the start (every channel
	// connected and placed), against the last.
	i := 0
	for i < len(hs) && hs[i].at.Before(start.Add(*soakSample)) {
		i++
	}
	if len(hs)-i < 2 {
		t.Fatalf("%d host samples after the warm-up", len(hs)-i)
	}
	first, last := hs[i], hs[len(hs)-1]
	if last.goroutines > first.goroutines+first.goroutines/10+10 || last.fds > first.fds+first.fds/10+10 || last.rss > first.rss+first.rss/2 {
		t.Errorf("host not flat: goroutines %d → %d, fds %d → %d, rss %d → %d kB", first.goroutines, last.goroutines, first.fds, last.fds, first.rss, last.rss)
	}
	if code := hostd.stop(t); code != exitOK {
		t.Errorf("host exit %d", code)
	}
	if code := nicd.stop(t); code != exitOK {
		t.Errorf("nic exit %d", code)
	}
}
