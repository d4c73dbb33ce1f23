package host

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/slotmgr"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// fakeNIC records what the host asks of it and wakes the host on demand.
// It learns a connection from the socket itself (socks, read in repair
// mode: the host asks while the socket is frozen), as the real NIC
// learns it from the wire.
type fakeNIC struct {
	mu        sync.Mutex
	slots     int
	socks     map[wp.TCPConn]*net.TCPConn
	learned   map[wp.TCPConn]nic.Learned
	armed     map[nic.SlotID]offload.Snapshot
	specs     map[nic.SlotID]offload.Spec
	next      nic.SlotID
	books     offload.Books // returned by the next Disarm
	sleeps    int
	resumes   int
	calls     []string
	coalesced map[wp.TCPConn]bool
	asleep    bool
	wakes     chan nic.WakeEvent
	armErr    error
	// clock, when set, makes the fake keep its slots' keep-alive
	// schedules as the engine does (first one FirstDue after Arm, or an
	// Interval when FirstDue is 0, then every Interval, every one
	// answered): Disarm reports them, and keepAlives records their times.
	clock      Clock
	armedAt    map[nic.SlotID]time.Duration
	keepAlives []time.Duration
}

func newFakeNIC(slots int) *fakeNIC {
	return &fakeNIC{slots: slots, armed: map[nic.SlotID]offload.Snapshot{}, specs: map[nic.SlotID]offload.Spec{},
		coalesced: map[wp.TCPConn]bool{}, wakes: make(chan nic.WakeEvent, 8),
		socks: map[wp.TCPConn]*net.TCPConn{}, learned: map[wp.TCPConn]nic.Learned{},
		armedAt: map[nic.SlotID]time.Duration{}}
}

// add lets the fake learn conn.
func (f *fakeNIC) add(conn *net.TCPConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.socks[connOf(conn)] = conn
}

func (f *fakeNIC) Capabilities() nic.Capabilities { return nic.Capabilities{Slots: f.slots} }
func (f *fakeNIC) Track(c wp.TCPConn) error       { return nil }
func (f *fakeNIC) Untrack(c wp.TCPConn) error     { return nil }

func (f *fakeNIC) Learned(c wp.TCPConn) (nic.Learned, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sock := f.socks[c]
	if sock == nil {
		return nic.Learned{}, false
	}
	raw, err := sock.SyscallConn()
	if err != nil {
		return nic.Learned{}, false
	}
	var st TCPState
	if repairControl(raw, func(fd int) error { st, err = repairReadState(fd); return err }) == nil {
		f.learned[c] = nic.Learned{Conn: c, LocalMAC: [6]byte{2, 0, 0, 0, 0, 2}, RemoteMAC: [6]byte{2, 0, 0, 0, 0, 1},
			SndNxt: st.SndNxt, RcvNxt: st.RcvNxt, HasTS: st.Timestamps, TSRecent: 4242,
			SeenIn: true, SeenOut: true, SegmentsIn: 1, SegmentsOut: 1}
	}
	l := f.learned[c]
	return l, l.SeenIn
}

func (f *fakeNIC) Arm(s nic.SlotConfig) (nic.SlotID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.armErr != nil {
		return 0, f.armErr
	}
	f.next++
	f.armed[f.next] = s.Snapshot
	f.specs[f.next] = s.Spec
	if f.clock != nil {
		f.armedAt[f.next] = f.clock.Now()
	}
	f.calls = append(f.calls, "arm")
	return f.next, nil
}

func (f *fakeNIC) Disarm(slot nic.SlotID) (offload.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.armed[slot]; !ok {
		return offload.Report{}, offload.ErrNotArmed
	}
	delete(f.armed, slot)
	f.calls = append(f.calls, "disarm")
	b := f.books
	f.books = offload.Books{}
	r := offload.Report{State: offload.StateWoken, Books: b}
	if f.clock != nil {
		spec := f.specs[slot]
		at := f.armedAt[slot] + spec.FirstDue
		if spec.FirstDue == 0 {
			at = f.armedAt[slot] + spec.Interval
		}
		for now := f.clock.Now(); at <= now; at += spec.Interval {
			f.keepAlives = append(f.keepAlives, at)
			r.Counters.KeepalivesSent++
			r.LastKeepAlive = at
		}
	}
	return r, nil
}

func (f *fakeNIC) AddCoalescing(c wp.TCPConn) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.coalesced[c] = true
	f.calls = append(f.calls, "coalesce")
	return nil
}

func (f *fakeNIC) RemoveCoalescing(c wp.TCPConn) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.coalesced[c] {
		return nic.ErrUnknownFilter
	}
	delete(f.coalesced, c)
	f.calls = append(f.calls, "uncoalesce")
	return nil
}

func (f *fakeNIC) Sleep() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps++
	f.asleep = true
	f.calls = append(f.calls, "sleep")
	return nil
}

func (f *fakeNIC) Wake() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.asleep {
		return nic.ErrState
	}
	f.asleep = false
	f.calls = append(f.calls, "wake")
	return nil
}

