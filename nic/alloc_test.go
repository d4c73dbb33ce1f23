package nic_test

import (
	"bytes"
	"io"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/nic/porttest"
	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// The per-frame path allocates nothing: each run below pushes one frame
// through the device's goroutines and waits for its effect, and the
// process-wide allocation count is measured over the run.

func TestAllocsD0Forward(t *testing.T) {
	r := newRig(t, func(c *nic.Config) { c.Batch = 8 })
	if err := r.dev.Track(conn); err != nil { // learning on the path too
		t.Fatal(err)
	}
	frame := [][]byte{tcpFrame(t, fromPeer(peerISN, hostISN, "data"))}
	back := [][]byte{tcpFrame(t, fromHost(hostISN, peerISN+4, ""))}
	pkts := make([]nic.Packet, 1)
	pkts[0].Buf = make([]byte, 2048)
	run := func() {
		r.srv.WriteBatch(frame)
		if n, err := r.host.ReadBatch(pkts); n != 1 || err != nil {
			t.Fatalf("host read: %d, %v", n, err)
		}
		r.host.WriteBatch(back)
		if n, err := r.srv.ReadBatch(pkts); n != 1 || err != nil {
			t.Fatalf("srv read: %d, %v", n, err)
		}
	}
	run()
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("D0 forward both ways: %v allocations per frame pair, want 0", n)
	}
}

func TestAllocsD3AbsorbAndDrop(t *testing.T) {
	r := newRig(t, func(c *nic.Config) { c.NoPrefilter = true })
	r.armAndSleep()
	tests := []struct {
		name    string
		frame   []byte
		counter string
	}{
		{"absorb", tcpFrame(t, fromPeer(peerISN, hostISN, "")), "d3_rx_absorbed"},
		{"drop no match", udpFrame(t, 53, []byte("query")), "d3_rx_dropped_no_match"},
		{"drop bad checksum", func() []byte { s := fromPeer(peerISN, hostISN, "x"); s.badCsum = true; return tcpFrame(t, s) }(), "d3_rx_dropped_bad_csum"},
		{"arp reply", arpRequest(t, hostIP), "d3_arp_replies"},
	}
	pkts := make([]nic.Packet, 1)
	pkts[0].Buf = make([]byte, 2048)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frames := [][]byte{tt.frame}
			want := nic.CounterValue(r.dev, tt.counter)
			run := func() {
				want++
				r.srv.WriteBatch(frames)
				if !nic.WaitCounter(r.dev, tt.counter, want, time.Now().Add(waitFor)) {
					t.Fatalf("%s did not reach %d", tt.counter, want)
				}
				if tt.counter == "d3_arp_replies" {
					if n, err := r.srv.ReadBatch(pkts); n != 1 || err != nil {
						t.Fatalf("srv read: %d, %v", n, err)
					}
				}
			}
			run()
			if n := testing.AllocsPerRun(200, run); n != 0 {
				t.Errorf("D3 %s: %v allocations per frame, want 0", tt.name, n)
			}
		})
	}
	if n := r.host.Queued(); n != 0 {
		t.Errorf("host got %d frames while asleep", n)
	}
}

// TestIntegrationAllocsD3AbsorbImmediate is the absorb case above on
// AF_PACKET ports in a lab, the wire port in immediate mode (TPACKET_V2):
// a slot's pure ACK sent from srv0 crosses the kernel prefilter, the
// ring and the D3 datapath without an allocation.
func TestIntegrationAllocsD3AbsorbImmediate(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("AF_PACKET ports are Linux only, not %s", runtime.GOOS)
	}
	l := netlab.NewForTest(t, nil)
	open := func(ns netlab.Namespace, link string, cfg *nic.PortConfig) nic.Port {
		t.Helper()
		var p nic.Port
		if err := l.Do(ns, func() (err error) { p, err = nic.OpenPacketPort(link, cfg); return err }); err != nil {
			t.Fatalf("open packet port %s/%s: %v", ns, link, err)
		}
		return p
	}
	mac := func(ns netlab.Namespace, link string) [6]byte {
		t.Helper()
		ifi, err := l.Interface(ns, link)
		if err != nil {
			t.Fatal(err)
		}
		return [6]byte(ifi.HardwareAddr)
	}
	hostMAC, srvMAC := mac(netlab.Host, netlab.HostLink), mac(netlab.Srv, netlab.SrvLink)
	hostAP := netip.AddrPortFrom(l.Addr.Host4, 40000)
	srvAP := netip.AddrPortFrom(l.Addr.Srv4, 443)
	src := open(netlab.Srv, netlab.SrvLink, nil)
	defer src.Close()
	dev, err := nic.New(&nic.Config{
		Wire: open(netlab.NIC, netlab.WireLink, &nic.PortConfig{Immediate: true}), Host: open(netlab.NIC, netlab.HostPortLink, nil),
		MAC: hostMAC, Addrs: []netip.Addr{l.Addr.Host4},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	snap := offload.Snapshot{LocalMAC: hostMAC, RemoteMAC: srvMAC, Local: hostAP, Remote: srvAP, SndNxt: 1000, RcvNxt: 5000,
		SndWnd: 65535, RcvWnd: 65535, TTL: 64, MSS: 1460}
	spec := offload.Spec{Kind: offload.KindTCPProbe, Interval: time.Hour, RetryInterval: time.Minute, RetryCount: 1}
	if _, err := dev.Arm(nic.SlotConfig{Pattern: wp.TCPConn{Local: hostAP, Remote: srvAP}, Spec: spec, Snapshot: snap}); err != nil {
		t.Fatal(err)
	}
	if err := dev.Sleep(); err != nil {
		t.Fatal(err)
	}
	frames := [][]byte{tcpFrame(t, seg{src: srvAP, dst: hostAP, srcMAC: srvMAC, dstMAC: hostMAC, seq: 5000, ack: 1000, window: 1000})}
	want := nic.CounterValue(dev, "d3_rx_absorbed")
	run := func() {
		want++
		if n, err := src.WriteBatch(frames); n != 1 || err != nil {
			t.Fatalf("send: %d, %v", n, err)
		}
		if !nic.WaitCounter(dev, "d3_rx_absorbed", want, time.Now().Add(waitFor)) {
			t.Fatalf("d3_rx_absorbed did not reach %d", want)
		}
	}
	run()
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("D3 absorb through an immediate-mode wire port: %v allocations per frame, want 0", n)
	}
}

