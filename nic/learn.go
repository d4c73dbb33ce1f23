package nic

import (
	"net/netip"
	"sync"
	"time"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// Learned is the TCP state of a tracked connection as the device saw it in
// D0, from the segments crossing it both ways. The host cross-checks its
// TCP_REPAIR snapshot against it and takes from it what TCP_REPAIR does not
// expose (TS.Recent, the next hop's MAC).
type Learned struct {
	Conn wp.TCPConn
	// LocalMAC is the host's MAC, RemoteMAC the next hop's, from the
	// host's segments.
	LocalMAC, RemoteMAC [6]byte

	// SndNxt is the host's next sequence number (highest seq+len seen from
	// the host); SndUna the highest ACK seen from the peer. RcvNxt is the
	// peer's next sequence number (highest seq+len seen from the peer);
	// HostAck the highest ACK seen from the host.
	SndNxt, SndUna, RcvNxt, HostAck uint32
	// SndWnd is the peer's last advertised window and RcvWnd the host's,
	// raw (unscaled) as in the header.
	SndWnd, RcvWnd uint16
	// SndWScale is the peer's window-scale shift and RcvWScale the host's,
	// from the SYNs; -1 when the handshake was not seen.
	SndWScale, RcvWScale int8
	// MSS is the peer's MSS from its SYN (0 when not seen).
	MSS uint16

	// HasTS reports that timestamps were seen. HostTSval is the host's
	// last TSval; TSRecent the peer's last TSval (what the host echoes).
	HasTS     bool
	HostTSval uint32
	TSRecent  uint32
	// HostTSAt is the device-clock time HostTSval was seen.
	HostTSAt time.Duration

	// TTL and TOS of the host's segments.
	TTL, TOS uint8

	// SegmentsOut counts the host's segments seen, SegmentsIn the peer's.
	SegmentsOut, SegmentsIn uint64
	// Seen reports that at least one segment each way was seen.
	SeenOut, SeenIn bool
}

// connKey is the map key of a connection (comparable, allocation-free).
type connKey struct {
	local, remote netip.AddrPort
	vlan          uint16
}

func keyOf(c wp.TCPConn) connKey {
	return connKey{local: c.Local, remote: c.Remote, vlan: c.VLAN}
}

// tracked is one tracked connection; mu guards l.
type tracked struct {
	mu                       sync.Mutex
	l                        Learned
	hostAckSeen, peerAckSeen bool
}

// trackTable is the immutable set of tracked connections, swapped whole.
type trackTable struct {
	m map[connKey]*tracked
}

// seqAfter reports a > b in sequence space.
func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }

// frameVLAN returns the VLAN ID of f as connection patterns see it: the
// outermost tag's (0 untagged).
func frameVLAN(f *wp.Frame) uint16 {
	if f.NumVLAN == 0 {
		return 0
	}
	return f.VLAN[0]
}

// learn updates the tracked connection f belongs to, if any. fromHost
// tells the direction; payload, when not negative, is the segment's
// payload length (a GSO frame's, which f.PayloadLen cannot hold). It
// allocates nothing.
func (t *trackTable) learn(f *wp.Frame, payload int, fromHost bool, now time.Duration) bool {
	if t == nil || len(t.m) == 0 || !f.IsTCP() {
		return false
	}
	src := netip.AddrPortFrom(f.SrcIP, f.SrcPort)
	dst := netip.AddrPortFrom(f.DstIP, f.DstPort)
	k := connKey{local: dst, remote: src, vlan: frameVLAN(f)}
	if fromHost {
		k.local, k.remote = src, dst
	}
	tr := t.m[k]
	if tr == nil {
		return false
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	l := &tr.l
	if payload < 0 {
		payload = int(f.PayloadLen)
	}
	end := f.Seq + uint32(payload)
	if f.TCPFlags&wp.TCPFlagSYN != 0 {
		end++
	}
	if f.TCPFlags&wp.TCPFlagFIN != 0 {
		end++
	}
	ack := f.TCPFlags&wp.TCPFlagACK != 0
	if fromHost {
		l.SegmentsOut++
		if !l.SeenOut || seqAfter(end, l.SndNxt) {
			l.SndNxt = end
		}
		if ack && (!tr.hostAckSeen || seqAfter(f.Ack, l.HostAck)) {
			l.HostAck = f.Ack
			tr.hostAckSeen = true
		}
		l.RcvWnd = f.Window
		if f.TCPFlags&wp.TCPFlagSYN != 0 {
			l.RcvWScale = f.WScale
		}
		if f.HasTS {
			l.HasTS = true
			l.HostTSval = f.TSval
			l.HostTSAt = now
		}
		l.TTL, l.TOS = f.TTL, f.TOS
		l.LocalMAC, l.RemoteMAC = f.Src, f.Dst
		l.SeenOut = true
		return true
	}
	l.SegmentsIn++
	if !l.SeenIn || seqAfter(end, l.RcvNxt) {
		l.RcvNxt = end
	}
	if ack && (!tr.peerAckSeen || seqAfter(f.Ack, l.SndUna)) {
		l.SndUna = f.Ack
		tr.peerAckSeen = true
	}
	l.SndWnd = f.Window
	if f.TCPFlags&wp.TCPFlagSYN != 0 {
		l.SndWScale = f.WScale
		l.MSS = f.MSS
	}
	if f.HasTS {
		l.HasTS = true
		l.TSRecent = f.TSval
	}
	l.SeenIn = true
	return true
}
