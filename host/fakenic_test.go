package host

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/slotmgr"
)

// fakeNIC records what the host asks of it and wakes the host on demand.
type fakeNIC struct {
	mu      sync.Mutex
	slots   int
	armed   map[int]offload.Snapshot
	specs   map[int]offload.Spec
	next    int
	books   offload.Books // returned by the next Disarm
	sleeps  int
	resumes int
	calls   []string
	wakes   chan NICWake
	armErr  error
}

func newFakeNIC(slots int) *fakeNIC {
	return &fakeNIC{slots: slots, armed: map[int]offload.Snapshot{}, specs: map[int]offload.Spec{}, wakes: make(chan NICWake, 8)}
}

func (f *fakeNIC) Slots() int                               { return f.slots }
func (f *fakeNIC) Track(local, remote netip.AddrPort) error { return nil }
func (f *fakeNIC) Untrack(local, remote netip.AddrPort)     {}
func (f *fakeNIC) Learned(local, remote netip.AddrPort) (Learned, bool) {
	return Learned{LocalMAC: [6]byte{2, 0, 0, 0, 0, 2}, RemoteMAC: [6]byte{2, 0, 0, 0, 0, 1}}, true
}

func (f *fakeNIC) Arm(snap offload.Snapshot, spec offload.Spec) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.armErr != nil {
		return 0, f.armErr
	}
	f.next++
	f.armed[f.next] = snap
	f.specs[f.next] = spec
	f.calls = append(f.calls, "arm")
	return f.next, nil
}

func (f *fakeNIC) Disarm(slot int) (offload.Report, error) {
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

func (f *fakeNIC) Sleep() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps++
	f.calls = append(f.calls, "sleep")
	return nil
}

func (f *fakeNIC) Resume() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resumes++
	f.calls = append(f.calls, "resume")
	return nil
}

func (f *fakeNIC) Wakes() <-chan NICWake { return f.wakes }

// TestIntegrationFakeNICHandBack freezes a real loopback connection for a
// hardware slot, wakes on a (fake) NIC push, and checks that the bytes the
// NIC absorbed reach the app in order before what the server sends next.
func TestIntegrationFakeNICHandBack(t *testing.T) {
	clk := NewFakeClock(time.Second)
	nic := newFakeNIC(2)
	h := newHost(t, &Config{Clock: clk, NIC: nic, Pool: secondsPool(2)})
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
	nic.mu.Lock()
	snap := nic.armed[1]
	spec := nic.specs[1]
	nic.mu.Unlock()
	l, r := addrPorts(tr.Conn())
	if snap.Local != l || snap.Remote != r || spec.Kind != offload.KindTCPProbe || spec.Interval != 10*time.Second {
		t.Errorf("armed %v→%v spec %v %v; want %v→%v tcp-probe 10s", snap.Local, snap.Remote, spec.Kind, spec.Interval, l, r)
	}
	// The server never sent these bytes, so the test only checks the host
	// side: they are what the NIC would have absorbed.
	nic.mu.Lock()
	nic.books = offload.Books{Absorbed: []byte("push 99 absorbed\n")}
	nic.mu.Unlock()
	nic.wakes <- NICWake{Slot: 1, Reason: offload.ReasonData}
	select {
	case m := <-got:
		if m != "push 99 absorbed" {
			t.Errorf("message %q", m)
		}
	case <-ctxT(t).Done():
		t.Fatal("absorbed bytes never reached the task")
	}
	st := h.Stats()
	if st.Wake(WakeHardwarePush) != 1 || st.HandBacks != 1 || st.Armed != 1 {
		t.Errorf("wakes %d hand-backs %d armed %d; want 1 each", st.Wake(WakeHardwarePush), st.HandBacks, st.Armed)
	}
	nic.mu.Lock()
	calls := append([]string(nil), nic.calls...)
	nic.mu.Unlock()
	want := []string{"arm", "sleep", "disarm", "resume"}
	for i := range want {
		if i >= len(calls) || calls[i] != want[i] {
			t.Fatalf("NIC calls %v, want prefix %v", calls, want)
		}
	}
}
