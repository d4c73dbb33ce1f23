package xdp

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// Program is the loaded XDP program and its maps. Arm, Disarm and
// Attach are serialised by a mutex; Update and the counters touch only
// the memory-mapped slot records (no syscall, no lock, no allocation).
type Program struct {
	prog                  *ebpf.Program
	conns, slots, globals *ebpf.Map
	slotMem, globMem      []byte
	maxSlots              int
	insns                 int

	mu       sync.Mutex
	patterns map[[keyLen]byte]int // connection patterns per key
	armed    map[int][keyLen]byte // slot index → its key, while it absorbs
	link     link.Link
	ifindex  int
	closed   bool
}

// New generates and loads the program for cfg (CAP_BPF or CAP_SYS_ADMIN
// needed). Errors from a kernel without XDP or the privilege wrap
// ErrUnsupported, so the caller can fall back.
func New(cfg *Config) (_ *Program, err error) {
	if cfg == nil {
		cfg = &Config{}
	}
	max, err := cfg.maxSlots()
	if err != nil {
		return nil, err
	}
	pl, err := newPlan(cfg.Patterns, cfg.ARPFor)
	if err != nil {
		return nil, err
	}
	ins, err := program(pl)
	if err != nil {
		return nil, err
	}
	p := &Program{maxSlots: max, patterns: map[[keyLen]byte]int{}, armed: map[int][keyLen]byte{}}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	for i := range cfg.Patterns {
		pt := &cfg.Patterns[i]
		if pt.Kind != wp.KindTCPConn {
			continue
		}
		k, err := connKey(&pt.Conn)
		if err != nil {
			return nil, fmt.Errorf("xdp: pattern %d: %w", pt.ID, err)
		}
		p.patterns[k]++
	}
	if p.conns, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "sbn_conns", Type: ebpf.Hash, KeySize: keyLen, ValueSize: 4,
		MaxEntries: uint32(len(p.patterns) + max),
	}); err != nil {
		return nil, unsupported("create conns map", err)
	}
	if p.slots, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "sbn_slots", Type: ebpf.Array, KeySize: 4, ValueSize: slotRecLen,
		MaxEntries: uint32(max + 1), Flags: unix.BPF_F_MMAPABLE,
	}); err != nil {
		return nil, unsupported("create slots map", err)
	}
	if p.globals, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "sbn_globals", Type: ebpf.Array, KeySize: 4, ValueSize: globalsLen,
		MaxEntries: 1, Flags: unix.BPF_F_MMAPABLE,
	}); err != nil {
		return nil, unsupported("create globals map", err)
	}
	if p.slotMem, err = mmapMap(p.slots, slotRecLen*(max+1)); err != nil {
		return nil, err
	}
	if p.globMem, err = mmapMap(p.globals, globalsLen); err != nil {
		return nil, err
	}
	var zero [4]byte
	for k := range p.patterns {
		if err := p.conns.Update(k[:], zero[:], ebpf.UpdateAny); err != nil {
			return nil, fmt.Errorf("xdp: conns map: %w", err)
		}
	}
	for name, m := range map[string]*ebpf.Map{mapConns: p.conns, mapSlots: p.slots, mapGlobals: p.globals} {
		if err := ins.AssociateMap(name, m); err != nil {
			return nil, fmt.Errorf("xdp: map %s: %w", name, err)
		}
	}
	p.insns = len(ins)
	p.prog, err = ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Name: "sbn_d3", Type: ebpf.XDP, Instructions: ins, License: "Dual MIT/GPL",
	}, ebpf.ProgramOptions{})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("xdp: load program: %+v", ve)
		}
		return nil, unsupported("load program", err)
	}
	return p, nil
}

func unsupported(what string, err error) error {
	if errors.Is(err, os.ErrPermission) || errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("xdp: %s: %w (%w)", what, ErrUnsupported, err)
	}
	return fmt.Errorf("xdp: %s: %w", what, err)
}

