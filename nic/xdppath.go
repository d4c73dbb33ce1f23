package nic

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/standbynic/standbynic/nic/xdp"
	"github.com/standbynic/standbynic/offload"
)

// The XDP fast path (issue 17, Config.XDP): in D3 the wire port also
// runs the nic/xdp program, which absorbs the exact keep-alive replies
// of armed slots in the kernel and drops frames no pattern can match.
// The classic-BPF socket filter stays attached behind it (the fallback
// when XDP cannot attach, and a superset either way), and the offload
// engine stays the authority:
//
//   - Built and attached with the socket filter (attachPrefilter), from
//     the same patterns and the host's IPv4 addresses; each live slot is
//     armed with the engine's expected reply (offload.Engine.Expected).
//   - Detached where the socket filter is (a wake, Resume, Close): a
//     link close, safe under any lock. The detached program stays loaded
//     until the next attach or Close, so its counters are still read.
//   - Synced (xdpSyncLocked, engMu held) before every engine timer, in
//     Counters, SlotState and Disarm: the replies and ACKs absorbed since
//     the last sync go to the engine (offload.Engine.AbsorbedElsewhere,
//     which also carries TS.Recent back) and to the device's and the
//     slot's counters, exactly as if the datapath had absorbed them; then
//     each slot's expected SEQ/ACK is refreshed (Update) or, when the
//     engine no longer runs it, the slot is paused.
//   - After every engine call that may move a slot's SND.NXT or RCV.NXT
//     (Fire, Receive), the slot's expected reply is refreshed.
//
// All of xdpPath is guarded by engMu.
type xdpPath struct {
	prog  *xdp.Program
	slots []xdpSlot // by SlotID; slots[0] unused
	seen  [len(xdpDropReasons)]uint64
}

type xdpSlot struct {
	se    *slotEntry // nil: not armed in the program
	v6    bool
	seen  xdp.SlotCounters
	valid bool // armed, not paused
}

// xdpDropReasons are the program's drop counters, folded into
// d3_rx_dropped_bpf (the frames the kernel filtered, whoever filtered).
var xdpDropReasons = [...]xdp.Reason{xdp.DroppedNotIP, xdp.DroppedNotTCP, xdp.DroppedFragment, xdp.DroppedNoMatch, xdp.DroppedARP}

// xdpAttacher is a port the XDP program can be attached to (a packet
// port, in its socket's network namespace).
type xdpAttacher interface {
	attachXDP(p *xdp.Program) error
}

// XDPInfo describes the D3 datapath's kernel fast path.
type XDPInfo struct {
	// Enabled: Config.XDP asked for it.
	Enabled bool
	// Attached: the XDP program is attached to the wire port now (in D3);
	// otherwise the classic-BPF socket filter alone filters.
	Attached bool
	// Instructions is the attached program's length.
	Instructions int
	// Fallback is why the last attach fell back to the socket filter
	// ("" when it attached, or never tried).
	Fallback string
}

// Path names the kernel filter in use: "xdp" or "socket-filter".
func (i XDPInfo) Path() string {
	if i.Attached {
		return "xdp"
	}
	return "socket-filter"
}

// XDP returns the state of the XDP fast path.
func (d *Device) XDP() XDPInfo {
	info := XDPInfo{Enabled: d.xdpOn}
	if p := d.xdpAttached.Load(); p != nil {
		info.Attached, info.Instructions = true, p.Instructions()
	}
	if s := d.xdpFallback.Load(); s != nil {
		info.Fallback = *s
	}
	return info
}

// xdpState is the part of Device the fast path uses.
type xdpState struct {
	xdpOn       bool
	xp          *xdpPath                    // guarded by engMu
	xdpAttached atomic.Pointer[xdp.Program] // attached now
	xdpFallback atomic.Pointer[string]
	xdpDropped  atomic.Uint64 // folded drop counters
	// xdpDetachDue: a wake let everything pass (passAllXDP); the timer
	// loop detaches.
	xdpDetachDue atomic.Bool
}

