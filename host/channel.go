package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/slotmgr"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// Channel is a control channel, the ControlChannelTrigger analogue: an
// id, a server keep-alive interval, a requested slot kind, a transport,
// and the tasks its triggers run.
//
//	NewChannel ──> UsingTransport ──> WaitForPushEnabled ──> (tasks run on
//	KeepAlive, PushNotification and Reset triggers) ──> Close
type Channel struct {
	h        *Host
	id, app  string
	resource slotmgr.ResourceType
	priority int
	seq      uint64

	// Guarded by h.mu.
	interval      time.Duration
	result        slotmgr.Result
	status        slotmgr.Status
	transport     Transport
	gen           uint64 // transport generation: stale readers stop
	tracked       bool
	closed        bool
	pushTask      string
	kaTask        string
	resetTask     string
	queue         []Message
	events        []slotmgr.Event
	resets        int
	lastReset     ResetReason
	note          string     // why the channel stayed software at the last standby
	faultNote     string     // what the NIC's last loss did to it (nicwatch.go); "" after the next arm
	blindSlot     nic.SlotID // the slot thawed without books at the NIC's loss
	frozen        *Frozen
	slot          nic.SlotID    // armed NIC slot; 0 when none
	lastSlot      nic.SlotID    // the slot of the last standby (wake attribution)
	armRcvNxt     uint32        // RCV.NXT of the slot's snapshot
	armedAt       time.Duration // when the slot was armed
	armLast       time.Duration // the last keep-alive the slot's first due implies (due − interval)
	coalesced     bool          // a NIC coalescing filter holds its frames in standby
	nicSent       uint64        // stream bytes the NIC sent for the channel (all hand-backs)
	nicAbsorbed   uint64        // stream bytes the NIC absorbed for it
	received      uint64
	disconnectErr error
	past          TransportStats // counters of the channel's earlier transports
	level         string         // keep-alive level of the last standby ("" before)

	// The reconnect schedule (reconnect.go).
	reconnectAt    time.Duration // when the next reconnect wake is due; -1 none
	reconnectN     int           // attempts since the last transport
	reconnectTries uint64        // reconnect attempts (reset task runs) in all
	reconnected    uint64        // new transports after a disconnection
}

// ChannelStats are a channel's counters for the summary.
type ChannelStats struct {
	// Protocol is the current transport's protocol (0 without one).
	Protocol Protocol
	// KeepAliveLevel is where the keep-alive runs: LevelTCP (TCP probes:
	// TLS channels, tcp-probe channels) or LevelApp (the app's keep-alive
	// sent by the NIC); "" without a transport.
	KeepAliveLevel string
	// Transport sums the counters of the channel's transports, the
	// current one included: ConsumedReplies are the keep-alive replies
	// (PINGRESP, Pong, payload replies) the codec consumed instead of
	// pushing them; AbsorbedReplies those among them the NIC absorbed.
	Transport TransportStats
	// NICSent and NICAbsorbed are the stream bytes the NIC sent and
	// absorbed for the channel (NICBytes).
	NICSent, NICAbsorbed uint64
	// ReconnectAttempts counts the reset task runs of the reconnect
	// schedule; Reconnects the transports taken after a disconnection.
	ReconnectAttempts, Reconnects uint64
	// NextReconnect is when the next reconnect wake is due (-1: none).
	NextReconnect time.Duration
}

// Stats returns the channel's counters.
func (ch *Channel) Stats() ChannelStats {
	ch.h.mu.Lock()
	defer ch.h.mu.Unlock()
	st := ChannelStats{
		Transport: ch.past, NICSent: ch.nicSent, NICAbsorbed: ch.nicAbsorbed,
		ReconnectAttempts: ch.reconnectTries, Reconnects: ch.reconnected, NextReconnect: ch.reconnectAt,
	}
	if t := ch.transport; t != nil {
		st.Protocol = t.Protocol()
		st.KeepAliveLevel = t.NICKeepAlive().Level
		st.Transport = addTransportStats(st.Transport, t.Stats())
	}
	return st
}

