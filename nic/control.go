package nic

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/profile"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// The control API: HTTP/1.1 + JSON on a Unix socket, versioned under /v1.
// docs/control-api.md describes every endpoint; the summary:
//
//	GET    /v1/openapi.json         anyone     the OpenAPI 3.1 description of this API (openapi.json)
//	GET    /v1/capabilities         anyone     device and API limits
//	GET    /v1/whoami               anyone     the caller's credentials and rights
//	GET    /metrics                 anyone     Prometheus text
//	GET    /v1/power                control    {"state":"D0"}
//	PUT    /v1/power                control    {"state":"D3"} sleep, "waking" wake, "D0" (wake+)resume
//	GET    /v1/slots                control    armed slots with status and counters
//	POST   /v1/slots                control    arm: pattern, spec, snapshot; owner = caller's uid
//	GET    /v1/slots/{id}           control    one slot
//	DELETE /v1/slots/{id}           owner      disarm; the final report with base64 books
//	GET    /v1/wakes                control    the last wakes held (?since=seq)
//	GET    /v1/wakes/stream         control    NDJSON (or SSE) stream of wakes (?since=seq)
//	GET    /v1/wakes/{seq}/packet   owner      the saved wake packet as a pcap
//	GET    /v1/patterns             control    extra wake patterns added through the API
//	POST   /v1/patterns             control    add one (wakepattern JSON)
//	DELETE /v1/patterns/{id}        owner      remove it
//	GET    /v1/track                control    ?local=&remote=[&vlan=]: what the device learned
//	POST   /v1/track                control    {"local":…,"remote":…} start learning
//	DELETE /v1/track                control    ?local=&remote=[&vlan=]: stop learning
//	GET    /v1/coalescing           control    the coalescing filters and their counters
//	POST   /v1/coalescing           control    {"local":…,"remote":…} hold its D3 frames without a wake
//	DELETE /v1/coalescing           control    ?local=&remote=[&vlan=]: remove the filter
//	PUT    /v1/lease                control    {"owner":…,"period":"5s"} take or renew a lease (lease.go)
//	GET    /v1/leases               control    the leases with their slots
//	GET    /v1/leases/{owner}       control    one lease
//	DELETE /v1/leases/{owner}       owner      release it: its slots are disarmed, the NIC returns to D0
//
// "control" is root or a member of ControlConfig.Group (checked against
// the group database again on every request, see groupMember); "owner" is
// root or the uid that armed the slot (added the pattern, took the lease).

// ControlConfig configures a ControlServer. Zero fields take defaults.
type ControlConfig struct {
	// Group is the gid whose members may control the device besides root
	// (peer's primary gid or one of its supplementary groups). 0 means no
	// group: only root controls (gid 0 is root's own group). 0–2^32-2.
	Group int
	// MaxBody is the largest request body in bytes (1–1 MiB, default
	// 64 KiB); a larger one is refused with 413.
	MaxBody int64
	// MaxStreams bounds the wake streams open at once (1–1024, default 16).
	MaxStreams int
	// Hub supplies the wake events. Nil: the server reads Device.Wakes()
	// itself (it must then be that channel's only reader) into a hub of
	// WakeHistory events. A daemon that also reads Wakes() elsewhere
	// creates the hub and sets Config.OnWake = hub.Publish.
	Hub *WakeHub
	// WakeHistory is the number of wake events (with packets) held when
	// the server makes its own hub (1–4096, default 64).
	WakeHistory int
	// Logger receives request errors and denials (default: discard).
	Logger *slog.Logger
	// ReadTimeout bounds the reading of a request: its headers, then its
	// body from the moment the handler starts (1 ms–5 min, default 10 s).
	// A body not read in time is refused with 408 and the connection is
	// closed (standbynic_control_read_timeouts_total). Wake streams are exempt
	// once their request is read.
	ReadTimeout time.Duration
	// TrustPeerGroups judges the control group on the kernel's
	// credentials alone (SO_PEERCRED, SO_PEERGROUPS, fixed when the peer
	// connected), for peers given the group by a service manager
	// (systemd SupplementaryGroups=) that the group database does not
	// list. By default a right held through the group also needs the
	// group database to list the uid in the group at each request, so a
	// user removed from the group loses control on open connections too.
	TrustPeerGroups bool
	// MaxConns bounds the connections open at once (1–4096, default 64);
	// one beyond it is answered 503 and closed at once
	// (standbynic_control_conns_refused_total).
	MaxConns int

	// peerCred reads a connection's peer credentials (default: the
	// platform's SO_PEERCRED). Tests inject credentials here, through the
	// same listener path.
	peerCred func(net.Conn) (*Cred, error)
	// groupMember looks up in the group database whether uid is a member
	// of gid now (known false: the database does not know the user or the
	// group). Default: os/user, cached for a second.
	groupMember func(uid, gid uint32) (member, known bool)
}

// Control API limits and defaults.
const (
	DefaultMaxBody     = 64 << 10
	MaxMaxBody         = 1 << 20
	DefaultMaxStreams  = 16
	MaxMaxStreams      = 1024
	DefaultWakeHistory = 64
	MaxWakeHistory     = 4096
	// MaxLabel is the longest slot label, in bytes (a ControlChannelTrigger
	// channel ID is at most 64 characters).
	MaxLabel = 64
	// DefaultReadTimeout bounds reading a request's headers and body.
	DefaultReadTimeout = 10 * time.Second
	MaxReadTimeout     = 5 * time.Minute
	// DefaultMaxConns bounds the control connections open at once.
	DefaultMaxConns = 64
	MaxMaxConns     = 4096
)

// Cred is the peer credentials of a control connection (SO_PEERCRED).
type Cred struct {
	PID      int32
	UID, GID uint32
	// Groups are the supplementary groups (SO_PEERGROUPS); nil when the
	// kernel does not report them.
	Groups []uint32
}

// access is the right an endpoint demands. The zero value denies.
type access uint8

const (
	accessInvalid access = iota
	// accessAny: anyone who can connect to the socket.
	accessAny
	// accessControl: root or a member of the control group.
	accessControl
	// accessOwner: root or the owner of the resource.
	accessOwner
)

// errForbidden is wrapped by authorize's refusals.
var errForbidden = errors.New("forbidden")

// authorize decides whether c may do what a demands. group is the control
// group (0: none); owner is the uid owning the resource, -1 when it has no
// known owner. A nil c (credentials unknown) has only accessAny.
func authorize(c *Cred, a access, group uint32, owner int64) error {
	switch {
	case a == accessAny:
		return nil
	case a != accessControl && a != accessOwner:
		return fmt.Errorf("%w: no access rule", errForbidden)
	case c == nil:
		return fmt.Errorf("%w: peer credentials unknown", errForbidden)
	case c.UID == 0:
		return nil
	}
	if a == accessOwner {
		if owner >= 0 && int64(c.UID) == owner {
			return nil
		}
		if owner < 0 {
			return fmt.Errorf("%w: uid %d is not root, and only root may act on a resource without an owner", errForbidden, c.UID)
		}
		return fmt.Errorf("%w: uid %d is neither root nor the owner (uid %d)", errForbidden, c.UID, owner)
	}
	if group != 0 && (c.GID == group || slices.Contains(c.Groups, group)) {
		return nil
	}
	if group == 0 {
		return fmt.Errorf("%w: uid %d is not root (no control group configured)", errForbidden, c.UID)
	}
	return fmt.Errorf("%w: uid %d is neither root nor a member of group %d", errForbidden, c.UID, group)
}

// WakeRecord is a wake event as the control API holds it.
type WakeRecord struct {
	// Seq numbers the device's wakes from 1, without gaps.
	Seq   uint64
	Event WakeEvent
	// Owner is the uid owning the slot or pattern that woke, -1 when none
	// is known; only it and root may read the packet.
	Owner int64
	// Saved is the number of bytes of the wake packet held (the client's
	// Event.Packet is nil: fetch it with WakePacket).
	Saved int
}

// WakeHub holds the last wake events of a device and fans them out to the
// control API's streams. Its Publish fits Config.OnWake. It starts no
// goroutine. Its methods are safe for concurrent use.
type WakeHub struct {
	mu        sync.Mutex
	ring      []WakeRecord
	next      uint64 // seq of the next event
	subs      map[chan struct{}]struct{}
	slotOwner map[SlotID]int64
	patOwner  map[uint32]int64
}

// NewWakeHub returns a hub holding the last history events (1–4096; 0
// means DefaultWakeHistory; out of range is clamped).
func NewWakeHub(history int) *WakeHub {
	if history <= 0 {
		history = DefaultWakeHistory
	}
	history = min(history, MaxWakeHistory)
	return &WakeHub{
		ring:      make([]WakeRecord, history),
		next:      1,
		subs:      map[chan struct{}]struct{}{},
		slotOwner: map[SlotID]int64{},
		patOwner:  map[uint32]int64{},
	}
}

// Publish records ev and wakes the streams. It never blocks for long and
// never calls the device, as Config.OnWake requires; ev.Packet is kept
// (the device gives every event its own copy).
func (h *WakeHub) Publish(ev WakeEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rec := WakeRecord{Seq: h.next, Event: ev, Owner: h.ownerLocked(ev), Saved: len(ev.Packet)}
	h.ring[h.next%uint64(len(h.ring))] = rec
	h.next++
	for c := range h.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (h *WakeHub) ownerLocked(ev WakeEvent) int64 {
	var o int64
	var ok bool
	switch {
	case ev.Slot != 0:
		o, ok = h.slotOwner[ev.Slot]
	case ev.Reason == WakePattern:
		o, ok = h.patOwner[ev.Pattern]
	}
	if !ok {
		return -1
	}
	return o
}

// nextSeq returns the seq the next event will get.
func (h *WakeHub) nextSeq() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.next
}

