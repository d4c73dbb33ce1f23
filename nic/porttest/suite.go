package porttest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/standbynic/standbynic/nic"
	"golang.org/x/net/bpf"
)

// T is the part of *testing.T that TestPort uses; *testing.T satisfies
// T[*testing.T]. (The type parameter keeps "testing" out of this package's
// imports.)
type T[TT any] interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Run(name string, f func(TT)) bool
	Parallel()
}

// Suite timing: generous bounds on waits for events that should happen at
// once; no test asserts a speed.
const (
	eventTimeout = 5 * time.Second        // a frame or an unblock that must come
	quietWindow  = 100 * time.Millisecond // a read that must find nothing
)

// SuiteEtherType marks the suite's frames (IEEE 802 local experimental
// EtherType 1); SuiteOtherEtherType is the one its filters reject.
const (
	SuiteEtherType      = 0x88b5
	SuiteOtherEtherType = 0x88b6
)

// TestPort runs the nic.Port contract suite. makePair returns two fresh,
// connected ports on a silent link (nothing else sends on it) with MTU
// 1500, and arranges for their cleanup; the suite closes them too. The
// cases run in parallel (each with its own pair), so makePair must be
// safe for concurrent use.
func TestPort[TT T[TT]](t TT, makePair func(t TT) (a, b nic.Port)) {
	cases := []struct {
		name string
		f    func(t TT, a, b nic.Port)
	}{
		{"RoundTrip", roundTrip[TT]},
		{"BatchRead", batchRead[TT]},
		{"OwnFramesNotSeen", ownFramesNotSeen[TT]},
		{"Filter", filter[TT]},
		{"Truncation", truncation[TT]},
		{"FrameSize", frameSize[TT]},
		{"Deadline", deadline[TT]},
		{"CloseUnblocksRead", closeUnblocksRead[TT]},
		{"Concurrent", concurrent[TT]},
	}
	for _, c := range cases {
		t.Run(c.name, func(t TT) {
			t.Parallel()
			a, b := makePair(t)
			defer a.Close()
			defer b.Close()
			c.f(t, a, b)
		})
	}
}

var (
	macA = []byte{0x02, 0, 0x5e, 0, 0, 0x0a}
	macB = []byte{0x02, 0, 0x5e, 0, 0, 0x0b}
)

// frame builds an Ethernet frame of total length n (≥ 14+4 with tags)
// carrying seq, optionally behind VLAN tags given as (tpid, tci) pairs.
func frame(n int, etherType uint16, seq uint32, tags ...uint16) []byte {
	f := make([]byte, 0, n)
	f = append(f, macB...)
	f = append(f, macA...)
	for i := 0; i+1 < len(tags); i += 2 {
		f = binary.BigEndian.AppendUint16(f, tags[i])
		f = binary.BigEndian.AppendUint16(f, tags[i+1])
	}
	f = binary.BigEndian.AppendUint16(f, etherType)
	if len(f)+4 <= n {
		f = binary.BigEndian.AppendUint32(f, seq)
	}
	for len(f) < n {
		f = append(f, byte(len(f)))
	}
	return f[:n]
}

func packets(n, size int) []nic.Packet {
	p := make([]nic.Packet, n)
	for i := range p {
		p[i].Buf = make([]byte, size)
	}
	return p
}

type got struct {
	frame     []byte
	len       int
	truncated bool
	when      time.Time
}

// readN reads exactly n frames from p within eventTimeout, with batches of
// up to batch packets of bufSize bytes. It returns them and the largest
// batch a single ReadBatch returned.
func readN[TT T[TT]](t TT, p nic.Port, n, batch, bufSize int) ([]got, int) {
	t.Helper()
	pkts := packets(batch, bufSize)
	if err := p.SetReadDeadline(time.Now().Add(eventTimeout)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	defer p.SetReadDeadline(time.Time{})
	var out []got
	maxBatch := 0
	for len(out) < n {
		k, err := p.ReadBatch(pkts[:min(batch, n-len(out))])
		if err != nil {
			t.Fatalf("%s: ReadBatch after %d of %d frames: %v", p.Name(), len(out), n, err)
		}
		if k < 1 {
			t.Fatalf("%s: ReadBatch returned %d frames and no error", p.Name(), k)
		}
		maxBatch = max(maxBatch, k)
		for i := range pkts[:k] {
			pk := &pkts[i]
			out = append(out, got{append([]byte(nil), pk.Frame()...), pk.Len, pk.Truncated, pk.Time})
		}
	}
	return out, maxBatch
}

// expectQuiet fails if p yields a frame within quietWindow.
func expectQuiet[TT T[TT]](t TT, p nic.Port) {
	t.Helper()
	pkts := packets(4, 2048)
	p.SetReadDeadline(time.Now().Add(quietWindow))
	defer p.SetReadDeadline(time.Time{})
	n, err := p.ReadBatch(pkts)
	if err == nil {
		t.Fatalf("%s: read %d unexpected frame(s), first %x", p.Name(), n, pkts[0].Frame())
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: ReadBatch = %v, want a deadline error", p.Name(), err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%s: deadline error %v is not a net.Error with Timeout()", p.Name(), err)
	}
}

