//go:build linux

package nic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The AF_PACKET port. Layout of the TPACKET_V3 receive ring
// (Documentation/networking/packet_mmap.rst):
//
//	block 0                         block 1
//	+-----------------------------+ +----------- …
//	| tpacket_block_desc          | |
//	|   version, offset_to_priv   | |
//	|   hdr.bh1: block_status,    | |
//	|   num_pkts, offset_to_first | |
//	+-----------------------------+
//	| tpacket3_hdr | sockaddr_ll | pad | frame (tp_mac, tp_snaplen) |
//	| tpacket3_hdr … (tp_next_offset from the previous header)      |
//
// A block belongs to the kernel while block_status has TP_STATUS_KERNEL
// (0) and to us once it has TP_STATUS_USER; we hand it back by storing
// TP_STATUS_KERNEL after reading all its packets. The kernel closes a block
// when it is full or when the 1 ms retire timer fires, and wakes the reader
// only then.
//
// In immediate mode (PortConfig.Immediate) the ring is TPACKET_V2: each
// block is cut into fixed-size frame slots (the tail that does not fit a
// slot is unused), and slot k of the ring is slot k%perBlock of block
// k/perBlock:
//
//	slot 0                                     slot 1
//	+------------------------------------------+ +----- …
//	| tpacket2_hdr | sockaddr_ll | pad | frame | |
//	|  tp_status … |  (at 32)    |     | (at tp_mac = 66, tp_snaplen)
//	+------------------------------------------+
//
// A slot has its own tp_status, handed over the same way, and the kernel
// wakes the reader for every frame.

// Offsets into a block and a packet header.
const (
	blockStatusOff     = 8  // tpacket_block_desc.hdr.bh1.block_status
	blockNumPktsOff    = 12 // .num_pkts
	blockFirstPktOff   = 16 // .offset_to_first_pkt
	sockaddrLLOff      = 48 // TPACKET_ALIGN(sizeof(tpacket3_hdr))
	sllPkttypeOff      = 10 // sockaddr_ll.sll_pkttype
	ringFrameSize      = 2048
	v2SockaddrLLOff    = 32 // TPACKET_ALIGN(sizeof(tpacket2_hdr))
	v2MacOff           = 66 // TPACKET_ALIGN(TPACKET2_HDRLEN + 16) - 14: tp_mac of an Ethernet frame
	v2MacOffVnet       = 76 // v2MacOff behind a virtio_net_hdr (VnetHdrLen)
	tpacketAlignment   = 16
	retireBlockTimeout = 1 // ms, the smallest the kernel takes
	maxWriteBatch      = 64
	maxFilterLen       = 4096 // BPF_MAXINSNS
)

// linkAddr is the net.Addr of a packet port: the link's name.
type linkAddr string

func (a linkAddr) Network() string { return "packet" }
func (a linkAddr) String() string  { return string(a) }

// packetPort implements Port with an AF_PACKET socket.
//
// Lock order: rmu, then wmu, then smu (only Close takes more than one).
type packetPort struct {
	name    string
	addr    linkAddr
	ifindex int
	mtu     int

	fd      int // the packet socket; -1 after Close
	closeFD int // eventfd, readable forever once Close has begun
	kickFD  int // eventfd, written by SetReadDeadline to re-arm a blocked read

	closed   atomic.Bool
	deadline atomic.Int64 // read deadline, Unix ns; 0 = none

	rmu       sync.Mutex // ReadBatch: the ring cursor below
	ring      []byte
	blockSize int
	blocks    int
	blk       int    // V3: current block
	blkPkt    uint32 // V3: packets of blk already consumed
	blkOff    uint32 // V3: offset in blk of the next packet header
	lending   bool   // V3: the current read lends frames (readBatchLent)
	held      int    // V3: blocks read and lent, not handed back yet
	rpoll     [3]unix.PollFd

	// Immediate mode (TPACKET_V2): fixed after open, but for the cursor
	// slot, which rmu guards.
	immediate bool
	vnet      bool // PACKET_VNET_HDR: every frame behind a virtio_net_hdr
	slotSize  int  // bytes of a frame slot
	perBlock  int  // slots in a block
	slots     int  // slots in the ring
	slot      int  // the next slot to read

	wmu   sync.Mutex // WriteBatch: the scratch below
	msgs  [maxWriteBatch]mmsghdr
	iovs  [2 * maxWriteBatch]unix.Iovec // with vnet: header, frame
	vhdrs [maxWriteBatch][VnetHdrLen]byte
	wpoll [2]unix.PollFd

	smu   sync.Mutex // kernel statistics
	drops uint64

	rxFrames, rxBytes, rxTrunc, txFrames, txBytes atomic.Uint64
}

