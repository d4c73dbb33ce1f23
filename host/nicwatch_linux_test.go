package host

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/slotmgr"
)

// watchedFake is a fakeNIC that can be lost and come back (a NICWatcher,
// as nic.Remote is): while lost every Disarm fails, as a dead daemon's.
type watchedFake struct {
	*fakeNIC
	wmu      sync.Mutex
	up       bool
	back     chan struct{}
	restarts uint64
	stale    []nic.SlotStatus
}

var errGone = errors.New("connect: connection refused")

func newWatchedFake(slots int) *watchedFake {
	w := &watchedFake{fakeNIC: newFakeNIC(slots), up: true, back: make(chan struct{})}
	close(w.back)
	return w
}

func (w *watchedFake) Back() <-chan struct{} {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.back
}

func (w *watchedFake) Health() nic.NICHealth {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return nic.NICHealth{Up: w.up, Restarts: w.restarts, Instance: "i"}
}

func (w *watchedFake) LeaseSlots() ([]nic.SlotStatus, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.stale, nil
}

func (w *watchedFake) Disarm(s nic.SlotID) (offload.Report, error) {
	w.wmu.Lock()
	up := w.up
	w.wmu.Unlock()
	if !up {
		return offload.Report{}, errGone
	}
	return w.fakeNIC.Disarm(s)
}

// lose loses the NIC (and, restart, what it held) and raises the nic-lost
// wake as a Remote does.
func (w *watchedFake) lose(restart bool) {
	w.wmu.Lock()
	w.up = false
	w.back = make(chan struct{})
	if restart {
		w.restarts++
	}
	w.wmu.Unlock()
	if restart {
		w.fakeNIC.mu.Lock()
		clear(w.fakeNIC.armed)
		w.fakeNIC.mu.Unlock()
	}
	w.wakes <- nic.WakeEvent{Reason: nic.WakeNICLost}
}

func (w *watchedFake) comeBack() {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.up = true
	close(w.back)
}

var _ NICWatcher = (*watchedFake)(nil)

