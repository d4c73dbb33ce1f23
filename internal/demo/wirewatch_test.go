package demo

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/slotmgr"
)

var (
	wwHost = netip.MustParseAddr("198.18.0.2")
	wwSrv  = netip.MustParseAddrPort("198.18.0.1:8080")
	wwTCP  = netip.AddrPortFrom(wwHost, 40001) // a TCP-probe channel
	wwWS   = netip.AddrPortFrom(wwHost, 40002) // a WebSocket channel
	wwSoft = netip.AddrPortFrom(wwHost, 40003) // a software channel
)

// wwSegment builds an Ethernet/IPv4/TCP segment.
func wwSegment(t *testing.T, src, dst netip.AddrPort, seq, ack uint32, payload []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ack, ACK: true, PSH: len(payload) > 0, Window: 500}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestWireWatch feeds a capture through the watcher in odd-sized chunks
// and checks that it passes the bytes through unchanged and times the
// frames the slot counters count: keep-alives sent, replies, Pongs, and
// frames held for a software channel in D3.
func TestWireWatch(t *testing.T) {
	wall0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(ts time.Time) time.Duration { return ts.Sub(wall0) }
	state := nic.D3
	var file bytes.Buffer
	w := newWireWatch(&file, at, func() nic.PowerState { return state })
	w.watch(wwTCP, "mail")
	w.watch(wwWS, "voip")
	w.watch(wwSoft, "weather")
	w.armed(wwTCP, offload.KindTCPProbe, offload.Snapshot{SndNxt: 1000, RcvNxt: 5000}, time.Second)
	w.armed(wwWS, offload.KindWebSocket, offload.Snapshot{SndNxt: 2000, RcvNxt: 6000}, time.Second)

	var capture bytes.Buffer
	pw := pcapgo.NewWriterNanos(&capture)
	if err := pw.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	frames := []struct {
		at time.Duration
		b  []byte
	}{
		{500 * time.Millisecond, wwSegment(t, wwTCP, wwSrv, 999, 5000, nil)},                                           // before the arming: not the NIC's
		{2 * time.Second, wwSegment(t, wwTCP, wwSrv, 999, 5000, nil)},                                                  // the NIC's probe
		{2*time.Second + 2*time.Millisecond, wwSegment(t, wwSrv, wwTCP, 5000, 1000, nil)},                              // its reply
		{3 * time.Second, wwSegment(t, wwWS, wwSrv, 2000, 6000, []byte{0x89, 0x83, 1, 2, 3, 4, 'n', 'i', 'c'})},        // masked Ping
		{3*time.Second + time.Millisecond, wwSegment(t, wwSrv, wwWS, 6000, 2009, []byte{0x8a, 3, 'n', 'i', 'c'})},      // Pong reply
		{4 * time.Second, wwSegment(t, wwSrv, wwWS, 6005, 2009, []byte{0x89, 1, 'p'})},                                 // server Ping
		{4*time.Second + time.Millisecond, wwSegment(t, wwWS, wwSrv, 2009, 6008, []byte{0x8a, 0x81, 1, 2, 3, 4, 'p'})}, // the NIC's Pong
		{5 * time.Second, wwSegment(t, wwSrv, wwSoft, 7000, 3000, []byte("push 1 1 rain"))},                            // held in D3
		{5*time.Second + 200*time.Millisecond, wwSegment(t, wwSrv, wwSoft, 7000, 3000, []byte("push 1 1 rain"))},       // its retransmission
		{6 * time.Second, wwSegment(t, wwSrv, netip.MustParseAddrPort("198.18.0.2:9"), 1, 1, []byte("x"))},             // not a channel
	}
	for _, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: wall0.Add(f.at), CaptureLength: len(f.b), Length: len(f.b)}
		if err := pw.WritePacket(ci, f.b); err != nil {
			t.Fatal(err)
		}
	}
	in := capture.Bytes()
	for len(in) > 0 {
		n := min(7, len(in))
		if _, err := w.Write(in[:n]); err != nil {
			t.Fatal(err)
		}
		in = in[n:]
	}
	if !bytes.Equal(file.Bytes(), capture.Bytes()) {
		t.Fatal("the pcap file differs from the capture")
	}

	type took struct {
		At time.Duration
		OK bool
	}
	take := func(local netip.AddrPort, m mark) took {
		at, ok := w.take(local, m, time.Second)
		return took{at, ok}
	}
	got := []took{
		take(wwTCP, markProbe), take(wwTCP, markProbe), take(wwTCP, markReply),
		take(wwWS, markProbe), take(wwWS, markReply), take(wwWS, markPong), take(wwWS, markPong),
	}
	want := []took{
		{2 * time.Second, true}, {}, {2*time.Second + 2*time.Millisecond, true},
		{3 * time.Second, true}, {3*time.Second + time.Millisecond, true}, {4*time.Second + time.Millisecond, true}, {},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("capture times (-want +got):\n%s", diff)
	}
	h, ok := w.takeHeld(0)
	if diff := cmp.Diff(heldFrame{at: 5 * time.Second, channel: "weather"}, h, cmp.AllowUnexported(heldFrame{})); !ok || diff != "" {
		t.Errorf("held frame (ok %v) (-want +got):\n%s", ok, diff)
	}
	h, ok = w.takeHeld(0)
	if diff := cmp.Diff(heldFrame{at: 5*time.Second + 200*time.Millisecond, channel: "weather", again: true}, h, cmp.AllowUnexported(heldFrame{})); !ok || diff != "" {
		t.Errorf("held retransmission (ok %v) (-want +got):\n%s", ok, diff)
	}
	if _, ok := w.takeHeld(0); ok {
		t.Error("a third held frame")
	}

	// Frames after the disarming are the host's, not the NIC's.
	w.disarmed(wwTCP, 7*time.Second)
	late := wwSegment(t, wwTCP, wwSrv, 999, 5000, nil)
	pw2 := pcapgo.NewWriterNanos(w)
	if err := pw2.WritePacket(gopacket.CaptureInfo{Timestamp: wall0.Add(8 * time.Second), CaptureLength: len(late), Length: len(late)}, late); err != nil {
		t.Fatal(err)
	}
	if at, ok := w.take(wwTCP, markProbe, 0); ok {
		t.Errorf("a probe at %v after the disarming", at)
	}

	// Not a pcap: passed through, not read.
	var other bytes.Buffer
	nw := newWireWatch(&other, at, func() nic.PowerState { return state })
	junk := bytes.Repeat([]byte{0xff}, 100)
	if n, err := nw.Write(junk); n != len(junk) || err != nil || !bytes.Equal(other.Bytes(), junk) {
		t.Errorf("Write(junk) = %d, %v; file %d bytes", n, err, other.Len())
	}
}

