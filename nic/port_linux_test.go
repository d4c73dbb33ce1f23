//go:build linux

package nic_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/nic/porttest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// vethPorts builds a lab, adds a silent veth pair inside its nic namespace
// (no addresses, IPv6 off: nothing but the test sends on it) and opens a
// packet port on each end.
func vethPorts(t testing.TB, cfg *nic.PortConfig) (l *netlab.Lab, a, b nic.Port) {
	t.Helper()
	return vethPortsMTU(t, 0, cfg)
}

// vethPortsMTU is vethPorts in a lab whose veths have the given MTU (0:
// netlab's default).
func vethPortsMTU(t testing.TB, mtu int, cfg *nic.PortConfig) (l *netlab.Lab, a, b nic.Port) {
	t.Helper()
	l = netlab.NewForTest(t, &netlab.Options{MTU: mtu})
	if err := l.AddVeth(netlab.NIC, "tpa0", netlab.NIC, "tpb0"); err != nil {
		t.Fatal(err)
	}
	err := l.Do(netlab.NIC, func() error {
		var err error
		if a, err = nic.OpenPacketPort("tpa0", cfg); err != nil {
			return err
		}
		b, err = nic.OpenPacketPort("tpb0", cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return l, a, b
}

func TestIntegrationPacketPortContract(t *testing.T) {
	netlab.RequirePrivileges(t)
	porttest.TestPort(t, func(t *testing.T) (nic.Port, nic.Port) {
		_, a, b := vethPorts(t, nil)
		return a, b
	})
}

// TestIntegrationPacketPortContractSmallRing runs the suite on a small
// ring (16 KiB blocks), so blocks turn over many times. It still holds the
// suite's flow-control window of 128 frames even if every batch of 16 is
// retired in a block of its own.
func TestIntegrationPacketPortContractSmallRing(t *testing.T) {
	netlab.RequirePrivileges(t)
	porttest.TestPort(t, func(t *testing.T) (nic.Port, nic.Port) {
		// Ring mechanics: without virtio_net_hdrs, whose 64 KB frames need
		// 68 KB blocks.
		_, a, b := vethPorts(t, &nic.PortConfig{BlockSize: 1 << 14, Blocks: 32, NoOffloads: true})
		return a, b
	})
}

// TestIntegrationPacketPortContractImmediate runs the suite on the
// immediate-mode (TPACKET_V2) port.
func TestIntegrationPacketPortContractImmediate(t *testing.T) {
	netlab.RequirePrivileges(t)
	porttest.TestPort(t, func(t *testing.T) (nic.Port, nic.Port) {
		_, a, b := vethPorts(t, &nic.PortConfig{Immediate: true})
		return a, b
	})
}

// TestIntegrationPacketPortContractImmediateSmallRing runs the suite on an
// immediate-mode ring of 256 slots (two to a page), so the slot cursor
// wraps many times; it still holds the 200 frames the suite writes at
// once.
func TestIntegrationPacketPortContractImmediateSmallRing(t *testing.T) {
	netlab.RequirePrivileges(t)
	porttest.TestPort(t, func(t *testing.T) (nic.Port, nic.Port) {
		_, a, b := vethPorts(t, &nic.PortConfig{Immediate: true, BlockSize: os.Getpagesize(), Blocks: 128, NoOffloads: true})
		return a, b
	})
}

// portModes are the receive rings the tests below run on.
var portModes = []struct {
	name string
	cfg  nic.PortConfig
}{
	{"v3", nic.PortConfig{}},
	{"immediate", nic.PortConfig{Immediate: true}},
}

// withMode returns cfg with the mode's ring kind.
func withMode(cfg nic.PortConfig, mode nic.PortConfig) *nic.PortConfig {
	cfg.Immediate = mode.Immediate
	return &cfg
}

func testFrame(n int, seq uint32) []byte {
	f := make([]byte, n)
	copy(f, []byte{0x02, 0, 0x5e, 0, 0, 0x0b, 0x02, 0, 0x5e, 0, 0, 0x0a, 0x88, 0xb5})
	binary.BigEndian.PutUint32(f[14:], seq)
	return f
}

// TestIntegrationPacketPortKernelDrops fills a tiny ring without reading:
// every frame is either read later or counted as a kernel drop.
func TestIntegrationPacketPortKernelDrops(t *testing.T) {
	for _, mode := range portModes {
		t.Run(mode.name, func(t *testing.T) {
			testKernelDrops(t, withMode(nic.PortConfig{BlockSize: os.Getpagesize(), Blocks: 2, NoOffloads: true}, mode.cfg))
		})
	}
}

// readUntilQuiet reads p in batches of n frames, handing each batch to
// got, until 200 ms pass without a frame (partly filled V3 blocks retire
// after 1 ms, so the ring is empty then).
func readUntilQuiet(t *testing.T, p nic.Port, n int, got func([]nic.Packet)) {
	t.Helper()
	pkts := make([]nic.Packet, n)
	for i := range pkts {
		pkts[i].Buf = make([]byte, 2048)
	}
	for {
		p.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		k, err := p.ReadBatch(pkts)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		got(pkts[:k])
	}
}

func testKernelDrops(t *testing.T, cfg *nic.PortConfig) {
	_, a, b := vethPorts(t, cfg)
	const sent = 300
	frames := make([][]byte, sent)
	for i := range frames {
		frames[i] = testFrame(1000, uint32(i))
	}
	for i := 0; i < sent; i += 50 {
		if n, err := a.WriteBatch(frames[i : i+50]); n != 50 || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
	}
	read := 0
	readUntilQuiet(t, b, 16, func(pkts []nic.Packet) { read += len(pkts) })
	s := b.Stats()
	if s.RxDropped == 0 {
		t.Errorf("no kernel drops counted with %d frames into a %d-byte ring", sent, 2*os.Getpagesize())
	}
	if uint64(read) != s.RxFrames || s.RxFrames+s.RxDropped != sent {
		t.Errorf("read %d, RxFrames %d, RxDropped %d; want read = RxFrames and RxFrames+RxDropped = %d", read, s.RxFrames, s.RxDropped, sent)
	}
}

// TestIntegrationPacketPortImmediateSlots: an immediate-mode ring holds a
// fixed number of frames however short they are (two MTU-1500 slots to a
// 4 KiB page), where a TPACKET_V3 block packs short frames densely. Sent
// without a reader, exactly the first frames that fill the slots are read
// back, and the rest are kernel drops.
func TestIntegrationPacketPortImmediateSlots(t *testing.T) {
	page := os.Getpagesize()
	_, a, b := vethPorts(t, &nic.PortConfig{Immediate: true, BlockSize: page, Blocks: 2, NoOffloads: true})
	slots := 2 * (page / 1584) // 66 bytes of headers + 1518, rounded up to 16
	const sent = 50
	for i := range sent {
		if n, err := a.WriteBatch([][]byte{testFrame(60, uint32(i))}); n != 1 || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
	}
	var seqs []uint32
	readUntilQuiet(t, b, 8, func(pkts []nic.Packet) {
		for _, p := range pkts {
			seqs = append(seqs, binary.BigEndian.Uint32(p.Buf[14:]))
		}
	})
	var want []uint32
	for i := range slots {
		want = append(want, uint32(i))
	}
	if fmt.Sprint(seqs) != fmt.Sprint(want) {
		t.Errorf("read sequence numbers %v, want the first %d frames %v", seqs, slots, want)
	}
	if s := b.Stats(); s.RxDropped != sent-uint64(slots) {
		t.Errorf("RxDropped = %d, want %d", s.RxDropped, sent-slots)
	}
}

// TestIntegrationPacketPortJumbo: on a link with a 9000-byte MTU, frames
// of the largest size, untagged and tagged, come back whole in both modes
// (immediate-mode slots are sized from the link's MTU).
func TestIntegrationPacketPortJumbo(t *testing.T) {
	const mtu = 9000
	for _, mode := range portModes {
		t.Run(mode.name, func(t *testing.T) {
			_, a, b := vethPortsMTU(t, mtu, withMode(nic.PortConfig{}, mode.cfg))
			plain := testFrame(mtu+nic.EthernetHeaderLen, 1)
			tagged := testFrame(mtu+nic.EthernetHeaderLen+nic.VLANTagLen, 2)
			copy(tagged[12:], []byte{0x81, 0x00, 0x00, 0x05, 0x88, 0xb5})
			frames := [][]byte{plain, tagged}
			if n, err := a.WriteBatch(frames); n != 2 || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			pkts := make([]nic.Packet, 1)
			pkts[0].Buf = make([]byte, 2*mtu)
			b.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i, want := range frames {
				if n, err := b.ReadBatch(pkts); n != 1 || err != nil {
					t.Fatalf("ReadBatch = %d, %v", n, err)
				}
				if p := &pkts[0]; p.Truncated || p.Len != len(want) || !bytes.Equal(p.Frame(), want) {
					t.Errorf("frame %d: %d of %d bytes, truncated %t; want %d bytes intact", i, p.N, p.Len, p.Truncated, len(want))
				}
			}
			if s := b.Stats(); s.RxTruncated != 0 || s.RxDropped != 0 {
				t.Errorf("RxTruncated %d, RxDropped %d; want 0", s.RxTruncated, s.RxDropped)
			}
		})
	}
}

func TestIntegrationPacketPortAllocs(t *testing.T) {
	for _, mode := range portModes {
		t.Run(mode.name, func(t *testing.T) {
			testPortAllocs(t, withMode(nic.PortConfig{}, mode.cfg))
		})
	}
}

func testPortAllocs(t *testing.T, cfg *nic.PortConfig) {
	_, a, b := vethPorts(t, cfg)
	frames := [][]byte{testFrame(100, 1), testFrame(200, 2)}
	pkts := make([]nic.Packet, 8)
	for i := range pkts {
		pkts[i].Buf = make([]byte, 2048)
	}
	b.SetReadDeadline(time.Now().Add(time.Minute))
	got := 0
	run := func() {
		if n, err := a.WriteBatch(frames); n != 2 || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
		for want := got + 2; got < want; {
			n, err := b.ReadBatch(pkts)
			if err != nil {
				t.Fatalf("ReadBatch: %v", err)
			}
			got += n
		}
	}
	run()
	if allocs := testing.AllocsPerRun(50, run); allocs != 0 {
		t.Errorf("write+read on a veth allocates %.1f times per run, want 0", allocs)
	}
}

func TestIntegrationOpenPacketPortErrors(t *testing.T) {
	l := netlab.NewForTest(t, nil)
	// A link whose MTU needs immediate-mode slots larger than a page.
	if err := l.AddVeth(netlab.NIC, "jumbo0", netlab.NIC, "jumbo1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Do(netlab.NIC, func() error {
		lk, err := netlink.LinkByName("jumbo0")
		if err != nil {
			return err
		}
		return netlink.LinkSetMTU(lk, 9000)
	}); err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	tests := []struct {
		name   string
		ifname string
		cfg    *nic.PortConfig
		want   []string // in the error besides the link's name
	}{
		{"no such link", "nope0", nil, nil},
		{"block not page multiple", netlab.WireLink, &nic.PortConfig{BlockSize: 1000}, []string{"BlockSize 1000", "page size"}},
		{"one block", netlab.WireLink, &nic.PortConfig{Blocks: 1}, []string{"Blocks 1", "2–4096"}},
		{"too many blocks", netlab.WireLink, &nic.PortConfig{Blocks: 5000}, []string{"Blocks 5000", "2–4096"}},
		{"immediate one block", netlab.WireLink, &nic.PortConfig{Immediate: true, Blocks: 1}, []string{"Blocks 1"}},
		{"immediate slot larger than block", "jumbo0", &nic.PortConfig{Immediate: true, BlockSize: page, NoOffloads: true},
			[]string{fmt.Sprintf("BlockSize %d", page), "slot of 9088 bytes", "MTU 9000", fmt.Sprintf("at least %d", (9088+page-1)/page*page)}},
		{"immediate GSO slot larger than block", "jumbo0", &nic.PortConfig{Immediate: true, BlockSize: 16 * page},
			[]string{fmt.Sprintf("BlockSize %d", 16*page), "slot of 65680 bytes", "GSO frame", fmt.Sprintf("at least %d", (65680+page-1)/page*page)}},
		{"block smaller than a GSO frame", netlab.WireLink, &nic.PortConfig{BlockSize: 16 * page},
			[]string{fmt.Sprintf("BlockSize %d", 16*page), "GSO frame", "NoOffloads"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.Do(netlab.NIC, func() error {
				p, err := nic.OpenPacketPort(tt.ifname, tt.cfg)
				if err == nil {
					p.Close()
				}
				return err
			})
			if err == nil {
				t.Fatal("OpenPacketPort succeeded")
			}
			for _, w := range append([]string{tt.ifname}, tt.want...) {
				if !contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// The same jumbo link opens in immediate mode with the default blocks.
	if err := l.Do(netlab.NIC, func() error {
		p, err := nic.OpenPacketPort("jumbo0", &nic.PortConfig{Immediate: true})
		if err != nil {
			return err
		}
		return p.Close()
	}); err != nil {
		t.Errorf("immediate port on a 9000-byte MTU with default blocks: %v", err)
	}
	// A port in the nic namespace sees that namespace's links only.
	if err := l.Do(netlab.NIC, func() error {
		p, err := nic.OpenPacketPort(netlab.SrvLink, nil)
		if err == nil {
			p.Close()
			return fmt.Errorf("opened %s from the nic namespace", netlab.SrvLink)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestIntegrationPacketPortLinkDown: a port whose own link goes down
// reports it once from ReadBatch and keeps working after the link is up.
func TestIntegrationPacketPortLinkDown(t *testing.T) {
	l, a, b := vethPorts(t, nil)
	if err := l.SetLinkDown(netlab.NIC, "tpb0"); err != nil {
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	pkts := make([]nic.Packet, 1)
	pkts[0].Buf = make([]byte, 2048)
	_, err := b.ReadBatch(pkts)
	if !errors.Is(err, unix.ENETDOWN) {
		t.Fatalf("ReadBatch on a downed link = %v, want ENETDOWN", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("error %T is not a *net.OpError", err)
	}
	if err := l.SetLinkUp(netlab.NIC, "tpb0"); err != nil {
		t.Fatal(err)
	}
	// Until the kernel reactivates the peer's queue, frames are dropped.
	for _, link := range []string{"tpa0", "tpb0"} {
		if err := l.WaitLinkReady(context.Background(), netlab.NIC, link); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := a.WriteBatch([][]byte{testFrame(60, 7)}); n != 1 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	if n, err := b.ReadBatch(pkts); n != 1 || err != nil || binary.BigEndian.Uint32(pkts[0].Buf[14:]) != 7 {
		t.Fatalf("ReadBatch after link up = %d, %v", n, err)
	}
}

// BenchmarkIntegrationReceive compares frames/s received through the
// TPACKET_V3 ring (Port.ReadBatch, batches of 64) with a plain AF_PACKET
// recvfrom loop, on the same veth in the same run. A sender port on the
// peer writes b.N 128-byte frames in sendmmsg batches of 64; the receiver
// stops after b.N frames or 200 ms without one, so frames the kernel
// dropped are reported (drops/op), not waited for.
func BenchmarkIntegrationReceive(b *testing.B) {
	l, tx, rxPort := vethPorts(b, nil)
	rxPort.Close() // each sub-benchmark opens its own receiver
	const batch, size = 64, 128
	frames := make([][]byte, batch)
	for i := range frames {
		frames[i] = testFrame(size, uint32(i))
	}
	send := func(n int) chan error {
		done := make(chan error, 1)
		go func() {
			for sent := 0; sent < n; {
				k := min(batch, n-sent)
				w, err := tx.WriteBatch(frames[:k])
				if err != nil {
					done <- err
					return
				}
				sent += w
			}
			done <- nil
		}()
		return done
	}
	report := func(b *testing.B, got int, elapsed time.Duration) {
		// elapsed ends at the last frame received, not at the timeout.
		b.ReportMetric(float64(got)/elapsed.Seconds(), "frames/s")
		b.ReportMetric(float64(elapsed.Nanoseconds())/float64(max(got, 1)), "ns/frame")
		b.ReportMetric(float64(b.N-got)/float64(b.N), "drops/op")
	}

	b.Run("ring", func(b *testing.B) {
		var p nic.Port
		if err := l.Do(netlab.NIC, func() (err error) {
			p, err = nic.OpenPacketPort("tpb0", nil)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		pkts := make([]nic.Packet, batch)
		for i := range pkts {
			pkts[i].Buf = make([]byte, 2048)
		}
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		done := send(b.N)
		got, last := 0, start
		for got < b.N {
			p.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := p.ReadBatch(pkts)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			got += n
			last = time.Now()
		}
		elapsed := last.Sub(start)
		b.StopTimer()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		report(b, got, elapsed)
	})

	b.Run("recvfrom", func(b *testing.B) {
		var fd int
		if err := l.Do(netlab.NIC, func() error {
			ifi, err := net.InterfaceByName("tpb0")
			if err != nil {
				return err
			}
			proto := int(htons(unix.ETH_P_ALL))
			if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
				return err
			}
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
				return err
			}
			tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
			if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
				return err
			}
			return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
		}); err != nil {
			b.Fatal(err)
		}
		defer unix.Close(fd)
		buf := make([]byte, 2048)
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		done := send(b.N)
		got, last := 0, start
		for got < b.N {
			_, err := recvfrom(fd, buf)
			if err == unix.EAGAIN {
				break // SO_RCVTIMEO: 200 ms without a frame
			}
			if err != nil && err != unix.EINTR {
				b.Fatal(err)
			}
			if err == nil {
				got++
				last = time.Now()
			}
		}
		elapsed := last.Sub(start)
		b.StopTimer()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		report(b, got, elapsed)
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// recvfrom is recvfrom(2) with no source address (no allocation).
func recvfrom(fd int, buf []byte) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// TestIntegrationPacketPortLending: a TPACKET_V3 port lends its ring to
// the device instead of copying frames out. Far more frames than the
// ring holds cross in rounds, each read lent, checked and released: none
// is lost or changed, and the lent frames' blocks go back to the kernel.
func TestIntegrationPacketPortLending(t *testing.T) {
	page := os.Getpagesize()
	_, a, b := vethPorts(t, &nic.PortConfig{BlockSize: 18 * page, Blocks: 8}) // 8 blocks of 72 KB
	pkts := make([]nic.Packet, 16)
	for i := range pkts {
		pkts[i].Buf = make([]byte, 64) // shorter than the frames: lent frames are not cut
	}
	const rounds, per = 40, 100 // 4000 frames of 1000 bytes: 4 MB through a 576 KB ring
	seq := uint32(0)
	for r := range rounds {
		frames := make([][]byte, per)
		for i := range frames {
			frames[i] = testFrame(1000, uint32(r*per+i))
		}
		if n, err := a.WriteBatch(frames); n != per || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
		for got := 0; got < per; {
			b.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, ok, err := nic.ReadBatchLent(b, pkts)
			if !ok {
				t.Fatal("the TPACKET_V3 port does not lend")
			}
			if err != nil {
				t.Fatalf("round %d: read %v after %d frames", r, err, got)
			}
			for i := range n {
				f := pkts[i].Frame()
				if !nic.Lent(&pkts[i]) || len(f) != 1000 || binary.BigEndian.Uint32(f[14:]) != seq {
					t.Fatalf("frame %d: lent %v, %d bytes, seq %d", seq, nic.Lent(&pkts[i]), len(f), binary.BigEndian.Uint32(f[14:]))
				}
				seq++
			}
			got += n
			nic.ReleaseLent(b)
		}
	}
	if s := b.Stats(); s.RxDropped != 0 || s.RxFrames != rounds*per {
		t.Errorf("stats %+v, want %d frames and no drops", s, rounds*per)
	}
	// A plain read after lending copies again.
	if n, err := a.WriteBatch([][]byte{testFrame(60, 7)}); n != 1 || err != nil {
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := b.ReadBatch(pkts[:1]); n != 1 || err != nil || nic.Lent(&pkts[0]) || binary.BigEndian.Uint32(pkts[0].Frame()[14:]) != 7 {
		t.Fatalf("ReadBatch after lending: %d, %v, lent %v", n, err, nic.Lent(&pkts[0]))
	}
}