func addTransportStats(a, b TransportStats) TransportStats {
	return TransportStats{
		ConsumedReplies: a.ConsumedReplies + b.ConsumedReplies,
		AbsorbedReplies: a.AbsorbedReplies + b.AbsorbedReplies,
		KeepAlives:      a.KeepAlives + b.KeepAlives,
		Messages:        a.Messages + b.Messages,
	}
}

// KeepAliveLevel returns where the channel's keep-alive runs: LevelTCP or
// LevelApp ("" without a transport).
func (ch *Channel) KeepAliveLevel() string { return ch.Stats().KeepAliveLevel }

// ConsumedReplies returns the keep-alive replies the channel's codecs
// consumed (never shown as pushes), those the NIC absorbed included.
func (ch *Channel) ConsumedReplies() uint64 { return ch.Stats().Transport.ConsumedReplies }

// NewChannel creates a channel and asks the slot pool for its placement:
// id (1–64 characters), the server keep-alive interval, the requested
// resource type, the owning app and a priority (higher wins slots). A
// malformed or duplicate request is an error; a policy refusal is not:
// the channel exists and WaitForPushEnabled reports PolicyError (or
// SystemError, ServiceUnavailable).
func (h *Host) NewChannel(id string, serverKeepAliveInterval time.Duration, resource slotmgr.ResourceType, app string, priority int) (*Channel, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("new channel %s: %w", id, ErrClosed)
	}
	if _, ok := h.chans[id]; ok {
		return nil, fmt.Errorf("new channel %s: %w", id, slotmgr.ErrChannelExists)
	}
	res, err := h.pool.Request(slotmgr.Request{
		Channel: id, App: app, Resource: resource, Interval: serverKeepAliveInterval, Priority: priority,
	})
	if err != nil {
		return nil, fmt.Errorf("new channel: %w", err)
	}
	h.seq++
	ch := &Channel{
		h: h, id: id, app: app, resource: resource, priority: priority, seq: h.seq,
		interval: serverKeepAliveInterval, result: res, status: res.Status, reconnectAt: -1,
	}
	if res.Status.Allocated() {
		h.chans[id] = ch
		h.order = append(h.order, ch)
	}
	h.notifyLocked()
	return ch, nil
}

// ID returns the channel id.
func (ch *Channel) ID() string { return ch.id }

// App returns the owning app.
func (ch *Channel) App() string { return ch.app }

// Placement returns the channel's current slot placement.
func (ch *Channel) Placement() slotmgr.Result {
	ch.h.mu.Lock()
	defer ch.h.mu.Unlock()
	r := ch.result
	r.Status = ch.status
	return r
}

// Status returns the channel's current status.
func (ch *Channel) Status() slotmgr.Status {
	ch.h.mu.Lock()
	defer ch.h.mu.Unlock()
	return ch.status
}

// KeepAliveInterval returns the channel's current keep-alive interval.
func (ch *Channel) KeepAliveInterval() time.Duration {
	ch.h.mu.Lock()
	defer ch.h.mu.Unlock()
	return ch.interval
}

// Note says why the channel was kept alive by the host instead of a
// hardware slot at the last entry to standby ("" when it was not, or was
// never a hardware channel), and what the NIC's last loss did to it
// until it is armed again (thawed without books, or not recovered).
func (ch *Channel) Note() string {
	ch.h.mu.Lock()
	defer ch.h.mu.Unlock()
	switch {
	case ch.faultNote == "":
		return ch.note
	case ch.note == "":
		return ch.faultNote
	}
	return ch.note + "; " + ch.faultNote
}

// Armed reports whether a NIC slot guards the channel now.
func (ch *Channel) Armed() bool {
	ch.h.mu.Lock()
	defer ch.h.mu.Unlock()
	return ch.slot != 0
}

// NICBytes returns the stream bytes the NIC sent and absorbed for the
// channel while the host slept, summed over every hand-back: they are in
// the connection's stream (the server received sent; the app reads
// absorbed) though neither the app nor the server wrote them on the
// host's side.
func (ch *Channel) NICBytes() (sent, absorbed uint64) {
	ch.h.mu.Lock()
	defer ch.h.mu.Unlock()
	return ch.nicSent, ch.nicAbsorbed
}

