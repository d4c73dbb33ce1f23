//go:build linux

package host

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tcpi_options bits (include/uapi/linux/tcp.h).
const (
	repairOptTimestamps = 1
	repairOptSACK       = 2
	repairOptWScale     = 4
	repairOptUsecTS     = 64
)

// Repair queues for TCP_REPAIR_QUEUE (enum in include/uapi/linux/tcp.h).
const (
	repairNoQueue   = 0
	repairRecvQueue = 1
	repairSendQueue = 2
)

// repairTCPEstablished is TCP_ESTABLISHED, the tcpi_state of an open connection.
const repairTCPEstablished = 1

// sizeofRepairWindow is sizeof(struct tcp_repair_window); the kernel
// refuses any other length.
const sizeofRepairWindow = 20

// repairWScaleOffset is the byte of struct tcp_info holding the bitfields
// tcpi_snd_wscale:4 and tcpi_rcv_wscale:4; unix.TCPInfo leaves it as padding.
const repairWScaleOffset = 6

var repairLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// repairControl runs fn on the socket's descriptor while the poller holds it.
func repairControl(raw syscall.RawConn, fn func(fd int) error) error {
	var ferr error
	if err := raw.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func repairSysErr(step string, err error) error {
	if err == nil {
		return nil
	}
	return os.NewSyscallError(step, err)
}

func repairGetsockopt(fd, level, opt int, p unsafe.Pointer, size uint32) (uint32, error) {
	n := size
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(p), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return n, e
	}
	return n, nil
}

type repairTCPInfo struct {
	info   unix.TCPInfo
	wscale uint8
}

func repairReadTCPInfo(fd int) (repairTCPInfo, error) {
	var ti repairTCPInfo
	size := uint32(unsafe.Sizeof(ti.info))
	if _, err := repairGetsockopt(fd, unix.IPPROTO_TCP, unix.TCP_INFO, unsafe.Pointer(&ti.info), size); err != nil {
		return ti, repairSysErr("getsockopt TCP_INFO", err)
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&ti.info)), size)
	ti.wscale = b[repairWScaleOffset]
	return ti, nil
}

// sndRcvWScale splits the wscale byte: the first bitfield declared
// (tcpi_snd_wscale) takes the low bits on little-endian ABIs.
func (ti repairTCPInfo) sndRcvWScale() (snd, rcv uint8) {
	if repairLittleEndian {
		return ti.wscale & 0xf, ti.wscale >> 4
	}
	return ti.wscale >> 4, ti.wscale & 0xf
}

func repairReadQueues(fd int, ti repairTCPInfo) (Queues, error) {
	inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return Queues{}, repairSysErr("ioctl SIOCINQ", err)
	}
	outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return Queues{}, repairSysErr("ioctl SIOCOUTQ", err)
	}
	nsd, err := unix.IoctlGetInt(fd, unix.SIOCOUTQNSD)
	if err != nil {
		return Queues{}, repairSysErr("ioctl SIOCOUTQNSD", err)
	}
	return Queues{
		Unsent:          nsd,
		Unacked:         outq - nsd,
		UnackedSegments: int(ti.info.Unacked),
		Unread:          inq,
	}, nil
}

// repairCheckIdle returns ErrNotEstablished or a *NotIdleError, or the queues.
func repairCheckIdle(fd int) (Queues, error) {
	ti, err := repairReadTCPInfo(fd)
	if err != nil {
		return Queues{}, err
	}
	if ti.info.State != repairTCPEstablished {
		return Queues{}, fmt.Errorf("%w: tcp state %d", ErrNotEstablished, ti.info.State)
	}
	q, err := repairReadQueues(fd, ti)
	if err != nil {
		return q, err
	}
	if !q.Idle() {
		return q, &NotIdleError{Queues: q}
	}
	return q, nil
}

func repairIdle(raw syscall.RawConn) error {
	return repairControl(raw, func(fd int) error {
		_, err := repairCheckIdle(fd)
		return err
	})
}