// mmsghdr is struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

var _ OffloadPort = (*packetPort)(nil)

// OpenPacketPort opens an AF_PACKET port on the link ifname in the calling
// thread's network namespace (run it inside netlab's Lab.Do, or on a thread
// switched with netns, to open a port in another namespace: the socket stays
// there). The port receives through a TPACKET_V3 memory-mapped ring with a
// 1 ms block timeout (or, with cfg.Immediate, a TPACKET_V2 ring that hands
// over every frame as it arrives), transmits with sendmmsg, ignores the
// frames it (or anything else on the host) sends on the link
// (PACKET_IGNORE_OUTGOING, and PACKET_OUTGOING packet types are skipped
// where the kernel lacks it), and puts the link in promiscuous mode unless
// cfg.NoPromisc.
func OpenPacketPort(ifname string, cfg *PortConfig) (Port, error) {
	p, err := openPacketPort(ifname, cfg)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func openPacketPort(ifname string, cfg *PortConfig) (_ *packetPort, err error) {
	if cfg == nil {
		cfg = &PortConfig{}
	}
	blockSize, blocks := cfg.BlockSize, cfg.Blocks
	if blockSize == 0 {
		blockSize = DefaultBlockSize
		if cfg.Immediate && !cfg.NoOffloads {
			blockSize = defaultVnetImmediateBlock(os.Getpagesize())
		}
	}
	if blocks == 0 {
		blocks = DefaultBlocks
	}
	page := os.Getpagesize()
	if blockSize < page || blockSize%page != 0 || blockSize > 1<<30 {
		return nil, fmt.Errorf("open packet port %s: BlockSize %d is not a multiple of the page size %d (max 1 GiB)", ifname, blockSize, page)
	}
	if min := minVnetBlock(page); !cfg.NoOffloads && !cfg.Immediate && blockSize < min {
		return nil, fmt.Errorf("open packet port %s: BlockSize %d cannot hold a %d-byte GSO frame; use at least %d (or PortConfig.NoOffloads)", ifname, blockSize, MaxGSOFrame, min)
	}
	if blocks < 2 || blocks > 4096 {
		return nil, fmt.Errorf("open packet port %s: Blocks %d out of range 2–4096", ifname, blocks)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, &net.OpError{Op: "open", Net: "packet", Addr: linkAddr(ifname), Err: err}
	}
	p := &packetPort{
		name: ifname, addr: linkAddr(ifname), ifindex: ifi.Index, mtu: ifi.MTU,
		fd: -1, closeFD: -1, kickFD: -1,
		blockSize: blockSize, blocks: blocks,
		immediate: cfg.Immediate,
		vnet:      !cfg.NoOffloads,
	}
	if p.immediate {
		p.slotSize = slotSize(p.mtu, p.vnet)
		if p.slotSize > blockSize {
			what := fmt.Sprintf("MTU %d + 18 + 66 bytes of headers", p.mtu)
			if p.vnet {
				what = fmt.Sprintf("a %d-byte GSO frame + %d bytes of headers", max(p.mtu+EthernetHeaderLen+VLANTagLen, MaxGSOFrame), v2MacOffVnet)
			}
			return nil, fmt.Errorf("open packet port %s: BlockSize %d cannot hold one immediate-mode frame slot of %d bytes (%s); use at least %d",
				ifname, blockSize, p.slotSize, what, (p.slotSize+page-1)/page*page)
		}
		p.perBlock = blockSize / p.slotSize
		p.slots = p.perBlock * blocks
	}
	defer func() {
		if err != nil {
			p.release()
			err = &net.OpError{Op: "open", Net: "packet", Addr: p.addr, Err: err}
		}
	}()
	// Protocol 0: nothing is queued until bind, after the ring exists.
	p.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	version := unix.TPACKET_V3
	if p.immediate {
		version = unix.TPACKET_V2
	}
	if err := unix.SetsockoptInt(p.fd, unix.SOL_PACKET, unix.PACKET_VERSION, version); err != nil {
		return nil, os.NewSyscallError("setsockopt PACKET_VERSION", err)
	}
	if p.vnet {
		// Before the ring: the kernel refuses it on a socket with one.
		if err := unix.SetsockoptInt(p.fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return nil, fmt.Errorf("%w (the port needs it to forward the GSO and partial-checksum frames of links with offloads on; "+
				"open it with PortConfig.NoOffloads only on links whose offloads are off: ethtool -K %s tx off sg off tso off gso off gro off)",
				os.NewSyscallError("setsockopt PACKET_VNET_HDR", err), ifname)
		}
	}
	// Older kernels (< 4.20) lack it; ReadBatch also skips PACKET_OUTGOING.
	if err := unix.SetsockoptInt(p.fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil && err != unix.ENOPROTOOPT {
		return nil, os.NewSyscallError("setsockopt PACKET_IGNORE_OUTGOING", err)
	}
	if p.immediate {
		req := unix.TpacketReq{
			Block_size: uint32(blockSize),
			Block_nr:   uint32(blocks),
			Frame_size: uint32(p.slotSize),
			Frame_nr:   uint32(p.slots),
		}
		err = unix.SetsockoptTpacketReq(p.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req)
	} else {
		req := unix.TpacketReq3{
			Block_size:     uint32(blockSize),
			Block_nr:       uint32(blocks),
			Frame_size:     ringFrameSize,
			Frame_nr:       uint32(blockSize / ringFrameSize * blocks),
			Retire_blk_tov: retireBlockTimeout,
		}
		err = unix.SetsockoptTpacketReq3(p.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req)
	}
	if err != nil {
		return nil, os.NewSyscallError("setsockopt PACKET_RX_RING", err)
	}
	p.ring, err = unix.Mmap(p.fd, 0, blockSize*blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	if !cfg.NoPromisc {
		mreq := unix.PacketMreq{Ifindex: int32(p.ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(p.fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return nil, os.NewSyscallError("setsockopt PACKET_ADD_MEMBERSHIP", err)
		}
	}
	if p.closeFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	if p.kickFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	sll := unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: p.ifindex}
	if err := unix.Bind(p.fd, &sll); err != nil {
		return nil, os.NewSyscallError("bind", err)
	}
	p.rpoll = [3]unix.PollFd{
		{Fd: int32(p.fd), Events: unix.POLLIN},
		{Fd: int32(p.closeFD), Events: unix.POLLIN},
		{Fd: int32(p.kickFD), Events: unix.POLLIN},
	}
	p.wpoll = [2]unix.PollFd{
		{Fd: int32(p.fd), Events: unix.POLLOUT},
		{Fd: int32(p.closeFD), Events: unix.POLLIN},
	}
	return p, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// slotSize returns the size of an immediate-mode frame slot on a link
// with the given MTU: the kernel puts an Ethernet frame at v2MacOff and
// cuts it at the slot's end, so a slot holds MTU+18 bytes (Ethernet
// header and one tag the kernel did not strip) after that offset,
// rounded up to the ring's alignment.
//
// With vnet (PACKET_VNET_HDR) the frame sits VnetHdrLen bytes further and
// a slot holds a GSO frame, MaxGSOFrame bytes, whatever the MTU.
func slotSize(mtu int, vnet bool) int {
	n := v2MacOff + mtu + EthernetHeaderLen + VLANTagLen
	if vnet {
		n = v2MacOffVnet + max(mtu+EthernetHeaderLen+VLANTagLen, MaxGSOFrame)
	}
	return (n + tpacketAlignment - 1) &^ (tpacketAlignment - 1)
}

// minVnetBlock is the smallest TPACKET_V3 block that holds a GSO frame:
// the block descriptor, the frame's headers and MaxGSOFrame bytes.
func minVnetBlock(page int) int {
	n := 48 + 128 + MaxGSOFrame
	return (n + page - 1) / page * page
}

// defaultVnetImmediateBlock is the default immediate-mode block with
// vnet: four GSO-sized slots.
func defaultVnetImmediateBlock(page int) int {
	n := 4 * slotSize(0, true)
	return (n + page - 1) / page * page
}

// release frees whatever openPacketPort or Close acquired.
func (p *packetPort) release() {
	if p.ring != nil {
		unix.Munmap(p.ring)
		p.ring = nil
	}
	for _, fd := range []*int{&p.fd, &p.closeFD, &p.kickFD} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// Name implements Port.Name.
func (p *packetPort) Name() string { return p.name }

func (p *packetPort) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "packet", Addr: p.addr, Err: err}
}

// SetReadDeadline implements Port.SetReadDeadline.
func (p *packetPort) SetReadDeadline(t time.Time) error {
	if p.closed.Load() {
		return p.opError("set deadline", net.ErrClosed)
	}
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
		if ns == 0 {
			ns = 1
		}
	}
	p.deadline.Store(ns)
	// Wake a blocked reader so it recomputes its timeout. The kick fd lives
	// until Close, which cannot have released it while closed is false
	// unless it raced us; a write to a reused fd number would be harmless
	// only by luck, so hold smu, which Close takes before releasing fds.
	p.smu.Lock()
	defer p.smu.Unlock()
	if p.kickFD >= 0 {
		var one = [8]byte{1}
		unix.Write(p.kickFD, one[:])
	}
	return nil
}

// ReadBatch implements Port.ReadBatch.
func (p *packetPort) ReadBatch(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.releaseHeld()
	p.lending = false
	return p.readBatch(pkts)
}

var _ ringLender = (*packetPort)(nil)

// readBatchLent implements ringLender: in TPACKET_V3 mode an untagged
// frame is not copied; the blocks it lies in stay ours until
// releaseLent. Immediate mode copies, as ReadBatch.
func (p *packetPort) readBatchLent(pkts []Packet) (int, error) {
	if len(pkts) == 0 {
		return 0, nil
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.releaseHeld()
	p.lending = !p.immediate
	return p.readBatch(pkts)
}

// releaseLent implements ringLender.
func (p *packetPort) releaseLent() {
	p.rmu.Lock()
	p.releaseHeld()
	p.rmu.Unlock()
}

// releaseHeld hands the lent blocks that were read to the end back to
// the kernel, oldest first. Called with rmu held.
func (p *packetPort) releaseHeld() {
	if p.held == 0 || p.ring == nil {
		p.held = 0
		return
	}
	b := p.blk - p.held
	if b < 0 {
		b += p.blocks
	}
	for ; p.held > 0; p.held-- {
		base := b * p.blockSize
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&p.ring[base+blockStatusOff])), unix.TP_STATUS_KERNEL)
		if b++; b == p.blocks {
			b = 0
		}
	}
}

// readBatch is ReadBatch with rmu held.
func (p *packetPort) readBatch(pkts []Packet) (int, error) {
	for {
		if p.closed.Load() {
			return 0, p.opError("read", net.ErrClosed)
		}
		if n := p.readRing(pkts); n > 0 {
			return n, nil
		}
		var ts *unix.Timespec
		var tsv unix.Timespec
		if dl := p.deadline.Load(); dl != 0 {
			d := dl - time.Now().UnixNano()
			if d <= 0 {
				return 0, p.opError("read", os.ErrDeadlineExceeded)
			}
			tsv = unix.NsecToTimespec(d)
			ts = &tsv
		}
		for i := range p.rpoll {
			p.rpoll[i].Revents = 0
		}
		_, err := unix.Ppoll(p.rpoll[:], ts, nil)
		if err != nil && err != unix.EINTR {
			return 0, p.opError("read", os.NewSyscallError("ppoll", err))
		}
		if p.rpoll[1].Revents != 0 || p.closed.Load() {
			return 0, p.opError("read", net.ErrClosed)
		}
		if p.rpoll[2].Revents != 0 {
			var b [8]byte
			unix.Read(p.kickFD, b[:])
		}
		if p.rpoll[0].Revents&unix.POLLERR != 0 {
			// e.g. ENETDOWN when the link goes down; reading SO_ERROR
			// clears it so the next poll does not spin.
			if serr, err := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && serr != 0 {
				return 0, p.opError("read", os.NewSyscallError("recv", unix.Errno(serr)))
			}
		}
	}
}

// readRing copies frames from user-owned ring blocks (or, in immediate
// mode, slots) into pkts and returns how many it copied. It hands each
// block back once it is fully read.
func (p *packetPort) readRing(pkts []Packet) int {
	if p.immediate {
		return p.readSlots(pkts)
	}
	n := 0
	for n < len(pkts) {
		if p.lending && p.blkPkt == 0 && p.held >= p.blocks/2 {
			break // leave the kernel half the ring while frames are lent
		}
		base := p.blk * p.blockSize
		block := p.ring[base : base+p.blockSize : base+p.blockSize]
		status := (*uint32)(unsafe.Pointer(&block[blockStatusOff]))
		if atomic.LoadUint32(status)&unix.TP_STATUS_USER == 0 {
			break
		}
		num := binary.NativeEndian.Uint32(block[blockNumPktsOff:])
		if p.blkPkt == 0 {
			p.blkOff = binary.NativeEndian.Uint32(block[blockFirstPktOff:])
		}
		for p.blkPkt < num && n < len(pkts) {
			off := p.blkOff
			if int(off)+sockaddrLLOff+12 > len(block) {
				p.blkPkt = num // corrupt offset: abandon the block
				break
			}
			h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&block[off]))
			p.blkPkt++
			p.blkOff = off + h.Next_offset
			if block[int(off)+sockaddrLLOff+sllPkttypeOff] == unix.PACKET_OUTGOING {
				continue
			}
			start := int(off) + int(h.Mac)
			end := start + int(h.Snaplen)
			if end > len(block) || start > end || (p.vnet && start < int(off)+sockaddrLLOff+VnetHdrLen) {
				continue
			}
			p.fill(&pkts[n], h.Status, h.Len, uint16(h.Hv1.Vlan_tci), h.Hv1.Vlan_tpid, h.Sec, h.Nsec, block[start-VnetHdrLen:end], block[start:end])
			if p.lending && h.Status&unix.TP_STATUS_VLAN_VALID == 0 {
				pkts[n].lent = block[start:end:end]
			}
			n++
		}
		if p.blkPkt >= num {
			if p.lending {
				p.held++ // handed back by releaseHeld
			} else {
				atomic.StoreUint32(status, unix.TP_STATUS_KERNEL)
			}
			p.blk++
			if p.blk == p.blocks {
				p.blk = 0
			}
			p.blkPkt, p.blkOff = 0, 0
		}
	}
	return n
}

