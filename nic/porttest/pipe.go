package porttest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/standbynic/standbynic/nic"
	"golang.org/x/net/bpf"
)

// Config configures a pipe. A nil *Config means defaults.
type Config struct {
	// QueueLen is how many frames each end holds before it drops; 0 means
	// DefaultQueueLen.
	QueueLen int
	// MTU of the emulated link, 68–65535; 0 means 1500.
	MTU int
	// Names of the two ends; empty means "pipe0" and "pipe1".
	NameA, NameB string
	// Offloads makes both ends nic.OffloadPorts that carry each frame's
	// virtio_net_hdr, as AF_PACKET ports with PACKET_VNET_HDR do: a GSO
	// frame may then be up to nic.MaxGSOFrame long.
	Offloads bool
}

// DefaultQueueLen is the queue length when Config.QueueLen is 0.
const DefaultQueueLen = 1024

// Pipe returns two connected ports with the default Config: frames written
// to one are read from the other.
func Pipe() (a, b *Port) {
	a, b, err := NewPipe(nil)
	if err != nil {
		panic(err) // the defaults are valid
	}
	return a, b
}

// NewPipe returns two connected ports configured by cfg.
func NewPipe(cfg *Config) (a, b *Port, err error) {
	if cfg == nil {
		cfg = &Config{}
	}
	qlen, mtu := cfg.QueueLen, cfg.MTU
	if qlen == 0 {
		qlen = DefaultQueueLen
	}
	if mtu == 0 {
		mtu = 1500
	}
	if qlen < 1 || qlen > 1<<20 {
		return nil, nil, fmt.Errorf("pipe: queue length %d out of range 1–1048576", qlen)
	}
	if mtu < 68 || mtu > 65535 {
		return nil, nil, fmt.Errorf("pipe: mtu %d out of range 68–65535", mtu)
	}
	na, nb := cfg.NameA, cfg.NameB
	if na == "" {
		na = "pipe0"
	}
	if nb == "" {
		nb = "pipe1"
	}
	a, b = newEnd(na, mtu, qlen), newEnd(nb, mtu, qlen)
	a.offloads, b.offloads = cfg.Offloads, cfg.Offloads
	a.peer, b.peer = b, a
	return a, b, nil
}

// Port is one end of a pipe. It implements nic.Port.
type Port struct {
	name     string
	mtu      int
	offloads bool
	peer     *Port

	wake chan struct{} // poked (never blocking) on enqueue and deadline change
	done chan struct{} // closed by Close

	rmu   sync.Mutex // serialises ReadBatch; guards timer
	timer *time.Timer

	wmu sync.Mutex // serialises WriteBatch

	mu       sync.Mutex // guards the fields below
	closed   bool
	deadline time.Time
	queue    []slot // ring of len QueueLen
	head, n  int
	vm       *bpf.VM
	scratch  []byte // the filter's view of a frame

	rxFrames, rxBytes, rxTrunc, rxDropped, rxFiltered atomic.Uint64
	txFrames, txBytes                                 atomic.Uint64
}

// slot is a queued frame: buf holds what is delivered, wire its full length.
type slot struct {
	buf  []byte
	wire int
	t    time.Time
	vnet nic.VnetHdr
}

var _ nic.OffloadPort = (*Port)(nil)

func newEnd(name string, mtu, qlen int) *Port {
	t := time.NewTimer(time.Hour)
	t.Stop()
	p := &Port{
		name: name, mtu: mtu,
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		timer: t,
		queue: make([]slot, qlen),
	}
	// Preallocate every slot (up to a standard frame each, in one block)
	// so the steady state allocates nothing; larger frames grow a slot
	// once.
	per := min(mtu+nic.EthernetHeaderLen+nic.VLANTagLen, 1522)
	backing := make([]byte, qlen*per)
	for i := range p.queue {
		p.queue[i].buf = backing[i*per : i*per : (i+1)*per]
	}
	p.scratch = make([]byte, 0, per)
	return p
}

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

func (p *Port) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "pipe", Addr: pipeAddr(p.name), Err: err}
}

// Name implements nic.Port.Name.
func (p *Port) Name() string { return p.name }

func (p *Port) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// SetReadDeadline implements nic.Port.SetReadDeadline.
func (p *Port) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return p.opError("set deadline", net.ErrClosed)
	}
	p.deadline = t
	p.poke()
	return nil
}

// ReadBatch implements nic.Port.ReadBatch.
func (p *Port) ReadBatch(pkts []nic.Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return 0, p.opError("read", net.ErrClosed)
		}
		if p.n > 0 {
			k := p.dequeue(pkts)
			p.mu.Unlock()
			return k, nil
		}
		dl := p.deadline
		p.mu.Unlock()
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, p.opError("read", os.ErrDeadlineExceeded)
			}
			p.timer.Reset(d)
			timeout = p.timer.C
		}
		select {
		case <-p.wake:
		case <-p.done:
		case <-timeout:
		}
		p.timer.Stop()
	}
}