// mmapMap maps the memory of a BPF_F_MMAPABLE array of size bytes.
func mmapMap(m *ebpf.Map, size int) ([]byte, error) {
	page := os.Getpagesize()
	size = (size + page - 1) / page * page
	b, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, unsupported("mmap map", os.NewSyscallError("mmap", err))
	}
	return b, nil
}

// Instructions is the program's length.
func (p *Program) Instructions() int { return p.insns }

// FD is the program's file descriptor (for BPF_PROG_TEST_RUN and
// attaching).
func (p *Program) FD() int { return p.prog.FD() }

func (p *Program) u32(idx, off int) *uint32 {
	return (*uint32)(unsafe.Pointer(&p.slotMem[idx*slotRecLen+off]))
}

func (p *Program) u64(mem []byte, off int) *uint64 {
	return (*uint64)(unsafe.Pointer(&mem[off]))
}

// live reports whether idx names a slot record still mapped (the
// syscall-free calls do nothing after Close).
func (p *Program) live(idx int) bool { return idx >= 1 && idx <= p.maxSlots && p.slotMem != nil }

func (p *Program) checkIndex(idx int) error {
	if idx < 1 || idx > p.maxSlots {
		return fmt.Errorf("xdp: slot index %d: limit 1..%d", idx, p.maxSlots)
	}
	return nil
}

// Arm sets slot idx (1..MaxSlots) to absorb s's exact keep-alive reply
// and clears its counters. It reports false when the slot cannot absorb
// in the program — a VLAN other than 0, or another pattern with the
// same 4-tuple (the program does not see VLANs) — and its frames pass.
func (p *Program) Arm(idx int, s Slot) (bool, error) {
	if err := p.checkIndex(idx); err != nil {
		return false, err
	}
	k, err := connKey(&s.Conn)
	if err != nil {
		return false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false, fmt.Errorf("xdp: arm slot %d: %w", idx, os.ErrClosed)
	}
	if old, ok := p.armed[idx]; ok {
		if err := p.unarm(idx, old); err != nil {
			return false, err
		}
	}
	if s.Conn.VLAN != 0 || p.patterns[k] > 1 {
		return false, nil
	}
	for i := range slotRecLen / 8 {
		atomic.StoreUint64(p.u64(p.slotMem, idx*slotRecLen+8*i), 0)
	}
	atomic.StoreUint32(p.u32(idx, slotSeqOff), wire32(s.RcvNxt))
	atomic.StoreUint32(p.u32(idx, slotAckOff), wire32(s.SndNxt))
	atomic.StoreUint32(p.u32(idx, slotTSOff), s.TSRecent)
	flags := uint32(slotArmed)
	if s.Timestamps {
		flags |= slotTS
	}
	if s.Reply {
		flags |= slotReply
	}
	atomic.StoreUint32(p.u32(idx, slotFlagsOff), flags)
	var v [4]byte
	native.PutUint32(v[:], uint32(idx))
	if err := p.conns.Update(k[:], v[:], ebpf.UpdateAny); err != nil {
		atomic.StoreUint32(p.u32(idx, slotFlagsOff), 0)
		return false, fmt.Errorf("xdp: arm slot %d: %w", idx, err)
	}
	p.armed[idx] = k
	return true, nil
}

// Update sets the exact reply of slot idx after the engine sent (SEQ =
// rcvNxt, ACK = sndNxt). It makes no syscall and allocates nothing.
func (p *Program) Update(idx int, rcvNxt, sndNxt uint32) {
	if !p.live(idx) {
		return
	}
	atomic.StoreUint32(p.u32(idx, slotSeqOff), wire32(rcvNxt))
	atomic.StoreUint32(p.u32(idx, slotAckOff), wire32(sndNxt))
}

// Pause stops slot idx absorbing (it woke or died) without a syscall;
// its frames pass from now on. Arm or Disarm follows.
func (p *Program) Pause(idx int) {
	if !p.live(idx) {
		return
	}
	atomic.StoreUint32(p.u32(idx, slotFlagsOff), 0)
}

// TSRecent returns slot idx's TS.Recent as the program moved it.
func (p *Program) TSRecent(idx int) uint32 {
	if !p.live(idx) {
		return 0
	}
	return atomic.LoadUint32(p.u32(idx, slotTSOff))
}