// readSlots is readRing in immediate mode: it copies frames from
// user-owned TPACKET_V2 slots, in ring order, and hands each slot back as
// soon as it is copied (or skipped).
func (p *packetPort) readSlots(pkts []Packet) int {
	n := 0
	for n < len(pkts) {
		off := p.slot/p.perBlock*p.blockSize + p.slot%p.perBlock*p.slotSize
		slot := p.ring[off : off+p.slotSize : off+p.slotSize]
		h := (*unix.Tpacket2Hdr)(unsafe.Pointer(&slot[0]))
		if atomic.LoadUint32(&h.Status)&unix.TP_STATUS_USER == 0 {
			break
		}
		if slot[v2SockaddrLLOff+sllPkttypeOff] != unix.PACKET_OUTGOING {
			start := int(h.Mac)
			end := start + int(h.Snaplen)
			if start <= end && end <= len(slot) && start >= v2SockaddrLLOff+VnetHdrLen {
				p.fill(&pkts[n], h.Status, h.Len, h.Vlan_tci, h.Vlan_tpid, h.Sec, h.Nsec, slot[start-VnetHdrLen:end], slot[start:end])
				n++
			}
		}
		atomic.StoreUint32(&h.Status, unix.TP_STATUS_KERNEL)
		p.slot++
		if p.slot == p.slots {
			p.slot = 0
		}
	}
	return n
}

