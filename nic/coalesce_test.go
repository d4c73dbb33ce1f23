package nic_test

import (
	"bytes"
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/nic"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// swConn is a connection the host keeps alive itself (a software slot).
var (
	swHostAP = netip.AddrPortFrom(hostIP, 40001)
	swConn   = wp.TCPConn{Local: swHostAP, Remote: peerAP}
)

func swFrame(t testing.TB, seq uint32, payload string) []byte {
	s := fromPeer(seq, 1, payload)
	s.dst = swHostAP
	s.psh = payload != ""
	return tcpFrame(t, s)
}

func coalescing(t *testing.T, d *nic.Device) map[string]uint64 {
	t.Helper()
	m := map[string]uint64{}
	for _, c := range d.CoalescingCounters() {
		m[c.Name] = c.Value
	}
	return m
}

func waitCoalesced(t *testing.T, d *nic.Device, name string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for coalescing(t, d)[name] < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d; counters %v %v", name, coalescing(t, d)[name], want, d.CoalescingCounters(), nonZero(d.Counters()))
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCoalescingHoldsWithoutWakeAndDeliversInOrder(t *testing.T) {
	for _, noPrefilter := range []bool{false, true} {
		name := map[bool]string{false: "prefilter", true: "no prefilter"}[noPrefilter]
		t.Run(name, func(t *testing.T) {
			r := newRig(t, func(c *nic.Config) { c.NoPrefilter = noPrefilter })
			if err := r.dev.AddCoalescing(swConn); err != nil {
				t.Fatal(err)
			}
			if err := r.dev.AddCoalescing(swConn); err != nil {
				t.Fatalf("second add: %v, want a no-op", err)
			}
			if diff := cmp.Diff([]wp.TCPConn{swConn}, r.dev.Coalescing(), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("filters (-want +got):\n%s", diff)
			}
			r.armAndSleep()
			held := [][]byte{swFrame(t, 100, "push 1"), swFrame(t, 106, "push 2"), swFrame(t, 112, "")}
			send(t, r.srv, held...)
			// A frame of no filter and no slot is still dropped.
			s := fromPeer(100, 1, "other")
			s.dst = netip.AddrPortFrom(hostIP, 40003)
			send(t, r.srv, tcpFrame(t, s))
			waitCoalesced(t, r.dev, "d3_rx_coalesced", 3)
			if !noPrefilter {
				if !waitPortFiltered(r, 1) {
					t.Fatalf("the prefilter did not drop the unfiltered frame: %v", nonZero(r.dev.Counters()))
				}
			} else {
				r.waitCounter("d3_rx_dropped_no_match", 1)
			}
			r.noWake()
			if n := r.host.Queued(); n != 0 {
				t.Fatalf("host received %d frames while asleep", n)
			}
			if s := r.dev.State(); s != nic.D3 {
				t.Fatalf("state %v, want D3", s)
			}
			// The host's own timer: it wakes the NIC, which delivers the held
			// frames at Resume, in order.
			if err := r.dev.Wake(); err != nil {
				t.Fatal(err)
			}
			if ev := r.wake(); ev.Reason != nic.WakeHost {
				t.Fatalf("wake %+v, want reason host", ev)
			}
			after := swFrame(t, 118, "after the wake")
			send(t, r.srv, after)
			r.waitCounter("postwake_buffered", 1)
			if err := r.dev.Resume(); err != nil {
				t.Fatal(err)
			}
			for i, want := range append(held, after) {
				if got := r.recv(r.host); !bytes.Equal(got, want) {
					t.Fatalf("frame %d delivered %x, want %x", i, got, want)
				}
			}
			want := map[string]uint64{"d3_rx_coalesced": 3, "d3_rx_coalesce_dropped": 0, "coalesce_filters": 1}
			if diff := cmp.Diff(want, coalescing(t, r.dev)); diff != "" {
				t.Errorf("coalescing counters (-want +got):\n%s", diff)
			}
			if got := r.counter("postwake_delivered"); got != 4 {
				t.Errorf("postwake_delivered = %d, want 4", got)
			}
			// The device's counter list (and so ethtool-style dumps and
			// Prometheus) carries them too.
			if got, ok := r.dev.Counter("d3_rx_coalesced"); !ok || got != 3 {
				t.Errorf("Counter(d3_rx_coalesced) = %d, %v; want 3, true", got, ok)
			}
			var prom strings.Builder
			if err := r.dev.WritePrometheus(&prom); err != nil || !strings.Contains(prom.String(), "d3_rx_coalesced") {
				t.Errorf("Prometheus exposition lacks d3_rx_coalesced (err %v)", err)
			}
		})
	}
}

func TestCoalescingBoundedAndCounted(t *testing.T) {
	// 4 post-wake frames: coalescing may hold 2.
	r := newRig(t, func(c *nic.Config) { c.Capabilities.PostWakeFrames = 4 })
	if err := r.dev.AddCoalescing(swConn); err != nil {
		t.Fatal(err)
	}
	r.armAndSleep()
	frames := [][]byte{swFrame(t, 100, "a"), swFrame(t, 101, "b"), swFrame(t, 102, "c")}
	send(t, r.srv, frames...)
	waitCoalesced(t, r.dev, "d3_rx_coalesce_dropped", 1)
	want := map[string]uint64{"d3_rx_coalesced": 2, "d3_rx_coalesce_dropped": 1, "coalesce_filters": 1}
	if diff := cmp.Diff(want, coalescing(t, r.dev)); diff != "" {
		t.Errorf("coalescing counters (-want +got):\n%s", diff)
	}
	// A push on the armed slot still wakes and finds room after the
	// coalesced frames.
	push := tcpFrame(t, fromPeer(peerISN, hostISN, "hardware push"))
	send(t, r.srv, push)
	if ev := r.wake(); ev.Reason != nic.WakeData {
		t.Fatalf("wake %+v, want data", ev)
	}
	if err := r.dev.Resume(); err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]byte{frames[0], frames[1], push} {
		if got := r.recv(r.host); !bytes.Equal(got, want) {
			t.Fatalf("frame %d delivered %x, want %x", i, got, want)
		}
	}
	if got := r.counter("postwake_dropped_overflow"); got != 0 {
		t.Errorf("postwake_dropped_overflow = %d, want 0", got)
	}
}

func TestCoalescingRemoved(t *testing.T) {
	r := newRig(t, func(c *nic.Config) { c.NoPrefilter = true })
	if err := r.dev.AddCoalescing(swConn); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.RemoveCoalescing(swConn); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.RemoveCoalescing(swConn); !errors.Is(err, nic.ErrUnknownFilter) {
		t.Errorf("second remove: %v, want ErrUnknownFilter", err)
	}
	r.armAndSleep()
	send(t, r.srv, swFrame(t, 100, "lost"))
	r.waitCounter("d3_rx_dropped_no_match", 1)
	if got := coalescing(t, r.dev); got["d3_rx_coalesced"] != 0 || got["coalesce_filters"] != 0 {
		t.Errorf("coalescing counters %v after removal", got)
	}
}

func TestCoalescingBadFilters(t *testing.T) {
	r := newRig(t, nil)
	tests := []struct {
		name string
		c    wp.TCPConn
	}{
		{"zero", wp.TCPConn{}},
		{"no remote", wp.TCPConn{Local: hostAP}},
		{"mixed families", wp.TCPConn{Local: hostAP, Remote: netip.MustParseAddrPort("[2001:2::1]:443")}},
		{"vlan", wp.TCPConn{Local: hostAP, Remote: peerAP, VLAN: 5000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := r.dev.AddCoalescing(tt.c); err == nil {
				t.Errorf("AddCoalescing(%+v) = nil, want an error", tt.c)
			}
		})
	}
	if got := r.dev.Coalescing(); len(got) != 0 {
		t.Errorf("filters %v after refused adds", got)
	}
}

func TestAllocsD3Coalesce(t *testing.T) {
	r := newRig(t, func(c *nic.Config) { c.NoPrefilter = true; c.Capabilities.PostWakeFrames = 1024 })
	if err := r.dev.AddCoalescing(swConn); err != nil {
		t.Fatal(err)
	}
	frames := [][]byte{swFrame(t, 100, "held")}
	const runs = 300
	// Warm the post-wake buffer's storage: hold and deliver runs+1 frames.
	r.armAndSleep()
	for range runs + 1 {
		send(t, r.srv, frames...)
	}
	if !nic.WaitCounter(r.dev, "d3_rx_frames", runs+1, time.Now().Add(waitFor)) {
		t.Fatal("frames not seen")
	}
	waitCoalesced(t, r.dev, "d3_rx_coalesced", runs+1)
	if err := r.dev.Wake(); err != nil {
		t.Fatal(err)
	}
	r.wake()
	if _, err := r.dev.Disarm(1); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.Resume(); err != nil {
		t.Fatal(err)
	}
	for range runs + 1 {
		r.recv(r.host)
	}
	r.armAndSleep()
	want := nic.CoalescedValue(r.dev)
	run := func() {
		want++
		r.srv.WriteBatch(frames)
		deadline := time.Now().Add(waitFor)
		for nic.CoalescedValue(r.dev) < want {
			if time.Now().After(deadline) {
				t.Fatalf("d3_rx_coalesced did not reach %d", want)
			}
			runtime.Gosched()
		}
	}
	if n := testing.AllocsPerRun(runs-1, run); n != 0 {
		t.Errorf("D3 coalesce: %v allocations per frame, want 0", n)
	}
}
