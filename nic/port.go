package nic

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/net/bpf"
)

// Packet is one received frame in a caller-owned buffer. ReadBatch fills
// Buf[:N]; it never grows or replaces Buf. A Packet is reused from call to
// call: ReadBatch resets every field it does not fill.
type Packet struct {
	// Buf is the caller's buffer; its length (not capacity) is the most
	// ReadBatch will write. A frame is at most MTU+18 bytes (Ethernet
	// header plus one VLAN tag), so len(Buf) = MTU+18 never truncates.
	Buf []byte
	// N is the number of frame bytes written to Buf.
	N int
	// Len is the frame's full length on the wire, including an 802.1Q /
	// 802.1ad tag re-inserted by the port. Len > N when truncated.
	Len int
	// Truncated is Len > N: the buffer (or the port's snap length, or the
	// filter's return value) was shorter than the frame.
	Truncated bool
	// Vnet is the frame's offload state (its virtio_net_hdr) on a port
	// whose Offloads is true: a GSO super-frame, a partial checksum, or a
	// checksum the kernel verified. The zero value (every other port) is
	// a whole frame.
	Vnet VnetHdr
	// Time is when the frame was received (the kernel's timestamp on
	// AF_PACKET, wall clock). It is for reporting and latency measurement,
	// not for protocol decisions, which use the device's injected clock.
	Time time.Time

	// lent, when not nil, is the frame in a port's receive ring, lent
	// until the port's releaseLent (ringLender); Buf is then untouched.
	lent []byte
}

// Frame returns the received bytes, Buf[:N].
func (p *Packet) Frame() []byte {
	if p.lent != nil {
		return p.lent
	}
	return p.Buf[:p.N]
}

// ringLender is a port that can lend the device its receive ring instead
// of copying frames out: readBatchLent is ReadBatch whose Packets may
// point into the ring (Frame returns the ring's bytes) until releaseLent,
// which hands the ring memory back to the kernel. The caller must not
// keep a lent frame past releaseLent and calls it before the next read.
type ringLender interface {
	readBatchLent(pkts []Packet) (int, error)
	releaseLent()
}

// PortStats are a port's counters since it was opened. Kernel counters are
// folded in when Stats is called.
type PortStats struct {
	RxFrames uint64 // frames returned by ReadBatch
	RxBytes  uint64 // their wire lengths (Len), VLAN tags included
	TxFrames uint64 // frames WriteBatch handed to the link
	TxBytes  uint64
	// RxDropped counts frames that passed the filter but were dropped
	// because the receive queue (the kernel ring, the pipe's queue) was
	// full. On AF_PACKET this is PACKET_STATISTICS tp_drops.
	RxDropped uint64
	// RxFiltered counts frames the filter rejected, when the port can know
	// (the pipe does; the kernel does not report it, so AF_PACKET leaves
	// it 0).
	RxFiltered uint64
	// RxTruncated counts frames returned with Truncated set.
	RxTruncated uint64
}

// Port is one side of the NIC: a link it reads frames from and writes
// frames to. Implementations: the AF_PACKET port on Linux (OpenPacketPort)
// and the in-memory pipe in nic/porttest.
//
// Contracts, checked by porttest.TestPort on every implementation:
//
//   - ReadBatch fills pkts[0:n] with n ≥ 1 frames, in arrival order, and
//     returns n. It blocks until at least one frame is available, the read
//     deadline passes, or the port is closed; it never returns (0, nil)
//     unless len(pkts) == 0. Frames are copied into the callers' buffers: a
//     frame longer than len(Buf) is cut and marked Truncated. A VLAN tag the
//     link carried out of band is re-inserted inline (TPID, TCI) after the
//     source MAC, so the frame reads as it was on the wire. Frames the port
//     itself sent are never returned.
//   - Once the deadline set by SetReadDeadline has passed, a ReadBatch that
//     would block returns an error with errors.Is(err,
//     os.ErrDeadlineExceeded) (a net.Error whose Timeout() is true); frames
//     already queued are still returned. A zero time means no deadline.
//     Changing the deadline affects a ReadBatch already blocked.
//   - WriteBatch sends frames[0:n] in order, each as one Ethernet frame,
//     and returns n. If n < len(frames) the error says why frames[n] was
//     not sent. A frame shorter than 14 bytes or longer than MTU+14 (MTU+18
//     when it carries a VLAN tag) fails with errors.Is(err, ErrFrameSize).
//     The caller may reuse the frames' memory as soon as it returns. A
//     frame to a link whose peer is down is lost silently, as on a wire.
//   - SetFilter attaches a classic-BPF program run on every received frame
//     before it is queued: a return of 0 drops it, k > 0 keeps at most k
//     bytes. The program sees the frame as the Linux kernel presents it to
//     packet sockets: the outermost VLAN tag removed (read it with the
//     SKF_AD_VLAN_TAG extensions on Linux). nil or empty detaches. Frames
//     already queued when SetFilter returns were accepted under the
//     previous filter.
//   - Close releases the port. It is idempotent (later calls return nil)
//     and unblocks a blocked ReadBatch or WriteBatch, which return an error
//     with errors.Is(err, net.ErrClosed); so does every later call.
//   - Errors are *net.OpError values (Op "read", "write", "set filter"),
//     wrapping an *os.SyscallError where a system call failed, so
//     errors.Is(err, os.ErrPermission) works.
//   - All methods are safe for concurrent use. Concurrent ReadBatch calls
//     are serialised (frames are never duplicated or lost between them), as
//     are concurrent WriteBatch calls. On the steady-state path neither
//     allocates.
//   - A port starts no goroutine.
type Port interface {
	ReadBatch(pkts []Packet) (int, error)
	WriteBatch(frames [][]byte) (int, error)
	SetReadDeadline(t time.Time) error
	SetFilter(prog []bpf.RawInstruction) error
	Stats() PortStats
	// Name is the link's name (e.g. "wire0"), for logs and counters.
	Name() string
	Close() error
}