// fill copies one frame into pkt, re-inserting the VLAN tag the kernel
// moved out of the data, from the fields of its ring header (tpacket3_hdr
// or tpacket2_hdr): tp_status, tp_len, tp_vlan_tci, tp_vlan_tpid, tp_sec,
// tp_nsec. With vnet, vh starts with the frame's virtio_net_hdr.
func (p *packetPort) fill(pkt *Packet, status, wireLen uint32, vlanTCI, vlanTPID uint16, sec, nsec uint32, vh, data []byte) {
	pkt.Vnet = VnetHdr{}
	if p.lending && status&unix.TP_STATUS_VLAN_VALID == 0 {
		// Lent, not copied: readRing points pkt into the ring.
		pkt.N = len(data)
		pkt.Len = int(wireLen)
		pkt.Truncated = len(data) < int(wireLen)
		pkt.Time = time.Unix(int64(sec), int64(nsec))
		if p.vnet {
			pkt.Vnet.get(vh)
		}
		p.rxFrames.Add(1)
		p.rxBytes.Add(uint64(wireLen))
		if pkt.Truncated {
			p.rxTrunc.Add(1)
		}
		return
	}
	pkt.lent = nil
	if p.vnet {
		pkt.Vnet.get(vh)
	}
	buf := pkt.Buf
	wire := int(wireLen)
	var n int
	if status&unix.TP_STATUS_VLAN_VALID != 0 && len(data) >= 12 {
		tpid := uint16(0x8100)
		if status&unix.TP_STATUS_VLAN_TPID_VALID != 0 && vlanTPID != 0 {
			tpid = vlanTPID
		}
		tci := vlanTCI
		tag := [4]byte{byte(tpid >> 8), byte(tpid), byte(tci >> 8), byte(tci)}
		n = copy(buf, data[:12])
		if n == 12 {
			n += copy(buf[12:], tag[:])
			if n == 16 {
				n += copy(buf[16:], data[12:])
			}
		}
		wire += VLANTagLen
		pkt.Vnet.shift(VLANTagLen)
	} else {
		n = copy(buf, data)
	}
	pkt.N = n
	pkt.Len = wire
	pkt.Truncated = n < wire
	pkt.Time = time.Unix(int64(sec), int64(nsec))
	p.rxFrames.Add(1)
	p.rxBytes.Add(uint64(wire))
	if pkt.Truncated {
		p.rxTrunc.Add(1)
	}
}

