package nic_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/nic"
)

// xdpPaths are the two D3 kernel paths: the XDP fast path in front of
// the socket filter, and the socket filter alone.
var xdpPaths = []struct {
	name string
	xdp  bool
}{{"socket-filter", false}, {"xdp", true}}

// wireXDPAttached asks netlink whether an XDP program is attached to the
// wire port's link.
func wireXDPAttached(t *testing.T, l *netlab.Lab) bool {
	t.Helper()
	var attached bool
	if err := l.Do(netlab.NIC, func() error {
		lk, err := netlink.LinkByName(netlab.WireLink)
		if err != nil {
			return err
		}
		x := lk.Attrs().Xdp
		attached = x != nil && (x.Attached || x.ProgId != 0)
		return nil
	}); err != nil {
		t.Fatalf("netlink %s: %v", netlab.WireLink, err)
	}
	return attached
}

// TestIntegrationXDPProbesAbsorbedThenPushWakes is
// TestIntegrationD3ProbesAbsorbedThenPushWakes on both paths: on the XDP
// path the replies are absorbed in the kernel and still count as the
// slot's replies (no retry, no timeout), the counters are the same set,
// the push between two absorbed replies wakes, and neither the wake nor
// Close leaves a program attached.
func TestIntegrationXDPProbesAbsorbedThenPushWakes(t *testing.T) {
	t.Setenv("STANDBYNIC_XDP", "") // the test picks the path itself
	for _, p := range xdpPaths {
		t.Run(p.name, func(t *testing.T) {
			// Offloads off: a veth hands the peer kernel's segments over
			// with partial checksums, which the program passes (doc.go);
			// a wire NIC delivers them whole.
			r := newLabRigOpts(t, &netlab.Options{DisableOffloads: true}, func(c *nic.Config) { c.XDP = p.xdp })
			r.connect()
			if wireXDPAttached(t, r.lab) {
				t.Fatal("XDP attached in D0")
			}
			r.sleep(fastSpec())
			info := r.dev.XDP()
			if info.Attached != p.xdp || info.Enabled != p.xdp {
				t.Fatalf("XDP() = %+v after Sleep, want attached %v", info, p.xdp)
			}
			if got := wireXDPAttached(t, r.lab); got != p.xdp {
				t.Fatalf("netlink: XDP attached = %v in D3, want %v", got, p.xdp)
			}
			if got, want := r.counter("d3_xdp_attached"), map[bool]uint64{false: 0, true: 1}[p.xdp]; got != want {
				t.Errorf("d3_xdp_attached = %d, want %d", got, want)
			}
			r.waitCounter("slot1_replies_absorbed", 3, 10*time.Second)
			if got := r.counter("slot1_retries"); got != 0 {
				t.Errorf("slot1_retries = %d, want 0: every probe was answered (%v)", got, nonZero(r.dev.Counters()))
			}
			xdpAbs := r.counter("d3_xdp_absorbed")
			if p.xdp && xdpAbs < 3 {
				t.Errorf("d3_xdp_absorbed = %d, want the replies absorbed in the kernel", xdpAbs)
			}
			if !p.xdp && xdpAbs != 0 {
				t.Errorf("d3_xdp_absorbed = %d on the socket filter", xdpAbs)
			}
			if got := r.counter("d3_rx_absorbed"); got != r.counter("slot1_rx_absorbed") || got < 3 {
				t.Errorf("d3_rx_absorbed = %d, slot1_rx_absorbed = %d", got, r.counter("slot1_rx_absorbed"))
			}
			if got, frames := r.counter("slot1_rx_absorbed"), r.counter("slot1_rx_frames"); got > frames {
				t.Errorf("slot1_rx_absorbed %d > slot1_rx_frames %d", got, frames)
			}
			if got := r.counter("host_tx_frames"); got != r.hostTxAtSleep {
				t.Errorf("host got %d frames while asleep", got-r.hostTxAtSleep)
			}
			// The push arrives between two absorbed replies: it wakes.
			if _, err := r.lab.FlushNeigh(netlab.Srv, netlab.SrvLink); err != nil {
				t.Fatal(err)
			}
			push := []byte("push message 1: you have mail")
			r.srvConn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := r.srvConn.Write(push); err != nil {
				t.Fatal(err)
			}
			ev := r.wake(10 * time.Second)
			if ev.Reason != nic.WakeData || ev.Slot != r.slot || !bytes.Contains(ev.Packet, push) {
				t.Fatalf("wake %+v, want data on slot %d carrying the push", ev, r.slot)
			}
			waitXDPDetached(t, r)
			if got := r.counter("d3_arp_replies"); got < 1 {
				t.Errorf("d3_arp_replies = %d", got)
			}
			rep := r.wakeUp()
			if rep.Counters.RepliesAbsorbed < 3 || rep.Counters.Retries != 0 {
				t.Errorf("report counters %+v, want ≥ 3 replies and no retry", rep.Counters)
			}
			got := make([]byte, len(push))
			r.hostConn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(r.hostConn, got); err != nil || !bytes.Equal(got, push) {
				t.Fatalf("host read %q, %v; want %q", got, err, push)
			}
			r.exchange([]byte("ack 1"), []byte("push 2"))
			// Asleep again (a new program), then Close: nothing left.
			r.connectAgainSleep(t, p.xdp)
			if err := r.dev.Close(); err != nil {
				t.Fatal(err)
			}
			if wireXDPAttached(t, r.lab) {
				t.Fatal("XDP still attached after Close")
			}
		})
	}
}