// Disarm stops slot idx absorbing; its connection goes back to what the
// patterns say. Its counters stay readable until the next Arm.
func (p *Program) Disarm(idx int) error {
	if err := p.checkIndex(idx); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k, ok := p.armed[idx]
	if !ok || p.closed {
		return nil
	}
	return p.unarm(idx, k)
}

func (p *Program) unarm(idx int, k [keyLen]byte) error {
	atomic.StoreUint32(p.u32(idx, slotFlagsOff), 0)
	delete(p.armed, idx)
	var err error
	if p.patterns[k] > 0 {
		var zero [4]byte
		err = p.conns.Update(k[:], zero[:], ebpf.UpdateAny)
	} else {
		err = p.conns.Delete(k[:])
	}
	if err != nil {
		return fmt.Errorf("xdp: disarm slot %d: %w", idx, err)
	}
	return nil
}

// SlotCounters returns slot idx's counters, without a syscall.
func (p *Program) SlotCounters(idx int) SlotCounters {
	if !p.live(idx) {
		return SlotCounters{}
	}
	b := idx * slotRecLen
	return SlotCounters{
		Replies: atomic.LoadUint64(p.u64(p.slotMem, b+slotReplyOff)),
		ACKs:    atomic.LoadUint64(p.u64(p.slotMem, b+slotACKOff)),
		Passed:  atomic.LoadUint64(p.u64(p.slotMem, b+slotPassedOff)),
	}
}

// PassAll makes the program pass every frame from now on (counted as
// Passed), without a syscall: a wake lets everything in at once, before
// the slower Detach. It cannot be undone; a new program starts without.
// It takes the program's lock (so it is safe against Close), nothing else.
func (p *Program) PassAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.globMem == nil {
		return
	}
	atomic.StoreUint64(p.u64(p.globMem, globalsBypassOff), 1)
}

// Count returns the program's counter of r, without a syscall.
func (p *Program) Count(r Reason) uint64 {
	if r >= numReasons || p.globMem == nil {
		return 0
	}
	return atomic.LoadUint64(p.u64(p.globMem, 8*int(r)))
}

// Run runs the program once on frame with BPF_PROG_TEST_RUN and returns
// its XDP verdict (1 drop, 2 pass).
func (p *Program) Run(frame []byte) (uint32, error) {
	v, err := p.prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		return 0, fmt.Errorf("xdp: test run: %w", err)
	}
	return v, nil
}

// Attach attaches the program in driver mode to the interface ifindex of
// the calling thread's network namespace (a bpf_link: it goes when the
// program is closed, or when the process dies). Errors wrap
// ErrUnsupported when the driver or kernel has no native XDP, or the
// process lacks CAP_NET_ADMIN.
func (p *Program) Attach(ifindex int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("xdp: attach: %w", os.ErrClosed)
	}
	if p.link != nil {
		return fmt.Errorf("xdp: attach to %d: already attached to %d", ifindex, p.ifindex)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("xdp: attach to %d: %w (%w)", ifindex, ErrUnsupported, err)
		}
		return unsupported(fmt.Sprintf("attach to %d", ifindex), err)
	}
	p.link, p.ifindex = l, ifindex
	return nil
}

// Detach detaches the program; detaching a detached program does
// nothing.
func (p *Program) Detach() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.detach()
}

func (p *Program) detach() error {
	if p.link == nil {
		return nil
	}
	err := p.link.Close()
	p.link, p.ifindex = nil, 0
	if err != nil {
		return fmt.Errorf("xdp: detach: %w", err)
	}
	return nil
}

// Close detaches the program and frees it and its maps. It is
// idempotent.
func (p *Program) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	err := p.detach()
	if p.prog != nil {
		p.prog.Close()
	}
	for _, b := range [][]byte{p.slotMem, p.globMem} {
		if b != nil {
			unix.Munmap(b)
		}
	}
	p.slotMem, p.globMem = nil, nil
	for _, m := range []*ebpf.Map{p.conns, p.slots, p.globals} {
		if m != nil {
			m.Close()
		}
	}
	return err
}
