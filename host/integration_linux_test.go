package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/pushserver"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/slotmgr"
)

// The host on the real NIC: a lab (netns srv, nic, host), the push server
// in srv, the emulated NIC on wire0/hport0 in nic, the host runtime's
// sockets dialled from host. Keep-alive intervals are 1 s.

const labInterval = time.Second

// labHost is one host runtime on a real NIC in a lab.
type labHost struct {
	t   testing.TB
	lab *netlab.Lab
	srv *pushserver.Server
	dev *nic.Device
	h   *Host

	mu     sync.Mutex
	got    map[string][]string // channel → messages its push task read
	gotC   chan struct{}       // closed and replaced on every message
	starts []taskStart
}

// taskStart is one push task's start, for latency measurements.
type taskStart struct {
	at   time.Time
	wake nic.WakeEvent
}

func labDeadline(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newLabHost builds the lab, the push server, a NIC with slots hardware
// slots, and a host on it with the push task "push" registered: it reads
// every queued message, records it and acknowledges "push <id> …" with
// "ack <id>".
func newLabHost(t testing.TB, slots int, mod func(*Config)) *labHost {
	t.Helper()
	before := runtime.NumGoroutine()
	lab := netlab.NewForTest(t, nil)
	lh := &labHost{t: t, lab: lab, got: map[string][]string{}, gotC: make(chan struct{})}
	srvAddr := netip.AddrPortFrom(lab.Addr.Srv4, 0).String()
	if err := lab.Do(netlab.Srv, func() error {
		var err error
		lh.srv, err = pushserver.New(&pushserver.Config{TCPAddr: srvAddr, WSAddr: srvAddr, HTTPAddr: srvAddr})
		return err
	}); err != nil {
		t.Fatalf("push server: %v", err)
	}
	t.Cleanup(func() { lh.srv.Close() })
	var wire, hostPort nic.Port
	if err := lab.Do(netlab.NIC, func() error {
		var err error
		if wire, err = nic.OpenPacketPort(netlab.WireLink, nil); err != nil {
			return err
		}
		hostPort, err = nic.OpenPacketPort(netlab.HostPortLink, nil)
		return err
	}); err != nil {
		if errors.Is(err, os.ErrPermission) {
			t.Skipf("packet ports need CAP_NET_RAW: %v", err)
		}
		t.Fatalf("packet ports: %v", err)
	}
	ifi, err := lab.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		t.Fatal(err)
	}
	lh.dev, err = nic.New(&nic.Config{Wire: wire, Host: hostPort, MAC: [6]byte(ifi.HardwareAddr),
		Addrs: []netip.Addr{lab.Addr.Host4, lab.Addr.Host6}, Capabilities: nic.Capabilities{Slots: slots}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		NIC:              lh.dev,
		Pool:             &slotmgr.Config{IntervalUnit: time.Second, MinInterval: 1, MaxInterval: 3600},
		SoftwareWakeHold: 100 * time.Millisecond,
		OnTaskStart: func(ti *TaskInstance) {
			if ti.Trigger != TriggerPushNotification {
				return
			}
			now := time.Now()
			w := ti.Channel.h.LastWake()
			lh.mu.Lock()
			lh.starts = append(lh.starts, taskStart{at: now, wake: w})
			lh.mu.Unlock()
		},
	}
	if mod != nil {
		mod(cfg)
	}
	lh.h, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lh.h.Close()
		if err := lh.dev.Close(); err != nil {
			t.Errorf("nic close: %v", err)
		}
		lh.srv.Close()
		waitGoroutines(t, before)
	})
	if err := lh.h.RegisterTask("push", lh.pushTask); err != nil {
		t.Fatal(err)
	}
	return lh
}

