package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/pushserver"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/slotmgr"
)

const (

	// hostPushWait bounds one push: standby re-entry, the push, its
	// acknowledgement.
	hostPushWait = 10 * time.Second
	// hostKeepAlive is the hardware channel's keep-alive interval: long
	// enough that no keep-alive falls inside most pushes.
	hostKeepAlive = 30 * time.Second
)

// hostLab is the host runtime on the real NIC in a lab: the push server
// in srv, a device with one hardware slot on wire0/hport0 in nic, a host
// with a resume latency of 0 whose push task acknowledges every push,
// and one stream channel, dialled from host, on the slot.
type hostLab struct {
	srv *pushserver.Server
	dev *nic.Device
	h   *host.Host
	ch  *host.Channel

	mu     sync.Mutex
	wakes  []wakeSeen  // wake events as the device raised them
	starts []taskStart // push task starts
}

// wakeSeen is one wake event and when the device raised it
// (nic.Config.OnWake).
type wakeSeen struct {
	ev nic.WakeEvent
	at time.Time
}

// taskStart is one push task's start and the host's last wake then.
type taskStart struct {
	at   time.Time
	wake nic.WakeEvent
}

// newHostLab builds the push server, the device and the host in l, and
// puts the host in standby with its channel armed.
func newHostLab(ctx context.Context, l *netlab.Lab) (_ *hostLab, err error) {
	hl := &hostLab{}
	defer func() {
		if err != nil {
			hl.Close()
		}
	}()
	srvAddr := netip.AddrPortFrom(l.Addr.Srv4, 0).String()
	if err := l.Do(netlab.Srv, func() error {
		var err error
		hl.srv, err = pushserver.New(&pushserver.Config{TCPAddr: srvAddr, WSAddr: srvAddr, HTTPAddr: srvAddr})
		return err
	}); err != nil {
		return nil, fmt.Errorf("push server: %w", err)
	}
	wire, err := openPort(l, netlab.NIC, netlab.WireLink)
	if err != nil {
		return nil, err
	}
	hport, err := openPort(l, netlab.NIC, netlab.HostPortLink)
	if err != nil {
		wire.Close()
		return nil, err
	}
	hostMAC, _, err := labMACs(l)
	if err != nil {
		wire.Close()
		hport.Close()
		return nil, err
	}
	hl.dev, err = nic.New(&nic.Config{Wire: wire, Host: hport, MAC: hostMAC,
		Addrs: []netip.Addr{l.Addr.Host4, l.Addr.Host6}, Capabilities: nic.Capabilities{Slots: 1},
		OnWake: func(ev nic.WakeEvent) {
			now := time.Now()
			hl.mu.Lock()
			hl.wakes = append(hl.wakes, wakeSeen{ev: ev, at: now})
			hl.mu.Unlock()
		}})
	if err != nil {
		wire.Close()
		hport.Close()
		return nil, fmt.Errorf("device: %w", err)
	}
	var hp struct {
		mu sync.Mutex
		h  *host.Host
	}
	hl.h, err = host.New(&host.Config{
		NIC:  hl.dev,
		Pool: &slotmgr.Config{IntervalUnit: time.Second, MinInterval: 1, MaxInterval: 3600},
		OnTaskStart: func(ti *host.TaskInstance) {
			now := time.Now()
			if ti.Trigger != host.TriggerPushNotification {
				return
			}
			hp.mu.Lock()
			h := hp.h
			hp.mu.Unlock()
			if h == nil {
				return
			}
			w := h.LastWake()
			hl.mu.Lock()
			hl.starts = append(hl.starts, taskStart{at: now, wake: w})
			hl.mu.Unlock()
		},
	})
	if err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	hp.mu.Lock()
	hp.h = hl.h
	hp.mu.Unlock()
	if err := hl.h.RegisterTask("push", ackTask); err != nil {
		return nil, fmt.Errorf("push task: %w", err)
	}
	c, err := l.DialTCP(ctx, netlab.Host, hl.srv.TCPAddr().String())
	if err != nil {
		return nil, fmt.Errorf("dial push server: %w", err)
	}
	st, err := host.NewStream(c, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("stream: %w", err)
	}
	if err := st.Write([]byte("hello hw")); err != nil {
		st.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	if err := hl.srv.WaitConnected(ctx, "hw"); err != nil {
		st.Close()
		return nil, fmt.Errorf("push server: %w", err)
	}
	if hl.ch, err = hl.h.NewChannel("hw", hostKeepAlive, slotmgr.RequestHardwareSlot, "bench", 0); err != nil {
		st.Close()
		return nil, fmt.Errorf("channel: %w", err)
	}
	if err := hl.ch.SetPushTask("push"); err != nil {
		st.Close()
		return nil, fmt.Errorf("channel: %w", err)
	}
	if err := hl.ch.UsingTransport(st); err != nil {
		st.Close()
		return nil, fmt.Errorf("channel: %w", err)
	}
	if err := hl.h.Standby(ctx); err != nil {
		return nil, fmt.Errorf("standby: %w", err)
	}
	if !hl.ch.Armed() {
		return nil, fmt.Errorf("hardware channel not armed at standby entry: %s", hl.ch.Note())
	}
	return hl, nil
}

// ackTask is the push task: it reads every queued message and
// acknowledges "push <id> …" with "ack <id>".
func ackTask(_ context.Context, ti *host.TaskInstance) {
	for {
		m, ok := ti.Receive()
		if !ok {
			return
		}
		if f := strings.Fields(string(m.Data)); len(f) >= 2 && f[0] == "push" {
			if err := ti.Channel.Send([]byte("ack " + f[1])); err != nil {
				return // the push then times out, and the run fails
			}
		}
	}
}

// Close stops the host, the device and the push server, in that order.
// It is idempotent.
func (hl *hostLab) Close() error {
	var errs []error
	if hl.h != nil {
		errs = append(errs, hl.h.Close())
		hl.h = nil
	}
	if hl.dev != nil {
		errs = append(errs, hl.dev.Close())
		hl.dev = nil
	}
	if hl.srv != nil {
		errs = append(errs, hl.srv.Close())
		hl.srv = nil
	}
	return errors.Join(errs...)
}

// armed waits until the host is in standby with its channel on the slot.
func (hl *hostLab) armed(ctx context.Context) error {
	for {
		if err := hl.h.Wait(ctx, func(st *host.Stats) bool { return st.State == host.Standby }); err != nil {
			return fmt.Errorf("standby: %w (note %q, nic %v)", err, hl.ch.Note(), hl.dev.State())
		}
		changed := hl.h.Changed()
		if hl.ch.Armed() && hl.h.State() == host.Standby {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("armed: %w (note %q, nic %v)", ctx.Err(), hl.ch.Note(), hl.dev.State())
		}
	}
}

// push sends one push to the sleeping host and returns, in µs, the
// latencies from the wake frame's kernel receive timestamp on wire0
// (WakeEvent.RxTime) to the wake event and to the push task's start.
func (hl *hostLab) push(ctx context.Context, i int) (wake, start float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, hostPushWait)
	defer cancel()
	if err := hl.armed(ctx); err != nil {
		return 0, 0, fmt.Errorf("push %d: %w", i, err)
	}
	hl.mu.Lock()
	hl.wakes, hl.starts = hl.wakes[:0], hl.starts[:0]
	hl.mu.Unlock()
	id, err := hl.srv.Push("hw", fmt.Sprintf("m%d", i))
	if err != nil {
		return 0, 0, fmt.Errorf("push %d: %w", i, err)
	}
	if err := hl.srv.WaitAcked(ctx, "hw", id); err != nil {
		return 0, 0, fmt.Errorf("push %d: ack: %w", i, err)
	}
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if len(hl.starts) == 0 {
		return 0, 0, fmt.Errorf("push %d: acknowledged without a push task start", i)
	}
	s := hl.starts[0]
	if s.wake.RxTime.IsZero() || s.wake.Reason != nic.WakeData {
		return 0, 0, fmt.Errorf("push %d: task started after wake %v (rx time %v), want %v with a packet", i, s.wake.Reason, s.wake.RxTime, nic.WakeData)
	}
	for _, w := range hl.wakes {
		if w.ev.At == s.wake.At && w.ev.RxTime.Equal(s.wake.RxTime) {
			return usSince(s.wake.RxTime, w.at), usSince(s.wake.RxTime, s.at), nil
		}
	}
	return 0, 0, fmt.Errorf("push %d: the task's wake (at %v) was not raised by the device", i, s.wake.At)
}

// usSince returns b-a in µs.
func usSince(a, b time.Time) float64 { return float64(b.Sub(a).Nanoseconds()) / 1e3 }

// hostWakes runs per pushes through a fresh host lab and returns the
// latencies of push.
func hostWakes(ctx context.Context, l *netlab.Lab, per int) (wake, start []float64, err error) {
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hl, err := newHostLab(setup, l)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if cerr := hl.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("host lab close: %w", cerr)
		}
	}()
	for i := range per {
		w, s, err := hl.push(ctx, i)
		if err != nil {
			return nil, nil, err
		}
		wake, start = append(wake, w), append(start, s)
	}
	return wake, start, nil
}