func write[TT T[TT]](t TT, p nic.Port, frames ...[]byte) {
	t.Helper()
	n, err := p.WriteBatch(frames)
	if err != nil || n != len(frames) {
		t.Fatalf("%s: WriteBatch = %d, %v; want %d, nil", p.Name(), n, err, len(frames))
	}
}

func roundTrip[TT T[TT]](t TT, a, b nic.Port) {
	frames := [][]byte{
		frame(14, SuiteEtherType, 0),
		frame(60, SuiteEtherType, 1),
		frame(1514, SuiteEtherType, 2),
		frame(64, SuiteEtherType, 3, 0x8100, 0x0064),               // 802.1Q VID 100
		frame(1518, SuiteEtherType, 4, 0x8100, 0xe00a),             // PCP 7, VID 10, full size
		frame(68, SuiteEtherType, 5, 0x8100, 0x0000),               // priority tag
		frame(72, SuiteEtherType, 6, 0x88a8, 0x0123, 0x8100, 0x45), // QinQ
	}
	before := time.Now()
	for _, dir := range []struct {
		name     string
		from, to nic.Port
	}{{"a to b", a, b}, {"b to a", b, a}} {
		fa, fb := dir.from.Stats(), dir.to.Stats()
		write(t, dir.from, frames...)
		gotFrames, _ := readN(t, dir.to, len(frames), 3, 2048)
		var bytes uint64
		for i, g := range gotFrames {
			bytes += uint64(len(frames[i]))
			if !equal(g.frame, frames[i]) || g.len != len(frames[i]) || g.truncated {
				t.Errorf("%s frame %d: got len %d truncated %t\n %x\nwant len %d\n %x", dir.name, i, g.len, g.truncated, g.frame, len(frames[i]), frames[i])
			}
			if g.when.Before(before.Add(-time.Minute)) || g.when.After(time.Now().Add(time.Minute)) {
				t.Errorf("%s frame %d: timestamp %v far from now", dir.name, i, g.when)
			}
		}
		sa, sb := dir.from.Stats(), dir.to.Stats()
		if d := sa.TxFrames - fa.TxFrames; d != uint64(len(frames)) {
			t.Errorf("%s: sender TxFrames grew by %d, want %d", dir.name, d, len(frames))
		}
		if d := sa.TxBytes - fa.TxBytes; d != bytes {
			t.Errorf("%s: sender TxBytes grew by %d, want %d", dir.name, d, bytes)
		}
		if d := sb.RxFrames - fb.RxFrames; d != uint64(len(frames)) {
			t.Errorf("%s: receiver RxFrames grew by %d, want %d", dir.name, d, len(frames))
		}
		if d := sb.RxBytes - fb.RxBytes; d != bytes {
			t.Errorf("%s: receiver RxBytes grew by %d, want %d", dir.name, d, bytes)
		}
		if sb.RxDropped != 0 || sb.RxTruncated != 0 {
			t.Errorf("%s: receiver dropped %d, truncated %d; want 0", dir.name, sb.RxDropped, sb.RxTruncated)
		}
	}
}

func equal(x, y []byte) bool { return bytes.Equal(x, y) }

func batchRead[TT T[TT]](t TT, a, b nic.Port) {
	const n = 200
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = frame(100, SuiteEtherType, uint32(i))
	}
	write(t, a, frames...)
	gotFrames, maxBatch := readN(t, b, n, 64, 2048)
	for i, g := range gotFrames {
		if !equal(g.frame, frames[i]) {
			t.Fatalf("frame %d out of order or corrupt: %x", i, g.frame)
		}
	}
	if maxBatch < 2 {
		t.Errorf("largest batch %d: ReadBatch never returned more than one of %d queued frames", maxBatch, n)
	}
	// A zero-length batch returns at once.
	if k, err := b.ReadBatch(nil); k != 0 || err != nil {
		t.Errorf("ReadBatch(nil) = %d, %v; want 0, nil", k, err)
	}
}

func ownFramesNotSeen[TT T[TT]](t TT, a, b nic.Port) {
	write(t, a, frame(60, SuiteEtherType, 1), frame(60, SuiteEtherType, 2))
	readN(t, b, 2, 8, 2048)
	expectQuiet(t, a)
}

// etherTypeFilter accepts frames whose EtherType (in the filter's view,
// outer VLAN tag removed) is want, keeping snap bytes.
func etherTypeFilter(want uint16, snap uint32) []bpf.RawInstruction {
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(want), SkipFalse: 1},
		bpf.RetConstant{Val: snap},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic(err)
	}
	return prog
}

