package host

import (
	"errors"
	"fmt"
	"time"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/slotmgr"
)

// The NIC watch: what the host does when its NIC goes away and comes back.
//
// A NIC that also implements NICWatcher (nic.Remote: a NIC daemon seen
// through its control socket) raises a nic-lost wake (nic.WakeNICLost)
// when its daemon dies, restarts, or stops answering its lease renewals.
// Then, in any state:
//
//	nic-lost ─▶ resume (WakeNICLost) ─▶ take back every slot ─▶ awake, NIC away
//	                                      │ Disarm answered: byte-exact (books)
//	                                      │ Disarm failed: thaw without books
//	                                      ▼
//	 NIC away: standby with every channel on the host's own keep-alives
//	 (no slot armed, no coalescing, no NIC Sleep or Wake)
//	                                      │ Back() closed
//	                                      ▼
//	 back ─▶ same instance: disarm the lease's stale slots (LeaseSlots);
//	         another instance: nothing armed, tracked or coalesced there
//	      ─▶ Track every channel again ─▶ wake (WakeNICLost) ─▶ the next
//	         standby entry arms the hardware channels on the NIC again
//
// A socket thawed without the slot's books is byte-exact only when the
// slot cannot have put a byte on the stream: a TCP-probe slot (its probes
// carry no stream byte and it absorbs only pure ACKs; a push wakes, and
// its frame, never acknowledged by the NIC, is retransmitted by the
// server), or a payload slot whose first keep-alive was not due yet. Then
// the kernel's view is the wire's, and what the dead NIC dropped (a push,
// an ACK) is retransmitted by TCP: the connection is healthy and kept
// (Stats.BlindThaws). Otherwise the slot may have sent keep-alive bytes
// (the server's RCV.NXT is past the socket's SND.NXT: the host's next
// bytes would overlap them and be taken as duplicates) or absorbed
// replies (the server's SND.NXT is past the socket's RCV.NXT, and the
// server, which saw them acknowledged, never sends them again: the
// socket would wait for them forever). TCP cannot repair either, so the
// host thaws the socket (never leaving it in repair mode) and closes the
// connection: the channel is TransportDisconnected, its reset task
// reconnects it on the reconnect schedule, and the loss is logged,
// counted (Stats.Unrecovered) and said in Channel.Note. A stale slot
// found when the NIC comes back is disarmed; if its books show it did
// put bytes on a stream the host kept, that connection is closed too.

// NICWatcher is what the host reads of a NIC that can be lost (nic.Remote
// implements it; the host finds it by type assertion on Config.NIC).
type NICWatcher interface {
	// Back returns a channel closed while the NIC is up.
	Back() <-chan struct{}
	// Health says whether it is up and how often it came back as another
	// instance (Restarts).
	Health() nic.NICHealth
	// LeaseSlots lists the slots the NIC still holds under the host's
	// lease.
	LeaseSlots() ([]nic.SlotStatus, error)
}

var _ NICWatcher = (*nic.Remote)(nil)

// blindMargin is how long before a slot's first keep-alive the host still
// takes it as unsent when it has no books (the NIC's and the host's
// clocks, and the time the loss took to notice).
const blindMargin = 250 * time.Millisecond

// errNICAway says a hardware channel stays with the host's keep-alives
// because the NIC is away.
var errNICAway = fmt.Errorf("arm: the NIC is away (lost; the host arms again when it is back)")

// errNICUnreachable is the cause of a hand-back without books while the
// NIC is known to be down.
var errNICUnreachable = errors.New("the NIC is unreachable")

// nicLostLocked handles a nic-lost wake in any state.
func (h *Host) nicLostLocked() {
	h.stats.NICLosses++
	armed := 0
	for _, ch := range h.order {
		if ch.slot != 0 {
			armed++
		}
	}
	h.log.Warn("nic lost: taking back what it guarded", "state", h.state, "armed", armed)
	if h.watch != nil {
		h.nicDown = true
		h.nicBackC = h.watch.Back()
	}
	switch h.state {
	case Standby:
		h.beginResumeLocked(WakeNICLost)
	case Awake:
		// Nothing is armed; a dead NIC's filters went with it.
		if h.nicDown {
			for _, ch := range h.order {
				ch.coalesced = false
			}
		}
	}
	// Resuming: the hand-back at the end of the resume takes the slots
	// back (without the NIC, blind).
	h.kickLocked()
}

// nicBackLocked runs when the NIC is reached again after a loss.
func (h *Host) nicBackLocked() {
	h.nicBackC = nil
	if !h.nicDown || h.watch == nil {
		return
	}
	hl := h.watch.Health()
	if !hl.Up {
		h.nicBackC = h.watch.Back() // lost again already
		return
	}
	h.nicDown = false
	h.stats.NICBacks++
	if hl.Restarts != h.nicRestarts {
		// Another instance: nothing of the old one is there.
		h.nicRestarts = hl.Restarts
		h.stats.NICRestarts++
		for _, ch := range h.order {
			ch.tracked, ch.coalesced = false, false
		}
	} else {
		h.disarmStaleLocked()
		// The coalescing filters the host could not remove while the
		// NIC was away.
		for _, ch := range h.liveChannelsLocked() {
			h.nic.RemoveCoalescing(connOf(ch.transport.Conn())) // most have none
			ch.coalesced = false
		}
		if err := h.nic.Resume(); err != nil {
			h.log.Debug("nic resume after a loss", "err", err)
		}
	}
	for _, ch := range h.liveChannelsLocked() {
		if ch.tracked {
			continue
		}
		if err := h.nic.Track(connOf(ch.transport.Conn())); err != nil {
			h.log.Debug("track", "channel", ch.id, "err", err)
			continue
		}
		ch.tracked = true
	}
	h.log.Info("nic back: arming again at the next standby", "instance", hl.Instance, "restarts", hl.Restarts,
		"losses", hl.Losses)
	if h.state == Standby {
		h.beginResumeLocked(WakeNICLost)
	}
	h.kickLocked()
}

