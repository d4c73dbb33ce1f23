package demo

import (
	"cmp"
	"encoding/binary"
	"io"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// wireWatch sits between the NIC's wire capture and wire.pcap: it passes
// the capture on unchanged and reads it as it goes, to learn when the
// frames the NIC's counters count were on the wire. The slot counters say
// what happened (a keep-alive sent, a reply absorbed, a Ping answered, a
// frame held for a software channel); the capture says when: the timeline
// stamps each such event with its frame's timestamp in wire.pcap.
//
// Write runs on the device's pcap goroutine, never on its datapath; it
// takes only wireWatch.mu (lock order: books.mu → wireWatch.mu).
type wireWatch struct {
	out   io.Writer                     // the pcap file
	at    func(time.Time) time.Duration // capture time → timeline
	state func() nic.PowerState         // the device's power state

	// The pcap stream parser, touched only by Write.
	buf    []byte
	header bool // the file header was read
	nanos  bool
	order  binary.ByteOrder
	broken bool // not a pcap we read: pass through only
	f      wp.Frame

	mu    sync.Mutex
	conns map[netip.AddrPort]*connWatch // by the host's end
	held  []heldFrame                   // frames for unarmed connections in D3
	// probes are the host kernel's window probes, not yet reported.
	probes []heldFrame
}

// mark is a kind of frame the watcher times.
type mark uint8

const (
	markProbe mark = iota // a keep-alive the NIC sent (first or retry)
	markReply             // the peer's keep-alive reply
	markPong              // the NIC's Pong to a server Ping
	numMarks
)

// maxMarks bounds each queue of capture times.
const maxMarks = 64

// connWatch is one channel's connection.
type connWatch struct {
	channel string
	// The current or last arming: its kind, the zero-byte probe's
	// sequence number (SND.NXT−1) and the reply's ACK (SND.NXT), and its
	// span on the timeline (until < 0 while armed).
	armed       bool
	kind        offload.Kind
	probeSeq    uint32
	replyAck    uint32
	from, until time.Duration
	marks       [numMarks][]time.Duration
	// outNext is the sequence number after the last byte the host's end
	// sent, from every capture of the connection (outSeen: one seen).
	outNext uint32
	outSeen bool
	// inNext is the same for the peer's end.
	inNext uint32
	inSeen bool
	// disarmAt is when the last slot ended; after lists the zero-length
	// segments behind the stream captured within captureSlack after it:
	// the NIC's last probe, still on the wire as it was disarmed, or the
	// kernel's window probe as the socket was thawed. take claims the
	// NIC's; takeProbes reports the others.
	disarmAt time.Duration
	after    []time.Duration
}

// heldFrame is a frame for a connection without a slot, seen in D3.
type heldFrame struct {
	at      time.Duration
	channel string
	// again: the frame repeats bytes already captured (the server
	// retransmitting a segment nobody acknowledged).
	again bool
}

func newWireWatch(out io.Writer, at func(time.Time) time.Duration, state func() nic.PowerState) *wireWatch {
	return &wireWatch{out: out, at: at, state: state, conns: map[netip.AddrPort]*connWatch{}}
}

// Write implements io.Writer: it writes p to the pcap file, then reads
// the frames it completes.
func (w *wireWatch) Write(p []byte) (int, error) {
	n, err := w.out.Write(p)
	if !w.broken {
		w.buf = append(w.buf, p...)
		w.parse()
	}
	return n, err
}

// pcap layout (https://wiki.wireshark.org/Development/LibpcapFileFormat).
const (
	pcapFileHeaderLen   = 24
	pcapRecordHeaderLen = 16
	pcapMaxRecord       = 1 << 18
)

func (w *wireWatch) parse() {
	b := w.buf
	if !w.header {
		if len(b) < pcapFileHeaderLen {
			return
		}
		switch binary.LittleEndian.Uint32(b) {
		case 0xa1b2c3d4:
			w.order = binary.LittleEndian
		case 0xa1b23c4d:
			w.order, w.nanos = binary.LittleEndian, true
		case 0xd4c3b2a1:
			w.order = binary.BigEndian
		case 0x4d3cb2a1:
			w.order, w.nanos = binary.BigEndian, true
		default:
			w.broken, w.buf = true, nil
			return
		}
		w.header = true
		b = b[pcapFileHeaderLen:]
	}
	for len(b) >= pcapRecordHeaderLen {
		incl := w.order.Uint32(b[8:])
		if incl > pcapMaxRecord {
			w.broken, w.buf = true, nil
			return
		}
		end := pcapRecordHeaderLen + int(incl)
		if len(b) < end {
			break
		}
		sec, frac := int64(w.order.Uint32(b)), int64(w.order.Uint32(b[4:]))
		if !w.nanos {
			frac *= 1000
		}
		w.frame(time.Unix(sec, frac), b[pcapRecordHeaderLen:end])
		b = b[end:]
	}
	w.buf = append(w.buf[:0], b...)
}

// WebSocket opcodes of the frames the watcher times (RFC 6455 §5.2).
const (
	wsOpPing = 0x9
	wsOpPong = 0xa
)

// frame reads one captured frame.
func (w *wireWatch) frame(ts time.Time, b []byte) {
	f := &w.f
	if f.Decode(b, wp.DecodeOptions{}) != wp.OK || !f.IsTCP() {
		return
	}
	src := netip.AddrPortFrom(f.SrcIP.Unmap(), f.SrcPort)
	dst := netip.AddrPortFrom(f.DstIP.Unmap(), f.DstPort)
	at := w.at(ts)
	w.mu.Lock()
	defer w.mu.Unlock()
	c, out := w.conns[src], true
	if c == nil {
		c, out = w.conns[dst], false
	}
	if c == nil {
		return
	}
	payload := f.Payload()
	armed := c.armed && at >= c.from && (c.until < 0 || at <= c.until)
	if out {
		end := f.Seq + uint32(len(payload))
		if f.TCPFlags&(wp.TCPFlagSYN|wp.TCPFlagFIN) != 0 {
			end++
		}
		behind := c.outSeen && int32(f.Seq-c.outNext) < 0
		if !c.outSeen || int32(end-c.outNext) > 0 {
			c.outNext, c.outSeen = end, true
		}
		// A zero-length segment behind the stream, not the NIC's: the
		// kernel's window probe as the socket leaves TCP_REPAIR.
		if behind && len(payload) == 0 && f.TCPFlags&(wp.TCPFlagSYN|wp.TCPFlagFIN|wp.TCPFlagRST) == 0 {
			switch {
			case !armed:
				w.probes = appendBounded(w.probes, heldFrame{at: at, channel: c.channel})
			case c.until >= 0 && at > c.disarmAt:
				c.after = appendBounded(c.after, at)
			}
		}
	}
	again := false
	if !out {
		end := f.Seq + uint32(len(payload))
		again = c.inSeen && len(payload) > 0 && int32(f.Seq-c.inNext) < 0
		if !c.inSeen || int32(end-c.inNext) > 0 {
			c.inNext, c.inSeen = end, true
		}
	}
	if !armed {
		if !out && w.state() == nic.D3 {
			w.held = appendBounded(w.held, heldFrame{at: at, channel: c.channel, again: again})
		}
		return
	}
	op := byte(0xff)
	if len(payload) >= 2 {
		op = payload[0] & 0x0f
	}
	switch {
	case c.kind == offload.KindWebSocket && out && op == wsOpPing:
		c.add(markProbe, at)
	case c.kind == offload.KindWebSocket && out && op == wsOpPong:
		c.add(markPong, at)
	case c.kind == offload.KindWebSocket && !out && op == wsOpPong:
		c.add(markReply, at)
	case c.kind == offload.KindTCPProbe && out && len(payload) <= 1 && f.Seq == c.probeSeq:
		c.add(markProbe, at)
	case c.kind == offload.KindTCPProbe && !out && len(payload) == 0 && f.TCPFlags&wp.TCPFlagACK != 0 && f.Ack == c.replyAck:
		c.add(markReply, at)
	}
}

func (c *connWatch) add(m mark, at time.Duration) { c.marks[m] = appendBounded(c.marks[m], at) }

func appendBounded[T any](s []T, v T) []T {
	if len(s) >= maxMarks {
		s = append(s[:0], s[1:]...)
	}
	return append(s, v)
}

// watch starts watching the connection whose host end is local.
func (w *wireWatch) watch(local netip.AddrPort, channel string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.conns[local] = &connWatch{channel: channel, until: -1}
}

// armed notes that a slot took local's connection over at the timeline
// time at, with spec kind k and snapshot s.
func (w *wireWatch) armed(local netip.AddrPort, k offload.Kind, s offload.Snapshot, at time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.conns[local]
	if c == nil {
		return
	}
	// Times left from the last arming stay: events of it may still be
	// pending; take's notBefore keeps them apart.
	c.armed, c.kind, c.probeSeq, c.replyAck, c.from, c.until = true, k, s.SndNxt-1, s.SndNxt, at, -1
}

// disarmed notes that local's slot ended at the timeline time at; the
// NIC's frames sent just before are captured up to captureSlack later
// (the wire's delay).
func (w *wireWatch) disarmed(local netip.AddrPort, at time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.conns[local]; c != nil && c.until < 0 {
		c.disarmAt, c.until = at, at+captureSlack
	}
}

// take removes and returns the first capture time of kind m on local's
// connection at or after notBefore, dropping older ones.
func (w *wireWatch) take(local netip.AddrPort, m mark, notBefore time.Duration) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.conns[local]
	if c == nil {
		return 0, false
	}
	q := c.marks[m]
	for len(q) > 0 && q[0] < notBefore {
		q = q[1:]
	}
	if len(q) == 0 {
		c.marks[m] = q
		return 0, false
	}
	at := q[0]
	c.marks[m] = q[1:]
	c.after = slices.DeleteFunc(c.after, func(t time.Duration) bool { return t == at })
	return at, true
}

// takeHeld removes and returns the first frame held for a software
// channel at or after notBefore, dropping older ones.
func (w *wireWatch) takeHeld(notBefore time.Duration) (heldFrame, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.held) > 0 && w.held[0].at < notBefore {
		w.held = w.held[1:]
	}
	if len(w.held) == 0 {
		return heldFrame{}, false
	}
	h := w.held[0]
	w.held = w.held[1:]
	return h, true
}

// takeProbes removes and returns the window probes seen so far, in time
// order; a segment right after a disarming counts once older than
// settled (the NIC's pending events have claimed theirs by then).
func (w *wireWatch) takeProbes(settled time.Duration) []heldFrame {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.probes
	w.probes = nil
	for _, c := range w.conns {
		n := 0
		for _, at := range c.after {
			if at < settled {
				p = append(p, heldFrame{at: at, channel: c.channel})
				n++
			}
		}
		c.after = c.after[n:]
	}
	slices.SortFunc(p, func(a, b heldFrame) int { return cmp.Compare(a.at, b.at) })
	return p
}