func filter[TT T[TT]](t TT, a, b nic.Port) {
	if err := b.SetFilter(etherTypeFilter(SuiteEtherType, 0xffff)); err != nil {
		t.Fatalf("SetFilter: %v", err)
	}
	acc := [][]byte{
		frame(60, SuiteEtherType, 1),
		frame(64, SuiteEtherType, 2, 0x8100, 7), // tag removed before the filter
		frame(60, SuiteEtherType, 3),
	}
	write(t, a,
		frame(60, SuiteOtherEtherType, 100), acc[0],
		frame(64, SuiteOtherEtherType, 101, 0x8100, 7), acc[1],
		frame(60, SuiteOtherEtherType, 102), acc[2])
	// Delivery is in order: had a rejected frame passed, it would be among
	// the first three.
	gotFrames, _ := readN(t, b, 3, 8, 2048)
	for i, g := range gotFrames {
		if !equal(g.frame, acc[i]) {
			t.Errorf("filtered frame %d = %x, want %x", i, g.frame, acc[i])
		}
	}
	// A snap length cuts frames: 20 bytes of the filter's view (24 with the
	// tag put back).
	if err := b.SetFilter(etherTypeFilter(SuiteEtherType, 20)); err != nil {
		t.Fatalf("SetFilter: %v", err)
	}
	long, longTagged := frame(200, SuiteEtherType, 4), frame(200, SuiteEtherType, 5, 0x8100, 9)
	write(t, a, long, longTagged)
	gotFrames, _ = readN(t, b, 2, 8, 2048)
	for i, want := range []struct {
		frame []byte
		n     int
	}{{long, 20}, {longTagged, 24}} {
		g := gotFrames[i]
		if !equal(g.frame, want.frame[:want.n]) || g.len != 200 || !g.truncated {
			t.Errorf("snapped frame %d: %x len %d truncated %t; want %x len 200 truncated", i, g.frame, g.len, g.truncated, want.frame[:want.n])
		}
	}
	// Detached: everything passes again.
	if err := b.SetFilter(nil); err != nil {
		t.Fatalf("SetFilter(nil): %v", err)
	}
	other := frame(60, SuiteOtherEtherType, 6)
	write(t, a, other)
	if gotFrames, _ = readN(t, b, 1, 1, 2048); !equal(gotFrames[0].frame, other) {
		t.Errorf("after detach got %x, want %x", gotFrames[0].frame, other)
	}
	if err := b.SetFilter(nil); err != nil {
		t.Errorf("SetFilter(nil) with no filter: %v", err)
	}
}

func truncation[TT T[TT]](t TT, a, b nic.Port) {
	f, tagged := frame(300, SuiteEtherType, 1), frame(300, SuiteEtherType, 2, 0x8100, 3)
	tiny := frame(60, SuiteEtherType, 3, 0x8100, 4)
	write(t, a, f, tagged, tiny)
	before := b.Stats()
	gotFrames, _ := readN(t, b, 2, 1, 64)
	for i, want := range [][]byte{f, tagged} {
		g := gotFrames[i]
		if !equal(g.frame, want[:64]) || g.len != 300 || !g.truncated {
			t.Errorf("frame %d in a 64-byte buffer: %x len %d truncated %t", i, g.frame, g.len, g.truncated)
		}
	}
	// A buffer shorter than the MACs and the tag.
	gotFrames, _ = readN(t, b, 1, 1, 14)
	if g := gotFrames[0]; !equal(g.frame, tiny[:14]) || g.len != 60 || !g.truncated {
		t.Errorf("tagged frame in a 14-byte buffer: %x len %d truncated %t", g.frame, g.len, g.truncated)
	}
	if d := b.Stats().RxTruncated - before.RxTruncated; d != 3 {
		t.Errorf("RxTruncated grew by %d, want 3", d)
	}
}

func frameSize[TT T[TT]](t TT, a, b nic.Port) {
	tests := []struct {
		name   string
		frames [][]byte
		wantN  int
	}{
		{"short", [][]byte{frame(60, SuiteEtherType, 0)[:13]}, 0},
		{"empty", [][]byte{{}}, 0},
		{"over MTU", [][]byte{frame(60, SuiteEtherType, 1), frame(1515, SuiteEtherType, 2), frame(60, SuiteEtherType, 3)}, 1},
		{"tagged over MTU", [][]byte{frame(1519, SuiteEtherType, 4, 0x8100, 1)}, 0},
	}
	sent := 0
	for _, tt := range tests {
		n, err := a.WriteBatch(tt.frames)
		if n != tt.wantN || !errors.Is(err, nic.ErrFrameSize) {
			t.Errorf("%s: WriteBatch = %d, %v; want %d, ErrFrameSize", tt.name, n, err, tt.wantN)
		}
		var op *net.OpError
		if !errors.As(err, &op) {
			t.Errorf("%s: error %T is not a *net.OpError", tt.name, err)
		}
		sent += n
	}
	if gotFrames, _ := readN(t, b, sent, 4, 2048); len(gotFrames) != 1 || !equal(gotFrames[0].frame, tests[2].frames[0]) {
		t.Errorf("frames before the bad one: got %d", len(gotFrames))
	}
	expectQuiet(t, b)
	if k, err := a.WriteBatch(nil); k != 0 || err != nil {
		t.Errorf("WriteBatch(nil) = %d, %v; want 0, nil", k, err)
	}
}