// dequeue moves up to len(pkts) frames out of the queue. Called with mu.
func (p *Port) dequeue(pkts []nic.Packet) int {
	k := 0
	for k < len(pkts) && p.n > 0 {
		s := &p.queue[p.head]
		pkt := &pkts[k]
		pkt.N = copy(pkt.Buf, s.buf)
		pkt.Len = s.wire
		pkt.Truncated = pkt.N < s.wire
		pkt.Time = s.t
		pkt.Vnet = s.vnet
		p.rxFrames.Add(1)
		p.rxBytes.Add(uint64(s.wire))
		if pkt.Truncated {
			p.rxTrunc.Add(1)
		}
		p.head++
		if p.head == len(p.queue) {
			p.head = 0
		}
		p.n--
		k++
	}
	return k
}

// Offloads implements nic.OffloadPort.Offloads: Config.Offloads.
func (p *Port) Offloads() bool { return p.offloads }

// WriteBatchVnet implements nic.OffloadPort.WriteBatchVnet. Without
// Config.Offloads it refuses a frame whose header is not whole.
func (p *Port) WriteBatchVnet(frames [][]byte, hdrs []nic.VnetHdr) (int, error) {
	if len(hdrs) < len(frames) {
		return 0, p.opError("write", fmt.Errorf("%d headers for %d frames", len(hdrs), len(frames)))
	}
	return p.writeBatch(frames, hdrs)
}

var errNoOffloads = errors.New("frame needs offloads (a GSO or partial-checksum header) but the pipe has none (Config.Offloads)")

// WriteBatch implements nic.Port.WriteBatch: whole frames.
func (p *Port) WriteBatch(frames [][]byte) (int, error) { return p.writeBatch(frames, nil) }

func (p *Port) writeBatch(frames [][]byte, hdrs []nic.VnetHdr) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return 0, p.opError("write", net.ErrClosed)
	}
	sent := 0
	var bad error
	for i, f := range frames {
		var err error
		switch {
		case hdrs == nil:
			err = nic.CheckFrameSize(p.mtu, f)
		case !hdrs[i].Whole() && !p.offloads:
			err = errNoOffloads
		default:
			err = nic.CheckVnetFrameSize(p.mtu, f, &hdrs[i])
		}
		if err != nil {
			bad = err
			break
		}
		sent++
	}
	now := time.Now()
	if hdrs != nil {
		hdrs = hdrs[:sent]
	}
	p.peer.deliver(frames[:sent], hdrs, now)
	for _, f := range frames[:sent] {
		p.txFrames.Add(1)
		p.txBytes.Add(uint64(len(f)))
	}
	if bad != nil {
		return sent, p.opError("write", bad)
	}
	return sent, nil
}

// deliver runs the filter on each frame and queues the ones it keeps.
func (p *Port) deliver(frames [][]byte, hdrs []nic.VnetHdr, now time.Time) {
	if len(frames) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return // like a veth whose peer is down: lost on the wire
	}
	for k, f := range frames {
		keep := len(f)
		tagged := isTagged(f)
		if p.vm != nil {
			view := f
			if tagged {
				// The kernel shows filters the frame without its outer tag.
				p.scratch = append(append(p.scratch[:0], f[:12]...), f[16:]...)
				view = p.scratch
			}
			r, err := p.vm.Run(view)
			if err != nil || r == 0 {
				p.rxFiltered.Add(1)
				continue
			}
			if r < len(view) {
				keep = r
				if tagged {
					keep += nic.VLANTagLen
					if r < 12 { // the tag sits after the MACs
						keep = r
					}
				}
			}
		}
		if p.n == len(p.queue) {
			p.rxDropped.Add(1)
			continue
		}
		i := p.head + p.n
		if i >= len(p.queue) {
			i -= len(p.queue)
		}
		s := &p.queue[i]
		s.buf = append(s.buf[:0], f[:keep]...)
		s.wire = len(f)
		s.t = now
		s.vnet = nic.VnetHdr{}
		if hdrs != nil && p.offloads {
			s.vnet = hdrs[k]
		}
		p.n++
	}
	p.poke()
}

func isTagged(f []byte) bool {
	if len(f) < 16 {
		return false
	}
	et := uint16(f[12])<<8 | uint16(f[13])
	return et == 0x8100 || et == 0x88a8
}

// SetFilter implements nic.Port.SetFilter. Programs are run by
// golang.org/x/net/bpf's VM, which refuses ancillary loads other than the
// packet length.
func (p *Port) SetFilter(prog []bpf.RawInstruction) error {
	var vm *bpf.VM
	if len(prog) > 0 {
		insts, ok := bpf.Disassemble(prog)
		if !ok {
			return p.opError("set filter", errors.New("program has instructions the bpf VM cannot decode"))
		}
		var err error
		if vm, err = bpf.NewVM(insts); err != nil {
			return p.opError("set filter", err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return p.opError("set filter", net.ErrClosed)
	}
	p.vm = vm
	return nil
}

// Stats implements nic.Port.Stats.
func (p *Port) Stats() nic.PortStats {
	return nic.PortStats{
		RxFrames:    p.rxFrames.Load(),
		RxBytes:     p.rxBytes.Load(),
		RxTruncated: p.rxTrunc.Load(),
		RxDropped:   p.rxDropped.Load(),
		RxFiltered:  p.rxFiltered.Load(),
		TxFrames:    p.txFrames.Load(),
		TxBytes:     p.txBytes.Load(),
	}
}

// Queued returns how many frames wait in this end's queue.
func (p *Port) Queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// Close implements nic.Port.Close. Frames still queued are discarded.
func (p *Port) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.n = 0
	close(p.done)
	return nil
}
