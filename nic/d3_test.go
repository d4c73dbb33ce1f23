package nic_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/standbynic/standbynic/nic"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// armAndSleep arms the test connection and puts the device in D3.
func (r *rig) armAndSleep() nic.SlotID {
	r.t.Helper()
	id, err := r.dev.Arm(nic.SlotConfig{Pattern: conn, Spec: probeSpec(), Snapshot: snapshot(), Owner: "test"})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.dev.Sleep(); err != nil {
		r.t.Fatal(err)
	}
	return id
}

// expectProbe advances the clock by d and checks the keep-alive probe the
// slot sends: an ACK with SEQ = SND.NXT−1, ACK = RCV.NXT, no payload.
func (r *rig) expectProbe(d time.Duration) {
	r.t.Helper()
	r.clock.Advance(d)
	f := decode(r.t, r.recv(r.srv))
	if f.SrcIP != hostIP || f.DstIP != peerIP || f.Seq != hostISN-1 || f.Ack != peerISN || f.TCPFlags != wp.TCPFlagACK || f.PayloadLen != 0 {
		r.t.Fatalf("probe %v:%d→%v:%d seq %d ack %d flags %#x len %d, want seq %d ack %d ACK only",
			f.SrcIP, f.SrcPort, f.DstIP, f.DstPort, f.Seq, f.Ack, f.TCPFlags, f.PayloadLen, hostISN-1, peerISN)
	}
}

func TestD3AbsorbsDropsAndCountsByReason(t *testing.T) {
	t.Run("prefilter", func(t *testing.T) { testD3Drops(t, false) })
	t.Run("no prefilter", func(t *testing.T) { testD3Drops(t, true) })
}

func testD3Drops(t *testing.T, noPrefilter bool) {
	r := newRig(t, func(c *nic.Config) { c.NoPrefilter = noPrefilter })
	id := r.armAndSleep()
	reply := tcpFrame(t, fromPeer(peerISN, hostISN, ""))
	for i := range 3 {
		r.expectProbe(time.Second)
		send(t, r.srv, reply)
		r.waitCounter("d3_rx_absorbed", uint64(i+1))
	}
	badCsum := fromPeer(peerISN, hostISN, "x")
	badCsum.badCsum = true
	frag := fromPeer(peerISN, hostISN, "x")
	frag.fragged = true
	vlan := fromPeer(peerISN, hostISN, "x")
	vlan.vlan = 7
	truncated := tcpFrame(t, fromPeer(peerISN, hostISN, "abcdef"))
	truncated = truncated[:len(truncated)-3]
	otherPort := fromPeer(peerISN, hostISN, "x")
	otherPort.src = netip.AddrPortFrom(peerIP, 444)
	bad := [][]byte{
		tcpFrame(t, badCsum),
		tcpFrame(t, frag),
		tcpFrame(t, vlan),
		truncated,
		tcpFrame(t, fromPeer(peerISN+1<<30, hostISN, "far away")), // out of window
		tcpFrame(t, otherPort),
		udpFrame(t, 53, []byte("dns")),
		arpRequest(t, netip.MustParseAddr("198.18.0.99")),
	}
	send(t, r.srv, bad...)
	send(t, r.host, tcpFrame(t, fromHost(hostISN, peerISN, "asleep")))
	r.waitCounter("d3_host_tx_dropped", 1)
	// The kernel prefilter (the pipe runs it as the kernel would) drops
	// what cannot match: fragments, truncated IP packets, other
	// connections, non-TCP, ARP for other addresses. Bad checksums, other
	// VLANs and out-of-window segments pass and are counted by reason.
	kernel := map[string]uint64{"d3_rx_dropped_fragment": 1, "d3_rx_dropped_malformed": 1, "d3_rx_dropped_no_match": 3}
	var filtered uint64
	if !noPrefilter {
		for _, v := range kernel {
			filtered += v
		}
		if !nic.WaitCounter(r.dev, "d3_rx_frames", 3+uint64(len(bad))-filtered, time.Now().Add(waitFor)) ||
			!waitPortFiltered(r, filtered) {
			t.Fatalf("d3_rx_frames = %d, d3_rx_dropped_bpf = %d; want %d and %d", r.counter("d3_rx_frames"), r.counter("d3_rx_dropped_bpf"), 3+uint64(len(bad))-filtered, filtered)
		}
	}
	r.waitCounter("d3_rx_frames", 3+uint64(len(bad))-filtered)
	r.noWake()
	if n := r.host.Queued(); n != 0 {
		t.Errorf("host received %d frames while asleep", n)
	}
	names := []string{"d3_rx_frames", "d3_rx_absorbed", "d3_rx_dropped_bad_csum", "d3_rx_dropped_fragment", "d3_rx_dropped_wrong_vlan",
		"d3_rx_dropped_malformed", "d3_rx_dropped_out_of_window", "d3_rx_dropped_no_match", "d3_host_tx_dropped", "d3_wakes",
		"d3_engine_tx_frames", "host_tx_frames", "slot1_rx_frames", "slot1_rx_absorbed", "slot1_rx_dropped", "slot1_keepalives_sent", "slot1_replies_absorbed", "slot1_dropped_out_of_window"}
	want := map[string]uint64{"d3_rx_frames": 11, "d3_rx_absorbed": 3, "d3_rx_dropped_bad_csum": 1, "d3_rx_dropped_fragment": 1,
		"d3_rx_dropped_wrong_vlan": 1, "d3_rx_dropped_malformed": 1, "d3_rx_dropped_out_of_window": 1, "d3_rx_dropped_no_match": 3,
		"d3_host_tx_dropped": 1, "d3_wakes": 0, "d3_engine_tx_frames": 3 + r.counter("slot1_acks_sent"), "host_tx_frames": 0,
		"slot1_rx_frames": 4, "slot1_rx_absorbed": 3, "slot1_rx_dropped": 1, "slot1_dropped_out_of_window": 1, "slot1_keepalives_sent": 3, "slot1_replies_absorbed": 3, "d3_rx_dropped_bpf": filtered}
	names = append(names, "d3_rx_dropped_bpf")
	if !noPrefilter {
		want["d3_rx_frames"] -= filtered
		for k := range kernel {
			want[k] = 0
		}
	}
	if diff := cmp.Diff(want, r.counters(names...)); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	rep, err := r.dev.Disarm(id)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counters.KeepalivesSent != 3 || rep.Counters.RepliesAbsorbed != 3 || rep.SndNxt != hostISN || rep.RcvNxt != peerISN {
		t.Errorf("report %+v", rep)
	}
	if _, err := r.dev.Disarm(id); !errors.Is(err, nic.ErrUnknownSlot) {
		t.Errorf("second Disarm = %v, want ErrUnknownSlot", err)
	}
}