// WriteBatch implements Port.WriteBatch. With vnet each frame goes with
// a zero virtio_net_hdr: a whole frame.
func (p *packetPort) WriteBatch(frames [][]byte) (int, error) { return p.writeBatch(frames, nil) }

// Offloads implements OffloadPort.Offloads.
func (p *packetPort) Offloads() bool { return p.vnet }

// WriteBatchVnet implements OffloadPort.WriteBatchVnet.
func (p *packetPort) WriteBatchVnet(frames [][]byte, hdrs []VnetHdr) (int, error) {
	if len(hdrs) < len(frames) {
		return 0, p.opError("write", fmt.Errorf("%d headers for %d frames", len(hdrs), len(frames)))
	}
	if !p.vnet {
		for i := range frames {
			if !hdrs[i].Whole() {
				return i, p.opError("write", errors.New("frame needs offloads (a GSO or partial-checksum virtio_net_hdr) but the port was opened with NoOffloads"))
			}
		}
		hdrs = nil
	}
	return p.writeBatch(frames, hdrs)
}

// writeBatch sends frames with sendmmsg, up to maxWriteBatch per call;
// with vnet, behind hdrs[i] (zero headers when hdrs is nil).
func (p *packetPort) writeBatch(frames [][]byte, hdrs []VnetHdr) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	sent := 0
	for sent < len(frames) {
		if p.closed.Load() {
			return sent, p.opError("write", net.ErrClosed)
		}
		// Stage up to maxWriteBatch valid frames.
		k := 0
		var bad error
		for k < maxWriteBatch && sent+k < len(frames) {
			f := frames[sent+k]
			var err error
			if hdrs != nil {
				err = CheckVnetFrameSize(p.mtu, f, &hdrs[sent+k])
			} else {
				err = checkFrameSize(p.mtu, f)
			}
			if err != nil {
				bad = err
				break
			}
			iov := p.iovs[k : k+1]
			if p.vnet {
				iov = p.iovs[2*k : 2*k+2]
				if hdrs != nil {
					hdrs[sent+k].put(p.vhdrs[k][:])
				} else {
					p.vhdrs[k] = [VnetHdrLen]byte{}
				}
				iov[0].Base = &p.vhdrs[k][0]
				iov[0].SetLen(VnetHdrLen)
				iov = iov[1:]
				iov[0].Base = &f[0]
				iov[0].SetLen(len(f))
				p.msgs[k].hdr.Iov = &p.iovs[2*k]
				p.msgs[k].hdr.SetIovlen(2)
			} else {
				iov[0].Base = &f[0]
				iov[0].SetLen(len(f))
				p.msgs[k].hdr.Iov = &p.iovs[k]
				p.msgs[k].hdr.SetIovlen(1)
			}
			k++
		}
		if k == 0 {
			return sent, p.opError("write", bad)
		}
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&p.msgs[0])), uintptr(k), unix.MSG_DONTWAIT, 0, 0)
		for i := range p.iovs[:2*k] {
			p.iovs[i].Base = nil // do not pin the caller's frames
		}
		if errno != 0 {
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN, unix.ENOBUFS:
				if err := p.waitWritable(); err != nil {
					return sent, err
				}
				continue
			case unix.EMSGSIZE:
				f := frames[sent]
				return sent, p.opError("write", &frameSizeError{n: len(f), max: FrameLimit(p.mtu, f)})
			case unix.EINVAL:
				if hdrs != nil && !hdrs[sent].Whole() {
					return sent, p.opError("write", fmt.Errorf("the kernel refused the frame's virtio_net_hdr %+v: %w", hdrs[sent], os.NewSyscallError("sendmmsg", errno)))
				}
			}
			return sent, p.opError("write", os.NewSyscallError("sendmmsg", errno))
		}
		for i := 0; i < int(r); i++ {
			p.txFrames.Add(1)
			p.txBytes.Add(uint64(len(frames[sent+i])))
		}
		sent += int(r)
		if int(r) == k && bad != nil {
			return sent, p.opError("write", bad)
		}
	}
	return sent, nil
}