// ErrFrameSize reports a frame WriteBatch cannot send: shorter than an
// Ethernet header or longer than the link's MTU allows.
var ErrFrameSize = errors.New("frame size out of range")

// Frame sizes.
const (
	EthernetHeaderLen = 14
	VLANTagLen        = 4
)

// FrameLimit returns the largest frame WriteBatch accepts on a link with
// the given MTU: MTU+14, or MTU+18 if frame carries an 802.1Q/802.1ad tag.
func FrameLimit(mtu int, frame []byte) int {
	if isVLANTagged(frame) {
		return mtu + EthernetHeaderLen + VLANTagLen
	}
	return mtu + EthernetHeaderLen
}

func isVLANTagged(frame []byte) bool {
	if len(frame) < EthernetHeaderLen {
		return false
	}
	et := uint16(frame[12])<<8 | uint16(frame[13])
	return et == 0x8100 || et == 0x88a8
}

// checkFrameSize returns ErrFrameSize (wrapped with the sizes) for a frame
// outside [14, FrameLimit(mtu, frame)].
func checkFrameSize(mtu int, frame []byte) error {
	if len(frame) < EthernetHeaderLen {
		return &frameSizeError{n: len(frame), min: EthernetHeaderLen}
	}
	if limit := FrameLimit(mtu, frame); len(frame) > limit {
		return &frameSizeError{n: len(frame), max: limit}
	}
	return nil
}

// CheckFrameSize is checkFrameSize for other Port implementations
// (nic/porttest).
func CheckFrameSize(mtu int, frame []byte) error { return checkFrameSize(mtu, frame) }

type frameSizeError struct{ n, min, max int }

func (e *frameSizeError) Error() string {
	if e.max > 0 {
		return fmt.Sprintf("frame of %d bytes exceeds %d: %v", e.n, e.max, ErrFrameSize)
	}
	return fmt.Sprintf("frame of %d bytes is shorter than %d: %v", e.n, e.min, ErrFrameSize)
}

func (e *frameSizeError) Is(target error) bool { return target == ErrFrameSize }

// PortConfig configures OpenPacketPort. A nil *PortConfig means defaults.
type PortConfig struct {
	// BlockSize is the size of one receive-ring block in bytes: a multiple
	// of the page size that holds the largest frame plus 130 bytes of
	// headers (a larger frame is truncated and counted). 0 means
	// DefaultBlockSize. In Immediate mode a block must hold at least one
	// frame slot (see Immediate), or OpenPacketPort fails.
	BlockSize int
	// Blocks is the number of ring blocks, 2–4096; 0 means DefaultBlocks.
	// The kernel retires a partly filled block after 1 ms, so Blocks also
	// bounds how many milliseconds a stalled reader survives without drops
	// at low rates.
	Blocks int
	// Immediate receives through a TPACKET_V2 ring of fixed-size frame
	// slots instead of the TPACKET_V3 ring of blocks, like libpcap's
	// immediate mode: the kernel hands each frame over and wakes the
	// reader as it arrives, where the V3 ring hands over a block only
	// when it is full or 1 ms after its first frame. It removes that
	// 1 ms floor from the latency of a lone frame (a wake packet) at the
	// price of a wake-up per frame and of ring memory: every frame, however
	// short, takes a slot of MTU+18+66 bytes rounded up to 16 (the MTU the
	// link has when the port opens; a larger frame is truncated and
	// counted), so the ring holds BlockSize/slot × Blocks frames (5248 at
	// MTU 1500 with the defaults and NoOffloads; with offloads a slot
	// holds a MaxGSOFrame super-frame and the default BlockSize four
	// slots: 256 frames). The Port contract is the same.
	Immediate bool
	// NoOffloads opens the port without PACKET_VNET_HDR. By default every
	// frame moves with its virtio_net_hdr (OffloadPort), so GSO
	// super-frames and partial checksums of links with the kernel's
	// default offloads cross the port unchanged; the ring then holds a
	// MaxGSOFrame-byte frame (BlockSize at least 68 KB; in Immediate mode
	// each slot is that long, and the default BlockSize holds four). With
	// NoOffloads the port moves only whole frames within the MTU: use it
	// only on links whose offloads are off.
	NoOffloads bool
	// NoPromisc leaves the link out of promiscuous mode. The NIC is a bump
	// in the wire and needs every frame, so the default is promiscuous.
	NoPromisc bool
}

// Ring defaults.
const (
	DefaultBlockSize = 128 << 10
	DefaultBlocks    = 64
)
