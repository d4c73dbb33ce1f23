package nic

import (
	"net/netip"
	"testing"
	"time"

	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// FuzzD3 feeds arbitrary wire frames to the D3 datapath: it never panics,
// nothing reaches the host unless the device woke, and every frame is
// accounted for by exactly one outcome.
func FuzzD3(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	host := &countPort{idlePort: newIdlePort()}
	d, err := New(&Config{Wire: newIdlePort(), Host: host, MAC: testHostMAC, Addrs: []netip.Addr{testHost4, testHost6}, NoPrefilter: true})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	local, remote := netip.AddrPortFrom(testHost4, 40000), netip.AddrPortFrom(testPeer4, 443)
	snap := offload.Snapshot{LocalMAC: testHostMAC, RemoteMAC: testPeerMAC, Local: local, Remote: remote, SndNxt: 1000, RcvNxt: 5000,
		SndWnd: 65535, RcvWnd: 65535, TTL: 64, MSS: 1460}
	spec := offload.Spec{Kind: offload.KindTCPProbe, Interval: time.Hour, RetryInterval: time.Minute, RetryCount: 1}
	if _, err := d.Arm(SlotConfig{Pattern: wp.TCPConn{Local: local, Remote: remote}, Spec: spec, Snapshot: snap}); err != nil {
		f.Fatal(err)
	}
	if err := d.AddWakePattern(wp.Pattern{ID: 9, Kind: wp.KindMagic, Magic: wp.Magic{MAC: testHostMAC}}); err != nil {
		f.Fatal(err)
	}
	if err := d.Sleep(); err != nil {
		f.Fatal(err)
	}
	rx := newRxCtx(64)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if d.State() != D3 {
			// A previous input woke the device: start the next one asleep.
			if err := d.Resume(); err != nil {
				t.Fatal(err)
			}
			if err := d.Sleep(); err != nil {
				t.Fatal(err)
			}
		}
		before := d.cnt.get(cD3RxFrames)
		outcomes := func() uint64 {
			var n uint64
			for _, id := range []counterID{cD3RxAbsorbed, cD3RxDroppedNoMatch, cD3RxDroppedMalformed, cD3RxDroppedBadCsum,
				cD3RxDroppedFragment, cD3RxDroppedOutOfWindow, cD3RxDroppedPAWS, cD3RxDroppedWrongVLAN, cD3RxDroppedSlot,
				cD3ArpReplies, cD3NsReplies, cPostwakeBuffered, cPostwakeDroppedOverflow} {
				n += d.cnt.get(id)
			}
			return n
		}
		o := outcomes()
		hostBefore := host.frames()
		d.rxWire(rx, append([]byte(nil), frame...), &wholeHdr, time.Now())
		d.flushHost(rx)
		if got := d.cnt.get(cD3RxFrames) - before; got != 1 {
			t.Fatalf("d3_rx_frames advanced by %d", got)
		}
		if got := outcomes() - o; got != 1 {
			t.Fatalf("frame %x had %d outcomes, want 1", frame, got)
		}
		if host.frames() != hostBefore {
			t.Fatalf("frame %x reached the host in D3", frame)
		}
	})
}

// countPort is an idlePort that counts what is written to it.
type countPort struct {
	*idlePort
	n int
}

func (p *countPort) WriteBatch(f [][]byte) (int, error) { p.n += len(f); return len(f), nil }
func (p *countPort) frames() int                        { return p.n }

func fuzzSeeds(f *testing.F) [][]byte {
	bench := benchFrame(f)
	return [][]byte{
		bench,
		arpFrame(f, wp.ARPOpRequest, testPeerMAC, testPeer4, testHost4, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0),
		nsFrame(f, testPeer6, netip.MustParseAddr("ff02::1:ff00:2"), testHost6, 255, 0, 0),
		bench[:30],
		{},
	}
}

// FuzzD3Vnet feeds arbitrary wire frames with arbitrary virtio_net_hdrs
// to the D3 datapath: it never panics and nothing reaches the host unless
// the device woke.
func FuzzD3Vnet(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint8(0), uint8(0), uint16(0), uint16(0), uint16(0))
	}
	gso, h := superFrame(f, false, false, make([]byte, 4000), 1448, 0x18, -1)
	f.Add(gso, h.Flags, h.GSOType, h.GSOSize, h.CsumStart, h.CsumOffset)
	bench := benchFrame(f)
	f.Add(bench, uint8(VnetNeedsCsum), uint8(GSONone), uint16(0), uint16(34), uint16(16))
	f.Add(bench, uint8(VnetDataValid), uint8(GSONone), uint16(0), uint16(0), uint16(0))
	host := &countPort{idlePort: newIdlePort()}
	d, err := New(&Config{Wire: newIdlePort(), Host: host, MAC: testHostMAC, Addrs: []netip.Addr{testHost4, testHost6}, NoPrefilter: true})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	if err := d.AddWakePattern(wp.Pattern{ID: 9, Kind: wp.KindMagic, Magic: wp.Magic{MAC: testHostMAC}}); err != nil {
		f.Fatal(err)
	}
	if err := d.Sleep(); err != nil {
		f.Fatal(err)
	}
	rx := newRxCtx(64)
	f.Fuzz(func(t *testing.T, frame []byte, flags, gsoType uint8, gsoSize, csumStart, csumOffset uint16) {
		if d.State() != D3 {
			if err := d.Resume(); err != nil {
				t.Fatal(err)
			}
			if err := d.Sleep(); err != nil {
				t.Fatal(err)
			}
		}
		hdr := VnetHdr{Flags: flags, GSOType: gsoType, GSOSize: gsoSize, CsumStart: csumStart, CsumOffset: csumOffset}
		before := host.frames()
		d.rxWire(rx, append([]byte(nil), frame...), &hdr, time.Now())
		d.flushHost(rx)
		if host.frames() != before && d.State() == D3 {
			t.Fatalf("frame %x with %+v reached the host in D3", frame, hdr)
		}
	})
}