func repairFreeze(raw syscall.RawConn) (TCPState, bool, error) {
	var (
		st        TCPState
		keepAlive bool
	)
	err := repairControl(raw, func(fd int) error {
		if _, err := repairCheckIdle(fd); err != nil {
			return err
		}
		ka, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		if err != nil {
			return repairSysErr("getsockopt SO_KEEPALIVE", err)
		}
		keepAlive = ka != 0
		// Send a pending delayed ACK now: once in repair mode the delayed
		// ACK timer would still fire (it does not check tp->repair).
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1); err != nil {
			return repairSysErr("setsockopt TCP_QUICKACK", err)
		}
		if keepAlive {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0); err != nil {
				return repairSysErr("setsockopt SO_KEEPALIVE", err)
			}
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
			repairRestoreKeepAlive(fd, keepAlive)
			return repairSysErr("setsockopt TCP_REPAIR", err)
		}
		st, err = repairReadState(fd)
		if err == nil {
			// Something may have arrived (data, a FIN) or been written
			// between the check and TCP_REPAIR: then give the socket
			// back untouched.
			_, err = repairCheckIdle(fd)
		}
		if err != nil {
			// Nothing changed while in repair mode: no window probe.
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP)
			repairRestoreKeepAlive(fd, keepAlive)
			return err
		}
		return nil
	})
	return st, keepAlive, err
}

func repairRestoreKeepAlive(fd int, on bool) error {
	if !on {
		return nil
	}
	return repairSysErr("setsockopt SO_KEEPALIVE", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1))
}

// repairQueueSeq selects a repair queue and reads its sequence number.
func repairQueueSeq(fd, queue int) (uint32, error) {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, queue); err != nil {
		return 0, repairSysErr("setsockopt TCP_REPAIR_QUEUE", err)
	}
	seq, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
	if err != nil {
		return 0, repairSysErr("getsockopt TCP_QUEUE_SEQ", err)
	}
	return uint32(seq), nil
}

// repairReadState reads the snapshot of a socket in repair mode.
func repairReadState(fd int) (TCPState, error) {
	var st TCPState
	ti, err := repairReadTCPInfo(fd)
	if err != nil {
		return st, err
	}
	if st.Queues, err = repairReadQueues(fd, ti); err != nil {
		return st, err
	}
	if st.SndNxt, err = repairQueueSeq(fd, repairSendQueue); err != nil {
		return st, err
	}
	if st.RcvNxt, err = repairQueueSeq(fd, repairRecvQueue); err != nil {
		return st, err
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, repairNoQueue); err != nil {
		return st, repairSysErr("setsockopt TCP_REPAIR_QUEUE", err)
	}
	mss, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG)
	if err != nil {
		return st, repairSysErr("getsockopt TCP_MAXSEG", err)
	}
	st.MSS = uint32(mss)
	st.SndMSS = ti.info.Snd_mss

	opts := ti.info.Options
	st.Timestamps = opts&repairOptTimestamps != 0
	st.SACK = opts&repairOptSACK != 0
	st.WindowScaling = opts&repairOptWScale != 0
	st.UsecTimestamps = opts&repairOptUsecTS != 0
	if st.WindowScaling {
		st.SndWScale, st.RcvWScale = ti.sndRcvWScale()
	}

	var w [sizeofRepairWindow / 4]uint32
	if _, err := repairGetsockopt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, unsafe.Pointer(&w[0]), sizeofRepairWindow); err != nil {
		return st, repairSysErr("getsockopt TCP_REPAIR_WINDOW", err)
	}
	st.Window = Window{SndWL1: w[0], SndWnd: w[1], MaxWindow: w[2], RcvWnd: w[3], RcvWup: w[4]}

	ts, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
	if err != nil {
		return st, repairSysErr("getsockopt TCP_TIMESTAMP", err)
	}
	st.TSVal = uint32(ts)

	if st.TTL, st.TOS, err = repairReadTTLTOS(fd); err != nil {
		return st, err
	}
	return st, nil
}

// repairReadTTLTOS reads what the socket puts in the IP header. An AF_INET6 socket
// talking to an IPv4-mapped peer sends IPv4, whose TTL and TOS live at
// SOL_IP even there (ipv6_getsockopt passes SOL_IP to ip_getsockopt).
func repairReadTTLTOS(fd int) (ttl, tos uint8, err error) {
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return 0, 0, repairSysErr("getpeername", err)
	}
	v4 := true
	if sa6, ok := sa.(*unix.SockaddrInet6); ok {
		a := sa6.Addr
		v4 = [12]byte(a[:12]) == [12]byte{10: 0xff, 11: 0xff}
	}
	ttlLevel, ttlOpt, tosLevel, tosOpt := unix.IPPROTO_IP, unix.IP_TTL, unix.IPPROTO_IP, unix.IP_TOS
	ttlName, tosName := "getsockopt IP_TTL", "getsockopt IP_TOS"
	if !v4 {
		ttlLevel, ttlOpt, tosLevel, tosOpt = unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, unix.IPPROTO_IPV6, unix.IPV6_TCLASS
		ttlName, tosName = "getsockopt IPV6_UNICAST_HOPS", "getsockopt IPV6_TCLASS"
	}
	t, err := unix.GetsockoptInt(fd, ttlLevel, ttlOpt)
	if err != nil {
		return 0, 0, repairSysErr(ttlName, err)
	}
	c, err := unix.GetsockoptInt(fd, tosLevel, tosOpt)
	if err != nil {
		return 0, 0, repairSysErr(tosName, err)
	}
	return uint8(t), uint8(c), nil
}

