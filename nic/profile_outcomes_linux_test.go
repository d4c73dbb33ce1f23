package nic_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/profile"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// The outcome table of docs/profiles.md: the same scenarios on every
// firmware profile, at 1/10 of real time or less (documented there):
//
//	STANDBYNIC_PROFILES_OUT=/tmp/outcomes.md go test -count=1 -run TestIntegrationProfileOutcomes ./nic/
//
// A run: the host connects to the server app through the device, sleeps
// for outcomeSleep with its connection in a hardware slot (or, when the
// profile refuses it, in a software slot: the host wakes itself every
// interval and sends the app-level PING), handling every wake the device
// raises as a host does (resume, thaw, sleep again). At the end the
// server pushes one message while the host sleeps; the connection
// survived when that push reaches the host app and the host's answer
// reaches the server.
const (
	outcomeSleep    = 6 * time.Second
	outcomeInterval = 2 * time.Second // keep-alive interval of every slot
	outcomeNAT      = 4 * time.Second // conntrack established timeout
	outcomeIdle     = 3 * time.Second // the server app's idle limit
)

// noKeepAlive is the control row: no slot and no software timer.
const noKeepAlive = "(no keep-alive)"

type outcomeScenario struct {
	name      string
	nat       bool // behind a NAT with a short established timeout
	v6        bool
	idle      bool // the server app closes after outcomeIdle without app data
	srvPings  bool // the server's kernel sends TCP keep-alives (1 s idle, 1 s interval)
	enforceTS bool // the server drops segments without the timestamp option
}

var outcomeScenarios = []outcomeScenario{
	{name: "NAT, 4 s established timeout", nat: true},
	{name: "server app idle limit 3 s", idle: true},
	{name: "server pings (TCP keep-alive 1 s)", srvPings: true},
	{name: "peer enforces timestamps", enforceTS: true},
	{name: "IPv6", v6: true},
}

type outcome struct {
	survived          bool
	wakes             int    // host wakes during the sleep (device wakes and software-slot timers)
	keepAlives        uint64 // keep-alives the device (or the host, on a software slot) put on the wire
	replies           uint64 // keep-alive replies the device consumed
	lost              int    // messages the server sent that never reached the host app
	slot, note, error string
}

// srvApp is the server application: it answers "PING" with "PONG",
// hands every other line to got, and closes the connection after
// outcomeIdle without a line when idle is set (MQTT keep-alive, a proxy's
// idle timer).
type srvApp struct {
	conn *net.TCPConn
	got  chan string
	done chan struct{}
}

func startSrvApp(c *net.TCPConn, idle bool) *srvApp {
	a := &srvApp{conn: c, got: make(chan string, 16), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		br := bufio.NewReader(c)
		for {
			if idle {
				c.SetReadDeadline(time.Now().Add(outcomeIdle))
			} else {
				c.SetReadDeadline(time.Now().Add(time.Minute))
			}
			line, err := br.ReadString('\n')
			if err != nil {
				c.Close() // idle limit (or the end of the test)
				return
			}
			if line == "PING\n" {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				c.Write([]byte("PONG\n"))
				continue
			}
			a.got <- line
		}
	}()
	return a
}