// waitGoroutines fails when goroutines started by the test outlive it.
func waitGoroutines(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
			return
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func (lh *labHost) pushTask(ctx context.Context, ti *TaskInstance) {
	for {
		m, ok := ti.Receive()
		if !ok {
			return
		}
		s := string(m.Data)
		lh.mu.Lock()
		lh.got[ti.Channel.ID()] = append(lh.got[ti.Channel.ID()], s)
		close(lh.gotC)
		lh.gotC = make(chan struct{})
		lh.mu.Unlock()
		if f := strings.Fields(s); len(f) >= 2 && f[0] == "push" {
			if err := ti.Channel.Send([]byte("ack " + f[1])); err != nil {
				lh.t.Errorf("ack on %s: %v", ti.Channel.ID(), err)
			}
		}
	}
}

// messages returns what channel id's push task read.
func (lh *labHost) messages(id string) []string {
	lh.mu.Lock()
	defer lh.mu.Unlock()
	return append([]string(nil), lh.got[id]...)
}

// waitMessage waits until channel id's push task read want.
func (lh *labHost) waitMessage(ctx context.Context, id, want string) {
	lh.t.Helper()
	for {
		lh.mu.Lock()
		for _, m := range lh.got[id] {
			if m == want {
				lh.mu.Unlock()
				return
			}
		}
		c := lh.gotC
		lh.mu.Unlock()
		select {
		case <-c:
		case <-ctx.Done():
			lh.t.Fatalf("channel %s never read %q (read %q); host %+v; nic %v %v", id, want, lh.messages(id),
				lh.h.Stats().Wakes, nonZeroCounters(lh.dev.Counters()), lh.dev.CoalescingCounters())
		}
	}
}

func nonZeroCounters(cs []nic.Counter) []nic.Counter {
	var out []nic.Counter
	for _, c := range cs {
		if c.Value != 0 {
			out = append(out, c)
		}
	}
	return out
}

func (lh *labHost) counter(name string) uint64 {
	lh.t.Helper()
	if v, ok := lh.dev.Counter(name); ok {
		return v
	}
	for _, c := range lh.dev.CoalescingCounters() {
		if c.Name == name {
			return c.Value
		}
	}
	lh.t.Fatalf("no counter %q", name)
	return 0
}

// dialStream opens a stream channel from the host namespace and says
// hello.
func (lh *labHost) dialStream(ctx context.Context, name string, ka []byte) *Stream {
	lh.t.Helper()
	c, err := lh.lab.DialTCP(ctx, netlab.Host, lh.srv.TCPAddr().String())
	if err != nil {
		lh.t.Fatal(err)
	}
	st, err := NewStream(c, ka)
	if err != nil {
		lh.t.Fatal(err)
	}
	if err := st.Write([]byte("hello " + name)); err != nil {
		lh.t.Fatal(err)
	}
	if err := lh.srv.WaitConnected(ctx, name); err != nil {
		lh.t.Fatal(err)
	}
	return st
}

// dialWebSocket opens a WebSocket channel from the host namespace, with
// tap (may be nil) recording the stream bytes, and says hello.
func (lh *labHost) dialWebSocket(ctx context.Context, name string, tap *streamTap) *WebSocket {
	lh.t.Helper()
	d := &websocket.Dialer{HandshakeTimeout: 10 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return lh.lab.DialTCP(ctx, netlab.Host, addr)
		}}
	tr, err := dialWebSocketTap(ctx, d, lh.srv.WSURL(), tap)
	if err != nil {
		lh.t.Fatal(err)
	}
	if err := tr.Write([]byte("hello " + name)); err != nil {
		lh.t.Fatal(err)
	}
	if err := lh.srv.WaitConnected(ctx, name); err != nil {
		lh.t.Fatal(err)
	}
	return tr
}

// channel creates a channel bound to the push task and gives it tr.
func (lh *labHost) channel(id string, res slotmgr.ResourceType, app string, prio int, tr Transport) *Channel {
	lh.t.Helper()
	return lh.channelEvery(id, labInterval, res, app, prio, tr)
}

// channelEvery is channel with a keep-alive interval.
func (lh *labHost) channelEvery(id string, iv time.Duration, res slotmgr.ResourceType, app string, prio int, tr Transport) *Channel {
	lh.t.Helper()
	ch, err := lh.h.NewChannel(id, iv, res, app, prio)
	if err != nil {
		lh.t.Fatal(err)
	}
	if tr == nil {
		return ch
	}
	if err := ch.SetPushTask("push"); err != nil {
		lh.t.Fatal(err)
	}
	if err := ch.UsingTransport(tr); err != nil {
		lh.t.Fatal(err)
	}
	return ch
}