// repairWriteAll writes p to a socket in repair mode; the descriptor is
// non-blocking, so a full buffer is an error (EAGAIN), not a wait.
func repairWriteAll(fd int, p []byte, step string) error {
	for len(p) > 0 {
		n, err := unix.SendmsgN(fd, p, nil, nil, unix.MSG_NOSIGNAL)
		if err != nil {
			return repairSysErr(step, err)
		}
		if n == 0 {
			return repairSysErr(step, unix.EIO)
		}
		p = p[n:]
	}
	return nil
}

// repairApplyQueue writes p through one repair queue and checks that the queue's
// sequence number moved by exactly len(p).
func repairApplyQueue(fd, queue int, p []byte, what string) error {
	before, err := repairQueueSeq(fd, queue)
	if err != nil {
		return err
	}
	if err := repairWriteAll(fd, p, "write "+what); err != nil {
		return err
	}
	after, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
	if err != nil {
		return repairSysErr("getsockopt TCP_QUEUE_SEQ", err)
	}
	if got, want := uint32(after)-before, uint32(len(p)); got != want {
		return fmt.Errorf("write %s: sequence moved by %d, want %d", what, got, want)
	}
	return nil
}

func repairThaw(raw syscall.RawConn, keepAlive bool, sent, absorbed []byte) error {
	return repairControl(raw, func(fd int) error {
		if len(absorbed) > 0 {
			if err := repairApplyQueue(fd, repairRecvQueue, absorbed, "absorbed to receive queue"); err != nil {
				return err
			}
		}
		if len(sent) > 0 {
			if err := repairApplyQueue(fd, repairSendQueue, sent, "sent to send queue"); err != nil {
				return err
			}
			// TCP_QUEUE_SEQ is write_seq; SND.NXT moved only if
			// tcp_write_xmit took the repair path for every byte.
			nsd, err := unix.IoctlGetInt(fd, unix.SIOCOUTQNSD)
			if err != nil {
				return repairSysErr("ioctl SIOCOUTQNSD", err)
			}
			if nsd != 0 {
				return fmt.Errorf("write sent to send queue: %d bytes left unsent", nsd)
			}
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, repairNoQueue); err != nil {
			return repairSysErr("setsockopt TCP_REPAIR_QUEUE", err)
		}
		// The window probe of TCP_REPAIR_OFF is what gets the bytes the
		// NIC sent acknowledged at once (see repair.go); with none, the
		// thaw puts nothing on the wire.
		off := unix.TCP_REPAIR_OFF_NO_WP
		if len(sent) > 0 {
			off = unix.TCP_REPAIR_OFF
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, off); err != nil {
			return repairSysErr("setsockopt TCP_REPAIR", err)
		}
		if err := repairRestoreKeepAlive(fd, keepAlive); err != nil {
			return err
		}
		if len(absorbed) > 0 {
			// tcp_send_rcvq queued the bytes without telling readers;
			// SO_RCVLOWAT runs tcp_data_ready, which wakes a reader
			// parked in the poller.
			lowat, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT)
			if err != nil {
				return repairSysErr("getsockopt SO_RCVLOWAT", err)
			}
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, lowat); err != nil {
				return repairSysErr("setsockopt SO_RCVLOWAT", err)
			}
		}
		return nil
	})
}

func repairAbort(raw syscall.RawConn, keepAlive bool) error {
	return repairControl(raw, func(fd int) error {
		// Leaving repair mode works whether or not the socket is still in
		// it (a Thaw may have failed after TCP_REPAIR_OFF); entering it
		// again resets the repair queue, so that needs no reset here.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); err != nil {
			return repairSysErr("setsockopt TCP_REPAIR", err)
		}
		return repairRestoreKeepAlive(fd, keepAlive)
	})
}