func (d *Device) setXDPFallback(err error) {
	s := ""
	if err != nil {
		s = err.Error()
	}
	d.xdpFallback.Store(&s)
}

// attachXDP replaces the fast path with one built for t and attaches it
// to the wire port; any failure leaves the socket filter alone (logged,
// reported by XDP). Called with d.mu held, engMu not.
func (d *Device) attachXDP(t *d3Table) {
	if !d.xdpOn {
		return
	}
	d.engMu.Lock()
	defer d.engMu.Unlock()
	d.closeXDPLocked()
	ap, ok := d.wire.(xdpAttacher)
	if !ok {
		d.setXDPFallback(fmt.Errorf("xdp: wire port %s: %w", d.wire.Name(), xdp.ErrUnsupported))
		return
	}
	prog, err := xdp.New(&xdp.Config{Patterns: t.prefilterPatterns(), ARPFor: d.addrs.v4, MaxSlots: d.caps.Slots})
	if err == nil {
		xp := &xdpPath{prog: prog, slots: make([]xdpSlot, d.caps.Slots+1)}
		for id, se := range t.byID {
			if err = d.xdpArmLocked(xp, id, se); err != nil {
				break
			}
		}
		if err == nil {
			err = ap.attachXDP(prog)
		}
		if err == nil {
			for r := range xp.seen {
				xp.seen[r] = prog.Count(xdpDropReasons[r])
			}
			d.xp = xp
			d.xdpAttached.Store(prog)
			d.cnt.set(cD3XDPAttached, 1)
			d.setXDPFallback(nil)
			return
		}
		prog.Close()
	}
	if errors.Is(err, xdp.ErrUnsupported) {
		d.log.Info("xdp fast path unavailable, socket filter only", "err", err)
	} else {
		d.log.Warn("xdp fast path failed, socket filter only", "err", err)
	}
	d.setXDPFallback(err)
}

// xdpArmLocked arms slot id in xp's program with the engine's expected
// reply, if the engine still runs it.
func (d *Device) xdpArmLocked(xp *xdpPath, id SlotID, se *slotEntry) error {
	exp, ok := d.eng.Expected(offload.SlotID(id))
	if !ok || !exp.Live {
		return nil
	}
	armed, err := xp.prog.Arm(int(id), xdp.Slot{
		Conn: se.cfg.Pattern, RcvNxt: exp.RcvNxt, SndNxt: exp.SndNxt,
		Timestamps: exp.Timestamps, TSRecent: exp.TSRecent, Reply: exp.Reply,
	})
	if err != nil {
		return fmt.Errorf("arm slot %d: %w", id, err)
	}
	if armed {
		xp.slots[id] = xdpSlot{se: se, v6: se.cfg.Pattern.Local.Addr().Is6(), valid: true}
	}
	return nil
}

// detachXDP takes the program off the wire port (it stays loaded, its
// counters readable, until the next attach or Close). Safe under any of
// the device's locks: a wake raised by the engine holds engMu.
func (d *Device) detachXDP() {
	if p := d.xdpAttached.Swap(nil); p != nil {
		if err := p.Detach(); err != nil {
			d.log.Warn("detach xdp failed", "err", err)
		}
		d.cnt.set(cD3XDPAttached, 0)
	}
}

// passAllXDP is the wake's half of detachXDP: the program passes every
// frame from now on (a store in its memory-mapped map), and the timer
// loop closes the link once the event is out (kickXDPDetach,
// detachXDPDue): closing it can take milliseconds on some drivers and
// would delay the wake event. Safe under any lock.
func (d *Device) passAllXDP() {
	if p := d.xdpAttached.Load(); p != nil {
		p.PassAll()
		d.xdpDetachDue.Store(true)
	}
}

// kickXDPDetach hands a wake's detach to the timer loop; raiseWake calls
// it after the event is out.
func (d *Device) kickXDPDetach() {
	if d.xdpDetachDue.Load() {
		d.kickTimer()
	}
}

// detachXDPDue completes a wake's detach, from the timer loop.
func (d *Device) detachXDPDue() {
	if d.xdpDetachDue.Swap(false) {
		d.detachXDP()
	}
}