// standby puts the host to sleep and checks every hardware channel got
// its slot.
func (lh *labHost) standby(ctx context.Context, chans ...*Channel) {
	lh.t.Helper()
	if err := lh.h.Standby(ctx); err != nil {
		lh.t.Fatal(err)
	}
	for _, ch := range chans {
		if ch.Status() == slotmgr.HardwareSlotAllocated && !ch.Armed() {
			lh.t.Fatalf("hardware channel %s not armed: %s", ch.ID(), ch.Note())
		}
	}
	if s := lh.dev.State(); s != nic.D3 {
		lh.t.Fatalf("NIC in %v after standby entry, want D3", s)
	}
}

// hardwareWakes is the count of wakes a hardware slot caused.
func hardwareWakes(st *Stats) uint64 {
	return st.Wake(WakeHardwarePush) + st.Wake(WakeHardwareReset) + st.Wake(WakeKeepAliveTimeout) + st.Wake(WakePattern)
}

// TestIntegrationPlacement: 10 hardware requests on a NIC with 4 slots
// get exactly 4 hardware and 6 software slots; an app past its quota and
// an app past the permitted apps get PolicyError.
func TestIntegrationPlacement(t *testing.T) {
	lh := newLabHost(t, 4, func(c *Config) {
		c.Pool.PermittedApps = 2
		c.Pool.AppChannelQuota = 10
	})
	ctx := labDeadline(t)
	var got []slotmgr.Status
	for i := range 10 {
		id := fmt.Sprintf("ch%d", i)
		ch := lh.channel(id, slotmgr.RequestHardwareSlot, "mail", 0, lh.dialStream(ctx, id, []byte("ka")))
		st, err := ch.WaitForPushEnabled()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, st)
	}
	count := map[slotmgr.Status]int{}
	for _, s := range got {
		count[s]++
	}
	if count[slotmgr.HardwareSlotAllocated] != 4 || count[slotmgr.SoftwareSlotAllocated] != 6 || len(count) != 2 {
		t.Errorf("statuses %v: want exactly 4 %v and 6 %v", got, slotmgr.HardwareSlotAllocated, slotmgr.SoftwareSlotAllocated)
	}
	for i, s := range got[:4] {
		if s != slotmgr.HardwareSlotAllocated {
			t.Errorf("ch%d: %v, want the first four hardware", i, s)
		}
	}
	tests := []struct {
		name, id, app string
	}{
		{"quota", "ch10", "mail"},      // the 11th channel of "mail"
		{"permitted", "chat0", "chat"}, // the second permitted app: admitted
		{"not permitted", "game0", "game"},
	}
	// The pool is full of "mail" channels of the same priority: the
	// second app is admitted and falls back to software.
	want := map[string]slotmgr.Status{"quota": slotmgr.PolicyError, "permitted": slotmgr.SoftwareSlotAllocated, "not permitted": slotmgr.PolicyError}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := lh.channel(tt.id, slotmgr.RequestHardwareSlot, tt.app, 0, nil)
			st, err := ch.WaitForPushEnabled()
			if tt.name == "permitted" {
				if err := ch.UsingTransport(lh.dialStream(ctx, tt.id, nil)); err != nil {
					t.Fatal(err)
				}
				st, err = ch.WaitForPushEnabled()
			}
			if err != nil {
				t.Fatal(err)
			}
			if st != want[tt.name] {
				t.Errorf("%s of %s: %v, want %v", tt.id, tt.app, st, want[tt.name])
			}
		})
	}
	// The placement holds on the wire: the 4 hardware channels are armed
	// in the NIC, the others get coalescing filters.
	lh.standby(ctx)
	if n := len(lh.dev.Slots()); n != 4 {
		t.Errorf("NIC armed %d slots, want 4", n)
	}
	if n := len(lh.dev.Coalescing()); n != 7 {
		t.Errorf("NIC has %d coalescing filters, want 7 (6 + chat0)", n)
	}
}