// setSlotOwner records uid as the owner of slot id; events of that slot
// recorded from seq since on without an owner get it too (a wake raised
// between Arm and this call).
func (h *WakeHub) setSlotOwner(id SlotID, uid int64, since uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.slotOwner[id] = uid
	for i := range h.ring {
		r := &h.ring[i]
		if r.Seq >= since && r.Event.Slot == id && r.Owner < 0 {
			r.Owner = uid
		}
	}
}

func (h *WakeHub) clearSlotOwner(id SlotID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.slotOwner, id)
}

func (h *WakeHub) setPatternOwner(id uint32, uid int64, since uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.patOwner[id] = uid
	for i := range h.ring {
		r := &h.ring[i]
		if r.Seq >= since && r.Event.Reason == WakePattern && r.Event.Pattern == id && r.Owner < 0 {
			r.Owner = uid
		}
	}
}

func (h *WakeHub) clearPatternOwner(id uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.patOwner, id)
}

// since returns the held events with Seq > seq, oldest first.
func (h *WakeHub) since(seq uint64) []WakeRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := uint64(len(h.ring))
	first := seq + 1
	if h.next > n && first < h.next-n {
		first = h.next - n
	}
	if first < 1 {
		first = 1
	}
	var out []WakeRecord
	for s := first; s < h.next; s++ {
		out = append(out, h.ring[s%n])
	}
	return out
}

// get returns the held event seq.
func (h *WakeHub) get(seq uint64) (WakeRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := uint64(len(h.ring))
	if seq == 0 || seq >= h.next || (h.next > n && seq < h.next-n) {
		return WakeRecord{}, false
	}
	return h.ring[seq%n], true
}

func (h *WakeHub) history() int { return len(h.ring) }

func (h *WakeHub) subscribe() chan struct{} {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c
}

func (h *WakeHub) unsubscribe(c chan struct{}) {
	h.mu.Lock()
	delete(h.subs, c)
	h.mu.Unlock()
}

// slotRecord is what the server remembers of a slot armed through it.
type slotRecord struct {
	owner int64
	lease string // the lease it is held under ("": none)
	label string
	conn  wp.TCPConn
	spec  offload.Spec
	armed time.Time
}

// patternRecord is an extra wake pattern added through the server.
type patternRecord struct {
	owner   int64
	pattern wp.Pattern
}

// ControlServer serves the control API of a Device. It is an
// http.Handler; Serve and ListenUnix run it on listeners whose
// connections carry peer credentials. Close stops everything it started.
//
// Locks, in order: mu → the hub's. Device calls are made without mu
// except where a slot's record must change with it (arm, disarm), which
// is safe because the device never calls the server.
type ControlServer struct {
	d        *Device
	cfg      ControlConfig
	group    uint32
	err      error // configuration error, returned by Serve
	hub      *WakeHub
	log      *slog.Logger
	mux      *http.ServeMux
	srv      *http.Server
	peerCred func(net.Conn) (*Cred, error)

	groupMember func(uid, gid uint32) (member, known bool)
	instance    string // random per server: a client tells a restarted NIC by it

	mu       sync.Mutex
	slots    map[SlotID]*slotRecord
	patterns map[uint32]*patternRecord
	leases   map[string]*lease
	closed   bool
	streams  int

	conns     atomic.Int64  // connections open
	leaseKick chan struct{} // wakes the lease loop (buffered 1)
	done      chan struct{}
	wg        sync.WaitGroup // handlers, serve loops, the wake pump, the lease loop
	closeOnce sync.Once

	routeTable []*route     // the endpoints, in the order of routes()
	metrics    http.Handler // GET /metrics (metrics.go); nil without a device
	metricsErr error

	cnt struct {
		requests, denied, rejected, failed, streams atomic.Uint64
		connsAccepted, connsRefused, readTimeouts   atomic.Uint64
		leasesGranted, leasesRenewed, leasesTaken   atomic.Uint64
		leasesExpired, leasesReleased               atomic.Uint64
		leaseSlotsDisarmed, leaseResumes            atomic.Uint64
	}
}

var _ http.Handler = (*ControlServer)(nil)

// NewControlServer returns the control API of d. A nil cfg means
// defaults. A configuration error is returned by Serve and ListenUnix.
func NewControlServer(d *Device, cfg *ControlConfig) *ControlServer {
	s := &ControlServer{
		d:         d,
		slots:     map[SlotID]*slotRecord{},
		patterns:  map[uint32]*patternRecord{},
		leases:    map[string]*lease{},
		leaseKick: make(chan struct{}, 1),
		done:      make(chan struct{}),
		instance:  newInstanceID(),
	}
	if cfg != nil {
		s.cfg = *cfg
	}
	s.err = s.normalize()
	s.log = s.cfg.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.peerCred = s.cfg.peerCred
	if s.peerCred == nil {
		s.peerCred = peerCred
	}
	s.groupMember = s.cfg.groupMember
	if s.groupMember == nil {
		s.groupMember = newGroupCache(time.Second).member
	}
	s.hub = s.cfg.Hub
	if s.hub == nil {
		s.hub = NewWakeHub(s.cfg.WakeHistory)
		if d != nil {
			s.wg.Add(1)
			go s.pump()
		}
	}
	if d != nil {
		s.wg.Add(1)
		go s.leaseLoop()
		s.metrics, s.metricsErr = s.newMetricsHandler()
	}
	s.routes()
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cc, ok := c.(*credConn); ok && cc.cred != nil {
				return context.WithValue(ctx, credKey{}, cc.cred)
			}
			return ctx
		},
	}
	return s
}

