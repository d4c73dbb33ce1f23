package nic_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/nic"
)

// TestFaultJitterKeepsOrderThroughTheDevice: the demo's wire (1 ms ±
// 200 µs, no loss) between the device's ports: frames sent back to back
// from the host reach the server all, each delayed, in the order sent.
func TestFaultJitterKeepsOrderThroughTheDevice(t *testing.T) {
	r := newRig(t, func(c *nic.Config) {
		c.Faults = nic.Faults{Seed: 1, Delay: time.Millisecond, Jitter: 200 * time.Microsecond}
	})
	const n = 200
	var want []uint16
	for i := range n {
		port := uint16(3000 + i)
		want = append(want, port)
		send(t, r.host, udpFrame(t, port, []byte{byte(i)}))
		if i%20 == 19 {
			// 20 frames per 50 µs: far closer than the jitter's spread.
			r.waitCounter("host_rx_frames", uint64(i+1))
			r.clock.Advance(50 * time.Microsecond)
		}
	}
	r.waitCounter("host_rx_frames", n)
	for range 100 { // 2.5 ms more in 25 µs steps: every frame is due
		r.clock.Advance(25 * time.Microsecond)
	}
	var got []uint16
	for range n {
		f := r.recv(r.srv) // Ethernet, IPv4 (20 bytes), UDP: the destination port at 36
		got = append(got, uint16(f[36])<<8|uint16(f[37]))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("frames reached the server out of order (-want +got):\n%s", diff)
	}
	if d := r.counter("fault_delayed"); d != n {
		t.Errorf("fault_delayed = %d, want %d", d, n)
	}
	if q := r.counter("fault_queue_full"); q != 0 {
		t.Errorf("fault_queue_full = %d, want 0", q)
	}
}
