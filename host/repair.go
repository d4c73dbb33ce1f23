package host

// TCP_REPAIR snapshot and hand-back.
//
// Freeze takes an idle kernel TCP socket away from the kernel so that a NIC
// hardware slot can guard the connection while the host sleeps; Thaw gives it
// back, byte-exact with what the NIC put on and took off the wire meanwhile.
//
//	          Freeze                 Thaw(sent, absorbed)
//	 kernel ─────────> frozen (repair) ─────────────────────> kernel
//	   ^                   │  │                                  (one-shot)
//	   │      Abort        │  │ Thaw fails: still frozen, Abort is the way out
//	   └───────────────────┘<─┘
//
// # Kernel facts this relies on (Linux, net/ipv4/tcp.c, tcp_output.c, tcp_input.c)
//
//   - setsockopt(TCP_REPAIR) needs CAP_NET_ADMIN in the socket's network
//     namespace (do_tcp_setsockopt, sockopt_ns_capable); without it EPERM,
//     so errors.Is(err, os.ErrPermission) holds.
//   - setsockopt(TCP_REPAIR_QUEUE) needs repair mode (EPERM otherwise);
//     getsockopt(TCP_QUEUE_SEQ) then returns, for TCP_SEND_QUEUE,
//     tp->write_seq (equal to SND.NXT once nothing is unsent) and, for
//     TCP_RECV_QUEUE, tp->rcv_nxt; EINVAL for TCP_NO_QUEUE
//     (do_tcp_getsockopt). Setting TCP_QUEUE_SEQ is refused on a connected
//     socket, so sequence numbers can only be moved through the queues.
//     getsockopt(TCP_REPAIR_WINDOW) is the one read that tells repair mode
//     apart: EPERM outside it.
//   - getsockopt(TCP_MAXSEG) in repair mode returns rx_opt.mss_clamp (the MSS
//     the peer announced, bounded by TCP_MAXSEG set by the user), not the
//     effective mss_cache; TCP_INFO's tcpi_snd_mss is the latter.
//   - getsockopt(TCP_REPAIR_WINDOW) needs repair mode and an exact 20-byte
//     struct tcp_repair_window {snd_wl1, snd_wnd, max_window, rcv_wnd,
//     rcv_wup}.
//   - getsockopt(TCP_TIMESTAMP) is the socket's TSval clock now:
//     tcp_clock_ts() + tp->tsoffset, in ms (µs when TCPI_OPT_USEC_TS).
//     TS.Recent (tp->rx_opt.ts_recent) is not readable through any socket
//     option; see TCPState.TSRecent.
//   - Writes in repair mode: tcp_sendmsg_locked returns EINVAL for
//     TCP_NO_QUEUE; for TCP_RECV_QUEUE it calls tcp_send_rcvq, which builds
//     an skb at rcv_nxt and queues it with tcp_queue_rcv, advancing RCV.NXT
//     (no ACK is sent and sk_data_ready is not called); for TCP_SEND_QUEUE
//     the data is queued and tcp_write_xmit, seeing tp->repair, skips the
//     transmission ("goto repair"), calls tcp_event_new_data_sent and so
//     advances SND.NXT, moves the skb to the retransmit queue and arms the
//     retransmit timer. Reads in repair mode (tcp_recvmsg) return EPERM
//     unless MSG_PEEK.
//   - tcp_write_xmit is the only data transmit path with a tp->repair check;
//     tcp_connect has one too. Timers do not check it: the keep-alive timer
//     (tcp_keepalive_timer) keeps probing a socket in repair mode, which is
//     why Freeze turns SO_KEEPALIVE off first (tcp_set_keepalive deletes the
//     timer). An idle socket has no retransmit or zero-window-probe timer
//     armed, and Freeze flushes a pending delayed ACK with TCP_QUICKACK
//     (tcp_cleanup_rbuf) before entering repair mode, so no timer of the
//     socket can send.
//   - Incoming segments are not filtered by repair mode: tcp_v4_rcv /
//     tcp_rcv_established process them as usual, and the replies they
//     trigger go through tcp_send_ack / tcp_send_dupack, which have no
//     repair check. So a frozen socket DOES answer traffic (it ACKs and
//     queues incoming data, and a blocked reader woken by it gets EPERM).
//     The model is safe only because a sleeping host receives nothing: the
//     NIC in D3 forwards no frame to the host. TestIntegrationIncomingWhileFrozen
//     pins down what this kernel does.
//   - setsockopt(TCP_REPAIR, TCP_REPAIR_OFF) clears tp->repair and calls
//     tcp_send_window_probe: one bare ACK with SEQ = SND.UNA-1 after setting
//     snd_wl1 = rcv_nxt-1, so the peer's answer (a duplicate ACK carrying its
//     RCV.NXT and window) both acknowledges the bytes the NIC sent and
//     refreshes SND.WND. TCP_REPAIR_OFF_NO_WP (-1) skips the probe. Thaw
//     uses TCP_REPAIR_OFF: without the probe, bytes applied to the send
//     queue would stay unacknowledged until the retransmit timer resends
//     them (the peer would drop the duplicate and ACK, but the resend is
//     wasted traffic after every wake).
//   - tcp_close on a socket in repair mode calls tcp_disconnect silently: no
//     FIN, no RST. Closing a frozen connection leaves the peer half-open.
//   - setsockopt(SO_RCVLOWAT) calls tcp_set_rcvlowat, which calls
//     tcp_data_ready; Thaw uses that to wake a reader parked in the Go
//     poller after it put absorbed bytes into the receive queue, since
//     tcp_send_rcvq does not signal readers.
//
// # Windows
//
// Thaw does not restore TCP_REPAIR_WINDOW: nothing changes the windows of a
// socket nobody sends to, the window probe makes the peer's next ACK update
// SND.WND (snd_wl1 = rcv_nxt-1), and the receive window's right edge
// (RcvWup + RcvWnd) is unchanged by tcp_send_rcvq. The NIC should therefore
// advertise, in what it sends while guarding, a window whose right edge is
// the snapshot's RcvWup + RcvWnd (window = RcvWup + RcvWnd - RCV.NXT, scaled
// down by RcvWScale), so the peer never sees the window shrink at hand-back.

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
	// tsoffset included): a segment sent now carries this TSval. It ticks
	// at 1 kHz (1 MHz with UsecTimestamps), so a segment sent d later
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
	raw, err := rawConn(conn)
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	if err := idle(raw); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	return nil
}

