package host

import (
	"math/rand/v2"
	"time"

	"github.com/standbynic/standbynic/slotmgr"
)

// The reconnect schedule. A channel whose transport died (any cause:
// the server's reset, a failed hand-back, a keep-alive timeout, while
// awake, entering standby or asleep) is TransportDisconnected; its reset
// task (ResetTransportDisconnected) is the app's one reconnect attempt
// (Dial, then UsingTransport). The host runs it at once when it is awake;
// otherwise, and after every attempt that left the channel without a
// transport, it schedules its own wake (WakeReconnect) at which the task
// runs: the first ReconnectMin after the loss, each next one twice as
// late, at most ReconnectMax, each ±ReconnectJitter at random (channels
// that lost their transports together do not all retry together).
// Without a reset task bound nothing is scheduled (nobody could
// reconnect). A new transport ends the schedule.

// Defaults of the reconnect schedule (Config).
const (
	DefaultReconnectMin    = 500 * time.Millisecond
	DefaultReconnectMax    = 5 * time.Minute
	DefaultReconnectJitter = 0.2
)

// reconnectDelay returns the delay before the attempt after n earlier
// ones.
func (h *Host) reconnectDelay(n int) time.Duration {
	d := h.cfg.ReconnectMin
	for i := 0; i < n && d < h.cfg.ReconnectMax; i++ {
		d *= 2
	}
	d = min(d, h.cfg.ReconnectMax)
	if j := h.cfg.ReconnectJitter; j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*rand.Float64()-1)))
	}
	return max(d, time.Millisecond)
}

// scheduleReconnectLocked schedules ch's next reconnect wake.
func (h *Host) scheduleReconnectLocked(ch *Channel) {
	if ch.closed || h.closed || ch.resetTask == "" || ch.status != slotmgr.TransportDisconnected {
		return
	}
	ch.reconnectAt = h.clock.Now() + h.reconnectDelay(ch.reconnectN)
	ch.reconnectN++
	h.kickLocked()
}

// reconnectDoneLocked runs when a reset task of ch for its lost
// transport returned: if the channel still has none, the next attempt is
// scheduled.
func (h *Host) reconnectDoneLocked(ch *Channel) {
	if ch.reconnectAt < 0 {
		h.scheduleReconnectLocked(ch)
	}
}

// nextReconnectLocked returns the earliest reconnect wake due, or -1.
func (h *Host) nextReconnectLocked() time.Duration {
	at := time.Duration(-1)
	for _, ch := range h.order {
		if ch.reconnectAt >= 0 && !ch.closed && (at < 0 || ch.reconnectAt < at) {
			at = ch.reconnectAt
		}
	}
	return at
}

// dueReconnectsLocked fires the reset task of every channel whose
// reconnect is due (the host is awake).
func (h *Host) dueReconnectsLocked(now time.Duration) {
	for _, ch := range h.order {
		if ch.reconnectAt < 0 || ch.reconnectAt > now {
			continue
		}
		ch.reconnectAt = -1
		if ch.closed || ch.status != slotmgr.TransportDisconnected {
			continue
		}
		ch.resets++
		ch.lastReset = ResetTransportDisconnected
		h.fireLocked(ch, TriggerReset, ResetTransportDisconnected)
	}
}

// deadPeerTimeout is how long a peer may leave the host's bytes
// unacknowledged before its connection is taken as dead
// (TCP_USER_TIMEOUT): what a NIC slot of the same interval waits before it
// wakes with keep-alive-timeout (the interval, then RetryCount retries
// RetryInterval apart; see specFor), at least 1 s.
func (h *Host) deadPeerTimeout(interval time.Duration) time.Duration {
	retry := h.cfg.HardwareRetryInterval
	if retry <= 0 {
		retry = interval / 4
	}
	return max(interval+time.Duration(h.cfg.HardwareRetryCount)*retry, time.Second)
}
