package host

// TCP_REPAIR snapshot and hand-back of the host's kernel TCP sockets. The
// kernel facts this relies on are listed in the doc of Frozen.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

var (
	// ErrNotIdle says a socket has bytes unsent, unacknowledged or unread;
	// the error that wraps it is a *NotIdleError with the counts.
	ErrNotIdle = errors.New("socket not idle")
	// ErrNotEstablished says the connection is not in the ESTABLISHED state
	// (a FIN came or went, or it is closed), so there is nothing to guard.
	ErrNotEstablished = errors.New("connection not established")
	// ErrThawed says the socket was already handed back (Thaw or Abort), or
	// a Thaw already failed part-way: a second Thaw could apply bytes twice.
	ErrThawed = errors.New("socket already thawed")
)

// Queues is what a socket holds in its queues, in bytes unless named.
type Queues struct {
	Unsent          int // written by the app, not yet sent (SIOCOUTQNSD)
	Unacked         int // sent, not yet acknowledged (SIOCOUTQ - SIOCOUTQNSD)
	UnackedSegments int // segments in flight (tcpi_unacked)
	Unread          int // received, not yet read by the app (SIOCINQ)
}

// Idle reports whether nothing is unsent, unacknowledged or unread.
func (q Queues) Idle() bool {
	return q.Unsent == 0 && q.Unacked == 0 && q.UnackedSegments == 0 && q.Unread == 0
}

// NotIdleError is returned when a socket to be frozen is not idle.
// errors.Is(err, ErrNotIdle) holds for it.
type NotIdleError struct {
	Queues Queues
}

func (e *NotIdleError) Error() string {
	q := e.Queues
	return fmt.Sprintf("%v: %d bytes unsent, %d unacked (%d segments), %d unread",
		ErrNotIdle, q.Unsent, q.Unacked, q.UnackedSegments, q.Unread)
}

// Unwrap returns ErrNotIdle.
func (e *NotIdleError) Unwrap() error { return ErrNotIdle }

// Window is the kernel's struct tcp_repair_window: the send and receive
// window state, in bytes, already scaled.
type Window struct {
	SndWL1    uint32 // segment sequence number used for the last window update
	SndWnd    uint32 // peer's receive window (what we may send beyond SND.UNA)
	MaxWindow uint32 // largest window the peer ever advertised
	RcvWnd    uint32 // our receive window, as last advertised
	RcvWup    uint32 // RCV.NXT when RcvWnd was last advertised; RcvWup+RcvWnd is the right edge
}

// TCPState is the snapshot of a frozen connection: everything an offload
// engine needs to speak for it, and what the kernel takes back.
type TCPState struct {
	Local  netip.AddrPort // IPv4-mapped addresses are unmapped: the wire is IPv4
	Remote netip.AddrPort

	SndNxt uint32 // next sequence number to send (TCP_QUEUE_SEQ, send queue)
	RcvNxt uint32 // next sequence number expected (TCP_QUEUE_SEQ, receive queue)

	// MSS is the MSS the peer announced, bounded by a user TCP_MAXSEG
	// (rx_opt.mss_clamp, TCP_MAXSEG read in repair mode); SndMSS is the
	// current segment size after options (tcpi_snd_mss).
	MSS    uint32
	SndMSS uint32

	// Negotiated options (tcpi_options).
	WindowScaling bool
	SACK          bool
	Timestamps    bool
	// UsecTimestamps says TSval ticks in microseconds (TCPI_OPT_USEC_TS).
	UsecTimestamps bool
	// SndWScale is the shift the peer applies to its advertised windows
	// (tcpi_snd_wscale: Window.SndWnd = field << SndWScale); RcvWScale is
	// the shift this socket applies to the windows it sends
	// (tcpi_rcv_wscale: field = Window.RcvWnd >> RcvWScale).
	SndWScale uint8
	RcvWScale uint8

	Window Window

	// TSVal is the socket's timestamp clock at the snapshot (TCP_TIMESTAMP,
	// tsoffset included): a segment sent now carries about this TSval (the
	// last TSval the socket sent can be ahead of it by a tick: 1 ms seen on
	// Linux 6.18, TestIntegrationFreezeMatchesWire allows 5). It ticks at 1 kHz (1 MHz with UsecTimestamps), so a segment sent d later
	// carries TSVal + d in those units.
	TSVal uint32
	// TSRecent is the peer's last TSval, to be echoed in TSecr. The kernel
	// keeps it (rx_opt.ts_recent) but exposes it through no socket option,
	// so Freeze leaves it zero. Its owner is the NIC: awake (D0) it forwards
	// every segment of the connection and learns the last TSval the peer
	// sent, which is exactly ts_recent for an idle in-order connection
	// (tcp_store_ts_recent); the offload engine fills it from there.
	TSRecent uint32

	// TTL is the IPv4 TTL or the IPv6 hop limit, TOS the IPv4 TOS byte or
	// the IPv6 traffic class, as the socket sends them: IP_TTL /
	// IPV6_UNICAST_HOPS report the kernel's default (sysctl, route) when
	// the socket set none, IP_TOS / IPV6_TCLASS report 0.
	TTL uint8
	TOS uint8

	// Queues at the snapshot; always idle for a TCPState from Freeze.
	Queues Queues
}