// waitWritable blocks until the socket can take more or the port closes.
func (p *packetPort) waitWritable() error {
	for {
		for i := range p.wpoll {
			p.wpoll[i].Revents = 0
		}
		_, err := unix.Ppoll(p.wpoll[:], nil, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return p.opError("write", os.NewSyscallError("ppoll", err))
		}
		if p.wpoll[1].Revents != 0 || p.closed.Load() {
			return p.opError("write", net.ErrClosed)
		}
		return nil
	}
}

// SetFilter implements Port.SetFilter.
func (p *packetPort) SetFilter(prog []bpf.RawInstruction) error {
	p.smu.Lock()
	defer p.smu.Unlock()
	if p.closed.Load() {
		return p.opError("set filter", net.ErrClosed)
	}
	if len(prog) == 0 {
		err := unix.SetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
		if err != nil && err != unix.ENOENT {
			return p.opError("set filter", os.NewSyscallError("setsockopt SO_DETACH_FILTER", err))
		}
		return nil
	}
	if len(prog) > maxFilterLen {
		return p.opError("set filter", fmt.Errorf("program of %d instructions exceeds %d", len(prog), maxFilterLen))
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))}
	if err := unix.SetsockoptSockFprog(p.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return p.opError("set filter", os.NewSyscallError("setsockopt SO_ATTACH_FILTER", err))
	}
	return nil
}