// Events returns the placement events (promotion, eviction,
// disconnection) the channel received, oldest first.
func (ch *Channel) Events() []slotmgr.Event {
	ch.h.mu.Lock()
	defer ch.h.mu.Unlock()
	return append([]slotmgr.Event(nil), ch.events...)
}

// Resets returns the number of reset events raised on the channel and the
// last reason.
func (ch *Channel) Resets() (int, ResetReason) {
	ch.h.mu.Lock()
	defer ch.h.mu.Unlock()
	return ch.resets, ch.lastReset
}

// SetPushTask binds the PushNotification trigger to a registered task.
func (ch *Channel) SetPushTask(name string) error { return ch.setTask(&ch.pushTask, name) }

// SetKeepAliveTask binds the KeepAlive trigger to a registered task.
func (ch *Channel) SetKeepAliveTask(name string) error { return ch.setTask(&ch.kaTask, name) }

// SetResetTask binds the reset trigger to a registered task.
func (ch *Channel) SetResetTask(name string) error { return ch.setTask(&ch.resetTask, name) }

func (ch *Channel) setTask(field *string, name string) error {
	h := ch.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.tasks[name]; !ok {
		return fmt.Errorf("set task %s on %s: %w", name, ch.id, ErrUnknownTask)
	}
	*field = name
	return nil
}

func (ch *Channel) taskName(t Trigger) string {
	switch t {
	case TriggerKeepAlive:
		return ch.kaTask
	case TriggerPushNotification:
		return ch.pushTask
	case TriggerReset:
		return ch.resetTask
	}
	return ""
}

// UsingTransport gives the channel its connection and posts the first
// receive. After a disconnection the channel takes a new transport and
// is placed again (slotmgr Reconnect).
func (ch *Channel) UsingTransport(t Transport) error {
	if t == nil || t.Conn() == nil {
		return fmt.Errorf("using transport on %s: nil transport", ch.id)
	}
	h := ch.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return fmt.Errorf("using transport on %s: %w", ch.id, ErrClosed)
	}
	if ch.closed || !ch.placed() {
		return fmt.Errorf("using transport on %s: %w (%v)", ch.id, ErrChannelGone, ch.status)
	}
	if ch.transport != nil && ch.status != slotmgr.TransportDisconnected {
		return fmt.Errorf("using transport on %s: %w", ch.id, ErrHasTransport)
	}
	if ch.status == slotmgr.TransportDisconnected {
		ch.reconnectAt, ch.reconnectN = -1, 0
		res, err := h.pool.Reconnect(ch.id)
		if err != nil {
			return fmt.Errorf("using transport on %s: %w", ch.id, err)
		}
		ch.result, ch.status = res, res.Status
		if !res.Status.Allocated() {
			return nil // WaitForPushEnabled reports why
		}
	}
	if ch.transport != nil {
		ch.reconnected++
	}
	h.attachLocked(ch, t)
	return nil
}

// placed reports whether the pool holds the channel (allocated now or
// disconnected).
func (ch *Channel) placed() bool {
	return ch.status.Allocated() || ch.status == slotmgr.TransportDisconnected
}

func (h *Host) attachLocked(ch *Channel, t Transport) {
	if ch.transport != nil {
		h.untrackLocked(ch)
		ch.transport.Close()
		ch.past = addTransportStats(ch.past, ch.transport.Stats())
	}
	ch.transport = t
	ch.gen++
	ch.disconnectErr = nil
	ch.reconnectAt, ch.reconnectN = -1, 0
	if mi := t.NICKeepAlive().MaxInterval; mi > 0 && ch.interval > mi {
		// The protocol's own keep-alive (MQTT's negotiated one) needs
		// keep-alives at least this often.
		ch.interval = mi
	}
	ch.level = t.NICKeepAlive().Level
	if c := t.Conn(); c != nil {
		// A peer that stops acknowledging is dead for the host as soon
		// as it would be for a NIC slot: the host's own keep-alives
		// (software slots, the NIC away) end the connection then, and
		// its reset task reconnects it (reconnect.go).
		if err := setUserTimeout(c, h.deadPeerTimeout(ch.interval)); err != nil {
			h.log.Debug("TCP_USER_TIMEOUT", "channel", ch.id, "err", err)
		}
	}
	now := h.clock.Now()
	h.planner.Remove(ch.id)
	h.planner.Add(ch.id, ch.interval, now)
	h.shadow.Remove(ch.id)
	h.shadow.Add(ch.id, ch.interval, now)
	if h.nic != nil && !h.nicDown { // else tracked when the NIC is back
		if err := h.nic.Track(connOf(t.Conn())); err != nil {
			h.log.Debug("track", "channel", ch.id, "err", err)
		} else {
			ch.tracked = true
		}
	}
	gen := ch.gen
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.readLoop(ch, t, gen)
	}()
	h.notifyLocked()
}