// TestWithoutPoolIndex checks that the slot pool's reasons, as a real
// pool writes them, reach the timeline without the pool's own slot
// index.
func TestWithoutPoolIndex(t *testing.T) {
	p, err := slotmgr.New(&slotmgr.Config{HardwareSlots: 1, IntervalUnit: time.Second, MinInterval: 1, MaxInterval: 3600}, fixedClock(0))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	req := func(ch string, prio int) {
		t.Helper()
		if _, err := p.Request(slotmgr.Request{Channel: ch, App: ch, Resource: slotmgr.RequestHardwareSlot, Interval: 5 * time.Second, Priority: prio}); err != nil {
			t.Fatal(err)
		}
	}
	req("mail", 5)
	req("social", 3) // software: the pool is full
	if err := p.Release("mail"); err != nil {
		t.Fatal(err) // social is promoted
	}
	req("chat", 6) // social is evicted
	var got []string
	for _, e := range p.DrainEvents(nil) {
		got = append(got, e.Kind.String()+": "+withoutPoolIndex(e.Reason))
	}
	want := []string{
		"promoted: promoted to the hardware slot freed by channel mail",
		"evicted: evicted from its hardware slot by channel chat (priority 6 > 3)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
	if s := withoutPoolIndex("hardware pool full (4/4)"); s != "hardware pool full (4/4)" {
		t.Errorf("withoutPoolIndex changed %q", s)
	}
	if s := withoutPoolIndex("moved to hardware slot 3"); strings.ContainsAny(s, "0123456789") {
		t.Errorf("withoutPoolIndex left the index: %q", s)
	}
}

type fixedClock time.Duration

func (c fixedClock) Now() time.Duration { return time.Duration(c) }
