package nic_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// labRig is a device in the nic namespace of a lab, between srv0 and
// host0, with one TCP connection host → srv through it.
type labRig struct {
	t               *testing.T
	lab             *netlab.Lab
	dev             *nic.Device
	clock           offload.Clock
	hostMAC, srvMAC [6]byte
	hostConn        *net.TCPConn // in netns host
	srvConn         *net.TCPConn // in netns srv
	conn            wp.TCPConn
	frozen          *host.Frozen
	tcp             host.TCPState
	hostTxAtSleep   uint64
	armedAt         time.Duration
	slot            nic.SlotID
}

func macOf(t *testing.T, l *netlab.Lab, ns netlab.Namespace, link string) [6]byte {
	t.Helper()
	ifi, err := l.Interface(ns, link)
	if err != nil {
		t.Fatal(err)
	}
	return [6]byte(ifi.HardwareAddr)
}

func openPort(t *testing.T, l *netlab.Lab, ns netlab.Namespace, link string) nic.Port {
	t.Helper()
	var p nic.Port
	if err := l.Do(ns, func() error {
		var err error
		p, err = nic.OpenPacketPort(link, nil)
		return err
	}); err != nil {
		t.Fatalf("open packet port %s/%s: %v", ns, link, err)
	}
	return p
}

func newLabRig(t *testing.T, mod func(*nic.Config)) *labRig {
	t.Helper()
	return newLabRigOpts(t, nil, mod)
}

// newLabRigOpts is newLabRig on a lab built with opts.
func newLabRigOpts(t *testing.T, opts *netlab.Options, mod func(*nic.Config)) *labRig {
	t.Helper()
	before := runtime.NumGoroutine()
	l := netlab.NewForTest(t, opts)
	r := &labRig{t: t, lab: l, clock: nic.BootClock(),
		hostMAC: macOf(t, l, netlab.Host, netlab.HostLink), srvMAC: macOf(t, l, netlab.Srv, netlab.SrvLink)}
	cfg := &nic.Config{
		Wire: openPort(t, l, netlab.NIC, netlab.WireLink), Host: openPort(t, l, netlab.NIC, netlab.HostPortLink),
		MAC: r.hostMAC, Addrs: []netip.Addr{l.Addr.Host4, l.Addr.Host6}, Clock: r.clock,
	}
	if mod != nil {
		mod(cfg)
	}
	dev, err := nic.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.dev = dev
	t.Cleanup(func() {
		if r.hostConn != nil {
			r.hostConn.Close()
		}
		if r.srvConn != nil {
			r.srvConn.Close()
		}
		if err := dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		checkGoroutines(t, before)
	})
	return r
}