// Idle returns nil when conn has nothing unsent, unacknowledged or unread,
// a *NotIdleError (errors.Is ErrNotIdle) with the counts when it has, and
// an error wrapping ErrNotEstablished when it is not established.
func Idle(conn *net.TCPConn) error {
	raw, err := repairRawConn(conn)
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	if err := repairIdle(raw); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	return nil
}

// Frozen is a connection taken from the kernel by Freeze, in TCP_REPAIR
// mode, so that a NIC hardware slot can guard it while the host sleeps;
// Thaw gives it back, byte-exact with what the NIC put on and took off the
// wire meanwhile. A Frozen is safe for concurrent use.
//
//	         Freeze                     Thaw(sent, absorbed)
//	kernel ─────────> frozen (repair) ──────────────────────> kernel
//	  ^                  │      │ Thaw refused by the kernel:
//	  │      Abort       │      v still in repair, Thaw spent
//	  └──────────────────┴──── held ─── Abort ──> kernel
//
// While frozen the kernel sends nothing on its own (no data, keep-alive,
// delayed ACK, retransmission or window probe) as long as nothing arrives
// for the socket; the app must not read (EPERM) or write (EINVAL) conn, and
// closing conn drops the connection silently (no FIN, no RST). A receive
// posted before Freeze stays parked and is woken by Thaw.
//
// # Kernel facts relied on (Linux; net/ipv4/tcp.c, tcp_output.c, tcp_input.c, tcp_timer.c)
//
//   - setsockopt(TCP_REPAIR) needs CAP_NET_ADMIN in the socket's network
//     namespace (do_tcp_setsockopt, tcp_can_repair_sock); without it EPERM,
//     so errors.Is(err, os.ErrPermission) holds. Entering repair mode
//     resets the repair queue to TCP_NO_QUEUE; TCP_REPAIR_OFF works
//     whether or not the socket is in repair mode.
//   - setsockopt(TCP_REPAIR_QUEUE) needs repair mode (EPERM otherwise);
//     getsockopt(TCP_QUEUE_SEQ) then returns, for TCP_SEND_QUEUE,
//     tp->write_seq (equal to SND.NXT once nothing is unsent) and, for
//     TCP_RECV_QUEUE, tp->rcv_nxt; EINVAL for TCP_NO_QUEUE
//     (do_tcp_getsockopt). Setting TCP_QUEUE_SEQ is refused on a connected
//     socket, so sequence numbers can only be moved through the queues.
//   - getsockopt(TCP_REPAIR_WINDOW) needs repair mode (EPERM outside it, the
//     one read that tells the modes apart) and an exact 20-byte struct
//     tcp_repair_window {snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup}.
//   - getsockopt(TCP_MAXSEG) in repair mode returns rx_opt.mss_clamp (the MSS
//     the peer announced, bounded by a user TCP_MAXSEG), not the effective
//     mss_cache, which TCP_INFO gives as tcpi_snd_mss.
//   - getsockopt(TCP_TIMESTAMP) is the socket's TSval clock now:
//     tcp_clock_ts() + tp->tsoffset, in ms (µs with TCPI_OPT_USEC_TS).
//     TS.Recent (tp->rx_opt.ts_recent) is readable through no socket
//     option; see TCPState.TSRecent.
//   - Writes in repair mode (tcp_sendmsg_locked): EINVAL for TCP_NO_QUEUE;
//     for TCP_RECV_QUEUE, tcp_send_rcvq builds an skb at rcv_nxt and queues
//     it with tcp_queue_rcv, advancing RCV.NXT, sending no ACK and waking no
//     reader; for TCP_SEND_QUEUE the data is queued and tcp_write_xmit,
//     seeing tp->repair, skips the transmission ("goto repair") but calls
//     tcp_event_new_data_sent: SND.NXT advances, the skb moves to the
//     retransmit queue and the retransmit timer is armed. Reads in repair
//     mode (tcp_recvmsg) fail with EPERM unless MSG_PEEK.
//   - Only the transmit of queued data (tcp_write_xmit) and tcp_connect
//     check tp->repair. The timers do not: tcp_keepalive_timer goes on
//     probing a socket in repair mode (TestIntegrationKeepAliveIgnoresRepair),
//     so Freeze turns SO_KEEPALIVE off first (tcp_set_keepalive deletes the
//     timer); tcp_delack_timer_handler would still send a pending delayed
//     ACK, so Freeze flushes it with TCP_QUICKACK (__tcp_sock_set_quickack,
//     tcp_cleanup_rbuf) before entering repair mode; an idle socket has no
//     retransmit or zero-window-probe timer armed. So a frozen socket that
//     receives nothing sends nothing (TestIntegrationFrozenSilent).
//   - Input is not filtered by repair mode: tcp_v4_rcv / tcp_rcv_established
//     process a segment for a frozen socket as usual, queueing its data
//     (RCV.NXT advances) and answering through tcp_send_ack /
//     tcp_send_dupack, which do not check tp->repair
//     (TestIntegrationIncomingWhileFrozen: the data is ACKed at once and
//     read after the thaw, nothing lost). The snapshot is then stale. The
//     model is sound only because a sleeping host receives nothing: the NIC
//     in D3 delivers no frame of a guarded connection to the host until the
//     wake, and Thaw runs before the buffered frames are delivered.
//   - setsockopt(TCP_REPAIR, TCP_REPAIR_OFF) clears tp->repair and calls
//     tcp_send_window_probe: snd_wl1 = rcv_nxt-1, then one bare ACK with
//     SEQ = SND.UNA-1 (tcp_xmit_probe_skb). The peer answers it with a
//     duplicate ACK carrying its RCV.NXT and window, which acknowledges the
//     bytes the NIC sent and refreshes SND.WND. TCP_REPAIR_OFF_NO_WP (-1)
//     skips the probe. A Thaw that applies bytes the NIC sent uses
//     TCP_REPAIR_OFF: without the probe those bytes would stay
//     unacknowledged until the retransmit timer resent them (the peer
//     would drop them as duplicates and ACK, but after every wake). A Thaw
//     with nothing sent (a TCP-probe slot: probes carry no stream bytes)
//     uses TCP_REPAIR_OFF_NO_WP and puts nothing on the wire. Abort uses
//     TCP_REPAIR_OFF: its probe is what teaches the NIC a connection it
//     has not seen (armLocked). Freeze backing out of a refused freeze
//     uses TCP_REPAIR_OFF_NO_WP: nothing changed.
//   - tcp_close on a socket in repair mode calls tcp_disconnect silently: no
//     FIN, no RST (the CRIU use: the restored copy carries on).
//   - setsockopt(SO_RCVLOWAT) calls tcp_set_rcvlowat, which calls
//     tcp_data_ready. Thaw sets it to its own value after filling the
//     receive queue, since tcp_send_rcvq wakes no reader and a reader parked
//     in the Go poller (epoll, edge-triggered) would otherwise sleep until
//     the next segment with data (TestIntegrationThawTwoFrozenEnds).
//
// # Windows
//
// Thaw does not write TCP_REPAIR_WINDOW back: nothing changes the windows
// of a socket nobody sends to, the window probe makes the peer's next ACK
// update SND.WND (snd_wl1 = rcv_nxt-1), and tcp_send_rcvq leaves the
// receive window's right edge (RcvWup + RcvWnd) where it was. The NIC
// should therefore advertise, in what it sends while guarding, a window
// whose right edge is the snapshot's RcvWup + RcvWnd (window field =
// (RcvWup + RcvWnd - its RCV.NXT) >> RcvWScale), so that the peer never
// sees the window shrink at the hand-back.
type Frozen struct {
	conn      *net.TCPConn
	raw       syscall.RawConn
	keepAlive bool // SO_KEEPALIVE before Freeze, restored on hand-back

	mu   sync.Mutex
	done bool // Thaw or Abort ran (successfully or not)
	held bool // still in repair mode: only after a failed Thaw
}

