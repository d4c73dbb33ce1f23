package nic

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/profile"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// Config configures a Device. Zero fields take their defaults.
type Config struct {
	// Wire is the port towards the network, Host the port towards the
	// host. Both are required; the device owns them from New on and
	// closes them in Close.
	Wire, Host Port
	// MAC is the host's MAC address and Addrs its IP addresses: the
	// device answers ARP (IPv4) and neighbour solicitations (IPv6) for
	// them while the host sleeps. At most Capabilities.ARPOffloads IPv4
	// and Capabilities.NSOffloads IPv6 addresses.
	MAC   [6]byte
	Addrs []netip.Addr
	// Capabilities are the device's limits (zero fields: defaults).
	Capabilities Capabilities
	// Patterns are the wake-pattern limits (zero: the emulator's
	// wakepattern.DefaultCapabilities, with MaxConnPatterns clamped to
	// Capabilities.Slots).
	Patterns wp.Capabilities
	// Engine tunes the offload engine (books, answer rate limits); its
	// Clock and MaxSlots are set by the device.
	Engine offload.Config
	// Clock is the device's time source (default CLOCK_BOOTTIME). A clock
	// implementing AdvancingClock drives the timer loop (tests).
	Clock offload.Clock
	// Faults are injected on the wire port, both directions.
	Faults Faults
	// WirePcap receives every frame the device saw on the wire port, both
	// directions, as a nanosecond pcap; WakePcap the saved wake packets.
	// Nil disables. The device does not close them.
	WirePcap, WakePcap io.Writer
	// Logger receives the device's logs (default: discard).
	Logger *slog.Logger
	// OnWake, if set, is called with every wake event from the goroutine
	// that raised it; it must not block and must not call the device.
	// Events are also sent on Wakes().
	OnWake func(WakeEvent)
	// Batch is the number of frames read per port read (default 64).
	Batch int
	// NoPrefilter leaves the kernel BPF prefilter off in D3, so every
	// frame reaches the datapath and is counted by reason there.
	NoPrefilter bool
	// XDP also attaches the XDP fast path to the wire port in D3
	// (xdppath.go, nic/xdp): exact keep-alive replies of armed slots are
	// absorbed in the kernel, frames no pattern can match dropped there.
	// When the program cannot be loaded or attached (no CAP_BPF or
	// CAP_NET_ADMIN, no native XDP, a port that is not a packet port) the
	// classic-BPF socket filter works alone, as without it; XDP reports
	// the path in use. Ignored with NoPrefilter. The environment
	// variable STANDBYNIC_XDP=on|off overrides it (to run whole test
	// suites on either path).
	XDP bool
	// Profile is the firmware profile the device runs (nil: generic):
	// its capabilities fill the zero fields above, its behaviours go to
	// the engine, and Arm refuses what it cannot honour (profile.go).
	Profile *profile.Profile
}

const (
	defaultBatch  = 64
	maxBatch      = 1024
	wakeChanCap   = 64
	txQueueFrames = 256
	replyBufLen   = 128
)

// Errors.
var (
	// ErrState is returned for a call the current power state forbids
	// (Sleep outside D0, Resume outside waking, …).
	ErrState = errors.New("wrong power state")
	// ErrNoSlot is returned by Arm when every hardware slot is in use.
	ErrNoSlot = errors.New("all hardware slots are in use")
	// ErrUnknownSlot is returned for a slot ID that is not armed.
	ErrUnknownSlot = errors.New("slot not armed")
)