func (s *ControlServer) normalize() error {
	c := &s.cfg
	if s.d == nil {
		return errors.New("control server: no device")
	}
	if c.Group < 0 || int64(c.Group) > 1<<32-2 {
		return fmt.Errorf("control server: group = %d: must be 0–%d", c.Group, uint32(1<<32-2))
	}
	s.group = uint32(c.Group)
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxBody < 1 || c.MaxBody > MaxMaxBody {
		return fmt.Errorf("control server: max body = %d: must be 1–%d bytes", c.MaxBody, MaxMaxBody)
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.MaxStreams < 1 || c.MaxStreams > MaxMaxStreams {
		return fmt.Errorf("control server: max streams = %d: must be 1–%d", c.MaxStreams, MaxMaxStreams)
	}
	if c.WakeHistory < 0 || c.WakeHistory > MaxWakeHistory {
		return fmt.Errorf("control server: wake history = %d: must be 1–%d", c.WakeHistory, MaxWakeHistory)
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.ReadTimeout < time.Millisecond || c.ReadTimeout > MaxReadTimeout {
		return fmt.Errorf("control server: read timeout = %v: must be 1ms–%v", c.ReadTimeout, MaxReadTimeout)
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConns < 1 || c.MaxConns > MaxMaxConns {
		return fmt.Errorf("control server: max conns = %d: must be 1–%d", c.MaxConns, MaxMaxConns)
	}
	return nil
}

// pump moves the device's wake events into the server's own hub.
func (s *ControlServer) pump() {
	defer s.wg.Done()
	for {
		select {
		case ev := <-s.d.Wakes():
			s.hub.Publish(ev)
		case <-s.done:
			return
		}
	}
}

// Serve serves the control API on ln until Close; it closes ln. Each
// connection's peer credentials are read when it is accepted. It returns
// nil after Close.
func (s *ControlServer) Serve(ln net.Listener) error {
	if s.err != nil {
		ln.Close()
		return s.err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return fmt.Errorf("control server: %w", net.ErrClosed)
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	return s.serve(ln)
}

func (s *ControlServer) serve(ln net.Listener) error {
	err := s.srv.Serve(&credListener{Listener: ln, cred: s.peerCred, s: s})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("control server: %w", err)
}

// ListenUnix listens on the Unix socket path, gives it mode and group gid
// (-1 keeps the process's group), and serves on it in a goroutine owned by
// the server until Close, which removes the socket. A stale socket file
// (nothing listening) is replaced; a live one or another file is an error.
func (s *ControlServer) ListenUnix(path string, mode os.FileMode, gid int) error {
	if s.err != nil {
		return s.err
	}
	if err := removeStaleSocket(path); err != nil {
		return fmt.Errorf("listen %s: %w", path, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("listen %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, mode.Perm()); err != nil {
		ln.Close()
		return fmt.Errorf("listen %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return fmt.Errorf("listen %s: %w", path, err)
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return fmt.Errorf("listen %s: control server: %w", path, net.ErrClosed)
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		if err := s.serve(ln); err != nil {
			s.log.Error("control socket failed", "path", path, "err", err)
		}
	}()
	return nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by a running server", path)
	}
	return os.Remove(path)
}

// Close stops serving: it closes the listeners and connections, ends the
// wake streams, and waits for every goroutine the server started. It does
// not close the device. It is idempotent.
func (s *ControlServer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.done)
		err = s.srv.Close()
		s.wg.Wait()
		if err != nil {
			err = fmt.Errorf("close control server: %w", err)
		}
	})
	return err
}

// credListener reads each accepted connection's peer credentials, and
// turns away the connections beyond ControlConfig.MaxConns.
type credListener struct {
	net.Listener
	cred func(net.Conn) (*Cred, error)
	s    *ControlServer
}

func (l *credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.s.conns.Add(1); n > int64(l.s.cfg.MaxConns) {
			l.s.conns.Add(-1)
			l.s.refuseConn(c)
			continue
		}
		l.s.cnt.connsAccepted.Add(1)
		cred, err := l.cred(c)
		if err != nil {
			cred = nil // only the public endpoints then
		}
		return &credConn{Conn: c, cred: cred, open: &l.s.conns}, nil
	}
}

// refuseConn answers a connection beyond the limit with a 503 and closes
// it, without reading from it; the write is bounded so that a client that
// reads nothing cannot hold the accept loop.
func (s *ControlServer) refuseConn(c net.Conn) {
	n := s.cnt.connsRefused.Add(1)
	if n == 1 || n%100 == 0 {
		s.log.Warn("control connection refused: too many open", "limit", s.cfg.MaxConns, "refused", n)
	}
	b, _ := json.Marshal(struct {
		Error *apiError `json:"error"`
	}{errorf(http.StatusServiceUnavailable, codeUnavailable, "", strconv.Itoa(s.cfg.MaxConns),
		"too many control connections open (limit %d)", s.cfg.MaxConns)})
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	c.Close()
}

// credConn is an accepted connection with its peer's credentials.
type credConn struct {
	net.Conn
	cred      *Cred
	open      *atomic.Int64
	closeOnce sync.Once
}

// Close implements net.Conn.Close; the first call frees the connection's
// place under MaxConns.
func (c *credConn) Close() error {
	c.closeOnce.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

type credKey struct{}

// CredFrom returns the peer credentials of a control request, and false
// when they are unknown.
func CredFrom(ctx context.Context) (Cred, bool) {
	c, ok := ctx.Value(credKey{}).(*Cred)
	if !ok || c == nil {
		return Cred{}, false
	}
	return *c, true
}

// apiError is the body of every error response:
//
//	{"error": {"status": 413, "code": "too_large", "message": "…",
//	           "field": "body", "limit": "65536 bytes"}}
type apiError struct {
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	Limit   string `json:"limit,omitempty"`
	// Slot names the slot a conflict is with (code already_armed).
	Slot SlotID `json:"slot,omitempty"`
	// Refusal is the firmware profile's own refusal (code refused): the
	// profile, the part's error name and number (Android's
	// ERROR_INSUFFICIENT_RESOURCES −32, …).
	Refusal *refusal `json:"refusal,omitempty"`
}

// refusal is a profile.Error on the wire.
type refusal struct {
	Profile string `json:"profile"`
	Name    string `json:"name"`
	Num     int    `json:"num,omitempty"`
}

func (e *apiError) Error() string { return e.Message }

// Error codes of the control API (apiError.Code).
const (
	codeBadRequest  = "bad_request"
	codeInvalid     = "invalid"
	codeLimit       = "limit"
	codeTooLarge    = "too_large"
	codeForbidden   = "forbidden"
	codeNotFound    = "not_found"
	codeUnknownSlot = "unknown_slot"
	codeMethod      = "method_not_allowed"
	codeNoSlot      = "no_slot"
	codeState       = "wrong_state"
	codeConflict    = "conflict"
	codeArmed       = "already_armed"
	codeRefused     = "refused"
	codeTimeout     = "timeout"
	codeUnavailable = "unavailable"
	codeInternal    = "internal"
)

func errorf(status int, code, field, limit, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Field: field, Limit: limit, Message: fmt.Sprintf(format, args...)}
}

// route is one endpoint: the methods it takes and the right it demands.
type route struct {
	pattern string
	access  access
	methods map[string]func(w http.ResponseWriter, r *http.Request, c *Cred) error
}

// routes builds the mux from the route table; openapi.json describes the
// same table (TestOpenAPIRoutes holds them together).
func (s *ControlServer) routes() {
	s.mux = http.NewServeMux()
	type m = map[string]func(http.ResponseWriter, *http.Request, *Cred) error
	add := func(pattern string, a access, methods m) {
		rt := &route{pattern: pattern, access: a, methods: methods}
		s.routeTable = append(s.routeTable, rt)
		s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { s.dispatch(w, r, rt) })
	}
	add("/v1/openapi.json", accessAny, m{"GET": s.getOpenAPI})
	add("/v1/capabilities", accessAny, m{"GET": s.getCapabilities})
	add("/v1/whoami", accessAny, m{"GET": s.getWhoAmI})
	add("/metrics", accessAny, m{"GET": s.getMetrics})
	add("/v1/power", accessControl, m{"GET": s.getPower, "PUT": s.putPower})
	add("/v1/slots", accessControl, m{"GET": s.getSlots, "POST": s.postSlot})
	// Owner checks of DELETE happen in the handler, after the lookup.
	add("/v1/slots/{id}", accessAny, m{"GET": s.getSlot, "DELETE": s.deleteSlot})
	add("/v1/wakes", accessControl, m{"GET": s.getWakes})
	add("/v1/wakes/stream", accessControl, m{"GET": s.streamWakes})
	add("/v1/wakes/{seq}/packet", accessAny, m{"GET": s.getWakePacket})
	add("/v1/patterns", accessControl, m{"GET": s.getPatterns, "POST": s.postPattern})
	add("/v1/patterns/{id}", accessAny, m{"DELETE": s.deletePattern})
	add("/v1/track", accessControl, m{"GET": s.getTrack, "POST": s.postTrack, "DELETE": s.deleteTrack})
	add("/v1/coalescing", accessControl, m{"GET": s.getCoalescing, "POST": s.postCoalescing, "DELETE": s.deleteCoalescing})
	add("/v1/lease", accessControl, m{"PUT": s.putLease})
	add("/v1/leases", accessControl, m{"GET": s.getLeases})
	// Owner checks of DELETE happen in the handler, after the lookup.
	add("/v1/leases/{owner}", accessControl, m{"GET": s.getLease, "DELETE": s.deleteLease})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, errorf(http.StatusNotFound, codeNotFound, "", "", "no endpoint %s %s (see /v1/capabilities and docs/control-api.md)", r.Method, r.URL.Path))
	})
}

// ServeHTTP implements http.Handler.
func (s *ControlServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.fail(w, r, errorf(http.StatusServiceUnavailable, codeUnavailable, "", "", "control server closed"))
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.cnt.requests.Add(1)
	w.Header().Set(InstanceHeader, s.instance)
	// The body must come within ReadTimeout of now; so must the rest of
	// a body the handler leaves unread (the server drains it). Wake
	// streams lift the deadline (streamWakes). Not every ResponseWriter
	// has a connection (tests): the error is ignored.
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
	s.mux.ServeHTTP(w, r)
}

// InstanceHeader is the response header carrying the control server's
// instance: random per server, so that a client tells a NIC daemon that
// restarted (its slots and leases gone) from one it merely reconnected to.
const InstanceHeader = "Standbynic-Instance"

func (s *ControlServer) dispatch(w http.ResponseWriter, r *http.Request, rt *route) {
	h, ok := rt.methods[r.Method]
	if !ok && r.Method == http.MethodHead {
		h, ok = rt.methods[http.MethodGet]
	}
	if !ok {
		allow := make([]string, 0, len(rt.methods))
		for k := range rt.methods {
			allow = append(allow, k)
		}
		slices.Sort(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.fail(w, r, errorf(http.StatusMethodNotAllowed, codeMethod, "", strings.Join(allow, ", "),
			"method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	if testOnResponse != nil {
		sr := &statusRecorder{ResponseWriter: w}
		defer func() { testOnResponse(rt.pattern, r.Method, sr.status) }()
		w = sr
	}
	cred, _ := r.Context().Value(credKey{}).(*Cred)
	if err := s.check(cred, rt.access, -1); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := h(w, r, cred); err != nil {
		s.fail(w, r, err)
	}
}

// check authorizes cred, as an *apiError.
func (s *ControlServer) check(cred *Cred, a access, owner int64) error {
	if err := s.authorize(cred, a, owner); err != nil {
		return errorf(http.StatusForbidden, codeForbidden, "", "", "%v", err)
	}
	return nil
}

// authorize is authorize with the control group checked again against
// the group database at each request: credentials are those the kernel
// recorded when the peer connected (SO_PEERCRED, SO_PEERGROUPS) and do
// not change on an open connection, so a user removed from the control
// group would keep control there. A right held through the group
// therefore also needs the group database (os/user: /etc/group,
// /etc/passwd; answers cached for a second) to list the uid as a member
// now; a uid or group the database does not know is judged on the
// kernel's credentials alone, and so is every peer with
// ControlConfig.TrustPeerGroups.
func (s *ControlServer) authorize(cred *Cred, a access, owner int64) error {
	if err := authorize(cred, a, s.group, owner); err != nil {
		return err
	}
	if a != accessControl || cred == nil || cred.UID == 0 || s.cfg.TrustPeerGroups {
		return nil
	}
	if member, known := s.groupMember(cred.UID, s.group); known && !member {
		return fmt.Errorf("%w: uid %d is no longer a member of group %d (group database)", errForbidden, cred.UID, s.group)
	}
	return nil
}

// fail writes err as the JSON error body; errors that are not *apiError
// are device errors mapped by deviceError.
func (s *ControlServer) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = deviceError(err, s.d)
	}
	switch {
	case ae.Status == http.StatusForbidden:
		s.cnt.denied.Add(1)
		s.log.Warn("control request denied", "method", r.Method, "path", r.URL.Path, "err", ae.Message)
	case ae.Status >= 500:
		s.cnt.failed.Add(1)
		s.log.Error("control request failed", "method", r.Method, "path", r.URL.Path, "err", ae.Message)
	default:
		s.cnt.rejected.Add(1)
		s.log.Debug("control request rejected", "method", r.Method, "path", r.URL.Path, "status", ae.Status, "err", ae.Message)
	}
	writeJSON(w, ae.Status, struct {
		Error *apiError `json:"error"`
	}{ae})
}

// deviceError maps an error of the device to a response.
func deviceError(err error, d *Device) *apiError {
	msg := err.Error()
	var ae *ArmedError
	var pe *profile.Error
	switch {
	case errors.As(err, &pe):
		// The profile's own refusal, before the generic mappings it
		// also satisfies (ErrNoSlot, offload.ErrInvalidSpec): a full
		// device is a conflict, anything else a request the part cannot
		// honour.
		status := http.StatusUnprocessableEntity
		if pe.Field == "slots" {
			status = http.StatusConflict
		}
		e := errorf(status, codeRefused, pe.Field, pe.Detail, "%s", msg)
		e.Refusal = &refusal{Profile: pe.Profile, Name: pe.Code.Name, Num: pe.Code.Num}
		return e
	case errors.As(err, &ae):
		e := errorf(http.StatusConflict, codeArmed, "pattern", "", "%s", msg)
		e.Slot = ae.Slot
		return e
	case errors.Is(err, ErrNoSlot):
		slots := 0
		if d != nil {
			slots = d.Capabilities().Slots
		}
		return errorf(http.StatusConflict, codeNoSlot, "", fmt.Sprintf("%d slots", slots), "%s", msg)
	case errors.Is(err, ErrState):
		return errorf(http.StatusConflict, codeState, "", "", "%s", msg)
	case errors.Is(err, ErrUnknownSlot), errors.Is(err, offload.ErrNotArmed):
		return errorf(http.StatusNotFound, codeUnknownSlot, "", "", "%s", msg)
	case errors.Is(err, ErrUnknownFilter):
		return errorf(http.StatusNotFound, codeNotFound, "", "", "%s", msg)
	case errors.Is(err, ErrLimit), errors.Is(err, wp.ErrLimit):
		var le *wp.LimitError
		if errors.As(err, &le) {
			return errorf(http.StatusUnprocessableEntity, codeLimit, le.Field, strconv.Itoa(le.Limit), "%s", msg)
		}
		return errorf(http.StatusUnprocessableEntity, codeLimit, "", "", "%s", msg)
	case errors.Is(err, offload.ErrInvalidSpec), errors.Is(err, offload.ErrInvalidSnapshot):
		return errorf(http.StatusUnprocessableEntity, codeInvalid, "", "", "%s", msg)
	}
	return errorf(http.StatusInternalServerError, codeInternal, "", "", "%s", msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"status":500,"code":"internal","message":"encode response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// readBody reads the request body within the limits of size and time.
func (s *ControlServer) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errorf(http.StatusRequestEntityTooLarge, codeTooLarge, "body", fmt.Sprintf("%d bytes", mbe.Limit),
			"request body exceeds the limit of %d bytes", mbe.Limit)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.cnt.readTimeouts.Add(1)
		w.Header().Set("Connection", "close")
		return nil, errorf(http.StatusRequestTimeout, codeTimeout, "body", s.cfg.ReadTimeout.String(),
			"request body not received within %v", s.cfg.ReadTimeout)
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, codeBadRequest, "body", "", "read request body: %v", err)
	}
	return b, nil
}