// Freeze checks that conn is established and idle, turns SO_KEEPALIVE off,
// flushes a pending delayed ACK, puts the socket into TCP_REPAIR mode and
// reads its state. On error the socket is left as it was (keep-alive
// restored, out of repair mode). All system calls go through
// conn.SyscallConn, so the Go poller keeps owning the descriptor.
func Freeze(conn *net.TCPConn) (*Frozen, TCPState, error) {
	raw, err := repairRawConn(conn)
	if err != nil {
		return nil, TCPState{}, fmt.Errorf("freeze: %w", err)
	}
	st, keepAlive, err := repairFreeze(raw)
	if err != nil {
		return nil, TCPState{}, fmt.Errorf("freeze: %w", err)
	}
	st.Local = repairUnmap(conn.LocalAddr())
	st.Remote = repairUnmap(conn.RemoteAddr())
	return &Frozen{conn: conn, raw: raw, keepAlive: keepAlive, held: true}, st, nil
}

// Thaw hands the connection back to the kernel, byte-exact with the wire:
// absorbed (bytes the NIC took from the peer and acknowledged) is put into
// the receive queue, advancing RCV.NXT, for the app to read; sent (bytes
// the NIC sent to the peer and the peer acknowledged or will) goes through
// the send queue without being transmitted, advancing SND.NXT. Then repair
// mode is left with a window probe and SO_KEEPALIVE is restored; a reader
// blocked on conn is woken when absorbed is not empty.
//
// Thaw is one-shot: a second call returns ErrThawed. If the kernel refuses
// a step, Thaw returns an error wrapping an *os.SyscallError naming it; the
// socket then stays in repair mode with the steps before it applied, and
// only Abort (then, in general, closing the connection) remains.
func (f *Frozen) Thaw(sent, absorbed []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return fmt.Errorf("thaw: %w", ErrThawed)
	}
	f.done = true
	if err := repairThaw(f.raw, f.keepAlive, sent, absorbed); err != nil {
		return fmt.Errorf("thaw: %w", err)
	}
	f.held = false
	return nil
}

// Abort leaves repair mode without applying anything and restores
// SO_KEEPALIVE: the error path, and the way out after a failed Thaw. It is
// a no-op returning nil after a successful Thaw or a previous Abort.
//
// Hazard: Abort is only safe when the NIC put nothing on the wire and took
// nothing off it for this connection. Otherwise the kernel's sequence state
// is behind the wire: the peer already holds the bytes the NIC sent, so it
// discards as duplicates the first len(sent) bytes of whatever the app
// writes next (silent corruption), and the peer never resends the bytes the
// NIC absorbed, so everything it sends after them waits forever in the
// out-of-order queue (a stalled stream). After such an Abort the connection
// must be closed.
func (f *Frozen) Abort() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done && !f.held {
		return nil
	}
	f.done = true
	if err := repairAbort(f.raw, f.keepAlive); err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	f.held = false
	return nil
}

// Conn returns the connection this Frozen holds.
func (f *Frozen) Conn() *net.TCPConn { return f.conn }

func repairRawConn(conn *net.TCPConn) (syscall.RawConn, error) {
	if conn == nil {
		return nil, errors.New("nil connection")
	}
	return conn.SyscallConn()
}

func repairUnmap(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