func TestD3PushWakesAndPostWakeBufferDeliversInOrder(t *testing.T) {
	r := newRig(t, func(c *nic.Config) { c.Capabilities.PostWakeFrames = 4; c.Capabilities.WakePacketSave = 128 })
	id := r.armAndSleep()
	push := tcpFrame(t, fromPeer(peerISN, hostISN, string(bytes.Repeat([]byte("push!"), 40))))
	send(t, r.srv, push)
	ev := r.wake()
	if ev.Reason != nic.WakeData || ev.Slot != id || ev.Len != len(push) || !bytes.Equal(ev.Packet, push[:128]) {
		t.Fatalf("wake %+v, want data on slot %d with the first 128 of %d bytes", ev, id, len(push))
	}
	if s := r.dev.State(); s != nic.Waking {
		t.Fatalf("state %v, want waking", s)
	}
	var later [][]byte
	for i := range 5 {
		later = append(later, udpFrame(t, 7000+uint16(i), []byte{byte(i)}))
	}
	send(t, r.srv, later...)
	r.waitCounter("postwake_dropped_overflow", 2)
	// The host is up: its frames are forwarded while waking.
	hostFrame := tcpFrame(t, fromHost(hostISN, peerISN+200, ""))
	send(t, r.host, hostFrame)
	if got := r.recv(r.srv); !bytes.Equal(got, hostFrame) {
		t.Errorf("srv got %x, want the host's frame", got)
	}
	if n := r.host.Queued(); n != 0 {
		t.Fatalf("host got %d frames before Resume", n)
	}
	if err := r.dev.Resume(); err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]byte{push, later[0], later[1], later[2]} {
		if got := r.recv(r.host); !bytes.Equal(got, want) {
			t.Errorf("frame %d after resume: %x, want %x", i, got, want)
		}
	}
	after := udpFrame(t, 9000, []byte("d0"))
	send(t, r.srv, after)
	if got := r.recv(r.host); !bytes.Equal(got, after) {
		t.Errorf("frame after resume: %x, want %x", got, after)
	}
	want := map[string]uint64{"postwake_buffered": 4, "postwake_dropped_overflow": 2, "postwake_delivered": 4, "d3_wakes": 1,
		"waking_host_forwarded": 1, "pm_d3_to_waking": 1, "pm_waking_to_d0": 1, "slot1_wakes": 1}
	names := []string{"postwake_buffered", "postwake_dropped_overflow", "postwake_delivered", "d3_wakes", "waking_host_forwarded", "pm_d3_to_waking", "pm_waking_to_d0", "slot1_wakes"}
	if diff := cmp.Diff(want, r.counters(names...)); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

