package host

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/slotmgr"
)

// ErrNoNIC says a hardware channel was kept alive by the host because
// there is no NIC to arm.
var ErrNoNIC = errors.New("no NIC")

// enterStandbyLocked quiesces the channels, arms the NIC's slots for the
// hardware ones, plans the software ones, and puts the NIC to sleep.
func (h *Host) enterStandbyLocked() {
	h.setStateLocked(EnteringStandby)
	if h.nic != nil {
		// Drop wake events of the last cycle: they were handled.
	drain:
		for {
			select {
			case <-h.nic.Wakes():
			default:
				break drain
			}
		}
	}
	for _, ch := range h.liveChannelsLocked() {
		ch.note = ""
		ch.lastSlot = 0
		if ch.status != slotmgr.HardwareSlotAllocated {
			continue
		}
		if err := h.armLocked(ch); err != nil {
			ch.note = err.Error()
			h.stats.StayedSoftware++
			h.log.Debug("hardware channel stays software", "channel", ch.id, "why", err)
			continue
		}
		h.planner.Remove(ch.id)
	}
	if h.nic != nil {
		if err := h.nic.Sleep(); err != nil {
			h.log.Warn("nic sleep failed; staying awake", "err", err)
			h.handBackLocked()
			h.target = Awake
			h.setStateLocked(Awake)
			return
		}
	}
	if h.cfg.PushCheckInterval > 0 {
		h.pushCheck = h.clock.Now() + h.cfg.PushCheckInterval
	}
	h.setStateLocked(Standby)
}

// armLocked freezes ch's socket and arms a NIC slot for it.
func (h *Host) armLocked(ch *Channel) error {
	if h.nic == nil {
		return fmt.Errorf("arm: %w", ErrNoNIC)
	}
	conn := ch.transport.Conn()
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.IdleWait)
	err := waitSent(ctx, conn)
	cancel()
	if err != nil {
		return fmt.Errorf("arm: %w", Idle(conn))
	}
	g := gateOf(ch.transport)
	if g != nil {
		g.hold()
	}
	fz, st, err := Freeze(conn)
	if err != nil {
		g.releaseIf()
		return fmt.Errorf("arm: %w", err)
	}
	learned, _ := h.nic.Learned(st.Local, st.Remote)
	snap, err := snapshotOf(st, learned, h.clock.Now())
	if err != nil {
		fz.Abort()
		g.releaseIf()
		return fmt.Errorf("arm: %w", err)
	}
	spec := h.specFor(ch)
	slot, err := h.nic.Arm(snap, spec)
	if err != nil {
		fz.Abort()
		g.releaseIf()
		return fmt.Errorf("arm: %w", err)
	}
	ch.frozen, ch.slot, ch.lastSlot = fz, slot, slot
	h.stats.Armed++
	return nil
}

// snapshotOf builds the offload engine's snapshot from the kernel's state
// and what the NIC learned (MACs, TS.Recent).
func snapshotOf(st TCPState, l Learned, now time.Duration) (offload.Snapshot, error) {
	s := offload.Snapshot{
		LocalMAC:  l.LocalMAC,
		RemoteMAC: l.RemoteMAC,
		Local:     st.Local,
		Remote:    st.Remote,
		SndNxt:    st.SndNxt,
		RcvNxt:    st.RcvNxt,
		SndWnd:    st.Window.SndWnd,
		SndWScale: st.SndWScale,
		RcvWScale: st.RcvWScale,
		TTL:       st.TTL,
		TOS:       st.TOS,
	}
	// Keep the right edge of the window the socket advertised (see the
	// notes in repair.go): window = RcvWup + RcvWnd - RCV.NXT.
	s.RcvWnd = st.Window.RcvWup + st.Window.RcvWnd - st.RcvNxt
	if limit := uint32(0xffff) << st.RcvWScale; s.RcvWnd > limit {
		s.RcvWnd = limit
	}
	mss := st.SndMSS
	if mss == 0 || (st.MSS != 0 && st.MSS < mss) {
		mss = st.MSS
	}
	s.MSS = uint16(min(mss, 0xffff))
	if st.Timestamps {
		rate := uint32(1000)
		if st.UsecTimestamps {
			rate = 1_000_000
		}
		s.Timestamps = offload.Timestamps{Enabled: true, Val: st.TSVal, At: now, Rate: rate, Recent: st.TSRecent}
		if l.HasTS {
			s.Timestamps.Recent = l.TSRecent
		}
	}
	if err := s.Validate(); err != nil {
		return offload.Snapshot{}, err
	}
	return s, nil
}

// specFor returns the NIC keep-alive of ch: TCP probes for a stream, the
// WebSocket keep-alive (Ping initiator, Ping responder) for a WebSocket.
func (h *Host) specFor(ch *Channel) offload.Spec {
	iv := ch.interval
	retry := h.cfg.HardwareRetryInterval
	if retry <= 0 {
		retry = iv / 4
	}
	retry = min(max(retry, offload.MinRetryInterval), iv)
	s := offload.Spec{
		Kind:          offload.KindTCPProbe,
		Interval:      iv,
		RetryInterval: retry,
		RetryCount:    h.cfg.HardwareRetryCount,
	}
	if ch.transport.Kind() == KindWebSocket {
		s.Kind = offload.KindWebSocket
		s.WebSocket = offload.WebSocketSpec{Mode: offload.WSPing, Payload: []byte("nic")}
	}
	return s
}

// handBackLocked takes every armed channel back from the NIC, byte-exact,
// then resumes the NIC so it delivers what it buffered.
func (h *Host) handBackLocked() {
	now := h.clock.Now()
	for _, ch := range h.order {
		if ch.slot == 0 {
			continue
		}
		rep, err := h.nic.Disarm(ch.slot)
		ch.slot = 0
		fz := ch.frozen
		ch.frozen = nil
		if err == nil {
			err = fz.Thaw(rep.Books.Sent, rep.Books.Absorbed)
		}
		gateOf(ch.transport).releaseIf()
		if err != nil {
			h.stats.HandBackErrors++
			h.log.Warn("hand back failed", "channel", ch.id, "err", err)
			fz.Abort()
			// The kernel's view may be behind the wire: the connection
			// cannot be trusted. Its reader sees the close and disconnects.
			ch.transport.Close()
			continue
		}
		h.stats.HandBacks++
		ch.transport.HandBack(rep.Books.Sent, rep.Books.Absorbed)
		if !ch.closed && ch.status != slotmgr.TransportDisconnected {
			h.planner.Remove(ch.id)
			h.planner.Add(ch.id, ch.interval, now)
		}
		if rep.State == offload.StateDead {
			// The peer stopped answering: the connection is gone.
			ch.transport.Close()
		}
	}
	if err := h.nic.Resume(); err != nil {
		h.log.Warn("nic resume failed", "err", err)
	}
}