// connectAgainSleep puts the device back in D3 with the connection armed
// again and checks the path.
func (r *labRig) connectAgainSleep(t *testing.T, xdp bool) {
	t.Helper()
	r.sleep(fastSpec())
	if got := wireXDPAttached(t, r.lab); got != xdp {
		t.Fatalf("netlink: XDP attached = %v in D3 again, want %v", got, xdp)
	}
	r.waitCounter("slot1_replies_absorbed", 1, 10*time.Second)
}

// TestIntegrationXDPKeepAliveTimeout: with the peer gone, nothing is
// absorbed in the kernel and the slot dies after its retries on both
// paths (the fast path does not hide a dead peer).
func TestIntegrationXDPKeepAliveTimeout(t *testing.T) {
	t.Setenv("STANDBYNIC_XDP", "")
	for _, p := range xdpPaths {
		t.Run(p.name, func(t *testing.T) {
			// Offloads off: a veth hands the peer kernel's segments over
			// with partial checksums, which the program passes (doc.go);
			// a wire NIC delivers them whole.
			r := newLabRigOpts(t, &netlab.Options{DisableOffloads: true}, func(c *nic.Config) { c.XDP = p.xdp })
			r.connect()
			spec := fastSpec()
			r.sleep(spec)
			r.waitCounter("slot1_replies_absorbed", 1, 5*time.Second)
			if err := r.lab.SetLinkDown(netlab.Srv, netlab.SrvLink); err != nil {
				t.Fatal(err)
			}
			ev := r.wake(10 * time.Second)
			if ev.Reason != nic.WakeKeepAliveTimeout || ev.Slot != r.slot {
				t.Fatalf("wake %+v, want keep-alive-timeout on slot %d", ev, r.slot)
			}
			if got := r.counter("slot1_retries"); got != uint64(spec.RetryCount) {
				t.Errorf("slot1_retries = %d, want %d", got, spec.RetryCount)
			}
			waitXDPDetached(t, r)
		})
	}
}

// waitXDPDetached waits until the wake's detach (done by the timer loop,
// after the event) leaves no program on the wire port.
func waitXDPDetached(t *testing.T, r *labRig) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.dev.XDP().Attached || wireXDPAttached(t, r.lab) {
		if time.Now().After(deadline) {
			t.Fatalf("XDP still attached 5s after the wake: %+v", r.dev.XDP())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