func (h *Host) untrackLocked(ch *Channel) {
	if ch.tracked && h.nic != nil && !h.nicDown && ch.transport != nil {
		h.nic.Untrack(connOf(ch.transport.Conn()))
	}
	ch.tracked = false
	h.uncoalesceLocked(ch)
}

// connOf names c's connection for the NIC: the host's end is Local.
func connOf(c *net.TCPConn) wp.TCPConn {
	l, r := addrPorts(c)
	return wp.TCPConn{Local: l, Remote: r}
}

func addrPorts(c *net.TCPConn) (local, remote netip.AddrPort) {
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ap := la.AddrPort()
		local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if ra, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := ra.AddrPort()
		remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return local, remote
}

// readLoop is the channel's posted receive: each completion queues the
// message, then fires the PushNotification trigger.
func (h *Host) readLoop(ch *Channel, t Transport, gen uint64) {
	for {
		p, err := t.Read()
		h.mu.Lock()
		if ch.gen != gen || ch.closed {
			h.mu.Unlock()
			return
		}
		if err != nil {
			h.disconnectLocked(ch, err)
			h.mu.Unlock()
			return
		}
		p.At = h.clock.Now()
		ch.queue = append(ch.queue, p)
		ch.received++
		delete(h.expect, ch)
		h.fireLocked(ch, TriggerPushNotification, 0)
		h.mu.Unlock()
	}
}

// disconnectLocked records the loss of ch's transport: TransportDisconnected,
// the slot freed (a hardware slot promotes another channel), a reset event.
func (h *Host) disconnectLocked(ch *Channel, cause error) {
	ch.disconnectErr = cause
	h.detachLocked(ch)
	res, err := h.pool.MarkDisconnected(ch.id, cause.Error())
	if err == nil {
		ch.result, ch.status = res, res.Status
	}
	h.poolEventsLocked()
	if h.state == Standby || h.state == EnteringStandby {
		// Asleep: nothing else would wake the host for the reset task;
		// the reconnect schedule does (reconnect.go), and raises the
		// reset event then.
		h.scheduleReconnectLocked(ch)
		return
	}
	ch.resets++
	ch.lastReset = ResetTransportDisconnected
	h.fireLocked(ch, TriggerReset, ResetTransportDisconnected)
}

// detachLocked takes ch off everything that schedules or guards it — the
// pending-wake set, the software planners, the NIC's learning and its
// hardware slot, TCP_REPAIR — and closes its transport. Its place in the
// slot pool is the caller's business.
func (h *Host) detachLocked(ch *Channel) {
	delete(h.expect, ch)
	h.planner.Remove(ch.id)
	h.shadow.Remove(ch.id)
	h.untrackLocked(ch)
	if ch.slot != 0 && h.nic != nil {
		h.nic.Disarm(ch.slot)
		ch.slot = 0
	}
	if ch.frozen != nil {
		ch.frozen.Abort()
		ch.frozen = nil
	}
	if ch.transport != nil {
		gateOf(ch.transport).releaseIf()
		ch.transport.Close()
	}
}

// DisconnectCause returns the error that ended the last transport, or nil.
func (ch *Channel) DisconnectCause() error {
	ch.h.mu.Lock()
	defer ch.h.mu.Unlock()
	return ch.disconnectErr
}