func (r *labRig) connectTo(srv netip.Addr) {
	t := r.t
	ln, err := r.lab.ListenTCP(netlab.Srv, netip.AddrPortFrom(srv, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvAP := netip.MustParseAddrPort(ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, _ := ln.AcceptTCP()
		accepted <- c
	}()
	hc, err := r.lab.DialTCP(ctx, netlab.Host, srvAP.String())
	if err != nil {
		t.Fatal(err)
	}
	r.hostConn = hc
	r.srvConn = <-accepted
	if r.srvConn == nil {
		t.Fatal("accept failed")
	}
	r.conn = wp.TCPConn{Local: netip.MustParseAddrPort(hc.LocalAddr().String()), Remote: srvAP}
	if err := r.dev.Track(r.conn); err != nil {
		t.Fatal(err)
	}
	r.exchange([]byte("hello srv"), []byte("hello host"))
}

// outcomeSpec is the keep-alive a host picks on the profile: the
// app-level PING when the server needs app data and the profile can send
// it, else a TCP probe when it can, else the PING.
func outcomeSpec(p *profile.Profile, sc outcomeScenario) offload.Spec {
	ping := offload.Spec{Kind: offload.KindPayload, Interval: outcomeInterval, RetryInterval: 300 * time.Millisecond, RetryCount: 2,
		Payload: offload.PayloadSpec{Request: []byte("PING\n"), Reply: []byte("PONG\n")}}
	probe := offload.Spec{Kind: offload.KindTCPProbe, Interval: outcomeInterval, RetryInterval: 300 * time.Millisecond, RetryCount: 2}
	can := func(k offload.Kind) bool { return p.Kinds == nil || slices.Contains(p.Kinds, k) }
	switch {
	case sc.idle && can(offload.KindPayload):
		return ping
	case can(offload.KindTCPProbe):
		return probe
	}
	return ping
}

// tryArm is labRig.sleep's arming without failing the test on a refusal.
func (r *labRig) tryArm(spec offload.Spec) error {
	t := r.t
	var l nic.Learned
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ok bool
		l, ok = r.dev.Learned(r.conn)
		if ok && l.SeenIn && l.SeenOut && l.HostAck == l.RcvNxt && l.SndUna == l.SndNxt {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("connection not idle on the wire: %+v", l)
		}
		time.Sleep(time.Millisecond)
	}
	snap := l.Snapshot()
	snap.MSS = max(snap.MSS, 536)
	if snap.Timestamps.Enabled {
		snap.Timestamps.Rate = 1000
		snap.Timestamps.At = r.clock.Now()
	}
	// Ask the profile before freezing: a refused connection stays live.
	pr := r.dev.Profile()
	if err := pr.Check(profile.Request{Local: snap.Local, Remote: snap.Remote, Spec: pr.Spec(spec), Armed: len(r.dev.Slots())}); err != nil {
		return err
	}
	t.Helper()
	r.sleep(spec)
	return nil
}

func runOutcome(t *testing.T, p *profile.Profile, sc outcomeScenario) outcome {
	var opts *netlab.Options
	if sc.nat {
		opts = &netlab.Options{Router: true}
	}
	r := newLabRigOpts(t, opts, func(c *nic.Config) { c.Profile = p })
	if sc.nat {
		if err := r.lab.Masquerade(outcomeNAT); err != nil {
			t.Fatal(err)
		}
	}
	srv := r.lab.Addr.Srv4
	if sc.v6 {
		srv = r.lab.Addr.Srv6
	}
	r.connectTo(srv)
	if sc.enforceTS {
		enforceTimestamps(t, r.lab, r.conn.Remote.Port())
		r.exchange([]byte("with timestamps\n"), []byte("ok\n"))
	}
	if sc.srvPings {
		if err := r.srvConn.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 3}); err != nil {
			t.Fatal(err)
		}
	}
	app := startSrvApp(r.srvConn, sc.idle)
	t.Cleanup(func() { r.srvConn.Close(); <-app.done })
	hostR := bufio.NewReader(r.hostConn)
	var o outcome
	spec := outcomeSpec(p, sc)
	o.slot = "hardware " + spec.Kind.String()
	end := time.Now().Add(outcomeSleep)
	armed := true
	dead := false
	account := func(rep offload.Report) {
		o.keepAlives += rep.Counters.KeepalivesSent + rep.Counters.Retries
		o.replies += rep.Counters.RepliesAbsorbed
	}
	if p.Name == noKeepAlive {
		// The control: the host sleeps with nothing guarding the
		// connection and no timer of its own.
		armed = false
		o.slot = "none"
		if err := r.dev.Sleep(); err != nil {
			t.Fatal(err)
		}
		<-time.After(time.Until(end))
	} else if err := r.tryArm(spec); err != nil {
		var pe *profile.Error
		if !errors.As(err, &pe) {
			t.Fatal(err)
		}
		armed = false
		o.slot = "software (" + pe.Code.Name + ")"
		if err := r.dev.Sleep(); err != nil {
			t.Fatal(err)
		}
	}
	if armed {
		// Hardware slot: handle the device's wakes as a host does.
	loop:
		for {
			select {
			case ev := <-r.dev.Wakes():
				o.wakes++
				rep := r.wakeUp()
				account(rep)
				if ev.Reason == nic.WakeFIN || ev.Reason == nic.WakeRST || ev.Reason == nic.WakeData {
					dead = ev.Reason != nic.WakeData
					o.note = appendNote(o.note, "woken: "+ev.Reason.String())
					break loop
				}
				o.note = appendNote(o.note, "woken: "+ev.Reason.String())
				if ev.Reason == nic.WakePassed {
					// The passed segment (the server's probe) went to the
					// host's kernel at Resume; it answers, then sleeps again.
					time.Sleep(20 * time.Millisecond)
				}
				if time.Now().After(end) {
					armed = false
					break loop
				}
				r.sleep(spec)
			case <-time.After(time.Until(end)):
				break loop
			}
		}
	} else if o.slot != "none" {
		// Software slot: the host wakes every interval and sends the PING.
		for next := time.Now().Add(outcomeInterval); next.Before(end); next = next.Add(outcomeInterval) {
			<-time.After(time.Until(next))
			if err := r.dev.Wake(); err != nil {
				t.Fatal(err)
			}
			r.wake(5 * time.Second)
			if err := r.dev.Resume(); err != nil {
				t.Fatal(err)
			}
			o.wakes++
			o.keepAlives++
			r.hostConn.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := r.hostConn.Write([]byte("PING\n")); err != nil {
				dead = true
				break
			}
			if l, err := hostR.ReadString('\n'); err != nil || l != "PONG\n" {
				dead = true
				o.note = appendNote(o.note, fmt.Sprintf("software PING: %q %v", l, err))
				break
			}
			if err := r.dev.Sleep(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The push, sent while the host sleeps (if it still does).
	sleeping := r.dev.State() == nic.D3
	r.srvConn.SetWriteDeadline(time.Now().Add(time.Second))
	_, werr := r.srvConn.Write([]byte("PUSH\n"))
	software := o.slot[0] == 's' || o.slot == "none"
	if sleeping && software {
		// No slot guards it: the NIC drops the push, the server's TCP
		// retransmits it, and the host gets it after its next timer wake.
		<-time.After(outcomeInterval)
		if err := r.dev.Wake(); err != nil {
			t.Fatal(err)
		}
		r.wake(5 * time.Second)
		if err := r.dev.Resume(); err != nil {
			t.Fatal(err)
		}
		o.note = appendNote(o.note, "push read at the next software wake")
	} else if sleeping {
		select {
		case ev := <-r.dev.Wakes():
			if ev.Slot != 0 {
				account(r.wakeUp())
			} else if err := r.dev.Resume(); err != nil {
				t.Fatal(err)
			}
		case <-time.After(3 * time.Second):
			// Nothing came: the host wakes on its own and looks.
			o.note = appendNote(o.note, "push did not wake")
			r.dev.Wake()
			r.wake(5 * time.Second)
			if slots := r.dev.Slots(); len(slots) > 0 {
				account(r.wakeUp())
			} else if err := r.dev.Resume(); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := false
	if werr == nil && !dead {
		r.hostConn.SetReadDeadline(time.Now().Add(8 * time.Second))
		for {
			l, err := hostR.ReadString('\n')
			if err != nil {
				break
			}
			if l == "PUSH\n" {
				got = true
				break
			}
		}
	}
	if !got {
		o.lost = 1
	}
	echoed := false
	if got {
		r.hostConn.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := r.hostConn.Write([]byte("ECHO\n")); err == nil {
			select {
			case l := <-app.got:
				echoed = l == "ECHO\n"
			case <-time.After(3 * time.Second):
			}
		}
	}
	o.survived = got && echoed
	return o
}

func appendNote(n, s string) string {
	if strings.Contains(n, s) {
		return n
	}
	if n == "" {
		return s
	}
	return n + "; " + s
}

// TestIntegrationProfileOutcomes runs every scenario on every profile and
// logs the table (written to $STANDBYNIC_PROFILES_OUT when set). It pins
// the outcomes the profiles' behaviours decide.
func TestIntegrationProfileOutcomes(t *testing.T) {
	if testing.Short() {
		t.Skip("the outcome table takes minutes (not in -short)")
	}
	netlab.RequirePrivileges(t)
	var b strings.Builder
	b.WriteString("| profile | scenario | slot | survived | host wakes | keep-alives on the wire | replies consumed | data lost | notes |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	results := map[string]outcome{}
	for _, name := range append(profile.Names(), noKeepAlive) {
		var p *profile.Profile
		if name == noKeepAlive {
			p = &profile.Profile{Name: noKeepAlive}
		} else {
			p = scaledProfile(t, name)
		}
		for _, sc := range outcomeScenarios {
			t.Run(name+"/"+sc.name, func(t *testing.T) {
				o := runOutcome(t, p, sc)
				results[name+"/"+sc.name] = o
				yes := map[bool]string{true: "yes", false: "**no**"}[o.survived]
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %d | %d | %d | %s |\n", name, sc.name, o.slot, yes, o.wakes, o.keepAlives, o.replies, o.lost, o.note)
			})
		}
	}
	t.Logf("outcomes:\n%s", b.String())
	if path := os.Getenv("STANDBYNIC_PROFILES_OUT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// What the behaviours decide.
	pin := func(key string, check func(outcome) bool, what string) {
		if o, ok := results[key]; ok && !check(o) {
			t.Errorf("%s: %s; got %+v", key, what, o)
		}
	}
	pin("generic/server app idle limit 3 s", func(o outcome) bool { return o.survived && o.wakes == 0 }, "the PING slot keeps the app alive asleep")
	pin("android-apf/server app idle limit 3 s", func(o outcome) bool { return !o.survived }, "a probe-only offload lets the app's idle limit close the connection")
	pin("android-apf/server pings (TCP keep-alive 1 s)", func(o outcome) bool { return o.wakes > 0 }, "APF passes the server's probes: the host wakes")
	pin("generic/server pings (TCP keep-alive 1 s)", func(o outcome) bool { return o.survived && o.wakes == 0 }, "the device answers the server's probes")
	pin("android-apf/peer enforces timestamps", func(o outcome) bool { return o.replies == 0 }, "no TS option: the peer never answers")
	pin("generic/peer enforces timestamps", func(o outcome) bool { return o.survived && o.replies > 0 }, "TS option: answered")
	pin("android-apf/IPv6", func(o outcome) bool { return strings.HasPrefix(o.slot, "software") && o.survived }, "IPv6 refused: a software slot keeps it, waking the host")
	pin("generic/NAT, 4 s established timeout", func(o outcome) bool { return o.survived }, "keep-alives keep the NAT mapping")
	pin(noKeepAlive+"/NAT, 4 s established timeout", func(o outcome) bool { return !o.survived }, "without keep-alives the NAT forgets the connection")
	pin(noKeepAlive+"/server app idle limit 3 s", func(o outcome) bool { return !o.survived }, "without keep-alives the app's idle limit closes it")
	pin("broadcom-mkeepalive/peer enforces timestamps", func(o outcome) bool { return o.replies > 0 }, "the replayed packet keeps its (frozen) timestamp option")
	pin("infineon-tko/peer enforces timestamps", func(o outcome) bool { return o.wakes > 0 && strings.Contains(o.note, "keep-alive-timeout") },
		"the option-less request is never answered, and Infineon's retries declare the peer dead")
	pin("generic/IPv6", func(o outcome) bool { return o.survived && strings.HasPrefix(o.slot, "hardware") }, "the generic device offloads IPv6")
}