// Device is the emulated connected-standby NIC. Its methods are safe for
// concurrent use.
//
// Goroutines: one reader per port, the timer loop (keep-alives, delayed
// frames), the engine's transmit queue, and one writer per pcap; all are
// stopped and waited for by Close.
//
// Locks, in order: mu (control) → engMu (offload engine) → post.mu
// (post-wake buffer). The faults' own locks come after all of them.
type Device struct {
	caps  Capabilities
	pcaps wp.Capabilities
	clock offload.Clock
	log   *slog.Logger
	wire  Port
	host  Port
	// wireOff and hostOff are the ports as OffloadPorts when they carry
	// virtio_net_hdrs, else nil.
	wireOff, hostOff OffloadPort
	txErrLogged      atomic.Bool
	addrs            hostAddrs
	batch            int
	onWake           func(WakeEvent)
	noBPF            bool
	filter           atomic.Pointer[PrefilterInfo] // the attached prefilter; nil: none
	xdpState                                       // the XDP fast path (xdppath.go)

	cnt   counters
	state atomic.Uint32 // PowerState

	prof      *profile.Profile // firmware profile (profile.go)
	evictions []Eviction       // guarded by mu (profile.go)

	mu       sync.Mutex // control operations
	slots    map[SlotID]*slotEntry
	patterns []wp.Pattern // extra wake patterns

	tracks atomic.Pointer[trackTable]
	table  atomic.Pointer[d3Table]

	// toHost is held for reading by whatever may forward wire frames to
	// the host (the wire reader for a batch, the timer loop releasing
	// delayed frames); Sleep takes it once after entering D3, so that it
	// returns only when every frame taken in D0 or arming has been
	// handed to the host port, and nothing reaches the host after it.
	toHost sync.RWMutex

	engMu sync.Mutex
	eng   *offload.Engine
	out   engineOutput

	post *postWake

	wireIn, wireOut *faultDir // nil without faults
	faultsHold      bool      // delay or reordering configured: frames wait in the fault queues
	faultRx         *rxCtx    // guarded by wireIn.mu
	faultOne        [1][]byte // guarded by wireOut.mu
	txOne           [1][]byte // the transmit queue goroutine's
	resumeBatch     [][]byte  // guarded by mu
	txq             *txQueue
	wirePcap        *pcapSink
	wakePcap        *pcapSink

	wakes chan WakeEvent
	kick  chan struct{}
	stop  chan struct{}
	wg    sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New starts a device in D0 on cfg's ports.
func New(cfg *Config) (*Device, error) {
	if cfg == nil || cfg.Wire == nil || cfg.Host == nil {
		return nil, errors.New("new nic: wire and host ports are required")
	}
	cfg, prof, err := withProfile(cfg) // firmware profile hook (profile.go)
	if err != nil {
		return nil, fmt.Errorf("new nic: %w", err)
	}
	caps, err := cfg.Capabilities.Normalize()
	if err != nil {
		return nil, fmt.Errorf("new nic: %w", err)
	}
	faults, err := cfg.Faults.normalize()
	if err != nil {
		return nil, fmt.Errorf("new nic: %w", err)
	}
	pc := cfg.Patterns
	if pc == (wp.Capabilities{}) {
		pc = wp.DefaultCapabilities()
	}
	pc.MaxConnPatterns = min(pc.MaxConnPatterns, caps.Slots)
	pc.MaxPatterns = min(pc.MaxPatterns, caps.Slots+pc.MaxSYNPatterns+pc.MaxBitmapPatterns+pc.MaxMagicPatterns)
	d := &Device{
		prof:   prof,
		caps:   caps,
		pcaps:  pc,
		clock:  cfg.Clock,
		log:    cfg.Logger,
		wire:   cfg.Wire,
		host:   cfg.Host,
		batch:  cfg.Batch,
		onWake: cfg.OnWake,
		noBPF:  cfg.NoPrefilter,
		slots:  map[SlotID]*slotEntry{},
		post:   newPostWake(caps.PostWakeFrames),
		wakes:  make(chan WakeEvent, wakeChanCap),
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	if d.clock == nil {
		d.clock = BootClock()
	}
	d.xdpOn = xdpWanted(cfg.XDP) && !cfg.NoPrefilter
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.batch == 0 {
		d.batch = defaultBatch
	}
	if d.batch < 1 || d.batch > maxBatch {
		return nil, fmt.Errorf("new nic: %w", limitError("batch", d.batch, fmt.Sprintf("must be 1–%d", maxBatch)))
	}
	d.addrs.mac = cfg.MAC
	for _, a := range cfg.Addrs {
		switch {
		case !a.IsValid():
			return nil, fmt.Errorf("new nic: invalid host address %v", a)
		case a.Is4() || a.Is4In6():
			d.addrs.v4 = append(d.addrs.v4, a.Unmap())
		default:
			d.addrs.v6 = append(d.addrs.v6, a)
		}
	}
	if n := len(d.addrs.v4); n > caps.ARPOffloads {
		return nil, fmt.Errorf("new nic: %w", limitError("IPv4 addresses", n, fmt.Sprintf("ARP offloads are limited to %d", caps.ARPOffloads)))
	}
	if n := len(d.addrs.v6); n > caps.NSOffloads {
		return nil, fmt.Errorf("new nic: %w", limitError("IPv6 addresses", n, fmt.Sprintf("NS offloads are limited to %d", caps.NSOffloads)))
	}
	ecfg := cfg.Engine
	ecfg.Clock = d.clock
	ecfg.MaxSlots = caps.Slots
	d.eng = offload.New(&ecfg)
	d.out.d = d

	d.txq = newTxQueue(txQueueFrames, 2048, &d.cnt, d.sendWireOne)
	d.faultRx = newRxCtx(1)
	d.wireOff, _ = portOffloads(d.wire)
	d.hostOff, _ = portOffloads(d.host)
	for _, op := range []OffloadPort{d.wireOff, d.hostOff} {
		if op != nil {
			d.cnt.inc(cVnetPorts)
		}
	}
	d.resumeBatch = make([][]byte, d.batch)
	if faults.Enabled() {
		d.wireIn = newFaultDir(faults, 1, &d.cnt, d.rxWireFaulted)
		d.wireOut = newFaultDir(faults, 2, &d.cnt, d.txWireRaw)
		d.faultsHold = faults.Delay > 0 || faults.Jitter > 0 || faults.Reorder > 0
	}
	if cfg.WirePcap != nil {
		d.wirePcap = newPcapSink(cfg.WirePcap, "wire", caps.MaxFrame, 1024, &d.cnt, cPcapWireFrames, d.log)
	}
	if cfg.WakePcap != nil {
		d.wakePcap = newPcapSink(cfg.WakePcap, "wake", caps.WakePacketSave, wakeChanCap, &d.cnt, cPcapWakeFrames, d.log)
	}
	d.tracks.Store(&trackTable{})
	d.table.Store(&d3Table{})
	d.state.Store(uint32(D0))

	go d.txq.run() // stopped by txq.close in Close, after the producers
	d.wg.Add(3)
	go func() { defer d.wg.Done(); d.readLoop(d.wire, true) }()
	go func() { defer d.wg.Done(); d.readLoop(d.host, false) }()
	go func() { defer d.wg.Done(); d.timerLoop() }()
	return d, nil
}

// State returns the current power state.
func (d *Device) State() PowerState { return PowerState(d.state.Load()) }

// transition moves from→to if the device is in from, counting it.
func (d *Device) transition(from, to PowerState) bool {
	id, ok := transitionCounter(from, to)
	if !ok || !d.state.CompareAndSwap(uint32(from), uint32(to)) {
		return false
	}
	d.cnt.inc(id)
	d.log.Debug("power state", "from", from, "to", to)
	return true
}

// Capabilities returns the device's limits.
func (d *Device) Capabilities() Capabilities { return d.caps }

// Offloads says which ports carry virtio_net_hdrs (OffloadPort): GSO
// super-frames and partial checksums cross such a port unchanged; frames
// for a port without them are finished in software first (counted as
// vnet_sw_csum, vnet_sw_gso, vnet_sw_segments).
type Offloads struct{ Wire, Host bool }

// Offloads returns the ports' offload mode (also the vnet_ports counter).
func (d *Device) Offloads() Offloads { return Offloads{Wire: d.wireOff != nil, Host: d.hostOff != nil} }

// PatternCapabilities returns the device's wake-pattern limits.
func (d *Device) PatternCapabilities() wp.Capabilities { return d.pcaps }

// Wakes returns the channel wake events are sent on. It is buffered; when
// it is full an event is dropped from the channel and counted
// (wake_events_dropped), never blocking the datapath.
func (d *Device) Wakes() <-chan WakeEvent { return d.wakes }

// Close stops the device: it closes both ports, stops and waits for every
// goroutine, and flushes the pcaps. It is idempotent.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		for s := d.State(); s != Closed; s = d.State() {
			if d.transition(s, Closed) {
				break
			}
		}
		close(d.stop)
		d.mu.Unlock()
		err1 := d.wire.Close()
		err2 := d.host.Close()
		d.wg.Wait() // readers and timer are gone: nothing pushes any more
		d.engMu.Lock()
		d.closeXDPLocked()
		d.engMu.Unlock()
		d.txq.close()
		d.wirePcap.close()
		d.wakePcap.close()
		d.closeErr = errors.Join(err1, err2)
		if d.closeErr != nil {
			d.closeErr = fmt.Errorf("close nic: %w", d.closeErr)
		}
	})
	return d.closeErr
}