func TestD3WakeReasons(t *testing.T) {
	t.Run("reset", func(t *testing.T) {
		r := newRig(t, nil)
		id := r.armAndSleep()
		rst := fromPeer(peerISN, hostISN, "")
		rst.rst = true
		send(t, r.srv, tcpFrame(t, rst))
		if ev := r.wake(); ev.Reason != nic.WakeRST || ev.Slot != id || ev.Packet == nil {
			t.Errorf("wake %+v, want reset on slot %d with the packet", ev, id)
		}
	})
	t.Run("fin", func(t *testing.T) {
		r := newRig(t, nil)
		id := r.armAndSleep()
		fin := fromPeer(peerISN, hostISN, "")
		fin.fin = true
		send(t, r.srv, tcpFrame(t, fin))
		if ev := r.wake(); ev.Reason != nic.WakeFIN || ev.Slot != id {
			t.Errorf("wake %+v, want fin on slot %d", ev, id)
		}
	})
	t.Run("keep-alive timeout", func(t *testing.T) {
		r := newRig(t, nil)
		id := r.armAndSleep()
		r.expectProbe(time.Second)
		r.expectProbe(200 * time.Millisecond) // retry 1
		r.expectProbe(200 * time.Millisecond) // retry 2
		r.noWake()
		r.clock.Advance(200 * time.Millisecond)
		ev := r.wake()
		if ev.Reason != nic.WakeKeepAliveTimeout || ev.Slot != id || ev.Packet != nil {
			t.Errorf("wake %+v, want keep-alive-timeout on slot %d without packet", ev, id)
		}
		if ev.At != time.Hour+1600*time.Millisecond {
			t.Errorf("wake at %v, want %v", ev.At, time.Hour+1600*time.Millisecond)
		}
	})
	t.Run("magic pattern", func(t *testing.T) {
		r := newRig(t, nil)
		if err := r.dev.AddWakePattern(wp.Pattern{ID: 77, Kind: wp.KindMagic, Magic: wp.Magic{MAC: hostMAC}}); err != nil {
			t.Fatal(err)
		}
		if err := r.dev.Sleep(); err != nil {
			t.Fatal(err)
		}
		magic := bytes.Repeat([]byte{0xff}, 6)
		for range 16 {
			magic = append(magic, hostMAC[:]...)
		}
		send(t, r.srv, udpFrame(t, 9, magic))
		if ev := r.wake(); ev.Reason != nic.WakePattern || ev.Pattern != 77 || ev.Slot != 0 {
			t.Errorf("wake %+v, want pattern 77", ev)
		}
		if err := r.dev.Resume(); err != nil {
			t.Fatal(err)
		}
		if err := r.dev.RemoveWakePattern(77); err != nil {
			t.Fatal(err)
		}
		if err := r.dev.RemoveWakePattern(77); err == nil {
			t.Error("second RemoveWakePattern succeeded")
		}
	})
}