// decodeStrict decodes exactly one JSON value of b into v, refusing
// unknown fields; errors name the field, prefixed with prefix.
func decodeStrict(b []byte, v any, prefix string) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errorf(http.StatusBadRequest, codeBadRequest, nonEmpty(prefix, "body"), "", "%s: empty, want a JSON object", nonEmpty(prefix, "body"))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, prefix)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, codeBadRequest, nonEmpty(prefix, "body"), "", "%s: data after the JSON value", nonEmpty(prefix, "body"))
	}
	return nil
}

func nonEmpty(prefix, def string) string {
	if p := strings.TrimSuffix(prefix, "."); p != "" {
		return p
	}
	return def
}

// jsonError turns an encoding/json error into a 400 naming the field.
func jsonError(err error, prefix string) *apiError {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		f := prefix + te.Field
		if te.Field == "" {
			f = nonEmpty(prefix, "body")
		}
		want, limit := jsonKind(te.Type)
		return errorf(http.StatusBadRequest, codeBadRequest, f, limit, "%s: JSON %s where %s is expected", f, te.Value, want)
	case errors.As(err, &se):
		return errorf(http.StatusBadRequest, codeBadRequest, nonEmpty(prefix, "body"), "", "%s: malformed JSON at byte %d: %v", nonEmpty(prefix, "body"), se.Offset, se)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, codeBadRequest, nonEmpty(prefix, "body"), "", "%s: truncated JSON", nonEmpty(prefix, "body"))
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name := prefix + strings.Trim(f, `"`)
		return errorf(http.StatusBadRequest, codeBadRequest, name, "", "unknown field %q", name)
	}
	return errorf(http.StatusBadRequest, codeBadRequest, nonEmpty(prefix, "body"), "", "%s: %v", nonEmpty(prefix, "body"), err)
}

// jsonKind describes the JSON value a Go type takes, and its range for
// integers.
func jsonKind(t reflect.Type) (string, string) {
	switch k := t.Kind(); {
	case k >= reflect.Int && k <= reflect.Int64:
		bits := t.Bits()
		r := fmt.Sprintf("%d–%d", -(int64(1) << (bits - 1)), int64(1)<<(bits-1)-1)
		return "an integer " + r, r
	case k >= reflect.Uint && k <= reflect.Uintptr:
		r := fmt.Sprintf("0–%d", uint64(1)<<t.Bits()-1)
		return "an integer " + r, r
	case k == reflect.Float32 || k == reflect.Float64:
		return "a number", ""
	case k == reflect.String:
		return "a string", ""
	case k == reflect.Bool:
		return "true or false", ""
	case k == reflect.Slice || k == reflect.Array:
		return "an array", ""
	}
	return "an object", ""
}

// --- capabilities, whoami, metrics ---

type capsJSON struct {
	Slots          int          `json:"slots"`
	WakePacketSave int          `json:"wake_packet_save"`
	PostWakeFrames int          `json:"post_wake_frames"`
	ARPOffloads    int          `json:"arp_offloads"`
	NSOffloads     int          `json:"ns_offloads"`
	MaxFrame       int          `json:"max_frame"`
	Patterns       patCapsJSON  `json:"patterns"`
	Spec           specLimJSON  `json:"spec"`
	API            apiLimitJSON `json:"api"`
}

type patCapsJSON struct {
	MaxPatterns       int `json:"max_patterns"`
	MaxConnPatterns   int `json:"max_conn_patterns"`
	MaxSYNPatterns    int `json:"max_syn_patterns"`
	MaxBitmapPatterns int `json:"max_bitmap_patterns"`
	MaxBitmapSize     int `json:"max_bitmap_size"`
	MaxBitmapOffset   int `json:"max_bitmap_offset"`
	MaxMagicPatterns  int `json:"max_magic_patterns"`
	MaxPasswordLen    int `json:"max_password_len"`
}

type specLimJSON struct {
	MinInterval       string `json:"min_interval"`
	MaxInterval       string `json:"max_interval"`
	MinRetryInterval  string `json:"min_retry_interval"`
	MaxRetryCount     int    `json:"max_retry_count"`
	MaxPayload        int    `json:"max_payload"`
	MaxControlPayload int    `json:"max_control_payload"`
}

type apiLimitJSON struct {
	Version     string `json:"version"`
	Instance    string `json:"instance"`
	MaxBody     int64  `json:"max_body"`
	MaxLabel    int    `json:"max_label"`
	MaxStreams  int    `json:"max_streams"`
	MaxConns    int    `json:"max_conns"`
	ReadTimeout string `json:"read_timeout"`
	WakeHistory int    `json:"wake_history"`
	Group       int    `json:"group,omitempty"`
	MinLease    string `json:"min_lease_period"`
	MaxLease    string `json:"max_lease_period"`
	MaxLeases   int    `json:"max_leases"`
}

func (s *ControlServer) getCapabilities(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	c, p := s.d.Capabilities(), s.d.PatternCapabilities()
	writeJSON(w, http.StatusOK, capsJSON{
		Slots: c.Slots, WakePacketSave: c.WakePacketSave, PostWakeFrames: c.PostWakeFrames,
		ARPOffloads: c.ARPOffloads, NSOffloads: c.NSOffloads, MaxFrame: c.MaxFrame,
		Patterns: patCapsJSON(p),
		Spec: specLimJSON{
			MinInterval: offload.MinInterval.String(), MaxInterval: offload.MaxInterval.String(),
			MinRetryInterval: offload.MinRetryInterval.String(), MaxRetryCount: offload.MaxRetryCount,
			MaxPayload: offload.MaxPayload, MaxControlPayload: offload.MaxControlPayload,
		},
		API: apiLimitJSON{Version: "v1", Instance: s.instance, MaxBody: s.cfg.MaxBody, MaxLabel: MaxLabel, MaxStreams: s.cfg.MaxStreams,
			MaxConns: s.cfg.MaxConns, ReadTimeout: s.cfg.ReadTimeout.String(),
			WakeHistory: s.hub.history(), Group: s.cfg.Group,
			MinLease: MinLeasePeriod.String(), MaxLease: MaxLeasePeriod.String(), MaxLeases: MaxLeases},
	})
	return nil
}

type whoamiJSON struct {
	Known   bool     `json:"known"`
	PID     int32    `json:"pid,omitempty"`
	UID     uint32   `json:"uid"`
	GID     uint32   `json:"gid"`
	Groups  []uint32 `json:"groups,omitempty"`
	Control bool     `json:"control"`
}