// Counters returns the device's counters, then each armed slot's, in a
// stable order. Kernel drop counters of the wire port are folded in.
func (d *Device) Counters() []Counter {
	d.engMu.Lock()
	d.xdpSyncLocked() // what the XDP fast path absorbed or dropped counts too
	d.engMu.Unlock()
	st := d.wire.Stats()
	d.cnt.set(cD3RxDroppedKernel, st.RxDropped)
	d.cnt.set(cD3RxDroppedBPF, st.RxFiltered+d.xdpDropped.Load())
	out := d.cnt.appendTo(make([]Counter, 0, int(numCounters)+3+8*int(numSlotCounters)))
	out = append(out, d.CoalescingCounters()...)
	d.mu.Lock()
	ids := make([]SlotID, 0, len(d.slots))
	for id := range d.slots {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		out = d.appendSlotCounters(out, d.slots[id])
	}
	d.mu.Unlock()
	return out
}

// Counter returns one counter by name (device or slot), and false when no
// counter has that name.
func (d *Device) Counter(name string) (uint64, bool) {
	for _, c := range d.Counters() {
		if c.Name == name {
			return c.Value, true
		}
	}
	return 0, false
}

// WritePrometheus writes the device's counters in the Prometheus text
// format, prefixed "standbynic_nic_" and labelled with the wire port's
// name.
func (d *Device) WritePrometheus(w io.Writer) error {
	return WritePrometheus(w, "standbynic_nic_", map[string]string{"wire": d.wire.Name()}, d.Counters())
}