// disarmStaleLocked disarms the slots the NIC still holds under the
// lease after a loss (the host took every one of its channels back
// already, without books).
func (h *Host) disarmStaleLocked() {
	slots, err := h.watch.LeaseSlots()
	if err != nil {
		h.log.Warn("nic back: list the lease's slots", "err", err)
		return
	}
	for _, s := range slots {
		rep, err := h.nic.Disarm(s.ID)
		h.stats.StaleSlots++
		if err != nil {
			h.log.Warn("nic: disarm a stale slot of the lease", "slot", s.ID, "label", s.Label, "err", err)
			continue
		}
		var owner *Channel
		for _, ch := range h.order {
			if ch.blindSlot == s.ID {
				owner = ch
			}
		}
		h.log.Info("nic: disarmed a stale slot of the lease", "slot", s.ID, "label", s.Label,
			"sent", len(rep.Books.Sent), "absorbed", len(rep.Books.Absorbed))
		if owner == nil || owner.transport == nil || owner.status == slotmgr.TransportDisconnected {
			continue
		}
		owner.blindSlot = 0
		if len(rep.Books.Sent) > 0 || len(rep.Books.Absorbed) > 0 {
			h.unrecoveredLocked(owner, fmt.Sprintf("the NIC came back with slot %d's books (%d bytes sent, %d absorbed) after the socket was thawed without them",
				s.ID, len(rep.Books.Sent), len(rep.Books.Absorbed)))
		}
	}
}

// blindThawLocked hands fz back when the slot's books cannot be had (the
// NIC is lost, or lost the slot): see the comment at the top.
func (h *Host) blindThawLocked(ch *Channel, slot nic.SlotID, fz *Frozen, cause error, now time.Duration) {
	sure, why := h.booksEmptyLocked(ch, now)
	if err := fz.Thaw(nil, nil); err != nil {
		fz.Abort()
		h.stats.HandBackErrors++
		h.log.Warn("hand back failed", "channel", ch.id, "err", err)
		ch.transport.Close()
		return
	}
	ch.blindSlot = slot
	if !sure {
		h.unrecoveredLocked(ch, fmt.Sprintf("slot %d lost with the NIC (%v): %s", slot, cause, why))
		return
	}
	h.stats.BlindThaws++
	h.stats.HandBacks++
	ch.faultNote = fmt.Sprintf("slot %d lost with the NIC: thawed without its books (%s)", slot, why)
	h.log.Info("thawed without the slot's books", "channel", ch.id, "slot", slot, "why", why, "cause", cause)
	if !ch.closed && !ch.transport.NICKeepAlive().HostAppKeepAlive {
		h.planner.Remove(ch.id)
		h.planner.Add(ch.id, ch.interval, ch.armLast) // its next keep-alive early, never late
	}
}

// booksEmptyLocked reports whether ch's slot, armed at ch.armedAt, can
// have put no byte on the stream by now.
func (h *Host) booksEmptyLocked(ch *Channel, now time.Duration) (bool, string) {
	k := ch.transport.NICKeepAlive()
	switch k.Kind {
	case 0, offload.KindTCPProbe:
		return true, "TCP probes carry no stream byte"
	case offload.KindWebSocket:
		return false, "a WebSocket slot answers the server's Pings at any time: what it sent and absorbed is unknown"
	}
	if now+blindMargin < ch.armLast+ch.interval {
		return true, "no keep-alive of the slot was due yet"
	}
	return false, "the slot's keep-alives were due: the bytes it sent and absorbed are unknown"
}

// unrecoveredLocked closes a connection whose stream the host cannot take
// back byte-exact: its reader sees the close, the channel is
// TransportDisconnected and its reset task reconnects it.
func (h *Host) unrecoveredLocked(ch *Channel, why string) {
	h.stats.Unrecovered++
	ch.faultNote = "not recovered: " + why + "; the connection was closed and is reconnected"
	h.log.Warn("connection not recovered after the NIC's loss", "channel", ch.id, "why", why)
	if ch.closed || ch.status == slotmgr.TransportDisconnected {
		ch.transport.Close()
		return
	}
	// Disconnected now, not when its reader sees the close: the reset
	// task runs at this wake (the reader of the old transport stops).
	ch.gen++
	h.disconnectLocked(ch, errors.New("connection not recovered after the NIC's loss: "+why))
}

// startLeaseLocked runs once, before the host has any channel: a slot
// held under the lease now is a predecessor's (a lease taken over), and
// guards a socket this host does not have; it is disarmed, and the NIC
// brought to D0 so that it forwards to the new host.
func (h *Host) startLeaseLocked() {
	slots, err := h.watch.LeaseSlots()
	if err != nil || len(slots) == 0 {
		return
	}
	h.log.Warn("nic: the lease holds a previous instance's slots; disarming them", "slots", len(slots))
	h.disarmStaleLocked()
	if err := h.nic.Resume(); err != nil {
		h.log.Debug("nic resume at start", "err", err)
	}
}