// TestIntegrationStandbyKeepAlives: over several keep-alive intervals in
// standby, the NIC keeps the 4 hardware channels (1 s) alive (probes
// sent, ACKs absorbed) without waking the host, and the 6 software
// channels' keep-alives (2 s) share wakes: every software wake serves all
// 6. Every wake takes the slots back and re-arms them at the next entry
// (the thaw's window probe draws an answer from the peer, a keep-alive
// exchange itself), so the hardware interval is the shorter one: the
// slots probe between software wakes.
func TestIntegrationStandbyKeepAlives(t *testing.T) {
	lh := newLabHost(t, 4, nil)
	ctx := labDeadline(t)
	var chans []*Channel
	var hwTr []*kaStream
	for i := range 10 {
		id := fmt.Sprintf("ch%d", i)
		res, iv := slotmgr.RequestHardwareSlot, labInterval
		if i >= 4 {
			res, iv = slotmgr.RequestSoftwareSlot, 2*labInterval
		}
		s := lh.dialStream(ctx, id, []byte("ka"))
		var tr Transport = s
		if i < 4 {
			k := &kaStream{Stream: s, clk: lh.h.Clock()}
			hwTr, tr = append(hwTr, k), k
		}
		chans = append(chans, lh.channelEvery(id, iv, res, "mail", 0, tr))
	}
	// hwKeepAlives counts the keep-alives the host itself sent on the
	// hardware channels: a wake serves those due within the planner's
	// tolerance too, since each hardware channel's schedule runs on
	// across the wakes. The host sends them with its lock held, so a
	// Wait condition reads a count consistent with its Stats.
	hwKeepAlives := func() uint64 {
		n := 0
		for _, k := range hwTr {
			k.mu.Lock()
			n += len(k.at)
			k.mu.Unlock()
		}
		return uint64(n)
	}
	lh.standby(ctx, chans...)
	var start Stats
	var hwStart uint64
	lh.h.Wait(ctx, func(st *Stats) bool { start, hwStart = *st, hwKeepAlives(); return true })
	const intervals = 3
	// Wait for the third software wake (about 3 × 2 s of standby).
	var st Stats
	var hwKAs uint64
	if err := lh.h.Wait(ctx, func(s *Stats) bool {
		st, hwKAs = *s, hwKeepAlives()-hwStart
		return s.Wake(WakeSoftwareKeepAlive) >= start.Wake(WakeSoftwareKeepAlive)+intervals && s.State == Standby
	}); err != nil {
		t.Fatalf("software wakes: %v; stats %+v", err, lh.h.Stats().Wakes)
	}
	if n := hardwareWakes(&st); n != 0 {
		t.Errorf("%d wakes caused by hardware slots (%v), want 0", n, st.Wakes)
	}
	wakes := st.Wake(WakeSoftwareKeepAlive) - start.Wake(WakeSoftwareKeepAlive)
	kas := st.KeepAlives - start.KeepAlives
	if kas-hwKAs != 6*wakes {
		t.Errorf("%d keep-alives (%d of hardware channels) on %d wakes, want 6 software ones per wake (coalesced)", kas, hwKAs, wakes)
	}
	t.Logf("%d wakes: %d keep-alives by the host, %d of them on hardware channels", wakes, kas, hwKAs)
	if st.Resumes != st.Wake(WakeSoftwareKeepAlive) {
		t.Errorf("resumes %d, software keep-alive wakes %d: other wakes %v", st.Resumes, st.Wake(WakeSoftwareKeepAlive), st.Wakes)
	}
	// The server got the keep-alives of every software channel.
	for _, ch := range chans[4:] {
		c, _ := lh.srv.Channel(ch.ID())
		if n := strings.Count(strings.Join(c.Lines, "\n"), "ka"); n < intervals-1 {
			t.Errorf("%s: server saw %d keep-alives, want ≥ %d", ch.ID(), n, intervals-1)
		}
	}
	// The NIC's books: the hardware slots' probes were answered and
	// absorbed. Each software wake re-arms the slots, so the per-slot
	// counters start over; the device's totals cover the whole standby.
	if n := lh.counter("d3_rx_absorbed"); n < 4*intervals {
		t.Errorf("d3_rx_absorbed = %d, want the probe ACKs of 4 slots at each of %d cycles", n, intervals)
	}
	if n := lh.counter("d3_wakes"); n != lh.counter("pm_d3_to_waking") {
		t.Errorf("d3_wakes %d, D3→waking %d", n, lh.counter("pm_d3_to_waking"))
	}
	for _, ch := range chans[:4] {
		if !ch.Armed() && lh.h.State() == Standby {
			t.Errorf("hardware channel %s not armed in standby: %s", ch.ID(), ch.Note())
		}
		c, _ := lh.srv.Channel(ch.ID())
		if !c.Connected {
			t.Errorf("hardware channel %s lost its connection", ch.ID())
		}
	}
	// Standby long enough for every hardware slot to probe once without
	// a software wake in between: one channel per kind, slots only.
	lh.h.Wake(ctx)
	for _, ch := range chans[4:] {
		ch.Close()
	}
	lh.standby(ctx, chans[:4]...)
	before := lh.h.Stats()
	probes, acks := lh.counter("d3_engine_tx_frames"), lh.counter("d3_rx_absorbed")
	deadline := time.Now().Add(10 * time.Second)
	for lh.counter("d3_rx_absorbed") < acks+4*3 {
		if time.Now().After(deadline) {
			t.Fatalf("absorbed %d ACKs in 10 s, want 12; counters %v", lh.counter("d3_rx_absorbed")-acks, nonZeroCounters(lh.dev.Counters()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	after := lh.h.Stats()
	if after.Resumes != before.Resumes {
		t.Errorf("host woke %d times with hardware slots only (%v)", after.Resumes-before.Resumes, after.Wakes)
	}
	if sent := lh.counter("d3_engine_tx_frames") - probes; sent < 12 {
		t.Errorf("NIC sent %d probes, want ≥ 12", sent)
	}
	for i := 1; i <= 4; i++ {
		if n := lh.counter("slot" + strconv.Itoa(i) + "_replies_absorbed"); n < 3 {
			t.Errorf("slot%d_replies_absorbed = %d, want ≥ 3", i, n)
		}
	}
}

// TestIntegrationPush: a push on a hardware channel wakes the host and
// runs the push task with the exact message; a push on a software
// channel is held by the NIC (coalesced, no wake) and read at the next
// software wake; the server's acks prove nothing was lost.
func TestIntegrationPush(t *testing.T) {
	lh := newLabHost(t, 1, nil)
	ctx := labDeadline(t)
	hw := lh.channel("hw", slotmgr.RequestHardwareSlot, "mail", 0, lh.dialStream(ctx, "hw", nil))
	sw := lh.channel("sw", slotmgr.RequestSoftwareSlot, "mail", 0, lh.dialStream(ctx, "sw", []byte("ka")))
	lh.standby(ctx, hw, sw)

	id, err := lh.srv.Push("hw", "you have mail: hardware")
	if err != nil {
		t.Fatal(err)
	}
	lh.waitMessage(ctx, "hw", "push "+strconv.FormatUint(id, 10)+" you have mail: hardware")
	if err := lh.srv.WaitAcked(ctx, "hw", id); err != nil {
		t.Fatal(err)
	}
	if st := lh.h.Stats(); st.Wake(WakeHardwarePush) != 1 {
		t.Errorf("hardware push wakes %d, want 1 (%v)", st.Wake(WakeHardwarePush), st.Wakes)
	}
	if err := lh.h.Wait(ctx, func(st *Stats) bool { return st.State == Standby }); err != nil {
		t.Fatal(err)
	}

	// The software channel: wait until the host just went to sleep, then
	// push. The NIC holds the frames; the host reads the push at its next
	// software wake, not before.
	if err := lh.h.Wait(ctx, func(st *Stats) bool { return st.State == Standby && st.Wake(WakeSoftwareKeepAlive) > 0 }); err != nil {
		t.Fatal(err)
	}
	before := lh.h.Stats()
	coalesced := lh.counter("d3_rx_coalesced")
	id2, err := lh.srv.Push("sw", "you have mail: software")
	if err != nil {
		t.Fatal(err)
	}
	want := "push " + strconv.FormatUint(id2, 10) + " you have mail: software"
	lh.waitMessage(ctx, "sw", want)
	if err := lh.srv.WaitAcked(ctx, "sw", id2); err != nil {
		t.Fatal(err)
	}
	after := lh.h.Stats()
	if n := lh.counter("d3_rx_coalesced"); n <= coalesced {
		t.Errorf("d3_rx_coalesced %d → %d: the push was not held by the NIC", coalesced, n)
	}
	if n := lh.counter("d3_rx_coalesce_dropped"); n != 0 {
		t.Errorf("d3_rx_coalesce_dropped = %d", n)
	}
	if d := after.Wake(WakeSoftwareKeepAlive) - before.Wake(WakeSoftwareKeepAlive); d < 1 {
		t.Errorf("software push read after %d software wakes, want it at a software wake", d)
	}
	if hardwareWakes(&after) != 1 {
		t.Errorf("hardware wakes %v: the software push woke the host", after.Wakes)
	}
	for _, name := range []string{"hw", "sw"} {
		c, _ := lh.srv.Channel(name)
		if len(c.Pushed) != len(c.Acked) {
			t.Errorf("%s: pushed %v, acked %v", name, c.Pushed, c.Acked)
		}
	}
	if got := lh.messages("sw"); len(got) != 1 || got[0] != want {
		t.Errorf("software channel read %q, want [%q]", got, want)
	}
}

// TestIntegrationWebSocketPingByNIC: the server pings a hardware
// WebSocket channel during standby; the NIC answers with masked Pongs and
// the host stays asleep; after a later push the app's stream and the
// server's are byte-exact.
func TestIntegrationWebSocketPingByNIC(t *testing.T) {
	lh := newLabHost(t, 1, nil)
	ctx := labDeadline(t)
	tap := &streamTap{}
	tr := lh.dialWebSocket(ctx, "ws", tap)
	ch := lh.channel("ws", slotmgr.RequestHardwareSlot, "chat", 0, tr)
	lh.standby(ctx, ch)
	_, beforeWritten := tap.bytes()
	resumes := lh.h.Stats().Resumes
	pings := []string{"srv-ping-1", "srv-ping-2", "srv-ping-3"}
	for i, p := range pings {
		if err := lh.srv.Ping("ws", p); err != nil {
			t.Fatal(err)
		}
		if err := lh.srv.Wait(ctx, "ws", func(c pushserver.Channel, ok bool) bool { return len(c.Pongs) >= i+1 }); err != nil {
			t.Fatalf("pong %d: %v; counters %v", i+1, err, nonZeroCounters(lh.dev.Counters()))
		}
	}
	c, _ := lh.srv.Channel("ws")
	if strings.Join(c.Pongs, ",") != strings.Join(pings, ",") {
		t.Errorf("server got Pongs %q, want %q", c.Pongs, pings)
	}
	if n := lh.h.Stats().Resumes - resumes; n != 0 {
		t.Fatalf("the host woke %d times for the Pings", n)
	}
	if n := lh.counter("slot1_pings_answered"); n != uint64(len(pings)) {
		t.Errorf("slot1_pings_answered = %d, want %d", n, len(pings))
	}
	id, err := lh.srv.Push("ws", "after the pings")
	if err != nil {
		t.Fatal(err)
	}
	lh.waitMessage(ctx, "ws", "push "+strconv.FormatUint(id, 10)+" after the pings")
	if err := lh.srv.WaitAcked(ctx, "ws", id); err != nil {
		t.Fatal(err)
	}
	// Both ends, byte-exact: the app read exactly what the server sent
	// (the Pings the NIC absorbed included), and the server read exactly
	// what the host wrote with the NIC's frames in between.
	read, written := tap.bytes()
	c, _ = lh.srv.Channel("ws")
	if string(read) != string(c.Sent) {
		t.Errorf("the app read %d bytes, the server sent %d: streams differ\napp %q\nsrv %q", len(read), len(c.Sent), read, c.Sent)
	}
	nicSent, nicAbsorbed := ch.NICBytes()
	k := len(beforeWritten)
	if uint64(len(c.Received)) != uint64(len(written))+nicSent {
		t.Fatalf("server read %d bytes; host wrote %d and the NIC %d", len(c.Received), len(written), nicSent)
	}
	if string(c.Received[:k]) != string(written[:k]) || string(c.Received[k+int(nicSent):]) != string(written[k:]) {
		t.Errorf("server's stream is not the host's with the NIC's bytes at the standby\nsrv  %q\nhost %q", c.Received, written)
	}
	pongs, others := clientControlFrames(t, c.Received[k:k+int(nicSent)])
	if strings.Join(pongs, ",") != strings.Join(pings, ",") {
		t.Errorf("the NIC's bytes hold Pongs %q, want %q", pongs, pings)
	}
	for _, o := range others {
		if o != "ping nic" {
			t.Errorf("the NIC sent %q besides its Pongs", o)
		}
	}
	if nicAbsorbed == 0 {
		t.Error("the NIC absorbed no bytes: where did the Pings go?")
	}
	if _, answered, byNIC, _ := tr.PingCounts(); byNIC != uint64(len(pings)) || answered != 0 {
		t.Errorf("reader skipped %d Pings as answered by the NIC and answered %d itself, want %d and 0", byNIC, answered, len(pings))
	}
	if strings.Join(c.Pongs, ",") != strings.Join(pings, ",") {
		t.Errorf("server got Pongs %q in all, want %q: each Ping answered once", c.Pongs, pings)
	}
}

// clientControlFrames parses masked client WebSocket control frames and
// returns the Pong payloads, and the other frames as "<op> <payload>".
func clientControlFrames(t *testing.T, b []byte) (pongs, others []string) {
	t.Helper()
	for len(b) > 0 {
		if len(b) < 6 || b[1]&0x80 == 0 || b[1]&0x7f > 125 {
			t.Fatalf("not a masked control frame: %x", b)
		}
		n := int(b[1] & 0x7f)
		if len(b) < 6+n {
			t.Fatalf("short frame: %x", b)
		}
		key := b[2:6]
		p := make([]byte, n)
		for i := range p {
			p[i] = b[6+i] ^ key[i%4]
		}
		switch b[0] {
		case 0x8a:
			pongs = append(pongs, string(p))
		case 0x89:
			others = append(others, "ping "+string(p))
		default:
			others = append(others, fmt.Sprintf("op %#x %s", b[0], p))
		}
		b = b[6+n:]
	}
	return pongs, others
}

// TestIntegrationResetPromotes: the server resets a hardware channel in
// standby; the host wakes, the channel reports TransportDisconnected with
// a reset event, its freed slot promotes the software channel, and the
// NIC arms that one at the next standby.
func TestIntegrationResetPromotes(t *testing.T) {
	lh := newLabHost(t, 1, nil)
	ctx := labDeadline(t)
	resets := make(chan ResetReason, 4)
	// The task does not reconnect, so the reconnect schedule runs it
	// again later (500 ms, 1 s, …): it must never block.
	if err := lh.h.RegisterTask("reset", func(ctx context.Context, ti *TaskInstance) {
		select {
		case resets <- ti.Reset:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	hw := lh.channel("hw", slotmgr.RequestHardwareSlot, "mail", 1, lh.dialStream(ctx, "hw", nil))
	sw := lh.channel("sw", slotmgr.RequestHardwareSlot, "mail", 0, lh.dialStream(ctx, "sw", []byte("ka")))
	if err := hw.SetResetTask("reset"); err != nil {
		t.Fatal(err)
	}
	if st, _ := sw.WaitForPushEnabled(); st != slotmgr.SoftwareSlotAllocated {
		t.Fatalf("second channel %v, want software (pool of 1)", st)
	}
	lh.standby(ctx, hw, sw)
	if err := lh.srv.Reset("hw"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-resets:
		if r != ResetTransportDisconnected {
			t.Errorf("reset reason %v, want %v", r, ResetTransportDisconnected)
		}
	case <-ctx.Done():
		t.Fatalf("no reset task; stats %+v", lh.h.Stats().Wakes)
	}
	if st, _ := hw.WaitForPushEnabled(); st != slotmgr.TransportDisconnected {
		t.Errorf("reset channel %v, want TransportDisconnected", st)
	}
	if n, r := hw.Resets(); n < 1 || r != ResetTransportDisconnected {
		t.Errorf("resets %d %v", n, r)
	}
	if st := lh.h.Stats(); st.Wake(WakeHardwareReset) != 1 {
		t.Errorf("reset wakes %d (%v), want 1", st.Wake(WakeHardwareReset), st.Wakes)
	}
	if err := lh.h.Wait(ctx, func(*Stats) bool { return sw.status == slotmgr.HardwareSlotAllocated }); err != nil {
		t.Fatalf("software channel not promoted: %v", sw.Status())
	}
	var promoted bool
	for _, ev := range sw.Events() {
		promoted = promoted || ev.Kind == slotmgr.Promoted
	}
	if !promoted {
		t.Errorf("events %v, want a promotion", sw.Events())
	}
	// The next standby arms the promoted channel.
	if err := lh.h.Wait(ctx, func(st *Stats) bool { return st.State == Standby && sw.slot != 0 }); err != nil {
		t.Fatalf("promoted channel not armed: %v (%s)", err, sw.Note())
	}
	if ids := lh.dev.Slots(); len(ids) != 1 {
		t.Errorf("NIC slots %v, want 1", ids)
	}
}