func TestD3AnswersARPAndNS(t *testing.T) {
	host6 := netip.MustParseAddr("2001:db8::2")
	r := newRig(t, func(c *nic.Config) { c.Addrs = append(c.Addrs, host6) })
	if err := r.dev.Sleep(); err != nil {
		t.Fatal(err)
	}
	send(t, r.srv, arpRequest(t, hostIP))
	p := gopacket.NewPacket(r.recv(r.srv), layers.LayerTypeEthernet, gopacket.Default)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if arp == nil || arp.Operation != layers.ARPReply || !bytes.Equal(arp.SourceHwAddress, hostMAC[:]) ||
		!bytes.Equal(arp.SourceProtAddress, hostIP.AsSlice()) || !bytes.Equal(arp.DstHwAddress, peerMAC[:]) {
		t.Errorf("ARP reply %+v", arp)
	}
	ip6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255,
		SrcIP: netip.MustParseAddr("2001:db8::1").AsSlice(), DstIP: netip.MustParseAddr("ff02::1:ff00:2").AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	icmp.SetNetworkLayerForChecksum(ip6)
	ns := serialize(t, append(eth(peerMAC, [6]byte{0x33, 0x33, 0xff, 0, 0, 2}, layers.EthernetTypeIPv6, 0), ip6, icmp,
		&layers.ICMPv6NeighborSolicitation{TargetAddress: host6.AsSlice()})...)
	send(t, r.srv, ns)
	p = gopacket.NewPacket(r.recv(r.srv), layers.LayerTypeEthernet, gopacket.Default)
	na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if na == nil || !na.Solicited() || !na.Override() || !bytes.Equal(na.TargetAddress, host6.AsSlice()) {
		t.Errorf("NA %+v", na)
	}
	if diff := cmp.Diff(map[string]uint64{"d3_arp_replies": 1, "d3_ns_replies": 1, "host_tx_frames": 0},
		r.counters("d3_arp_replies", "d3_ns_replies", "host_tx_frames")); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

func TestArmLimits(t *testing.T) {
	r := newRig(t, func(c *nic.Config) { c.Capabilities.Slots = 2 })
	for i := range 2 {
		c := conn
		c.Local = netip.AddrPortFrom(hostIP, uint16(41000+i))
		s := snapshot()
		s.Local = c.Local
		if _, err := r.dev.Arm(nic.SlotConfig{Pattern: c, Spec: probeSpec(), Snapshot: s}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.dev.Arm(nic.SlotConfig{Pattern: conn, Spec: probeSpec(), Snapshot: snapshot()})
	if !errors.Is(err, nic.ErrNoSlot) || !errors.Is(err, nic.ErrLimit) || !bytes.Contains([]byte(err.Error()), []byte("2 of 2")) {
		t.Errorf("third Arm = %v, want ErrNoSlot naming 2 of 2", err)
	}
	if err := r.dev.Sleep(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.dev.Disarm(1); err != nil {
		t.Fatal(err)
	}
	// Arming while asleep rebuilds the table: the new slot's frames are
	// classified at once.
	id, err := r.dev.Arm(nic.SlotConfig{Pattern: conn, Spec: probeSpec(), Snapshot: snapshot()})
	if err != nil || id != 1 {
		t.Fatalf("Arm in D3 = %d, %v; want slot 1", id, err)
	}
	send(t, r.srv, tcpFrame(t, fromPeer(peerISN, hostISN, "")))
	r.waitCounter("d3_rx_absorbed", 1)

	mismatch := snapshot()
	mismatch.Remote = netip.AddrPortFrom(peerIP, 8443)
	if _, err := r.dev.Disarm(2); err != nil {
		t.Fatal(err)
	}
	if _, err := r.dev.Arm(nic.SlotConfig{Pattern: conn, Spec: probeSpec(), Snapshot: mismatch}); err == nil {
		t.Error("Arm with a snapshot of another connection succeeded")
	}
	big := wp.Pattern{ID: 5, Kind: wp.KindBitmap, Bitmap: wp.Bitmap{Offset: 0, Bytes: make([]byte, 300), Mask: bytes.Repeat([]byte{0xff}, 38)}}
	if err := r.dev.AddWakePattern(big); !errors.Is(err, wp.ErrLimit) {
		t.Errorf("AddWakePattern(300-byte bitmap) = %v, want wakepattern.ErrLimit", err)
	}
	if err := r.dev.AddWakePattern(wp.Pattern{ID: 1 << 31, Kind: wp.KindMagic}); !errors.Is(err, nic.ErrLimit) {
		t.Errorf("AddWakePattern(id 2^31) = %v, want ErrLimit", err)
	}
}

func TestNewValidates(t *testing.T) {
	a, b := pipes(t)
	tests := []struct {
		name string
		cfg  nic.Config
		want string
	}{
		{"no ports", nic.Config{}, "wire and host ports are required"},
		{"65 slots", nic.Config{Wire: a, Host: b, Capabilities: nic.Capabilities{Slots: 65}}, "capabilities slots = 65: must be 1–64"},
		{"9 IPv4 addresses", nic.Config{Wire: a, Host: b, Addrs: addrs4(9)}, "IPv4 addresses = 9: ARP offloads are limited to 8"},
		{"loss 2", nic.Config{Wire: a, Host: b, Faults: nic.Faults{Loss: 2}}, "faults loss = 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			d, err := nic.New(&cfg)
			if err == nil {
				d.Close()
				t.Fatal("New succeeded")
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Errorf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func addrs4(n int) []netip.Addr {
	var out []netip.Addr
	for i := range n {
		out = append(out, netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}))
	}
	return out
}

// waitPortFiltered waits until the wire port reports n frames rejected by
// its filter.
func waitPortFiltered(r *rig, n uint64) bool {
	deadline := time.Now().Add(waitFor)
	for r.counter("d3_rx_dropped_bpf") < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
