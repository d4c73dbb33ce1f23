package nic_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/nic/porttest"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// Offloaded frames through the device on pipes that carry virtio_net_hdrs
// (porttest.Config.Offloads), as AF_PACKET ports with PACKET_VNET_HDR on
// links with the kernel's default offloads.

const gsoMSS = 1448

// partial turns the whole IPv4 TCP frame f (from tcpFrame, untagged) into
// what a Linux sender hands a link with offloads on: the TCP checksum
// field holds only the pseudo-header sum, and the header says so; GSO
// when the payload is longer than gsoMSS.
func partial(t testing.TB, f []byte) ([]byte, nic.VnetHdr) {
	t.Helper()
	f = append([]byte(nil), f...)
	const l3, l4 = 14, 34
	src, dst := wp.IPv4(f[l3:]).Src(), wp.IPv4(f[l3:]).Dst()
	end := l3 + wp.IPv4(f[l3:]).TotalLen() // not the Ethernet padding
	binary.BigEndian.PutUint16(f[l4+16:], wp.Fold(wp.PseudoHeaderSum(wp.ProtoTCP, src, dst, end-l4)))
	h := nic.VnetHdr{Flags: nic.VnetNeedsCsum, CsumStart: l4, CsumOffset: 16}
	if hl := l4 + int(f[l4+12]>>4)*4; len(f)-hl > gsoMSS {
		h.GSOType, h.GSOSize, h.HdrLen = nic.GSOTCPv4, gsoMSS, uint16(hl)
	}
	return f, h
}

func sendVnet(t testing.TB, p *porttest.Port, f []byte, h nic.VnetHdr) {
	t.Helper()
	if n, err := p.WriteBatchVnet([][]byte{f}, []nic.VnetHdr{h}); n != 1 || err != nil {
		t.Fatalf("write to %s: %d, %v", p.Name(), n, err)
	}
}

// recvVnet reads one frame and its header from p.
func (r *rig) recvVnet(p *porttest.Port) ([]byte, nic.VnetHdr) {
	r.t.Helper()
	f := r.recv(p)
	return f, r.pkts[0].Vnet
}

func offloadRig(t *testing.T, hostOffloads bool, mod func(*nic.Config)) *rig {
	return newPipeRig(t, porttest.Config{Offloads: true}, porttest.Config{Offloads: hostOffloads}, mod)
}

func TestD0ForwardsOffloadedFramesUnchanged(t *testing.T) {
	r := offloadRig(t, true, nil)
	if err := r.dev.Track(conn); err != nil {
		t.Fatal(err)
	}
	if got := r.dev.Offloads(); got != (nic.Offloads{Wire: true, Host: true}) || r.counter("vnet_ports") != 2 {
		t.Fatalf("Offloads %+v, vnet_ports %d", got, r.counter("vnet_ports"))
	}
	down, hd := partial(t, tcpFrame(t, fromPeer(peerISN, hostISN, string(bytes.Repeat([]byte{'d'}, 20000)))))
	up, hu := partial(t, tcpFrame(t, fromHost(hostISN, peerISN+20000, string(bytes.Repeat([]byte{'u'}, 30000)))))
	sendVnet(t, r.srv, down, hd)
	if f, h := r.recvVnet(r.host); !bytes.Equal(f, down) || h != hd {
		t.Errorf("host got %d bytes with %+v, want the %d-byte super-frame with %+v", len(f), h, len(down), hd)
	}
	sendVnet(t, r.host, up, hu)
	if f, h := r.recvVnet(r.srv); !bytes.Equal(f, up) || h != hu {
		t.Errorf("srv got %d bytes with %+v, want the %d-byte super-frame with %+v", len(f), h, len(up), hu)
	}
	l, _ := r.dev.Learned(conn)
	if l.RcvNxt != peerISN+20000 || l.SndNxt != hostISN+30000 || l.HostAck != peerISN+20000 {
		t.Errorf("learned RcvNxt %d SndNxt %d HostAck %d, want %d, %d, %d", l.RcvNxt, l.SndNxt, l.HostAck, peerISN+20000, hostISN+30000, peerISN+20000)
	}
	want := map[string]uint64{"vnet_rx_gso": 2, "vnet_rx_csum_partial": 2, "vnet_sw_gso": 0, "vnet_sw_csum": 0, "d0_forwarded": 2}
	if d := cmp.Diff(want, r.counters("vnet_rx_gso", "vnet_rx_csum_partial", "vnet_sw_gso", "vnet_sw_csum", "d0_forwarded")); d != "" {
		t.Errorf("counters (-want +got):\n%s", d)
	}
}