func (s *ControlServer) getWhoAmI(w http.ResponseWriter, r *http.Request, c *Cred) error {
	j := whoamiJSON{Control: s.authorize(c, accessControl, -1) == nil}
	if c != nil {
		j.Known, j.PID, j.UID, j.GID, j.Groups = true, c.PID, c.UID, c.GID, c.Groups
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

// getMetrics serves the Prometheus collectors of metrics.go; promhttp
// answers in the text format (version 0.0.4) unless the scraper asks for
// another.
func (s *ControlServer) getMetrics(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	if s.metrics == nil {
		return errorf(http.StatusInternalServerError, codeInternal, "", "", "metrics: %v", cmp.Or(s.metricsErr, errors.New("no device")))
	}
	s.metrics.ServeHTTP(w, r)
	return nil
}

// apiCounters returns the API's own counters under their short names
// (the families of controlMetrics without standbynic_control_ and
// _total), in a stable order.
func (s *ControlServer) apiCounters() []Counter {
	return []Counter{
		{"requests", s.cnt.requests.Load()},
		{"denied", s.cnt.denied.Load()},
		{"rejected", s.cnt.rejected.Load()},
		{"failed", s.cnt.failed.Load()},
		{"streams_opened", s.cnt.streams.Load()},
		{"wakes_recorded", s.hub.nextSeq() - 1},
		{"conns_accepted", s.cnt.connsAccepted.Load()},
		{"conns_refused", s.cnt.connsRefused.Load()},
		{"read_timeouts", s.cnt.readTimeouts.Load()},
		{"leases_granted", s.cnt.leasesGranted.Load()},
		{"leases_renewed", s.cnt.leasesRenewed.Load()},
		{"leases_taken_over", s.cnt.leasesTaken.Load()},
		{"leases_expired", s.cnt.leasesExpired.Load()},
		{"leases_released", s.cnt.leasesReleased.Load()},
		{"lease_slots_disarmed", s.cnt.leaseSlotsDisarmed.Load()},
		{"lease_resumes", s.cnt.leaseResumes.Load()},
	}
}

// --- power ---

type powerJSON struct {
	State string `json:"state"`
}

// powerStatusJSON is the answer to GET and PUT /v1/power: the state and,
// while one is attached, the D3 prefilter.
type powerStatusJSON struct {
	State     string         `json:"state"`
	Prefilter *prefilterJSON `json:"prefilter,omitempty"`
}

type prefilterJSON struct {
	Level        string `json:"level"`
	Instructions int    `json:"instructions"`
	// Path is the kernel path in use (xdppath.go): "xdp" (the XDP fast
	// path in front of the socket filter) or "socket-filter".
	Path            string `json:"path"`
	XDPInstructions int    `json:"xdp_instructions,omitempty"`
}

func (s *ControlServer) powerStatus() powerStatusJSON {
	j := powerStatusJSON{State: s.d.State().String()}
	if pf, ok := s.d.Prefilter(); ok {
		x := s.d.XDP()
		j.Prefilter = &prefilterJSON{Level: pf.Level.String(), Instructions: pf.Instructions, Path: x.Path(), XDPInstructions: x.Instructions}
	}
	return j
}

func (s *ControlServer) getPower(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	writeJSON(w, http.StatusOK, s.powerStatus())
	return nil
}

func (s *ControlServer) putPower(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	b, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var j powerJSON
	if err := decodeStrict(b, &j, ""); err != nil {
		return err
	}
	switch j.State {
	case "D3":
		if st := s.d.State(); st != D3 {
			if err := s.d.Sleep(); err != nil {
				return err
			}
		}
	case "waking":
		if st := s.d.State(); st != Waking {
			if err := s.d.Wake(); err != nil {
				return err
			}
		}
	case "D0":
		switch s.d.State() {
		case D3:
			if err := s.d.Wake(); err != nil {
				return err
			}
			if err := s.d.Resume(); err != nil {
				return err
			}
		case Waking:
			if err := s.d.Resume(); err != nil {
				return err
			}
		case D0:
		default:
			return fmt.Errorf("resume: %w: in %v", ErrState, s.d.State())
		}
	case "":
		return errorf(http.StatusBadRequest, codeBadRequest, "state", "", "state: missing, want \"D0\", \"D3\" or \"waking\"")
	default:
		return errorf(http.StatusUnprocessableEntity, codeInvalid, "state", "D0, D3, waking", "state: %q is not \"D0\", \"D3\" or \"waking\"", j.State)
	}
	writeJSON(w, http.StatusOK, s.powerStatus())
	return nil
}

// --- slots ---

// armJSON is the body of POST /v1/slots.
type armJSON struct {
	Pattern  json.RawMessage `json:"pattern"`
	Spec     json.RawMessage `json:"spec"`
	Snapshot json.RawMessage `json:"snapshot"`
	Label    string          `json:"label"`
	// Lease names the caller's lease the slot is held under.
	Lease string `json:"lease"`
}

// connJSON is the JSON form of a wakepattern.TCPConn.
type connJSON struct {
	Local  string `json:"local"`
	Remote string `json:"remote"`
	VLAN   uint16 `json:"vlan,omitempty"`
}

func connToJSON(c wp.TCPConn) connJSON {
	return connJSON{Local: c.Local.String(), Remote: c.Remote.String(), VLAN: c.VLAN}
}

func (j connJSON) conn(prefix string) (wp.TCPConn, error) {
	l, err := parseAddrPortField(prefix+"local", j.Local)
	if err != nil {
		return wp.TCPConn{}, err
	}
	r, err := parseAddrPortField(prefix+"remote", j.Remote)
	if err != nil {
		return wp.TCPConn{}, err
	}
	if j.VLAN > wp.MaxVLANID {
		return wp.TCPConn{}, errorf(http.StatusUnprocessableEntity, codeLimit, prefix+"vlan", strconv.Itoa(wp.MaxVLANID),
			"%svlan: %d above %d", prefix, j.VLAN, wp.MaxVLANID)
	}
	return wp.TCPConn{Local: l, Remote: r, VLAN: j.VLAN}, nil
}

type slotJSON struct {
	ID             SlotID            `json:"id"`
	Owner          *int64            `json:"owner_uid"`
	Lease          string            `json:"lease,omitempty"`
	Label          string            `json:"label,omitempty"`
	Conn           *connJSON         `json:"conn,omitempty"`
	Spec           *offload.Spec     `json:"spec,omitempty"`
	Armed          *time.Time        `json:"armed,omitempty"`
	State          string            `json:"state"`
	Status         string            `json:"status"`
	Counters       offload.Counters  `json:"counters"`
	DeviceCounters map[string]uint64 `json:"device_counters"`
}

func (s *ControlServer) slotStatus(id SlotID, counters []Counter) (slotJSON, bool) {
	st, status, c, ok := s.d.SlotState(id)
	if !ok {
		return slotJSON{}, false
	}
	j := slotJSON{ID: id, State: st.String(), Status: status.String(), Counters: c, DeviceCounters: map[string]uint64{}}
	s.mu.Lock()
	if rec := s.slots[id]; rec != nil {
		o := rec.owner
		cj := connToJSON(rec.conn)
		sp := rec.spec
		at := rec.armed
		j.Owner, j.Lease, j.Label, j.Conn, j.Spec, j.Armed = &o, rec.lease, rec.label, &cj, &sp, &at
	}
	s.mu.Unlock()
	prefix := fmt.Sprintf("slot%d_", id)
	for _, c := range counters {
		if name, ok := strings.CutPrefix(c.Name, prefix); ok && !engineCounterNames[name] {
			j.DeviceCounters[name] = c.Value
		}
	}
	return j, true
}

// engineCounterNames are the engine's per-slot counters (reported under
// "counters"); Device.Counters repeats them among the slot's.
var engineCounterNames = func() map[string]bool {
	var m map[string]uint64
	b, _ := json.Marshal(offload.Counters{})
	json.Unmarshal(b, &m)
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}()

func (s *ControlServer) getSlots(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	q := r.URL.Query()
	lease, byLease := q.Get("lease"), q.Has("lease")
	if byLease {
		if err := checkLeaseOwner("lease", lease); err != nil {
			return err
		}
	}
	counters := s.d.Counters()
	out := []slotJSON{}
	for _, id := range s.d.Slots() {
		if j, ok := s.slotStatus(id, counters); ok && (!byLease || j.Lease == lease) {
			out = append(out, j)
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Slots    []slotJSON `json:"slots"`
		Capacity int        `json:"capacity"`
	}{out, s.d.Capabilities().Slots})
	return nil
}

// slotID parses the {id} path value.
func (s *ControlServer) slotID(r *http.Request) (SlotID, error) {
	v := r.PathValue("id")
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errorf(http.StatusBadRequest, codeBadRequest, "id", "", "slot id %q is not a number", v)
	}
	if max := s.d.Capabilities().Slots; n < 1 || n > max {
		return 0, errorf(http.StatusNotFound, codeUnknownSlot, "id", fmt.Sprintf("1–%d", max), "slot %d: no such slot (slots are 1–%d)", n, max)
	}
	return SlotID(n), nil
}

func (s *ControlServer) getSlot(w http.ResponseWriter, r *http.Request, c *Cred) error {
	if err := s.check(c, accessControl, -1); err != nil {
		return err
	}
	id, err := s.slotID(r)
	if err != nil {
		return err
	}
	j, ok := s.slotStatus(id, s.d.Counters())
	if !ok {
		return errorf(http.StatusNotFound, codeUnknownSlot, "id", "", "slot %d: %v", id, ErrUnknownSlot)
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

func (s *ControlServer) postSlot(w http.ResponseWriter, r *http.Request, c *Cred) error {
	b, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	cfg, label, leaseName, err := parseArmLease(b)
	if err != nil {
		return err
	}
	cfg.Owner = fmt.Sprintf("uid %d pid %d", c.UID, c.PID)
	if label != "" {
		cfg.Owner += " " + strconv.Quote(label)
	}
	if leaseName != "" {
		cfg.Owner += " lease " + strconv.Quote(leaseName)
	}
	// The record is written under mu together with the arm, so a
	// concurrent disarm of the same ID (after it is returned) finds it,
	// and a lease ending meanwhile disarms it.
	s.mu.Lock()
	if leaseName != "" {
		if _, err := s.leaseOf(c, leaseName, "lease"); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	since := s.hub.nextSeq()
	id, err := s.d.Arm(cfg)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.slots[id] = &slotRecord{owner: int64(c.UID), lease: leaseName, label: label, conn: cfg.Pattern, spec: cfg.Spec, armed: time.Now()}
	s.hub.setSlotOwner(id, int64(c.UID), since)
	s.mu.Unlock()
	j, ok := s.slotStatus(id, s.d.Counters())
	if !ok { // disarmed meanwhile by its owner
		return errorf(http.StatusConflict, codeConflict, "", "", "slot %d was disarmed before its status was read", id)
	}
	w.Header().Set("Location", fmt.Sprintf("/v1/slots/%d", id))
	writeJSON(w, http.StatusCreated, j)
	return nil
}

// parseArm decodes and validates the body of POST /v1/slots.
func parseArm(b []byte) (SlotConfig, string, error) {
	cfg, label, _, err := parseArmLease(b)
	return cfg, label, err
}

// parseArmLease is parseArm that also returns the lease named.
func parseArmLease(b []byte) (SlotConfig, string, string, error) {
	var j armJSON
	if err := decodeStrict(b, &j, ""); err != nil {
		return SlotConfig{}, "", "", err
	}
	if j.Lease != "" {
		if err := checkLeaseOwner("lease", j.Lease); err != nil {
			return SlotConfig{}, "", "", err
		}
	}
	cfg, label, err := parseArmJSON(&j)
	return cfg, label, j.Lease, err
}

// parseArmJSON validates a decoded arm body.
func parseArmJSON(j *armJSON) (SlotConfig, string, error) {
	if len(j.Label) > MaxLabel {
		return SlotConfig{}, "", errorf(http.StatusUnprocessableEntity, codeLimit, "label", fmt.Sprintf("%d bytes", MaxLabel),
			"label: %d bytes above %d", len(j.Label), MaxLabel)
	}
	if isNull(j.Spec) {
		return SlotConfig{}, "", errorf(http.StatusBadRequest, codeBadRequest, "spec", "", "spec: missing")
	}
	if isNull(j.Snapshot) {
		return SlotConfig{}, "", errorf(http.StatusBadRequest, codeBadRequest, "snapshot", "", "snapshot: missing")
	}
	spec, err := offload.ParseSpec(j.Spec)
	if err != nil {
		return SlotConfig{}, "", specError(err)
	}
	snap, err := parseSnapshot(j.Snapshot)
	if err != nil {
		return SlotConfig{}, "", err
	}
	conn := wp.TCPConn{Local: snap.Local, Remote: snap.Remote, VLAN: snap.VLAN}
	if !isNull(j.Pattern) {
		var cj connJSON
		if err := decodeStrict(j.Pattern, &cj, "pattern."); err != nil {
			return SlotConfig{}, "", err
		}
		p, err := cj.conn("pattern.")
		if err != nil {
			return SlotConfig{}, "", err
		}
		if p != conn {
			return SlotConfig{}, "", errorf(http.StatusUnprocessableEntity, codeInvalid, "pattern", "",
				"pattern: %v→%v vlan %d is not the snapshot's connection %v→%v vlan %d", p.Local, p.Remote, p.VLAN, conn.Local, conn.Remote, conn.VLAN)
		}
	}
	return SlotConfig{Pattern: conn, Spec: spec, Snapshot: snap}, j.Label, nil
}

func isNull(b json.RawMessage) bool {
	t := bytes.TrimSpace(b)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// specFields maps Spec's Go field names (in Validate's errors) to JSON.
var specFields = map[string]string{
	"Kind": "kind", "Interval": "interval", "FirstDue": "first_due", "RetryInterval": "retry_interval", "RetryCount": "retry_count",
	"Tolerance": "tolerance", "Probe": "probe", "Payload": "payload", "Payload.Request": "payload.request",
	"Payload.Reply": "payload.reply", "Payload.ReplyMask": "payload.reply_mask", "WebSocket": "websocket",
	"WebSocket.Mode": "websocket.mode", "WebSocket.Payload": "websocket.payload",
}

// specError maps an error of offload.ParseSpec: undecodable JSON is a
// 400, a value outside its limits a 422; both name the field.
func specError(err error) *apiError {
	msg, _ := strings.CutPrefix(err.Error(), offload.ErrInvalidSpec.Error()+": ")
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name := "spec." + strings.Trim(f, `"`)
		return errorf(http.StatusBadRequest, codeBadRequest, name, "", "unknown field %q", name)
	}
	if strings.HasPrefix(msg, "json: ") {
		return errorf(http.StatusBadRequest, codeBadRequest, "spec", "", "spec: %s", msg)
	}
	field, rest, _ := strings.Cut(msg, ": ")
	if j, ok := specFields[field]; ok {
		field = j
	}
	status, code := http.StatusUnprocessableEntity, codeInvalid
	if rest == "missing" || strings.Contains(rest, "is not") {
		status, code = http.StatusBadRequest, codeBadRequest
	}
	if strings.Contains(rest, "outside") || strings.Contains(rest, "above") {
		code = codeLimit
	}
	return errorf(status, code, "spec."+field, limitOf(rest), "spec.%s: %s", field, rest)
}

// limitOf extracts the limit from a validation message of offload
// ("500ms outside 1s..24h0m0s", "10 below 88", "70000 above 65535 (…)").
func limitOf(msg string) string {
	for _, w := range []string{" outside ", " above ", " below "} {
		if _, l, ok := strings.Cut(msg, w); ok {
			l, _, _ = strings.Cut(l, " (")
			switch w {
			case " above ":
				return "at most " + l
			case " below ":
				return "at least " + l
			}
			return l
		}
	}
	return ""
}

// snapshotJSON is the JSON form of an offload.Snapshot: MACs as
// colon-separated hex, endpoints as address:port, the timestamp time on
// the device's clock as a Go duration string.
type snapshotJSON struct {
	LocalMAC   string          `json:"local_mac"`
	RemoteMAC  string          `json:"remote_mac"`
	VLAN       uint16          `json:"vlan,omitempty"`
	Local      string          `json:"local"`
	Remote     string          `json:"remote"`
	SndNxt     uint32          `json:"snd_nxt"`
	RcvNxt     uint32          `json:"rcv_nxt"`
	SndWnd     uint32          `json:"snd_wnd"`
	RcvWnd     uint32          `json:"rcv_wnd"`
	SndWScale  uint8           `json:"snd_wscale,omitempty"`
	RcvWScale  uint8           `json:"rcv_wscale,omitempty"`
	Timestamps *timestampsJSON `json:"timestamps,omitempty"`
	TTL        uint8           `json:"ttl"`
	TOS        uint8           `json:"tos,omitempty"`
	MSS        uint16          `json:"mss"`
}

type timestampsJSON struct {
	Val    uint32 `json:"val"`
	At     string `json:"at"`
	Rate   uint32 `json:"rate"`
	Recent uint32 `json:"recent"`
}

func snapshotToJSON(s *offload.Snapshot) snapshotJSON {
	j := snapshotJSON{
		LocalMAC: net.HardwareAddr(s.LocalMAC[:]).String(), RemoteMAC: net.HardwareAddr(s.RemoteMAC[:]).String(),
		VLAN: s.VLAN, Local: s.Local.String(), Remote: s.Remote.String(),
		SndNxt: s.SndNxt, RcvNxt: s.RcvNxt, SndWnd: s.SndWnd, RcvWnd: s.RcvWnd,
		SndWScale: s.SndWScale, RcvWScale: s.RcvWScale, TTL: s.TTL, TOS: s.TOS, MSS: s.MSS,
	}
	if ts := s.Timestamps; ts.Enabled {
		j.Timestamps = &timestampsJSON{Val: ts.Val, At: ts.At.String(), Rate: ts.Rate, Recent: ts.Recent}
	}
	return j
}

// snapFields maps Snapshot's Go field names (in Validate's errors) to JSON.
var snapFields = map[string]string{
	"LocalMAC": "local_mac", "RemoteMAC": "remote_mac", "VLAN": "vlan", "Local": "local", "Remote": "remote",
	"SndWScale": "snd_wscale", "RcvWScale": "rcv_wscale", "SndWnd": "snd_wnd", "RcvWnd": "rcv_wnd",
	"Timestamps.Rate": "timestamps.rate", "Timestamps.At": "timestamps.at", "TTL": "ttl", "MSS": "mss",
}

// parseSnapshot decodes (strictly) and validates a snapshot.
func parseSnapshot(b []byte) (offload.Snapshot, error) {
	var j snapshotJSON
	if err := decodeStrict(b, &j, "snapshot."); err != nil {
		return offload.Snapshot{}, err
	}
	var s offload.Snapshot
	var err error
	if s.LocalMAC, err = parseMACField("snapshot.local_mac", j.LocalMAC); err != nil {
		return s, err
	}
	if s.RemoteMAC, err = parseMACField("snapshot.remote_mac", j.RemoteMAC); err != nil {
		return s, err
	}
	if s.Local, err = parseAddrPortField("snapshot.local", j.Local); err != nil {
		return s, err
	}
	if s.Remote, err = parseAddrPortField("snapshot.remote", j.Remote); err != nil {
		return s, err
	}
	s.VLAN, s.SndNxt, s.RcvNxt, s.SndWnd, s.RcvWnd = j.VLAN, j.SndNxt, j.RcvNxt, j.SndWnd, j.RcvWnd
	s.SndWScale, s.RcvWScale, s.TTL, s.TOS, s.MSS = j.SndWScale, j.RcvWScale, j.TTL, j.TOS, j.MSS
	if ts := j.Timestamps; ts != nil {
		at, err := time.ParseDuration(ts.At)
		if err != nil {
			return s, errorf(http.StatusBadRequest, codeBadRequest, "snapshot.timestamps.at", "",
				"snapshot.timestamps.at: %q is not a duration such as \"1h2m3.5s\"", ts.At)
		}
		s.Timestamps = offload.Timestamps{Enabled: true, Val: ts.Val, At: at, Rate: ts.Rate, Recent: ts.Recent}
	}
	if err := s.Validate(); err != nil {
		msg, _ := strings.CutPrefix(err.Error(), offload.ErrInvalidSnapshot.Error()+": ")
		field, rest, _ := strings.Cut(msg, ": ")
		if f, ok := snapFields[field]; ok {
			field = f
		}
		return s, errorf(http.StatusUnprocessableEntity, codeInvalid, "snapshot."+field, limitOf(rest), "snapshot.%s: %s", field, rest)
	}
	return s, nil
}

func parseMACField(field, v string) ([6]byte, error) {
	m, err := net.ParseMAC(v)
	if err != nil || len(m) != 6 {
		return [6]byte{}, errorf(http.StatusBadRequest, codeBadRequest, field, "", "%s: %q is not a MAC such as \"02:00:00:00:00:01\"", field, v)
	}
	return [6]byte(m), nil
}

func parseAddrPortField(field, v string) (netip.AddrPort, error) {
	if v == "" {
		return netip.AddrPort{}, errorf(http.StatusBadRequest, codeBadRequest, field, "", "%s: missing", field)
	}
	ap, err := netip.ParseAddrPort(v)
	if err != nil {
		return ap, errorf(http.StatusBadRequest, codeBadRequest, field, "", "%s: %q is not an address:port such as \"198.18.0.2:40000\"", field, v)
	}
	return ap, nil
}

type reportJSON struct {
	State    string           `json:"state"`
	Status   string           `json:"status"`
	Counters offload.Counters `json:"counters"`
	Books    booksJSON        `json:"books"`
	SndNxt   uint32           `json:"snd_nxt"`
	SndUna   uint32           `json:"snd_una"`
	RcvNxt   uint32           `json:"rcv_nxt"`
	TSRecent uint32           `json:"ts_recent"`
	// LastKeepAlive is the device time (a Go duration) the slot's last
	// keep-alive cycle began; absent when it sent none.
	LastKeepAlive string `json:"last_keep_alive,omitempty"`
}

// booksJSON carries the books' bytes as base64 (encoding/json's []byte).
type booksJSON struct {
	Sent     []byte      `json:"sent"`
	Absorbed []byte      `json:"absorbed"`
	Entries  []entryJSON `json:"entries"`
}

type entryJSON struct {
	Dir string `json:"dir"`
	Seq uint32 `json:"seq"`
	Len uint32 `json:"len"`
	At  string `json:"at"`
}

func reportToJSON(r *offload.Report) reportJSON {
	j := reportJSON{State: r.State.String(), Status: r.Status.String(), Counters: r.Counters,
		Books:  booksJSON{Sent: nonNil(r.Books.Sent), Absorbed: nonNil(r.Books.Absorbed), Entries: []entryJSON{}},
		SndNxt: r.SndNxt, SndUna: r.SndUna, RcvNxt: r.RcvNxt, TSRecent: r.TSRecent}
	if r.Counters.KeepalivesSent > 0 {
		j.LastKeepAlive = r.LastKeepAlive.String()
	}
	for _, e := range r.Books.Entries {
		j.Books.Entries = append(j.Books.Entries, entryJSON{Dir: e.Dir.String(), Seq: e.Seq, Len: e.Len, At: e.At.String()})
	}
	return j
}

// nonNil makes an empty books buffer encode as "" rather than null.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (s *ControlServer) deleteSlot(w http.ResponseWriter, r *http.Request, c *Cred) error {
	id, err := s.slotID(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	owner := int64(-1)
	if rec := s.slots[id]; rec != nil {
		owner = rec.owner
	}
	if err := s.check(c, accessOwner, owner); err != nil {
		return err
	}
	rep, err := s.d.Disarm(id)
	if errors.Is(err, ErrUnknownSlot) {
		return errorf(http.StatusNotFound, codeUnknownSlot, "id", "", "%v", err)
	}
	delete(s.slots, id)
	s.hub.clearSlotOwner(id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		ID     SlotID     `json:"id"`
		Report reportJSON `json:"report"`
	}{id, reportToJSON(&rep)})
	return nil
}

// --- wakes ---

type wakeJSON struct {
	Seq     uint64     `json:"seq"`
	Reason  string     `json:"reason"`
	Slot    SlotID     `json:"slot,omitempty"`
	Pattern uint32     `json:"pattern,omitempty"`
	At      string     `json:"at"`
	RxTime  *time.Time `json:"rx_time,omitempty"`
	Len     int        `json:"len,omitempty"`
	Saved   int        `json:"saved,omitempty"`
	Owner   *int64     `json:"owner_uid"`
	Packet  string     `json:"packet,omitempty"`
}

func wakeToJSON(rec *WakeRecord) wakeJSON {
	ev := &rec.Event
	j := wakeJSON{Seq: rec.Seq, Reason: ev.Reason.String(), Slot: ev.Slot, Pattern: ev.Pattern, At: ev.At.String(), Len: ev.Len, Saved: rec.Saved}
	if !ev.RxTime.IsZero() {
		t := ev.RxTime
		j.RxTime = &t
	}
	if rec.Owner >= 0 {
		o := rec.Owner
		j.Owner = &o
	}
	if rec.Saved > 0 {
		j.Packet = fmt.Sprintf("/v1/wakes/%d/packet", rec.Seq)
	}
	return j
}

func sinceParam(r *http.Request) (uint64, bool, error) {
	v := r.URL.Query().Get("since")
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, errorf(http.StatusBadRequest, codeBadRequest, "since", "", "since: %q is not a wake sequence number", v)
	}
	return n, true, nil
}

func (s *ControlServer) getWakes(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	since, _, err := sinceParam(r)
	if err != nil {
		return err
	}
	out := []wakeJSON{}
	for _, rec := range s.hub.since(since) {
		out = append(out, wakeToJSON(&rec))
	}
	writeJSON(w, http.StatusOK, struct {
		Wakes []wakeJSON `json:"wakes"`
		Next  uint64     `json:"next"`
	}{out, s.hub.nextSeq()})
	return nil
}

// streamWakes streams wake events as NDJSON (default) or Server-Sent
// Events (Accept: text/event-stream) until the client goes or the server
// closes. With ?since=N it first replays the held events after N; without,
// it starts with the next wake.
func (s *ControlServer) streamWakes(w http.ResponseWriter, r *http.Request, c *Cred) error {
	since, ok, err := sinceParam(r)
	if err != nil {
		return err
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return errorf(http.StatusBadRequest, codeBadRequest, "body", "", "a wake stream request takes no body")
	}
	q := r.URL.Query()
	leaseName := q.Get("lease")
	if q.Has("lease") {
		if err := checkLeaseOwner("lease", leaseName); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if s.streams >= s.cfg.MaxStreams {
		s.mu.Unlock()
		return errorf(http.StatusServiceUnavailable, codeUnavailable, "", strconv.Itoa(s.cfg.MaxStreams),
			"too many wake streams open (limit %d)", s.cfg.MaxStreams)
	}
	var bound *lease
	if leaseName != "" {
		l, err := s.leaseOf(c, leaseName, "lease")
		if err != nil {
			s.mu.Unlock()
			return err
		}
		s.bindLocked(l, c)
		bound = l
	}
	s.streams++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.streams--
		if bound != nil {
			s.unbindLocked(bound)
		}
		s.mu.Unlock()
	}()
	// The request is read: the stream lives as long as the client holds it.
	http.NewResponseController(w).SetReadDeadline(time.Time{})
	s.cnt.streams.Add(1)
	kick := s.hub.subscribe()
	defer s.hub.unsubscribe(kick)
	if !ok {
		since = s.hub.nextSeq() - 1
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return nil // the client is gone
	}
	for {
		for _, rec := range s.hub.since(since) {
			b, _ := json.Marshal(wakeToJSON(&rec))
			if sse {
				fmt.Fprintf(w, "id: %d\nevent: wake\ndata: %s\n\n", rec.Seq, b)
			} else {
				w.Write(append(b, '\n'))
			}
			since = rec.Seq
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
		select {
		case <-kick:
		case <-r.Context().Done():
			return nil
		case <-s.done:
			return nil
		}
	}
}

func (s *ControlServer) getWakePacket(w http.ResponseWriter, r *http.Request, c *Cred) error {
	v := r.PathValue("seq")
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return errorf(http.StatusBadRequest, codeBadRequest, "seq", "", "wake %q is not a sequence number", v)
	}
	rec, ok := s.hub.get(seq)
	if !ok {
		return errorf(http.StatusNotFound, codeNotFound, "seq", fmt.Sprintf("%d wakes", s.hub.history()),
			"wake %d is not held (the last %d wakes are kept)", seq, s.hub.history())
	}
	if err := s.check(c, accessOwner, rec.Owner); err != nil {
		return err
	}
	if rec.Saved == 0 {
		return errorf(http.StatusNotFound, codeNotFound, "seq", "", "wake %d (%v) has no packet", seq, rec.Event.Reason)
	}
	var b bytes.Buffer
	pw := pcapgo.NewWriterNanos(&b)
	if err := pw.WriteFileHeader(uint32(s.d.Capabilities().WakePacketSave), layers.LinkTypeEthernet); err != nil {
		return errorf(http.StatusInternalServerError, codeInternal, "", "", "write pcap: %v", err)
	}
	ts := rec.Event.RxTime
	if ts.IsZero() {
		ts = time.Unix(0, 0)
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(rec.Event.Packet), Length: max(rec.Event.Len, len(rec.Event.Packet))}
	if err := pw.WritePacket(ci, rec.Event.Packet); err != nil {
		return errorf(http.StatusInternalServerError, codeInternal, "", "", "write pcap: %v", err)
	}
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=\"wake-%d.pcap\"", seq))
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
	return nil
}

