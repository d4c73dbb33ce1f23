package host

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// Trigger is what started a background task. The zero value is invalid.
type Trigger uint8

// Triggers.
const (
	_ Trigger = iota
	// TriggerKeepAlive: the channel's keep-alive is due (software slot,
	// non-WebSocket transport: the app sends its own keep-alive).
	TriggerKeepAlive
	// TriggerPushNotification: a message arrived on the channel and is in
	// its queue.
	TriggerPushNotification
	// TriggerReset: the channel was reset (ResetReason says why).
	TriggerReset
	numTrigger
)

// String returns a short lowercase name of t.
func (t Trigger) String() string {
	switch t {
	case TriggerKeepAlive:
		return "keep-alive"
	case TriggerPushNotification:
		return "push-notification"
	case TriggerReset:
		return "reset"
	}
	return "Trigger(" + strconv.Itoa(int(t)) + ")"
}

// ResetReason is why a channel was reset. The zero value is invalid.
type ResetReason uint8

// Reset reasons: the Windows ControlChannelReset set, plus the loss of
// the transport.
const (
	_ ResetReason = iota
	ResetFastUserSwitched
	ResetLowPowerExit
	ResetQuietHoursExit
	ResetApplicationRestart
	ResetTransportDisconnected
	numResetReason
)

// String returns the reason's name.
func (r ResetReason) String() string {
	switch r {
	case ResetFastUserSwitched:
		return "FastUserSwitched"
	case ResetLowPowerExit:
		return "LowPowerExit"
	case ResetQuietHoursExit:
		return "QuietHoursExit"
	case ResetApplicationRestart:
		return "ApplicationRestart"
	case ResetTransportDisconnected:
		return "TransportDisconnected"
	}
	return "ResetReason(" + strconv.Itoa(int(r)) + ")"
}

// TaskFunc is a background task's body. It runs on a goroutine the host
// owns; ctx ends when the host closes.
type TaskFunc func(ctx context.Context, ti *TaskInstance)

// Errors of the task registry.
var (
	ErrTaskExists  = errors.New("task already registered")
	ErrUnknownTask = errors.New("unknown task")
)

// TaskInstance is one run of a background task.
type TaskInstance struct {
	Name    string
	Trigger Trigger
	Channel *Channel
	// Reset is the reason of a TriggerReset run.
	Reset ResetReason
}

// Receive pops the oldest queued message of the channel; ok is false when
// the queue is empty. A PushNotification task reads its message here: the
// read completion queued it before the task was started.
func (ti *TaskInstance) Receive() (m Message, ok bool) {
	return ti.Channel.Receive()
}

// RegisterTask registers a background task under name.
func (h *Host) RegisterTask(name string, fn TaskFunc) error {
	if name == "" || fn == nil {
		return errors.New("register task: empty name or nil func")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.tasks[name]; ok {
		return fmt.Errorf("register task %s: %w", name, ErrTaskExists)
	}
	h.tasks[name] = fn
	return nil
}

// pendingTask is a trigger waiting for the host to be awake.
type pendingTask struct {
	ch      *Channel
	trigger Trigger
	reset   ResetReason
}

// fire queues a trigger of ch; it runs at once when the host is awake,
// at its next wake otherwise. Called with h.mu held.
func (h *Host) fireLocked(ch *Channel, t Trigger, reset ResetReason) {
	h.pending = append(h.pending, pendingTask{ch: ch, trigger: t, reset: reset})
	h.kickLocked()
}

// runPendingLocked starts every pending task; h.mu is held and the host
// is awake.
func (h *Host) runPendingLocked() {
	if len(h.pending) == 0 {
		return
	}
	defer h.notifyLocked()
	for _, p := range h.pending {
		name := p.ch.taskName(p.trigger)
		fn := h.tasks[name]
		if name == "" || fn == nil {
			h.stats.Unbound++
			continue
		}
		ti := &TaskInstance{Name: name, Trigger: p.trigger, Channel: p.ch, Reset: p.reset}
		reconnect := p.trigger == TriggerReset && p.reset == ResetTransportDisconnected
		if reconnect {
			p.ch.reconnectTries++
			h.stats.ReconnectAttempts++
		}
		h.stats.Tasks[p.trigger]++
		h.running++
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if h.cfg.OnTaskStart != nil {
				h.cfg.OnTaskStart(ti)
			}
			fn(h.ctx, ti)
			h.mu.Lock()
			if reconnect {
				h.reconnectDoneLocked(ti.Channel)
			}
			h.running--
			h.kickLocked()
			h.mu.Unlock()
		}()
	}
	clear(h.pending)
	h.pending = h.pending[:0]
}