// TestD0SoftwareGSOForPlainPort: a host port without headers gets the
// super-frame as whole segments, the partial-checksum frame completed.
func TestD0SoftwareGSOForPlainPort(t *testing.T) {
	r := offloadRig(t, false, nil)
	payload := bytes.Repeat([]byte("0123456789"), 1000)
	down, hd := partial(t, tcpFrame(t, fromPeer(peerISN, hostISN, string(payload))))
	sendVnet(t, r.srv, down, hd)
	var got []byte
	for i := 0; len(got) < len(payload); i++ {
		f := decode(t, r.recv(r.host)) // checksums verified
		if f.Seq != peerISN+uint32(len(got)) {
			t.Fatalf("segment %d: seq %d, want %d", i, f.Seq, peerISN+len(got))
		}
		got = append(got, f.Payload()...)
	}
	if !bytes.Equal(got, payload) {
		t.Error("segments' payload differs")
	}
	small, hs := partial(t, tcpFrame(t, fromPeer(peerISN+10000, hostISN, "tail")))
	sendVnet(t, r.srv, small, hs)
	if f := decode(t, r.recv(r.host)); string(f.Payload()) != "tail" {
		t.Errorf("partial-checksum frame: payload %q", f.Payload())
	}
	want := map[string]uint64{"vnet_ports": 1, "vnet_sw_gso": 1, "vnet_sw_segments": uint64((len(payload) + gsoMSS - 1) / gsoMSS), "vnet_sw_csum": 1, "host_tx_errors": 0}
	if d := cmp.Diff(want, r.counters("vnet_ports", "vnet_sw_gso", "vnet_sw_segments", "vnet_sw_csum", "host_tx_errors")); d != "" {
		t.Errorf("counters (-want +got):\n%s", d)
	}
}

// TestD3OffloadedFrames: in D3 a partial checksum is not a bad checksum
// (the keep-alive reply is absorbed), and a push that arrives as one GSO
// super-frame wakes the host; after Resume the host has every byte of it,
// in order, as whole segments.
func TestD3OffloadedFrames(t *testing.T) {
	r := offloadRig(t, true, nil)
	r.armAndSleep()
	r.expectProbe(time.Second)
	ack, ha := partial(t, tcpFrame(t, fromPeer(peerISN, hostISN, "")))
	sendVnet(t, r.srv, ack, ha)
	r.waitCounter("d3_rx_absorbed", 1)
	if n := r.counter("d3_rx_dropped_bad_csum"); n != 0 {
		t.Fatalf("partial checksum counted bad: d3_rx_dropped_bad_csum = %d", n)
	}
	payload := bytes.Repeat([]byte("push!"), 2000)
	push, hp := partial(t, tcpFrame(t, fromPeer(peerISN, hostISN, string(payload))))
	sendVnet(t, r.srv, push, hp)
	ev := r.wake()
	if ev.Reason != nic.WakeData {
		t.Fatalf("wake %+v, want data", ev)
	}
	segs := uint64((len(payload) + gsoMSS - 1) / gsoMSS)
	r.waitCounter("vnet_sw_segments", segs)
	if _, err := r.dev.Disarm(1); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.Resume(); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for len(got) < len(payload) {
		f, h := r.recvVnet(r.host)
		if h != (nic.VnetHdr{}) {
			t.Fatalf("buffered frame with header %+v, want a whole frame", h)
		}
		d := decode(t, f)
		if d.Seq != peerISN+uint32(len(got)) {
			t.Fatalf("seq %d, want %d", d.Seq, peerISN+len(got))
		}
		got = append(got, d.Payload()...)
	}
	if !bytes.Equal(got, payload) {
		t.Error("the host's bytes differ from the push")
	}
	if n := r.counter("d3_rx_dropped_bad_csum") + r.counter("vnet_dropped_bad") + r.counter("postwake_dropped_overflow"); n != 0 {
		t.Errorf("frames lost: %v", nonZero(r.dev.Counters()))
	}
}

// TestOffloadedFrameTruncated: the device reads offload ports into
// MaxGSOFrame buffers whatever MaxFrame says; a super-frame longer than
// that (a link with gso_max_size beyond 64 KB) is dropped and counted,
// never passed on cut.
func TestOffloadedFrameTruncated(t *testing.T) {
	r := offloadRig(t, true, func(c *nic.Config) { c.Capabilities.MaxFrame = nic.MinMaxFrame })
	big, h := partial(t, tcpFrame(t, fromPeer(peerISN, hostISN, string(make([]byte, 60000)))))
	sendVnet(t, r.srv, big, h)
	if f, _ := r.recvVnet(r.host); !bytes.Equal(f, big) {
		t.Fatalf("host got %d bytes, want %d", len(f), len(big))
	}
	huge := append(append([]byte(nil), big...), make([]byte, nic.MaxGSOFrame-len(big)+1)...)
	sendVnet(t, r.srv, huge, h)
	r.waitCounter("vnet_dropped_truncated", 1)
	if n := r.host.Queued(); n != 0 {
		t.Errorf("host got %d frames, want none", n)
	}
}

// TestD0GROFrame: a super-frame as a NIC's GRO hands it over (DATA_VALID,
// no partial checksum) crosses in the form the kernel takes on transmit.
func TestD0GROFrame(t *testing.T) {
	r := offloadRig(t, true, nil)
	want, wh := partial(t, tcpFrame(t, fromPeer(peerISN, hostISN, string(make([]byte, 9000)))))
	gro := append([]byte(nil), want...)
	binary.BigEndian.PutUint16(gro[34+16:], 0xbeef)
	sendVnet(t, r.srv, gro, nic.VnetHdr{Flags: nic.VnetDataValid, GSOType: wh.GSOType, GSOSize: wh.GSOSize, HdrLen: wh.HdrLen})
	if f, h := r.recvVnet(r.host); !bytes.Equal(f, want) || h != wh {
		t.Errorf("host got %+v, want %+v and the TSO form of the frame", h, wh)
	}
	if n := r.counter("vnet_rx_gro"); n != 1 {
		t.Errorf("vnet_rx_gro = %d", n)
	}
}