// --- patterns ---

type patternJSON struct {
	Owner   *int64     `json:"owner_uid"`
	Pattern wp.Pattern `json:"pattern"`
}

func (s *ControlServer) getPatterns(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	s.mu.Lock()
	out := make([]patternJSON, 0, len(s.patterns))
	for _, p := range s.patterns {
		o := p.owner
		out = append(out, patternJSON{Owner: &o, Pattern: p.pattern})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b patternJSON) int { return int(int64(a.Pattern.ID) - int64(b.Pattern.ID)) })
	writeJSON(w, http.StatusOK, struct {
		Patterns []patternJSON `json:"patterns"`
	}{out})
	return nil
}

func (s *ControlServer) postPattern(w http.ResponseWriter, r *http.Request, c *Cred) error {
	b, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return errorf(http.StatusBadRequest, codeBadRequest, "body", "", "body: empty, want a wake pattern")
	}
	p, err := wp.ParsePattern(b)
	if err != nil {
		msg, _ := strings.CutPrefix(err.Error(), "parse pattern: ")
		field, _, _ := strings.Cut(msg, ":")
		if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
			field = strings.Trim(f, `"`)
		}
		if strings.ContainsAny(field, " ") {
			field = ""
		}
		return errorf(http.StatusBadRequest, codeBadRequest, field, "", "pattern: %s", msg)
	}
	if err := s.d.PatternCapabilities().Check(&p); err != nil {
		var le *wp.LimitError
		if errors.As(err, &le) {
			return errorf(http.StatusUnprocessableEntity, codeLimit, le.Field, strconv.Itoa(le.Limit), "%v", err)
		}
		return errorf(http.StatusUnprocessableEntity, codeInvalid, "", "", "%v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	since := s.hub.nextSeq()
	if err := s.d.AddWakePattern(p); err != nil {
		if errors.Is(err, ErrLimit) || errors.Is(err, wp.ErrLimit) {
			return err
		}
		if strings.Contains(err.Error(), "already in use") {
			return errorf(http.StatusConflict, codeConflict, "id", "", "%v", err)
		}
		return errorf(http.StatusUnprocessableEntity, codeInvalid, "", "", "%v", err)
	}
	s.patterns[p.ID] = &patternRecord{owner: int64(c.UID), pattern: p}
	s.hub.setPatternOwner(p.ID, int64(c.UID), since)
	o := int64(c.UID)
	w.Header().Set("Location", fmt.Sprintf("/v1/patterns/%d", p.ID))
	writeJSON(w, http.StatusCreated, patternJSON{Owner: &o, Pattern: p})
	return nil
}

func (s *ControlServer) deletePattern(w http.ResponseWriter, r *http.Request, c *Cred) error {
	v := r.PathValue("id")
	id64, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return errorf(http.StatusBadRequest, codeBadRequest, "id", "", "pattern id %q is not a number below 2^32", v)
	}
	id := uint32(id64)
	s.mu.Lock()
	defer s.mu.Unlock()
	owner := int64(-1)
	if rec := s.patterns[id]; rec != nil {
		owner = rec.owner
	}
	if err := s.check(c, accessOwner, owner); err != nil {
		return err
	}
	if err := s.d.RemoveWakePattern(id); err != nil {
		return errorf(http.StatusNotFound, codeNotFound, "id", "", "%v", err)
	}
	delete(s.patterns, id)
	s.hub.clearPatternOwner(id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- track ---

type learnedJSON struct {
	Conn        connJSON `json:"conn"`
	LocalMAC    string   `json:"local_mac"`
	RemoteMAC   string   `json:"remote_mac"`
	SndNxt      uint32   `json:"snd_nxt"`
	SndUna      uint32   `json:"snd_una"`
	RcvNxt      uint32   `json:"rcv_nxt"`
	HostAck     uint32   `json:"host_ack"`
	SndWnd      uint16   `json:"snd_wnd"`
	RcvWnd      uint16   `json:"rcv_wnd"`
	SndWScale   int8     `json:"snd_wscale"`
	RcvWScale   int8     `json:"rcv_wscale"`
	MSS         uint16   `json:"mss"`
	HasTS       bool     `json:"has_ts"`
	HostTSval   uint32   `json:"host_tsval"`
	TSRecent    uint32   `json:"ts_recent"`
	HostTSAt    string   `json:"host_ts_at"`
	TTL         uint8    `json:"ttl"`
	TOS         uint8    `json:"tos"`
	SegmentsOut uint64   `json:"segments_out"`
	SegmentsIn  uint64   `json:"segments_in"`
	SeenOut     bool     `json:"seen_out"`
	SeenIn      bool     `json:"seen_in"`
}

func learnedToJSON(l *Learned) learnedJSON {
	return learnedJSON{
		Conn: connToJSON(l.Conn), LocalMAC: net.HardwareAddr(l.LocalMAC[:]).String(), RemoteMAC: net.HardwareAddr(l.RemoteMAC[:]).String(),
		SndNxt: l.SndNxt, SndUna: l.SndUna, RcvNxt: l.RcvNxt, HostAck: l.HostAck, SndWnd: l.SndWnd, RcvWnd: l.RcvWnd,
		SndWScale: l.SndWScale, RcvWScale: l.RcvWScale, MSS: l.MSS, HasTS: l.HasTS, HostTSval: l.HostTSval,
		TSRecent: l.TSRecent, HostTSAt: l.HostTSAt.String(), TTL: l.TTL, TOS: l.TOS,
		SegmentsOut: l.SegmentsOut, SegmentsIn: l.SegmentsIn, SeenOut: l.SeenOut, SeenIn: l.SeenIn,
	}
}

// trackQuery reads the connection from ?local=&remote=[&vlan=].
func trackQuery(r *http.Request) (wp.TCPConn, error) {
	q := r.URL.Query()
	j := connJSON{Local: q.Get("local"), Remote: q.Get("remote")}
	if v := q.Get("vlan"); v != "" {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return wp.TCPConn{}, errorf(http.StatusBadRequest, codeBadRequest, "vlan", "", "vlan: %q is not a number", v)
		}
		j.VLAN = uint16(n)
	}
	return j.conn("")
}

func (s *ControlServer) getTrack(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	c, err := trackQuery(r)
	if err != nil {
		return err
	}
	l, ok := s.d.Learned(c)
	if !ok {
		return errorf(http.StatusNotFound, codeNotFound, "", "", "connection %v→%v vlan %d is not tracked", c.Local, c.Remote, c.VLAN)
	}
	writeJSON(w, http.StatusOK, learnedToJSON(&l))
	return nil
}

func (s *ControlServer) postTrack(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	c, err := s.readConn(w, r)
	if err != nil {
		return err
	}
	if err := s.d.Track(c); err != nil {
		return errorf(http.StatusUnprocessableEntity, codeInvalid, "", "", "%v", err)
	}
	w.Header().Set("Location", "/v1/track?"+trackValues(c))
	writeJSON(w, http.StatusCreated, connToJSON(c))
	return nil
}

func (s *ControlServer) deleteTrack(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	c, err := trackQuery(r)
	if err != nil {
		return err
	}
	if err := s.d.Untrack(c); err != nil {
		return errorf(http.StatusNotFound, codeNotFound, "", "", "%v", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// readConn reads a request body holding one connection.
func (s *ControlServer) readConn(w http.ResponseWriter, r *http.Request) (wp.TCPConn, error) {
	b, err := s.readBody(w, r)
	if err != nil {
		return wp.TCPConn{}, err
	}
	var j connJSON
	if err := decodeStrict(b, &j, ""); err != nil {
		return wp.TCPConn{}, err
	}
	return j.conn("")
}

// trackValues is the query string naming c.
func trackValues(c wp.TCPConn) string {
	v := url.Values{"local": {c.Local.String()}, "remote": {c.Remote.String()}}
	if c.VLAN != 0 {
		v.Set("vlan", strconv.Itoa(int(c.VLAN)))
	}
	return v.Encode()
}

// --- coalescing ---

func (s *ControlServer) getCoalescing(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	out := []connJSON{}
	for _, c := range s.d.Coalescing() {
		out = append(out, connToJSON(c))
	}
	cnt := map[string]uint64{}
	for _, c := range s.d.CoalescingCounters() {
		cnt[c.Name] = c.Value
	}
	writeJSON(w, http.StatusOK, struct {
		Filters  []connJSON        `json:"filters"`
		Counters map[string]uint64 `json:"counters"`
	}{out, cnt})
	return nil
}

func (s *ControlServer) postCoalescing(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	c, err := s.readConn(w, r)
	if err != nil {
		return err
	}
	if err := s.d.AddCoalescing(c); err != nil {
		if errors.Is(err, ErrLimit) || errors.Is(err, ErrState) {
			return err
		}
		return errorf(http.StatusUnprocessableEntity, codeInvalid, "", "", "%v", err)
	}
	w.Header().Set("Location", "/v1/coalescing?"+trackValues(c))
	writeJSON(w, http.StatusCreated, connToJSON(c))
	return nil
}

func (s *ControlServer) deleteCoalescing(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	c, err := trackQuery(r)
	if err != nil {
		return err
	}
	if err := s.d.RemoveCoalescing(c); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