// WaitForPushEnabled returns the channel's status once it has a
// transport: HardwareSlotAllocated or SoftwareSlotAllocated when push is
// enabled, else the failure (PolicyError, SystemError,
// TransportDisconnected, ServiceUnavailable). A policy failure needs no
// transport. The error is for misuse (no transport, closed).
func (ch *Channel) WaitForPushEnabled() (slotmgr.Status, error) {
	h := ch.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if !ch.placed() {
		return ch.status, nil
	}
	if ch.closed {
		return ch.status, fmt.Errorf("wait for push enabled on %s: %w", ch.id, ErrChannelGone)
	}
	if ch.transport == nil {
		return ch.status, fmt.Errorf("wait for push enabled on %s: %w", ch.id, ErrNoTransport)
	}
	return ch.status, nil
}

// Receive pops the oldest queued message; ok is false when none is.
func (ch *Channel) Receive() (m Message, ok bool) {
	ch.h.mu.Lock()
	defer ch.h.mu.Unlock()
	if len(ch.queue) == 0 {
		return Message{}, false
	}
	m = ch.queue[0]
	ch.queue[0] = Message{}
	ch.queue = ch.queue[1:]
	return m, true
}

// Send writes one message on the channel's transport.
func (ch *Channel) Send(p []byte) error {
	t, err := ch.currentTransport()
	if err != nil {
		return fmt.Errorf("send on %s: %w", ch.id, err)
	}
	if err := t.Write(p); err != nil {
		return fmt.Errorf("send on %s: %w", ch.id, err)
	}
	return nil
}

func (ch *Channel) currentTransport() (Transport, error) {
	ch.h.mu.Lock()
	defer ch.h.mu.Unlock()
	if ch.closed {
		return nil, ErrChannelGone
	}
	if ch.transport == nil || ch.status == slotmgr.TransportDisconnected {
		return nil, ErrNoTransport
	}
	return ch.transport, nil
}

// DecreaseNetworkKeepAliveInterval halves the channel's keep-alive
// interval, not below the policy's minimum, because its connections keep
// being dropped (a middlebox times out sooner than thought). It returns the
// new interval; it applies to the host's keep-alives at once and to the
// NIC's at the next standby.
func (ch *Channel) DecreaseNetworkKeepAliveInterval() time.Duration {
	h := ch.h
	h.mu.Lock()
	defer h.mu.Unlock()
	pc := h.pool.Config()
	floor := time.Duration(pc.MinInterval) * pc.IntervalUnit
	ch.interval = max(ch.interval/2, floor)
	now := h.clock.Now()
	if h.planner.Remove(ch.id) {
		h.planner.Add(ch.id, ch.interval, now)
	}
	if h.shadow.Remove(ch.id) {
		h.shadow.Add(ch.id, ch.interval, now)
	}
	h.kickLocked()
	return ch.interval
}

// FlushTransport waits until everything written on the channel was sent
// and acknowledged (the socket's send queue is empty), or ctx ends: the
// end of a task, before the host may sleep.
func (ch *Channel) FlushTransport(ctx context.Context) error {
	t, err := ch.currentTransport()
	if err != nil {
		return fmt.Errorf("flush transport on %s: %w", ch.id, err)
	}
	if err := waitSent(ctx, t.Conn()); err != nil {
		return fmt.Errorf("flush transport on %s: %w", ch.id, err)
	}
	return nil
}

// waitSent polls the kernel until conn has nothing unsent or unacked.
func waitSent(ctx context.Context, conn *net.TCPConn) error {
	delay := 200 * time.Microsecond
	for {
		err := Idle(conn)
		var ni *NotIdleError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ni):
			if ni.Queues.Unsent == 0 && ni.Queues.Unacked == 0 && ni.Queues.UnackedSegments == 0 {
				return nil // only unread bytes: the posted receive takes them
			}
		default:
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, 20*time.Millisecond)
	}
}

// Close releases the channel's slot, closes its transport and stops its
// receive. It is idempotent.
func (ch *Channel) Close() error {
	h := ch.h
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closeChannelLocked(ch)
	return nil
}

func (h *Host) closeChannelLocked(ch *Channel) {
	if ch.closed {
		return
	}
	ch.closed = true
	ch.gen++
	h.detachLocked(ch)
	if ch.placed() && !h.closed {
		h.pool.Release(ch.id)
		h.poolEventsLocked()
	}
	delete(h.chans, ch.id)
	h.notifyLocked()
}