func TestFaultsOnWireDeterministic(t *testing.T) {
	run := func(seed uint64) [][]byte {
		r := newRig(t, func(c *nic.Config) {
			c.Faults = nic.Faults{Seed: seed, Loss: 0.2, Duplicate: 0.2, Corrupt: 0.1}
		})
		var got [][]byte
		for i := range 100 {
			send(t, r.host, udpFrame(t, uint16(1000+i), []byte{byte(i)}))
			r.waitCounter("host_rx_frames", uint64(i+1))
		}
		want := 100 - r.counter("fault_lost") + r.counter("fault_duplicated")
		r.waitCounter("tx_frames", want)
		for range want {
			got = append(got, r.recv(r.srv))
		}
		if r.counter("fault_lost") == 0 || r.counter("fault_duplicated") == 0 || r.counter("fault_corrupted") == 0 {
			t.Errorf("faults not injected: %v", nonZero(r.dev.Counters()))
		}
		return got
	}
	a, b, c := run(1), run(1), run(2)
	if !equalFrames(a, b) {
		t.Error("seed 1 gave different frames on two runs")
	}
	if equalFrames(a, c) {
		t.Error("seeds 1 and 2 gave the same frames")
	}
}

func equalFrames(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestPcapWireAndWake(t *testing.T) {
	var wire, wake bytes.Buffer
	r := newRig(t, func(c *nic.Config) { c.WirePcap, c.WakePcap = &wire, &wake; c.Capabilities.WakePacketSave = 128 })
	id := r.armAndSleep()
	r.expectProbe(time.Second)
	push := tcpFrame(t, fromPeer(peerISN, hostISN, string(bytes.Repeat([]byte{'p'}, 300))))
	send(t, r.srv, push)
	if ev := r.wake(); ev.Slot != id {
		t.Fatalf("wake %+v", ev)
	}
	if err := r.dev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	read := func(name string, b *bytes.Buffer) [][]byte {
		pr, err := pcapgo.NewReader(b)
		if err != nil {
			t.Fatalf("%s pcap: %v", name, err)
		}
		if pr.LinkType() != layers.LinkTypeEthernet {
			t.Errorf("%s pcap link type %v", name, pr.LinkType())
		}
		var out [][]byte
		for {
			data, _, err := pr.ReadPacketData()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatalf("%s pcap: %v", name, err)
			}
			out = append(out, data)
		}
	}
	w := read("wire", &wire)
	if len(w) != 2 || decode(t, w[0]).Seq != hostISN-1 || !bytes.Equal(w[1], push) {
		t.Errorf("wire pcap holds %d frames, want the probe then the push", len(w))
	}
	k := read("wake", &wake)
	if len(k) != 1 || !bytes.Equal(k[0], push[:128]) {
		t.Errorf("wake pcap holds %d frames, want the push cut to 128 bytes", len(k))
	}
}

