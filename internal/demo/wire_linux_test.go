//go:build linux

package demo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// wireReport is what a TCP analysis of a capture flags, per flow and
// direction, the way Wireshark's tcp.analysis (tshark) does.
type wireReport struct {
	Segments int
	// NotCaptured: a segment starts past the next expected sequence
	// number ("previous segment not captured").
	NotCaptured []string
	// OutOfOrder: a segment below the next expected sequence number whose
	// start was never captured: it was overtaken on the way (reordered).
	OutOfOrder []string
	// AckedUnseen: an ACK for bytes the other direction never carried
	// ("ACKed segment that wasn't captured").
	AckedUnseen []string
	// Holes: SACK blocks that are not D-SACK (a receiver saw a hole);
	// BadDSACKs: D-SACK blocks (a duplicate received) over bytes that
	// were never retransmitted.
	Holes, BadDSACKs []string
	// Retransmissions are repeats after at least minRTO: the sender's
	// retransmission timer, with nothing lost or reordered (the NIC held
	// a sleeping host's segment without acknowledging it); DSACKs the
	// receivers' reports of the copies of them they got.
	Retransmissions, DSACKs []string
	// EarlyRetransmissions repeat a captured segment less than minRTO
	// after it: a tail-loss probe or a fast retransmission, the sender
	// missing an ACK it expected (none was lost on the wire: NotCaptured
	// and OutOfOrder would show it).
	EarlyRetransmissions []string
	// KeepAlives counts keep-alive-shaped segments (SEQ = next−1, at most
	// one byte), "TCP Keep-Alive" to Wireshark: the NIC's probes and the
	// kernel's window probes as a socket leaves TCP_REPAIR. StaleProbes
	// are zero-length segments further back (a window probe with a
	// SND.UNA older than the bytes the NIC sent meanwhile).
	KeepAlives, StaleProbes int
}

// minRTO is Linux's lowest retransmission timeout (TCP_RTO_MIN).
const minRTO = 200 * time.Millisecond

type flowKey struct{ src, dst netip.AddrPort }

type flowDir struct {
	started bool
	next    uint32 // the next sequence number expected
	// first is when each data segment's start was first captured;
	// resent the ranges retransmitted.
	first  map[uint32]time.Time
	resent [][2]uint32
}

// covered reports whether [l, r) lies in a range d retransmitted.
func (d *flowDir) covered(l, r uint32) bool {
	for _, x := range d.resent {
		if int32(l-x[0]) >= 0 && int32(x[1]-r) >= 0 {
			return true
		}
	}
	return false
}