// closeXDPLocked syncs, detaches and frees the fast path. engMu held.
func (d *Device) closeXDPLocked() {
	xp := d.xp
	if xp == nil {
		return
	}
	d.xdpSyncLocked()
	if d.xdpAttached.CompareAndSwap(xp.prog, nil) {
		d.cnt.set(cD3XDPAttached, 0)
	}
	if err := xp.prog.Close(); err != nil {
		d.log.Warn("close xdp failed", "err", err)
	}
	d.xp = nil
}

// Frame lengths of an exact reply (untagged; TCP header of 20 bytes or
// 32 with timestamps), for rx_bytes.
const (
	xdpReplyLen4 = EthernetHeaderLen + 20 + 20
	xdpReplyLen6 = EthernetHeaderLen + 40 + 20
)

// xdpSyncLocked folds what the program absorbed since the last sync
// into the engine and the counters, and refreshes every slot's expected
// reply. engMu held; allocation-free.
func (d *Device) xdpSyncLocked() {
	xp := d.xp
	if xp == nil {
		return
	}
	for id := 1; id < len(xp.slots); id++ {
		xs := &xp.slots[id]
		if xs.se == nil {
			continue
		}
		c := xp.prog.SlotCounters(id)
		dr, da := c.Replies-xs.seen.Replies, c.ACKs-xs.seen.ACKs
		xs.seen = c
		if n := dr + da; n > 0 {
			d.eng.AbsorbedElsewhere(offload.SlotID(id), dr, da, xp.prog.TSRecent(id))
			l := uint64(xdpReplyLen4)
			if xs.v6 {
				l = xdpReplyLen6
			}
			exp, _ := d.eng.Expected(offload.SlotID(id))
			if exp.Timestamps {
				l += 12
			}
			d.cnt.add(cRxFrames, n)
			d.cnt.add(cRxBytes, n*l)
			d.cnt.add(cD3RxFrames, n)
			d.cnt.add(cD3RxAbsorbed, n)
			d.cnt.add(cD3XDPAbsorbed, n)
			xs.se.cnt.add(sRxFrames, n)
			xs.se.cnt.add(sRxAbsorbed, n)
		}
		d.xdpRefreshLocked(xp, id)
	}
	for r := range xp.seen {
		v := xp.prog.Count(xdpDropReasons[r])
		d.xdpDropped.Add(v - xp.seen[r])
		xp.seen[r] = v
	}
}

// xdpRefreshLocked sets slot id's expected reply from the engine, or
// pauses it when the engine no longer runs it. engMu held.
func (d *Device) xdpRefreshLocked(xp *xdpPath, id int) {
	xs := &xp.slots[id]
	if !xs.valid {
		return
	}
	exp, ok := d.eng.Expected(offload.SlotID(id))
	if !ok || !exp.Live {
		xp.prog.Pause(id)
		xs.valid = false
		return
	}
	xp.prog.Update(id, exp.RcvNxt, exp.SndNxt)
}

// xdpRefresh refreshes one slot after the engine handled its frame.
// engMu held.
func (d *Device) xdpRefresh(id SlotID) {
	if xp := d.xp; xp != nil && int(id) < len(xp.slots) {
		d.xdpRefreshLocked(xp, int(id))
	}
}

// xdpRefreshAll refreshes every slot after the engine's timers ran.
// engMu held.
func (d *Device) xdpRefreshAll() {
	if xp := d.xp; xp != nil {
		for id := 1; id < len(xp.slots); id++ {
			d.xdpRefreshLocked(xp, id)
		}
	}
}

// xdpEnv is the environment variable that overrides Config.XDP.
const xdpEnv = "STANDBYNIC_XDP"

// xdpWanted is Config.XDP after the STANDBYNIC_XDP override.
func xdpWanted(cfg bool) bool {
	switch os.Getenv(xdpEnv) {
	case "on", "1":
		return true
	case "off", "0":
		return false
	}
	return cfg
}