// TestIntegrationNICLostThawsAndRearms is the host side of issue 13's
// first two faults on a fake NIC: a NIC lost (and restarted) while the
// host sleeps with a hardware channel frozen. The host wakes (nic-lost),
// thaws the socket without the slot's books (a TCP-probe slot: exact),
// keeps the connection (a push after the loss is delivered), sleeps with
// the channel on its own keep-alives while the NIC is away, and arms it
// again when the NIC is back. On the old code the socket stayed frozen:
// the wake was ignored and no push arrived.
func TestIntegrationNICLostThawsAndRearms(t *testing.T) {
	fn := newWatchedFake(2)
	h := newHost(t, &Config{NIC: fn, Pool: secondsPool(2), WakeHold: 50 * time.Millisecond})
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
	sleepArmed(t, h, fn, ch, tr)

	fn.lose(true)
	if err := h.Wait(ctxT(t), func(st *Stats) bool { return st.NICLosses == 1 && st.State == Standby }); err != nil {
		t.Fatalf("nic-lost not handled: %v (stats %+v)", err, h.Stats())
	}
	h.sync(t)
	st := h.Stats()
	if st.Wake(WakeNICLost) != 1 || st.BlindThaws != 1 || st.Unrecovered != 0 || st.HandBackErrors != 0 {
		t.Errorf("nic-lost wakes %d, blind thaws %d, unrecovered %d, hand-back errors %d; want 1, 1, 0, 0",
			st.Wake(WakeNICLost), st.BlindThaws, st.Unrecovered, st.HandBackErrors)
	}
	if ch.Armed() || ch.Status() != slotmgr.HardwareSlotAllocated {
		t.Fatalf("armed %v status %v while the NIC is away", ch.Armed(), ch.Status())
	}
	if n := ch.Note(); !strings.Contains(n, "NIC is away") || !strings.Contains(n, "thawed without its books") {
		t.Errorf("note %q", n)
	}
	// The connection is healthy: a push while the NIC is away reaches the
	// app at the host's next wake (the user's here).
	if _, err := s.Push("hw", "after the loss"); err != nil {
		t.Fatal(err)
	}
	if err := h.Wake(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if !strings.Contains(m, "after the loss") {
			t.Errorf("message %q", m)
		}
	case <-ctxT(t).Done():
		t.Fatal("the push after the NIC's loss never reached the task")
	}
	if err := h.Standby(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	settle(t, h, Standby)
	if ch.Armed() {
		t.Fatal("armed on a NIC that is away")
	}
	fn.mu.Lock()
	sleeps := fn.sleeps
	fn.mu.Unlock()

	fn.comeBack()
	if err := h.Wait(ctxT(t), func(st *Stats) bool { return st.NICBacks == 1 && st.State == Standby && st.Armed == 2 }); err != nil {
		t.Fatalf("not armed again when the NIC came back: %v (stats %+v, note %q)", err, h.Stats(), ch.Note())
	}
	st = h.Stats()
	if st.NICRestarts != 1 || st.Wake(WakeNICLost) != 2 || !ch.Armed() {
		t.Errorf("restarts %d, nic-lost wakes %d, armed %v; want 1, 2, true", st.NICRestarts, st.Wake(WakeNICLost), ch.Armed())
	}
	fn.mu.Lock()
	if fn.sleeps != sleeps+1 {
		t.Errorf("NIC sleeps %d, want %d (none while it was away)", fn.sleeps, sleeps+1)
	}
	fn.mu.Unlock()
	if n := ch.Note(); n != "" {
		t.Errorf("note %q after the new arm", n)
	}
}

// TestIntegrationNICLostUnknownBooks: a payload keep-alive slot whose
// keep-alives were due when the NIC was lost may have put bytes on the
// stream that the host never learns; the host thaws the socket, closes
// the connection (not recovered, counted and said) and its reset task
// runs to reconnect.
func TestIntegrationNICLostUnknownBooks(t *testing.T) {
	clk := NewFakeClock(time.Second)
	fn := newWatchedFake(2)
	h := newHost(t, &Config{Clock: clk, NIC: fn, Pool: secondsPool(2), WakeHold: 50 * time.Millisecond})
	s := newPushServer(t)
	resets := make(chan ResetReason, 8)
	h.RegisterTask("reset", func(ctx context.Context, ti *TaskInstance) { resets <- ti.Reset })
	ch, _ := h.NewChannel("hw", 10*time.Second, slotmgr.RequestHardwareSlot, "app", 0)
	ch.SetResetTask("reset")
	tr := payloadStream{dialStream(t, s, "hw", nil)}
	sleepArmed(t, h, fn, ch, tr)
	fn.mu.Lock()
	kind := fn.specs[1].Kind
	fn.mu.Unlock()
	if kind != offload.KindPayload {
		t.Skipf("the stream's slot is %v, not a payload keep-alive", kind)
	}
	clk.Advance(25 * time.Second) // two keep-alives due on the NIC
	fn.lose(true)
	select {
	case r := <-resets:
		if r != ResetTransportDisconnected {
			t.Errorf("reset %v", r)
		}
	case <-ctxT(t).Done():
		t.Fatalf("no reset task after an unrecovered connection (stats %+v)", h.Stats())
	}
	st := h.Stats()
	if st.Unrecovered != 1 || st.BlindThaws != 0 {
		t.Errorf("unrecovered %d blind thaws %d; want 1, 0", st.Unrecovered, st.BlindThaws)
	}
	if n := ch.Note(); !strings.Contains(n, "not recovered") {
		t.Errorf("note %q", n)
	}
}

// payloadStream is a line stream whose slot sends a payload keep-alive.
type payloadStream struct{ *Stream }

func (p payloadStream) NICKeepAlive() NICKeepAlive {
	return NICKeepAlive{Kind: offload.KindPayload, Payload: offload.PayloadSpec{Request: []byte("ka\n"), Reply: []byte("ok\n")}, Level: LevelApp}
}

// TestIntegrationNICBackSameInstance: the NIC answers again as the same
// instance with the slot still armed under the lease: the host disarms it
// (StaleSlots) and, since its books show bytes on a stream the host had
// thawed without them, closes that connection so that it reconnects.
func TestIntegrationNICBackSameInstance(t *testing.T) {
	fn := newWatchedFake(2)
	h := newHost(t, &Config{NIC: fn, Pool: secondsPool(2), WakeHold: 50 * time.Millisecond})
	s := newPushServer(t)
	resets := make(chan ResetReason, 8)
	h.RegisterTask("reset", func(ctx context.Context, ti *TaskInstance) { resets <- ti.Reset })
	ch, _ := h.NewChannel("hw", 10*time.Second, slotmgr.RequestHardwareSlot, "app", 0)
	ch.SetResetTask("reset")
	tr := dialStream(t, s, "hw", nil)
	sleepArmed(t, h, fn, ch, tr)
	fn.lose(false)
	if err := h.Wait(ctxT(t), func(st *Stats) bool { return st.BlindThaws == 1 && st.State == Standby }); err != nil {
		t.Fatalf("no blind thaw: %v (stats %+v)", err, h.Stats())
	}
	fn.wmu.Lock()
	fn.stale = []nic.SlotStatus{{ID: 1, Label: "app/hw"}}
	fn.wmu.Unlock()
	fn.mu.Lock()
	fn.books = offload.Books{Sent: []byte("ka\n")}
	fn.mu.Unlock()
	fn.comeBack()
	select {
	case r := <-resets:
		if r != ResetTransportDisconnected {
			t.Errorf("reset %v", r)
		}
	case <-ctxT(t).Done():
		t.Fatalf("no reset after a stale slot with books (stats %+v)", h.Stats())
	}
	st := h.Stats()
	if st.StaleSlots != 1 || st.Unrecovered != 1 || st.NICRestarts != 0 || st.NICBacks != 1 {
		t.Errorf("stale %d unrecovered %d restarts %d backs %d; want 1 1 0 1", st.StaleSlots, st.Unrecovered, st.NICRestarts, st.NICBacks)
	}
	if n := ch.Note(); !strings.Contains(n, "came back with slot 1's books (3 bytes sent") {
		t.Errorf("note %q", n)
	}
}

// sleepArmed gives ch its transport tr (the fake NIC learns the
// connection), puts the host in standby and checks a NIC slot guards ch;
// without CAP_NET_ADMIN (TCP_REPAIR refused) it skips.
func sleepArmed(t *testing.T, h *Host, fn *watchedFake, ch *Channel, tr Transport) {
	t.Helper()
	fn.add(tr.Conn())
	if err := ch.UsingTransport(tr); err != nil {
		t.Fatal(err)
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
}