func deadline[TT T[TT]](t TT, a, b nic.Port) {
	expectQuiet(t, b)
	// A deadline in the past fails a read that would block at once.
	write(t, a, frame(60, SuiteEtherType, 1))
	readN(t, b, 1, 1, 2048)
	pkts := packets(1, 2048)
	b.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := b.ReadBatch(pkts); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadBatch past the deadline with nothing queued = %v, want deadline exceeded", err)
	}
	// A blocked read sees a deadline set while it waits.
	b.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := b.ReadBatch(packets(1, 2048))
		done <- err
	}()
	if err := b.SetReadDeadline(time.Now().Add(quietWindow)); err != nil {
		t.Fatalf("%v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("blocked ReadBatch after SetReadDeadline = %v, want deadline exceeded", err)
		}
	case <-time.After(eventTimeout):
		t.Fatalf("ReadBatch still blocked %v after its deadline", eventTimeout)
	}
	// Clearing the deadline lets reads block for frames again.
	b.SetReadDeadline(time.Time{})
	write(t, a, frame(60, SuiteEtherType, 3))
	readN(t, b, 1, 1, 2048)
}

func closeUnblocksRead[TT T[TT]](t TT, a, b nic.Port) {
	done := make(chan error, 1)
	go func() {
		_, err := b.ReadBatch(packets(4, 2048))
		done <- err
	}()
	// Whether the reader is already blocked or not yet, Close must end it.
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("ReadBatch unblocked by Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(eventTimeout):
		t.Fatalf("ReadBatch still blocked %v after Close", eventTimeout)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	for name, err := range map[string]error{
		"ReadBatch":       second(b.ReadBatch(packets(1, 64))),
		"WriteBatch":      second(b.WriteBatch([][]byte{frame(60, SuiteEtherType, 0)})),
		"SetFilter":       b.SetFilter(etherTypeFilter(SuiteEtherType, 0xffff)),
		"SetReadDeadline": b.SetReadDeadline(time.Now()),
	} {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close = %v, want net.ErrClosed", name, err)
		}
	}
	_ = b.Stats() // must not panic after Close
	// The other end keeps working; its frames are lost on the dead link.
	if n, err := a.WriteBatch([][]byte{frame(60, SuiteEtherType, 1)}); n != 1 || err != nil {
		t.Errorf("WriteBatch towards a closed peer = %d, %v; want 1, nil", n, err)
	}
}

func second(_ int, err error) error { return err }

func concurrent[TT T[TT]](t TT, a, b nic.Port) {
	const n, batch, window = 2000, 16, 128
	// Flow control: the writer takes a token per frame, the reader gives
	// it back, so no bounded queue can overflow.
	tokens := make(chan struct{}, window)
	for range window {
		tokens <- struct{}{}
	}
	stop := make(chan struct{})
	defer close(stop)
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i += batch {
			frames := make([][]byte, batch)
			for j := range frames {
				select {
				case <-tokens:
				case <-stop:
					errc <- nil
					return
				}
				frames[j] = frame(128, SuiteEtherType, uint32(i+j))
			}
			if k, err := a.WriteBatch(frames); err != nil || k != batch {
				errc <- fmt.Errorf("WriteBatch at %d = %d, %v", i, k, err)
				return
			}
		}
		errc <- nil
	}()
	pkts := packets(64, 2048)
	for got := 0; got < n; {
		b.SetReadDeadline(time.Now().Add(eventTimeout))
		k, err := b.ReadBatch(pkts)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d frames: %v", got, n, err)
		}
		for i := range pkts[:k] {
			f := pkts[i].Frame()
			if seq := binary.BigEndian.Uint32(f[14:]); len(f) != 128 || seq != uint32(got) {
				t.Fatalf("frame %d: length %d sequence %d", got, len(f), seq)
			}
			got++
			tokens <- struct{}{}
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("%v", err)
	}
	if s := b.Stats(); s.RxDropped != 0 || s.RxFrames != n {
		t.Errorf("RxFrames %d RxDropped %d, want %d and 0", s.RxFrames, s.RxDropped, n)
	}
}