func (f *fakeNIC) Resume() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resumes++
	f.asleep = false
	f.calls = append(f.calls, "resume")
	return nil
}

func (f *fakeNIC) Wakes() <-chan nic.WakeEvent { return f.wakes }

var _ NIC = (*fakeNIC)(nil)

// TestIntegrationFakeNICHandBack freezes a real loopback connection for a
// hardware slot, wakes on a (fake) NIC push, and checks that the bytes the
// NIC absorbed reach the app in order before what the server sends next.
func TestIntegrationFakeNICHandBack(t *testing.T) {
	clk := NewFakeClock(time.Second)
	fn := newFakeNIC(2)
	h := newHost(t, &Config{Clock: clk, NIC: fn, Pool: secondsPool(2)})
	s := newPushServer(t)
	got := make(chan string, 8)
	h.RegisterTask("push", func(ctx context.Context, ti *TaskInstance) {
		for {
			m, ok := ti.Receive()
			if !ok {
				return
			}
			got <- string(m.Data)
		}
	})
	ch, _ := h.NewChannel("hw", 10*time.Second, slotmgr.RequestHardwareSlot, "app", 0)
	ch.SetPushTask("push")
	tr := dialStream(t, s, "hw", nil)
	fn.add(tr.Conn())
	if err := ch.UsingTransport(tr); err != nil {
		t.Fatal(err)
	}
	if st, _ := ch.WaitForPushEnabled(); st != slotmgr.HardwareSlotAllocated {
		t.Fatalf("status %v", st)
	}
	if err := h.Standby(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	settle(t, h, Standby)
	if !ch.Armed() {
		note := ch.Note()
		if strings.Contains(note, "operation not permitted") {
			t.Skipf("TCP_REPAIR needs CAP_NET_ADMIN: %s", note)
		}
		t.Fatalf("hardware channel not armed: %s", note)
	}
	fn.mu.Lock()
	snap := fn.armed[1]
	spec := fn.specs[1]
	fn.mu.Unlock()
	l, r := addrPorts(tr.Conn())
	if snap.Local != l || snap.Remote != r || spec.Kind != offload.KindTCPProbe || spec.Interval != 10*time.Second {
		t.Errorf("armed %v→%v spec %v %v; want %v→%v tcp-probe 10s", snap.Local, snap.Remote, spec.Kind, spec.Interval, l, r)
	}
	// The server never sent these bytes, so the test only checks the host
	// side: they are what the NIC would have absorbed.
	fn.mu.Lock()
	fn.books = offload.Books{Absorbed: []byte("push 99 absorbed\n")}
	fn.mu.Unlock()
	fn.wakes <- nic.WakeEvent{Slot: 1, Reason: nic.WakeData}
	select {
	case m := <-got:
		if m != "push 99 absorbed" {
			t.Errorf("message %q", m)
		}
	case <-ctxT(t).Done():
		t.Fatal("absorbed bytes never reached the task")
	}
	// The message arrived: the host goes back to standby and arms the
	// channel again.
	if err := h.Wait(ctxT(t), func(st *Stats) bool { return st.State == Standby && st.Armed == 2 }); err != nil {
		t.Fatalf("back to standby: %v", err)
	}
	st := h.Stats()
	if st.Wake(WakeHardwarePush) != 1 || st.HandBacks != 1 || st.Armed != 2 {
		t.Errorf("wakes %d hand-backs %d armed %d; want 1, 1, 2", st.Wake(WakeHardwarePush), st.HandBacks, st.Armed)
	}
	fn.mu.Lock()
	calls := append([]string(nil), fn.calls...)
	fn.mu.Unlock()
	want := []string{"arm", "sleep", "disarm", "resume"}
	for i := range want {
		if i >= len(calls) || calls[i] != want[i] {
			t.Fatalf("NIC calls %v, want prefix %v", calls, want)
		}
	}
}

// kaStream is a Stream that records when the host sent its keep-alive.
type kaStream struct {
	*Stream
	clk Clock
	mu  sync.Mutex
	at  []time.Duration
}

// KeepAlive implements Transport.KeepAlive.
func (s *kaStream) KeepAlive() (bool, error) {
	s.mu.Lock()
	s.at = append(s.at, s.clk.Now())
	s.mu.Unlock()
	return s.Stream.KeepAlive()
}

// TestIntegrationFakeNICKeepAlivePhase: a hardware channel's keep-alive
// schedule survives the host's wakes. A software channel wakes the host
// every 4 min; every wake takes the hardware channel's slot back and arms
// it again at the next standby. Each arming must carry the time left
// (Spec.FirstDue) and each hand-back the slot's last keep-alive, or the
// channel's interval restarts at every entry and it never gets a
// keep-alive at all. A keep-alive due within the planner's tolerance
// (30 s) after a wake is sent by the host at that wake.
func TestIntegrationFakeNICKeepAlivePhase(t *testing.T) {
	const (
		horizon = 61 * time.Minute
		m       = time.Minute
		s       = time.Second
	)
	tests := []struct {
		name          string
		interval      time.Duration
		byNIC, byHost []time.Duration
	}{
		{"the NIC keeps the phase", 10 * m,
			[]time.Duration{10 * m, 20 * m, 30 * m, 40 * m, 50 * m, 60 * m}, nil},
		{"a wake within the tolerance serves it", 10*m + 15*s,
			[]time.Duration{10*m + 15*s, 30*m + 15*s, 50*m + 15*s}, []time.Duration{20 * m, 40 * m, 60 * m}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			byNIC, byHost, armings, wakes := runKeepAlivePhase(t, tt.interval, horizon)
			if diff := cmp.Diff(tt.byNIC, byNIC); diff != "" {
				t.Errorf("keep-alives by the NIC (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.byHost, byHost); diff != "" {
				t.Errorf("keep-alives by the host (-want +got):\n%s", diff)
			}
			// The channel gets a keep-alive at least every interval (the
			// host arms an overdue one with the smallest FirstDue, so
			// late by that at most), up to the last hand-back.
			all := slices.Sorted(slices.Values(append(slices.Clone(byNIC), byHost...)))
			last := time.Duration(0) // the transport was attached at 0
			for _, at := range append(all, wakes[len(wakes)-1]) {
				if gap := at - last; gap > tt.interval+minFirstDue {
					t.Errorf("no keep-alive from %v to %v (%v, interval %v)", last, at, gap, tt.interval)
				}
				last = at
			}
			// Each arming's FirstDue is the time left until an interval
			// after the channel's last keep-alive.
			var want, got []time.Duration
			for _, a := range armings {
				prev := time.Duration(0)
				if i, _ := slices.BinarySearch(all, a.armedAt+1); i > 0 {
					prev = all[i-1]
				}
				want = append(want, prev+tt.interval-a.armedAt)
				got = append(got, a.firstDue)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Spec.FirstDue of each arming (-want +got):\n%s", diff)
			}
			t.Logf("wakes %v; keep-alives by the NIC %v, by the host %v", wakes, byNIC, byHost)
		})
	}
}

type arming struct{ armedAt, firstDue time.Duration }

// runKeepAlivePhase runs a hardware channel of the interval beside a
// software channel of 4 min on a fake NIC up to horizon, and returns the
// hardware channel's keep-alives sent by the NIC and by the host, its
// armings and the host's wakes.
func runKeepAlivePhase(t *testing.T, interval, horizon time.Duration) (byNIC, byHost []time.Duration, armings []arming, wakes []time.Duration) {
	clk := NewFakeClock(0)
	fn := newFakeNIC(1)
	fn.clock = clk
	h := newHost(t, &Config{Clock: clk, NIC: fn, Pool: secondsPool(1)})
	s := newPushServer(t)
	hw, _ := h.NewChannel("hw", interval, slotmgr.RequestHardwareSlot, "app", 1)
	sw, _ := h.NewChannel("sw", 4*time.Minute, slotmgr.RequestSoftwareSlot, "app", 0)
	tr := &kaStream{Stream: dialStream(t, s, "hw", []byte("ka")), clk: clk}
	fn.add(tr.Conn())
	if err := hw.UsingTransport(tr); err != nil {
		t.Fatal(err)
	}
	if err := sw.UsingTransport(dialStream(t, s, "sw", []byte("ka"))); err != nil {
		t.Fatal(err)
	}
	if st, _ := hw.WaitForPushEnabled(); st != slotmgr.HardwareSlotAllocated {
		t.Fatalf("hw status %v", st)
	}
	if st, _ := sw.WaitForPushEnabled(); st != slotmgr.SoftwareSlotAllocated {
		t.Fatalf("sw status %v", st)
	}
	if err := h.Standby(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	settle(t, h, Standby)
	if !hw.Armed() {
		note := hw.Note()
		if strings.Contains(note, "operation not permitted") {
			t.Skipf("TCP_REPAIR needs CAP_NET_ADMIN: %s", note)
		}
		t.Fatalf("hardware channel not armed: %s", note)
	}
	for {
		at, ok := clk.Next()
		if !ok || at > horizon {
			break
		}
		step(t, h, clk)
		settle(t, h, Standby)
		if !hw.Armed() {
			t.Fatalf("hardware channel not armed again at %v: %s", at, hw.Note())
		}
		wakes = append(wakes, at)
	}
	if len(wakes) < 10 || wakes[0] != 4*time.Minute {
		t.Fatalf("host wakes %v; want one every 4 min", wakes)
	}
	fn.mu.Lock()
	byNIC = slices.Clone(fn.keepAlives)
	for id := nic.SlotID(1); id <= fn.next; id++ {
		armings = append(armings, arming{fn.armedAt[id], fn.specs[id].FirstDue})
	}
	fn.mu.Unlock()
	tr.mu.Lock()
	byHost = slices.Clone(tr.at)
	tr.mu.Unlock()
	return byNIC, byHost, armings, wakes
}