// connect opens a TCP connection from host to srv through the device and
// registers it for learning.
func (r *labRig) connect() {
	t := r.t
	ln, err := r.lab.ListenTCP(netlab.Srv, netip.AddrPortFrom(r.lab.Addr.Srv4, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvAP := netip.MustParseAddrPort(ln.Addr().String())
	// Track before the handshake so the window scales are learned too;
	// the local port is not known yet, so dial, then track what the
	// handshake can no longer teach (MACs, TSRecent come from later
	// segments).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	hc, err := r.lab.DialTCP(ctx, netlab.Host, srvAP.String())
	if err != nil {
		t.Fatal(err)
	}
	r.hostConn = hc
	select {
	case r.srvConn = <-accepted:
	case <-ctx.Done():
		t.Fatal("accept timed out")
	}
	if r.srvConn == nil {
		t.Fatal("accept failed")
	}
	r.conn = wp.TCPConn{Local: netip.MustParseAddrPort(hc.LocalAddr().String()), Remote: srvAP}
	if err := r.dev.Track(r.conn); err != nil {
		t.Fatal(err)
	}
	// One exchange each way so the device sees the connection's segments.
	r.exchange([]byte("hello srv"), []byte("hello host"))
}

// exchange sends a from host to srv and b back, and checks both arrive.
func (r *labRig) exchange(a, b []byte) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	r.hostConn.SetDeadline(deadline)
	r.srvConn.SetDeadline(deadline)
	if _, err := r.hostConn.Write(a); err != nil {
		r.t.Fatal(err)
	}
	got := make([]byte, len(a))
	if _, err := io.ReadFull(r.srvConn, got); err != nil || !bytes.Equal(got, a) {
		r.t.Fatalf("srv read %q, %v; want %q", got, err, a)
	}
	if _, err := r.srvConn.Write(b); err != nil {
		r.t.Fatal(err)
	}
	got = make([]byte, len(b))
	if _, err := io.ReadFull(r.hostConn, got); err != nil || !bytes.Equal(got, b) {
		r.t.Fatalf("host read %q, %v; want %q", got, err, b)
	}
	r.hostConn.SetDeadline(time.Time{})
	r.srvConn.SetDeadline(time.Time{})
}

// sleep freezes the host's socket, arms a slot from the snapshot and what
// the device learned, and puts the device in D3.
func (r *labRig) sleep(spec offload.Spec) {
	t := r.t
	// Let the last ACKs cross the device before freezing.
	var l nic.Learned
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ok bool
		l, ok = r.dev.Learned(r.conn)
		if ok && l.SeenIn && l.SeenOut && l.HostAck == l.RcvNxt && l.SndUna == l.SndNxt {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection not idle on the wire: %+v", l)
		}
		time.Sleep(time.Millisecond)
	}
	f, st, err := host.Freeze(r.hostConn)
	if err != nil {
		t.Fatal(err)
	}
	r.frozen, r.tcp = f, st
	if st.SndNxt != l.SndNxt || st.RcvNxt != l.RcvNxt {
		t.Fatalf("snapshot SND.NXT %d RCV.NXT %d, device learned %d %d", st.SndNxt, st.RcvNxt, l.SndNxt, l.RcvNxt)
	}
	snap := offload.Snapshot{
		LocalMAC: l.LocalMAC, RemoteMAC: l.RemoteMAC, Local: st.Local, Remote: st.Remote,
		SndNxt: st.SndNxt, RcvNxt: st.RcvNxt, SndWnd: st.Window.SndWnd, RcvWnd: st.Window.RcvWnd,
		SndWScale: st.SndWScale, RcvWScale: st.RcvWScale, TTL: st.TTL, TOS: st.TOS, MSS: uint16(st.MSS),
	}
	if st.Timestamps {
		rate := uint32(1000)
		if st.UsecTimestamps {
			rate = 1_000_000
		}
		snap.Timestamps = offload.Timestamps{Enabled: true, Val: st.TSVal, At: r.clock.Now(), Rate: rate, Recent: l.TSRecent}
	}
	r.armedAt = r.clock.Now()
	r.slot, err = r.dev.Arm(nic.SlotConfig{Pattern: r.conn, Spec: spec, Snapshot: snap, Owner: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	r.hostTxAtSleep = r.counter("host_tx_frames")
	if err := r.dev.Sleep(); err != nil {
		t.Fatal(err)
	}
}

func (r *labRig) counter(name string) uint64 {
	r.t.Helper()
	v, ok := r.dev.Counter(name)
	if !ok {
		r.t.Fatalf("no counter %q", name)
	}
	return v
}

// waitCounter waits until the named counter reaches want.
func (r *labRig) waitCounter(name string, want uint64, within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for r.counter(name) < want {
		if time.Now().After(deadline) {
			r.t.Fatalf("%s = %d, want %d within %v; counters %v", name, r.counter(name), want, within, nonZero(r.dev.Counters()))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *labRig) wake(within time.Duration) nic.WakeEvent {
	r.t.Helper()
	select {
	case ev := <-r.dev.Wakes():
		return ev
	case <-time.After(within):
		r.t.Fatalf("no wake within %v; counters %v", within, nonZero(r.dev.Counters()))
	}
	return nic.WakeEvent{}
}

// wakeUp resumes the host after a wake: disarm, thaw with the books,
// deliver the buffered frames.
func (r *labRig) wakeUp() offload.Report {
	r.t.Helper()
	rep, err := r.dev.Disarm(r.slot)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.frozen.Thaw(rep.Books.Sent, rep.Books.Absorbed); err != nil {
		r.t.Fatal(err)
	}
	if err := r.dev.Resume(); err != nil {
		r.t.Fatal(err)
	}
	return rep
}

func fastSpec() offload.Spec {
	return offload.Spec{Kind: offload.KindTCPProbe, Interval: time.Second, RetryInterval: 200 * time.Millisecond, RetryCount: 2}
}

func TestIntegrationD0BulkBothWays(t *testing.T) {
	var wire bytes.Buffer
	r := newLabRig(t, func(c *nic.Config) { c.WirePcap = &wire })
	testBulkBothWays(t, r, true)
	// What the kernel hands a packet socket on a veth with its default
	// offloads: TSO super-frames whose IPv4 total length is the frame's
	// (never 0 below BIG TCP's 64 KB), in the pcap at their full length.
	if err := r.dev.Close(); err != nil {
		t.Fatal(err)
	}
	pr, err := pcapgo.NewReader(&wire)
	if err != nil {
		t.Fatal(err)
	}
	var super, biggest, badLen int
	for {
		data, ci, err := pr.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ci.Length <= 1514 || len(data) < 34 || binary.BigEndian.Uint16(data[12:]) != 0x0800 {
			continue
		}
		super++
		biggest = max(biggest, ci.Length)
		if tl := int(binary.BigEndian.Uint16(data[16:])); tl != ci.Length-14 {
			badLen++
		}
	}
	t.Logf("wire pcap: %d IPv4 super-frames, the longest %d bytes, %d with an IPv4 total length other than the frame's", super, biggest, badLen)
	if super == 0 || badLen != 0 {
		t.Errorf("wire pcap: %d super-frames, %d with a wrong IPv4 total length", super, badLen)
	}
}

// TestIntegrationOffloadsOff is the one device test on veths with their
// offloads off (netlab.Options.DisableOffloads): whole frames only, the
// ports' virtio_net_hdrs all zero or DATA_VALID; bulk both ways, then a
// push through D3 wakes the host.
func TestIntegrationOffloadsOff(t *testing.T) {
	r := newLabRigOpts(t, &netlab.Options{DisableOffloads: true}, nil)
	testBulkBothWays(t, r, false)
	r.sleep(fastSpec())
	r.waitCounter("slot1_replies_absorbed", 1, 10*time.Second)
	push := []byte("push over a link without offloads")
	r.srvConn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.srvConn.Write(push); err != nil {
		t.Fatal(err)
	}
	if ev := r.wake(10 * time.Second); ev.Reason != nic.WakeData {
		t.Fatalf("wake %+v, want data", ev)
	}
	r.wakeUp()
	got := make([]byte, len(push))
	r.hostConn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(r.hostConn, got); err != nil || !bytes.Equal(got, push) {
		t.Fatalf("host read %q, %v; want %q", got, err, push)
	}
	if n := r.counter("vnet_rx_gso") + r.counter("vnet_rx_csum_partial") + r.counter("vnet_sw_csum"); n != 0 {
		t.Errorf("offloaded frames on links without offloads: %v", nonZero(r.dev.Counters()))
	}
}

// TestIntegrationD3GSOPushWakes: on veths with default offloads the srv
// kernel sends a 12 KB push as one TSO super-frame with a partial
// checksum; it wakes the host, every byte of it is buffered and handed
// over at Resume.
func TestIntegrationD3GSOPushWakes(t *testing.T) {
	r := newLabRig(t, nil)
	r.connect()
	r.sleep(fastSpec())
	r.waitCounter("slot1_replies_absorbed", 1, 10*time.Second)
	gsoBefore := r.counter("vnet_sw_gso")
	push := bytes.Repeat([]byte("twelve kilobytes of push. "), 12000/26)
	r.srvConn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.srvConn.Write(push); err != nil {
		t.Fatal(err)
	}
	ev := r.wake(10 * time.Second)
	if ev.Reason != nic.WakeData || ev.Slot != r.slot {
		t.Fatalf("wake %+v, want data on slot %d", ev, r.slot)
	}
	if r.counter("vnet_sw_gso") == gsoBefore {
		t.Errorf("the push did not arrive as a super-frame: %v", nonZero(r.dev.Counters()))
	}
	if n := r.counter("d3_rx_dropped_bad_csum") + r.counter("vnet_dropped_bad") + r.counter("vnet_dropped_truncated"); n != 0 {
		t.Errorf("offloaded frames dropped in D3: %v", nonZero(r.dev.Counters()))
	}
	r.wakeUp()
	got := make([]byte, len(push))
	r.hostConn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(r.hostConn, got); err != nil || !bytes.Equal(got, push) {
		t.Fatalf("host read %d bytes, %v; want the %d-byte push", len(got), err, len(push))
	}
	r.exchange([]byte("ack"), []byte("next"))
}

// testBulkBothWays moves 4 MB each way through the device at once and
// checks the bytes, the counters (offloaded super-frames when offloads)
// and what the device learned.
func testBulkBothWays(t *testing.T, r *labRig, offloads bool) {
	r.connect()
	const size = 4 << 20
	up, down := make([]byte, size), make([]byte, size)
	rand.Read(up)
	rand.Read(down)
	deadline := time.Now().Add(60 * time.Second)
	r.hostConn.SetDeadline(deadline)
	r.srvConn.SetDeadline(deadline)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	copyTo := func(w net.Conn, b []byte) {
		defer wg.Done()
		if _, err := w.Write(b); err != nil {
			errs <- err
		}
	}
	var gotUp, gotDown []byte
	readAll := func(c net.Conn, dst *[]byte) {
		defer wg.Done()
		buf := make([]byte, size)
		if _, err := io.ReadFull(c, buf); err != nil {
			errs <- err
		}
		*dst = buf
	}
	wg.Add(4)
	go copyTo(r.hostConn, up)
	go copyTo(r.srvConn, down)
	go readAll(r.srvConn, &gotUp)
	go readAll(r.hostConn, &gotDown)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if sha256.Sum256(gotUp) != sha256.Sum256(up) || sha256.Sum256(gotDown) != sha256.Sum256(down) {
		t.Fatal("bytes differ after crossing the device")
	}
	if got := r.counter("rx_bytes") + r.counter("host_rx_bytes"); got < 2*size {
		t.Errorf("rx_bytes + host_rx_bytes = %d, fewer than the %d MB sent", got, 2*size>>20)
	}
	// With the kernel's default offloads the segments crossed as GSO
	// super-frames with partial checksums, passed on unchanged.
	if offloads && (r.counter("vnet_ports") != 2 || r.counter("vnet_rx_gso") == 0 || r.counter("vnet_rx_csum_partial") == 0) {
		t.Errorf("offloaded frames not seen: %v", nonZero(r.dev.Counters()))
	}
	if n := r.counter("vnet_sw_gso") + r.counter("vnet_sw_csum") + r.counter("vnet_dropped_bad") + r.counter("vnet_dropped_truncated") + r.counter("tx_errors") + r.counter("host_tx_errors"); n != 0 {
		t.Errorf("frames finished in software or lost in D0: %v", nonZero(r.dev.Counters()))
	}
	// Learning read the super-frames' sequence spans: once every byte is
	// acknowledged, each side's next sequence number is the other's ACK.
	var l nic.Learned
	deadline = time.Now().Add(10 * time.Second)
	for {
		l, _ = r.dev.Learned(r.conn)
		if l.SndNxt == l.SndUna && l.RcvNxt == l.HostAck || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if l.LocalMAC != r.hostMAC || l.RemoteMAC != r.srvMAC || !l.SeenIn || !l.SeenOut || l.SndNxt != l.SndUna || l.RcvNxt != l.HostAck {
		t.Errorf("learned %+v", l)
	}
}

func TestIntegrationD3ProbesAbsorbedThenPushWakes(t *testing.T) {
	r := newLabRig(t, nil)
	r.connect()
	r.sleep(fastSpec())
	// Three intervals: three probes, three ACKs from the srv kernel, all
	// absorbed; the host sees nothing.
	r.waitCounter("slot1_replies_absorbed", 3, 10*time.Second)
	if got := r.counter("slot1_keepalives_sent"); got != 3 && got != 4 {
		t.Errorf("slot1_keepalives_sent = %d after 3 replies", got)
	}
	if got := r.counter("slot1_retries"); got != 0 {
		t.Errorf("slot1_retries = %d, want 0: every probe was answered", got)
	}
	if got := r.counter("d3_rx_absorbed"); got != r.counter("slot1_rx_absorbed") || got < 3 {
		t.Errorf("d3_rx_absorbed = %d, slot1_rx_absorbed = %d", got, r.counter("slot1_rx_absorbed"))
	}
	if got := r.counter("host_tx_frames"); got != r.hostTxAtSleep {
		t.Errorf("host got %d frames while asleep", got-r.hostTxAtSleep)
	}
	// ARP offload: srv forgets the host's MAC and must ask; the device
	// answers for the sleeping host and the push below gets through.
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
	if got := r.counter("d3_arp_replies"); got < 1 {
		t.Errorf("d3_arp_replies = %d: srv reached the host without the device's ARP answer", got)
	}
	if got := r.counter("host_tx_frames"); got != r.hostTxAtSleep {
		t.Errorf("host got %d frames before resume", got-r.hostTxAtSleep)
	}
	r.wakeUp()
	got := make([]byte, len(push))
	r.hostConn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(r.hostConn, got); err != nil || !bytes.Equal(got, push) {
		t.Fatalf("host read %q, %v; want %q", got, err, push)
	}
	// The connection is whole: one more round trip.
	r.exchange([]byte("ack 1"), []byte("push 2"))
}

func TestIntegrationD3ResetWakes(t *testing.T) {
	r := newLabRig(t, nil)
	r.connect()
	r.sleep(fastSpec())
	r.srvConn.SetLinger(0)
	r.srvConn.Close()
	r.srvConn = nil
	ev := r.wake(10 * time.Second)
	if ev.Reason != nic.WakeRST || ev.Slot != r.slot {
		t.Fatalf("wake %+v, want reset on slot %d", ev, r.slot)
	}
	r.wakeUp()
	r.hostConn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.hostConn.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("host read after the peer's reset: %v, want a reset error", err)
	}
}

func TestIntegrationD3LinkDownKeepAliveTimeout(t *testing.T) {
	r := newLabRig(t, nil)
	r.connect()
	spec := fastSpec()
	r.sleep(spec)
	r.waitCounter("slot1_replies_absorbed", 1, 5*time.Second)
	if err := r.lab.SetLinkDown(netlab.Srv, netlab.SrvLink); err != nil {
		t.Fatal(err)
	}
	downAt := r.clock.Now()
	ev := r.wake(10 * time.Second)
	if ev.Reason != nic.WakeKeepAliveTimeout || ev.Slot != r.slot || ev.Packet != nil {
		t.Fatalf("wake %+v, want keep-alive-timeout on slot %d", ev, r.slot)
	}
	// Dead after the next probe and its retries went unanswered: at most
	// interval + (retries+1) × retry interval after the link went down.
	budget := spec.Interval + time.Duration(spec.RetryCount+1)*spec.RetryInterval
	if d := ev.At - downAt; d < time.Duration(spec.RetryCount+1)*spec.RetryInterval || d > budget+500*time.Millisecond {
		t.Errorf("woke %v after link down, want within (retries+1)×retry = %v .. interval+(retries+1)×retry = %v", d,
			time.Duration(spec.RetryCount+1)*spec.RetryInterval, budget)
	}
	if got := r.counter("slot1_retries"); got != uint64(spec.RetryCount) {
		t.Errorf("slot1_retries = %d, want %d", got, spec.RetryCount)
	}
}

func TestIntegrationD3BadFramesNoWake(t *testing.T) {
	for _, noPrefilter := range []bool{false, true} {
		name := map[bool]string{false: "prefilter", true: "no prefilter"}[noPrefilter]
		t.Run(name, func(t *testing.T) { testIntegrationBadFrames(t, noPrefilter) })
	}
}

func testIntegrationBadFrames(t *testing.T, noPrefilter bool) {
	r := newLabRig(t, func(c *nic.Config) { c.NoPrefilter = noPrefilter })
	r.connect()
	r.sleep(offload.Spec{Kind: offload.KindTCPProbe, Interval: time.Hour, RetryInterval: time.Minute, RetryCount: 1})
	raw := openPort(t, r.lab, netlab.Srv, netlab.SrvLink)
	defer raw.Close()
	seg := func(seq uint32, payload string, mod func(ip *layers.IPv4, tcp *layers.TCP)) []byte {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
			SrcIP: r.conn.Remote.Addr().AsSlice(), DstIP: r.conn.Local.Addr().AsSlice()}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(r.conn.Remote.Port()), DstPort: layers.TCPPort(r.conn.Local.Port()),
			Seq: seq, Ack: r.tcp.SndNxt, ACK: true, PSH: payload != "", Window: 1000}
		if mod != nil {
			mod(ip, tcp)
		}
		tcp.SetNetworkLayerForChecksum(ip)
		return serialize(t, &layers.Ethernet{SrcMAC: r.srvMAC[:], DstMAC: r.hostMAC[:], EthernetType: layers.EthernetTypeIPv4}, ip, tcp, gopacket.Payload(payload))
	}
	rcv := r.tcp.RcvNxt
	badTCP := seg(rcv, "bad tcp checksum", nil)
	badTCP[14+20+16] ^= 0xff
	badIP := seg(rcv, "bad ip checksum", nil)
	badIP[14+10] ^= 0xff
	trunc := seg(rcv, "truncated segment", nil)
	trunc = trunc[:len(trunc)-6]
	frag := seg(rcv, "first fragment", func(ip *layers.IPv4, _ *layers.TCP) { ip.Flags = layers.IPv4MoreFragments })
	oow := seg(rcv+1<<30, "out of window", nil)
	untagged := seg(rcv, "wrong vlan", nil)
	vlan := append(append(append([]byte(nil), untagged[:12]...), 0x81, 0x00, 0x00, 42), untagged[12:]...)
	frames := [][]byte{badTCP, badIP, trunc, frag, oow, vlan}
	if n, err := raw.WriteBatch(frames); err != nil || n != len(frames) {
		t.Fatalf("inject: %d, %v", n, err)
	}
	want := map[string]uint64{"d3_rx_dropped_bad_csum": 2, "d3_rx_dropped_out_of_window": 1, "d3_rx_dropped_wrong_vlan": 1}
	if noPrefilter {
		want["d3_rx_dropped_malformed"] = 1
		want["d3_rx_dropped_fragment"] = 1
	}
	for name, v := range want {
		r.waitCounter(name, v, 5*time.Second)
	}
	// The frames the kernel prefilter drops never reach the datapath.
	if !noPrefilter {
		for _, name := range []string{"d3_rx_dropped_malformed", "d3_rx_dropped_fragment"} {
			if got := r.counter(name); got != 0 {
				t.Errorf("%s = %d with the prefilter on, want 0 (the kernel drops them)", name, got)
			}
		}
	}
	for name, v := range want {
		if got := r.counter(name); got != v {
			t.Errorf("%s = %d, want %d", name, got, v)
		}
	}
	select {
	case ev := <-r.dev.Wakes():
		t.Fatalf("bad frame woke the host: %+v", ev)
	default:
	}
	if s := r.dev.State(); s != nic.D3 {
		t.Errorf("state %v, want D3", s)
	}
	if got := r.counter("host_tx_frames"); got != r.hostTxAtSleep {
		t.Errorf("host got %d frames while asleep", got-r.hostTxAtSleep)
	}
	if got := r.counter("slot1_dropped_out_of_window"); got != 1 {
		t.Errorf("slot1_dropped_out_of_window = %d, want 1", got)
	}
	r.frozen.Abort() // nothing was exchanged on its behalf
}