func TestFaultDelayOnRealClock(t *testing.T) {
	r := newRig(t, func(c *nic.Config) {
		c.Clock = nil // the real clock: the timer loop must wake for the held frames
		c.Faults = nic.Faults{Seed: 3, Delay: 5 * time.Millisecond, Jitter: 2 * time.Millisecond}
	})
	var sent [][]byte
	for i := range 20 {
		f := udpFrame(t, uint16(2000+i), []byte{byte(i)})
		sent = append(sent, f)
		send(t, r.host, f)
	}
	got := map[string]bool{}
	for range sent {
		got[string(r.recv(r.srv))] = true
	}
	for i, f := range sent {
		if !got[string(f)] {
			t.Errorf("frame %d never left the delay queue", i)
		}
	}
	if n := r.counter("fault_delayed"); n != 20 {
		t.Errorf("fault_delayed = %d, want 20", n)
	}
}

// TestAllocsVnet: offloaded frames (virtio_net_hdr on offload pipes) take
// the per-frame path without an allocation: GSO super-frames forwarded
// both ways in D0, cut in software for a port without headers, and, in
// D3, a partial-checksum reply absorbed and a super-frame of nobody's
// dropped segment by segment.
func TestAllocsVnet(t *testing.T) {
	const queue = 4 // the pipes' slots grow once to hold a super-frame
	big := string(bytes.Repeat([]byte{'s'}, 20000))
	down, hd := partial(t, tcpFrame(t, fromPeer(peerISN, hostISN, big)))
	up, hu := partial(t, tcpFrame(t, fromHost(hostISN, peerISN, big)))
	pkts := make([]nic.Packet, 64)
	for i := range pkts {
		pkts[i].Buf = make([]byte, nic.MaxGSOFrame)
	}
	read := func(t *testing.T, p *porttest.Port, want int) {
		for got := 0; got < want; {
			p.SetReadDeadline(time.Now().Add(waitFor))
			n, err := p.ReadBatch(pkts)
			if err != nil {
				t.Fatalf("read %s: %v after %d of %d frames", p.Name(), err, got, want)
			}
			got += n
		}
	}
	// Preallocated batches: the helpers' slice literals would allocate.
	fs, hs := make([][]byte, 1), make([]nic.VnetHdr, 1)
	sendVnet := func(t *testing.T, p *porttest.Port, f []byte, h nic.VnetHdr) {
		fs[0], hs[0] = f, h
		if n, err := p.WriteBatchVnet(fs, hs); n != 1 || err != nil {
			t.Fatalf("write %s: %d, %v", p.Name(), n, err)
		}
	}
	measure := func(t *testing.T, what string, run func()) {
		t.Helper()
		for range 2 * queue {
			run()
		}
		if n := testing.AllocsPerRun(200, run); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", what, n)
		}
	}
	t.Run("d0 gso both ways", func(t *testing.T) {
		r := newPipeRig(t, porttest.Config{Offloads: true, QueueLen: queue}, porttest.Config{Offloads: true, QueueLen: queue}, func(c *nic.Config) { c.Batch = 8 })
		if err := r.dev.Track(conn); err != nil {
			t.Fatal(err)
		}
		measure(t, "D0 GSO forward both ways", func() {
			sendVnet(t, r.srv, down, hd)
			read(t, r.host, 1)
			sendVnet(t, r.host, up, hu)
			read(t, r.srv, 1)
		})
	})
	t.Run("d0 software gso", func(t *testing.T) {
		r := newPipeRig(t, porttest.Config{Offloads: true, QueueLen: queue}, porttest.Config{}, nil)
		segs := (20000 + gsoMSS - 1) / gsoMSS
		measure(t, "D0 software GSO to a plain port", func() {
			sendVnet(t, r.srv, down, hd)
			read(t, r.host, segs)
		})
	})
	t.Run("d3", func(t *testing.T) {
		r := newPipeRig(t, porttest.Config{Offloads: true, QueueLen: queue}, porttest.Config{Offloads: true, QueueLen: queue}, func(c *nic.Config) { c.NoPrefilter = true })
		r.armAndSleep()
		ack, ha := partial(t, tcpFrame(t, fromPeer(peerISN, hostISN, "")))
		other := fromPeer(peerISN, hostISN, big)
		other.dst = netip.AddrPortFrom(hostIP, 40001)
		stray, hst := partial(t, tcpFrame(t, other))
		segs := uint64((20000 + gsoMSS - 1) / gsoMSS)
		absorbed, dropped := r.counter("d3_rx_absorbed"), r.counter("d3_rx_dropped_no_match")
		measure(t, "D3 partial-checksum absorb and GSO drop", func() {
			absorbed++
			dropped += segs
			sendVnet(t, r.srv, ack, ha)
			sendVnet(t, r.srv, stray, hst)
			if !nic.WaitCounter(r.dev, "d3_rx_dropped_no_match", dropped, time.Now().Add(waitFor)) ||
				!nic.WaitCounter(r.dev, "d3_rx_absorbed", absorbed, time.Now().Add(waitFor)) {
				t.Fatalf("counters: %v", nonZero(r.dev.Counters()))
			}
		})
		r.noWake()
	})
}