// analyzeWire reads the pcap at path and flags what tshark's TCP analysis
// would.
func analyzeWire(t *testing.T, path string) wireReport {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var rep wireReport
	dirs := map[flowKey]*flowDir{}
	for n := 1; ; n++ {
		data, ci, err := rd.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return rep
		}
		if err != nil {
			t.Fatalf("%s: frame %d: %v", path, n, err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.NoCopy)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || p.NetworkLayer() == nil {
			continue
		}
		rep.Segments++
		nf := p.NetworkLayer().NetworkFlow()
		sa, _ := netip.AddrFromSlice(nf.Src().Raw())
		da, _ := netip.AddrFromSlice(nf.Dst().Raw())
		k := flowKey{netip.AddrPortFrom(sa.Unmap(), uint16(tcp.SrcPort)), netip.AddrPortFrom(da.Unmap(), uint16(tcp.DstPort))}
		where := fmt.Sprintf("frame %d (%s) %v→%v seq %d len %d", n, ci.Timestamp.Format("15:04:05.000000"), k.src, k.dst, tcp.Seq, len(tcp.Payload))
		d := dirs[k]
		if d == nil {
			d = &flowDir{first: map[uint32]time.Time{}}
			dirs[k] = d
		}
		seqLen := uint32(len(tcp.Payload))
		if tcp.SYN {
			seqLen++
		}
		if tcp.FIN {
			seqLen++
		}
		end := tcp.Seq + seqLen
		switch {
		case !d.started:
			d.started, d.next = true, end
		case seqLen <= 1 && !tcp.SYN && !tcp.FIN && !tcp.RST && tcp.Seq == d.next-1:
			rep.KeepAlives++
		case seqLen == 0 && int32(tcp.Seq-d.next) < 0:
			rep.StaleProbes++
		case int32(tcp.Seq-d.next) > 0:
			rep.NotCaptured = append(rep.NotCaptured, where)
			d.next = end
		case seqLen > 0 && int32(tcp.Seq-d.next) < 0:
			orig, ok := d.first[tcp.Seq]
			after := fmt.Sprintf("%s, %v after the original", where, ci.Timestamp.Sub(orig).Round(time.Microsecond))
			switch {
			case !ok:
				rep.OutOfOrder = append(rep.OutOfOrder, where)
			case ci.Timestamp.Sub(orig) >= minRTO:
				rep.Retransmissions = append(rep.Retransmissions, after)
				d.resent = append(d.resent, [2]uint32{tcp.Seq, end})
			default:
				rep.EarlyRetransmissions = append(rep.EarlyRetransmissions, after)
				d.resent = append(d.resent, [2]uint32{tcp.Seq, end})
			}
			if int32(end-d.next) > 0 {
				d.next = end
			}
		default:
			d.next = end
		}
		if seqLen > 0 {
			if _, ok := d.first[tcp.Seq]; !ok {
				d.first[tcp.Seq] = ci.Timestamp
			}
		}
		peer := dirs[flowKey{k.dst, k.src}]
		if tcp.ACK && !tcp.RST && peer != nil && peer.started && int32(tcp.Ack-peer.next) > 0 {
			rep.AckedUnseen = append(rep.AckedUnseen, fmt.Sprintf("%s ack %d, peer's next %d", where, tcp.Ack, peer.next))
		}
		for _, opt := range tcp.Options {
			if opt.OptionType != layers.TCPOptionKindSACK || len(opt.OptionData) < 8 {
				continue
			}
			l, r := binary.BigEndian.Uint32(opt.OptionData), binary.BigEndian.Uint32(opt.OptionData[4:])
			switch {
			case int32(l-tcp.Ack) >= 0:
				rep.Holes = append(rep.Holes, where)
			case peer != nil && peer.covered(l, r):
				rep.DSACKs = append(rep.DSACKs, where)
			default:
				rep.BadDSACKs = append(rep.BadDSACKs, fmt.Sprintf("%s D-SACK %d–%d", where, l, r))
			}
		}
	}
}

// checkFaithfulWire fails the test when the capture at path shows what a
// loss-free FIFO wire never makes: segments not captured, reordered
// (out-of-order) segments, ACKs of unseen bytes, SACK holes, D-SACKs of
// bytes never retransmitted. Retransmissions are counted and logged, not
// failed: the ones on the sender's timer come from the NIC holding a
// sleeping host's segments without acknowledging them (a software
// channel's coalesced frames, a segment that reached a socket frozen
// before it acknowledged it); an early one (a tail-loss probe) from a
// sender that missed an ACK it expected.
func checkFaithfulWire(t *testing.T, path string) wireReport {
	t.Helper()
	rep := analyzeWire(t, path)
	t.Logf("%s: %d TCP segments; %d keep-alive-shaped, %d stale-SEQ window probes, %d retransmissions on the sender's timer, %d early retransmissions, %d D-SACKs of them",
		path, rep.Segments, rep.KeepAlives, rep.StaleProbes, len(rep.Retransmissions), len(rep.EarlyRetransmissions), len(rep.DSACKs))
	for _, r := range rep.Retransmissions {
		t.Logf("retransmission: %s", r)
	}
	for _, r := range rep.EarlyRetransmissions {
		t.Logf("early retransmission (tail-loss probe or fast retransmit, not the wire's): %s", r)
	}
	for _, c := range []struct {
		what string
		l    []string
	}{
		{"previous segment not captured", rep.NotCaptured},
		{"out-of-order", rep.OutOfOrder},
		{"ACKed segment that wasn't captured", rep.AckedUnseen},
		{"SACK hole", rep.Holes},
		{"D-SACK of bytes never retransmitted", rep.BadDSACKs},
	} {
		for _, w := range c.l {
			t.Errorf("%s: %s", c.what, w)
		}
	}
	if rep.Segments == 0 {
		t.Errorf("%s: no TCP segment", path)
	}
	return rep
}

