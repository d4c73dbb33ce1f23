package host

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

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
}

func newFakeNIC(slots int) *fakeNIC {
	return &fakeNIC{slots: slots, armed: map[nic.SlotID]offload.Snapshot{}, specs: map[nic.SlotID]offload.Spec{},
		coalesced: map[wp.TCPConn]bool{}, wakes: make(chan nic.WakeEvent, 8),
		socks: map[wp.TCPConn]*net.TCPConn{}, learned: map[wp.TCPConn]nic.Learned{}}
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
	return offload.Report{State: offload.StateWoken, Books: b}, nil
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