// readLen is the length of p's read buffers: MaxFrame, and at least a
// GSO super-frame on a port with offloads.
func (d *Device) readLen(p Port) int {
	if _, ok := portOffloads(p); ok {
		return max(d.caps.MaxFrame, MaxGSOFrame)
	}
	return d.caps.MaxFrame
}

// readLoop reads one port until it is closed.
func (d *Device) readLoop(p Port, fromWire bool) {
	pkts := make([]Packet, d.batch)
	size := d.readLen(p)
	for i := range pkts {
		pkts[i].Buf = make([]byte, size)
	}
	rx := newRxCtx(d.batch)
	// A port that lends its ring saves copying each frame out: the batch
	// is handled (forwarded, or copied where it is kept) before the ring
	// memory goes back to the kernel.
	lender, _ := p.(ringLender)
	errLogged := false
	for {
		var n int
		var err error
		if lender != nil {
			n, err = lender.readBatchLent(pkts)
		} else {
			n, err = p.ReadBatch(pkts)
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			select {
			case <-d.stop:
				return
			default:
			}
			d.cnt.inc(cRxErrors)
			if !errLogged {
				errLogged = true
				d.log.Warn("port read failed", "port", p.Name(), "err", err)
			}
			if isClosed(err) {
				return
			}
			continue
		}
		if fromWire {
			d.toHost.RLock()
			for i := range n {
				d.fromWire(rx, &pkts[i])
			}
			d.flushHost(rx)
			d.toHost.RUnlock()
		} else {
			for i := range n {
				d.fromHost(rx, &pkts[i])
			}
			d.flushWire(rx)
		}
		if lender != nil {
			lender.releaseLent()
		}
	}
}

// timerLoop fires the keep-alive engine and releases delayed frames.
func (d *Device) timerLoop() {
	adv, _ := d.clock.(AdvancingClock)
	var advanced <-chan struct{}
	if adv != nil {
		advanced = adv.Advanced()
	}
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := d.clock.Now()
		next, ok := d.runTimers(now)
		if adv == nil {
			wait := time.Hour
			if ok {
				wait = max(next-d.clock.Now(), 0)
			}
			t.Reset(wait)
		}
		select {
		case <-d.stop:
			return
		case <-d.kick:
		case <-advanced:
		case <-t.C:
		}
	}
}

// runTimers runs what is due at now and returns the next deadline.
func (d *Device) runTimers(now time.Duration) (time.Duration, bool) {
	d.detachXDPDue() // a wake's XDP detach (xdppath.go)
	if d.wireIn != nil {
		d.toHost.RLock()
		d.wireIn.release(now)
		d.toHost.RUnlock()
		d.wireOut.release(now)
	}
	d.engMu.Lock()
	d.out.rxTime = time.Time{}
	d.xdpSyncLocked() // replies absorbed in XDP are replies before a retry
	d.eng.Fire(now, &d.out)
	d.xdpRefreshAll() // the keep-alives sent may have moved SND.NXT
	next, ok := d.eng.NextDeadline()
	d.engMu.Unlock()
	if d.wireIn != nil {
		for _, f := range []*faultDir{d.wireIn, d.wireOut} {
			if due, has := f.next(); has && (!ok || due < next) {
				next, ok = due, true
			}
		}
	}
	return next, ok
}

// kickTimer wakes the timer loop to recompute its deadline.
func (d *Device) kickTimer() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