// Frozen is a connection taken from the kernel by Freeze. The kernel sends
// nothing on it (no data, keep-alive, ACK, retransmission or window probe)
// as long as nothing arrives for it; see the package notes above.
// While frozen the app must not read or write conn: reads fail with EPERM,
// writes with EINVAL. Closing conn while frozen drops the connection
// silently (no FIN, no RST). A Frozen is safe for concurrent use.
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
	raw, err := rawConn(conn)
	if err != nil {
		return nil, TCPState{}, fmt.Errorf("freeze: %w", err)
	}
	st, keepAlive, err := freeze(raw)
	if err != nil {
		return nil, TCPState{}, fmt.Errorf("freeze: %w", err)
	}
	st.Local = unmap(conn.LocalAddr())
	st.Remote = unmap(conn.RemoteAddr())
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
	if err := thaw(f.raw, f.keepAlive, sent, absorbed); err != nil {
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
	if err := abort(f.raw, f.keepAlive); err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	f.held = false
	return nil
}

// Conn returns the connection this Frozen holds.
func (f *Frozen) Conn() *net.TCPConn { return f.conn }

func rawConn(conn *net.TCPConn) (syscall.RawConn, error) {
	if conn == nil {
		return nil, errors.New("nil connection")
	}
	return conn.SyscallConn()
}

func unmap(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