// Stats implements Port.Stats.
func (p *packetPort) Stats() PortStats {
	p.smu.Lock()
	p.foldKernelStats()
	drops := p.drops
	p.smu.Unlock()
	return PortStats{
		RxFrames:    p.rxFrames.Load(),
		RxBytes:     p.rxBytes.Load(),
		RxTruncated: p.rxTrunc.Load(),
		TxFrames:    p.txFrames.Load(),
		TxBytes:     p.txBytes.Load(),
		RxDropped:   drops,
	}
}

// foldKernelStats adds the kernel's counters (which reading resets) to
// ours. Called with smu held.
func (p *packetPort) foldKernelStats() {
	if p.fd < 0 {
		return
	}
	if p.immediate {
		var st unix.TpacketStats // struct tpacket_stats, the V2 layout
		if getsockoptStats(p.fd, unsafe.Pointer(&st), unsafe.Sizeof(st)) {
			p.drops += uint64(st.Drops)
		}
		return
	}
	var st unix.TpacketStatsV3
	if getsockoptStats(p.fd, unsafe.Pointer(&st), unsafe.Sizeof(st)) {
		p.drops += uint64(st.Drops)
	}
}

// getsockoptStats reads PACKET_STATISTICS into the size bytes at st and
// reports whether it succeeded.
func getsockoptStats(fd int, st unsafe.Pointer, size uintptr) bool {
	l := uint32(size)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS, uintptr(st), uintptr(unsafe.Pointer(&l)), 0)
	return errno == 0
}

// Close implements Port.Close.
func (p *packetPort) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	// Wake blocked readers and writers, then wait for them to leave.
	var one = [8]byte{1}
	unix.Write(p.closeFD, one[:])
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.smu.Lock()
	defer p.smu.Unlock()
	p.foldKernelStats()
	p.release()
	return nil
}