// checkTimeline checks the printed timeline: its times never go back,
// and slots are numbered one way (the NIC's slot IDs; the pool's index
// never printed).
func checkTimeline(t *testing.T, text string) {
	t.Helper()
	last := -1.0
	for i, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "summary:") {
			break
		}
		var at float64
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "+%fs", &at); err != nil {
			continue
		}
		if at < last {
			t.Errorf("timeline line %d at %+.3fs after %+.3fs: %q", i+1, at, last, line)
		}
		last = at
		if poolSlot.MatchString(line) {
			t.Errorf("timeline line %d names the pool's slot index: %q", i+1, line)
		}
	}
	if last < 0 {
		t.Errorf("no timeline in the output")
	}
}

// TestAnalyzeWire checks the analysis on a made-up capture: a FIFO
// exchange with a keep-alive, then the faults a jittered, reordering or
// lossy wire makes.
func TestAnalyzeWire(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	type seg struct {
		at       time.Duration
		src, dst netip.AddrPort
		seq, ack uint32
		n        int
	}
	write := func(segs []seg) string {
		path := filepath.Join(t.TempDir(), "w.pcap")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		pw := pcapgo.NewWriterNanos(f)
		if err := pw.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
			t.Fatal(err)
		}
		for _, s := range segs {
			b := wwSegment(t, s.src, s.dst, s.seq, s.ack, bytes.Repeat([]byte{'x'}, s.n))
			if err := pw.WritePacket(gopacket.CaptureInfo{Timestamp: t0.Add(s.at), CaptureLength: len(b), Length: len(b)}, b); err != nil {
				t.Fatal(err)
			}
		}
		return path
	}
	ms := time.Millisecond
	h, s := wwTCP, wwSrv
	clean := []seg{
		{0, h, s, 100, 500, 10}, {1 * ms, s, h, 500, 110, 0},
		{2 * ms, s, h, 500, 110, 20}, {3 * ms, h, s, 110, 520, 0},
		{time.Second, h, s, 109, 520, 0}, {time.Second + ms, s, h, 520, 110, 0}, // keep-alive and its ACK
		{2 * time.Second, s, h, 520, 110, 5}, {2*time.Second + 300*ms, s, h, 520, 110, 5}, // a retransmission on the timer
		{2*time.Second + 301*ms, h, s, 110, 525, 0},
		{3 * time.Second, h, s, 110, 525, 4}, {3*time.Second + 15*ms, h, s, 110, 525, 4}, // a tail-loss probe
		{3*time.Second + 16*ms, s, h, 525, 114, 0},
	}
	rep := analyzeWire(t, write(clean))
	if len(rep.NotCaptured)+len(rep.OutOfOrder)+len(rep.AckedUnseen)+len(rep.Holes)+len(rep.BadDSACKs) != 0 || rep.KeepAlives != 1 ||
		len(rep.Retransmissions) != 1 || len(rep.EarlyRetransmissions) != 1 {
		t.Errorf("clean capture: %+v", rep)
	}
	reordered := []seg{
		{0, h, s, 100, 500, 10}, {ms, h, s, 120, 500, 10}, {ms + 100*time.Microsecond, h, s, 110, 500, 10},
		{3 * ms, s, h, 500, 130, 0},
		{4 * ms, s, h, 500, 130, 10}, {5 * ms, h, s, 130, 520, 0}, // acks bytes 510–520, never seen
	}
	rep = analyzeWire(t, write(reordered))
	if len(rep.NotCaptured) != 1 || len(rep.OutOfOrder) != 1 || len(rep.AckedUnseen) != 1 {
		t.Errorf("reordered capture: %d not captured, %d out of order, %d acked unseen; want 1 each: %+v",
			len(rep.NotCaptured), len(rep.OutOfOrder), len(rep.AckedUnseen), rep)
	}
}
