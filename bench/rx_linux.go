package bench

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/pktpump"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

const (
	metricRate = "frames per second"
)

// slotFixture is one guarded connection of the lab: its pattern, a
// snapshot and a spec whose timers stay out of the way of a measurement.
type slotFixture struct {
	hostMAC, srvMAC [6]byte
	hostAP, srvAP   netip.AddrPort
	cfg             nic.SlotConfig
}

func newSlotFixture(l *netlab.Lab) (*slotFixture, error) {
	hostMAC, srvMAC, err := labMACs(l)
	if err != nil {
		return nil, err
	}
	f := &slotFixture{hostMAC: hostMAC, srvMAC: srvMAC,
		hostAP: netip.AddrPortFrom(l.Addr.Host4, 40000), srvAP: netip.AddrPortFrom(l.Addr.Srv4, 443)}
	f.cfg = nic.SlotConfig{
		Pattern: wp.TCPConn{Local: f.hostAP, Remote: f.srvAP},
		Spec:    offload.Spec{Kind: offload.KindTCPProbe, Interval: time.Hour, RetryInterval: time.Minute, RetryCount: 1},
		Snapshot: offload.Snapshot{LocalMAC: hostMAC, RemoteMAC: srvMAC, Local: f.hostAP, Remote: f.srvAP, SndNxt: 1000, RcvNxt: 5000,
			SndWnd: 65535, RcvWnd: 65535, TTL: 64, MSS: 1460},
		Owner: "bench",
	}
	return f, nil
}

// newDevice starts a device on the lab's nic ports, the wire port opened
// with wireCfg (nil: the defaults); wrap, when not nil, wraps the wire
// port.
func newDevice(l *netlab.Lab, hostMAC [6]byte, addrs []netip.Addr, wireCfg *nic.PortConfig, wrap func(nic.Port) nic.Port) (*nic.Device, error) {
	wire, err := openPortCfg(l, netlab.NIC, netlab.WireLink, wireCfg)
	if err != nil {
		return nil, err
	}
	hport, err := openPort(l, netlab.NIC, netlab.HostPortLink)
	if err != nil {
		wire.Close()
		return nil, err
	}
	if wrap != nil {
		wire = wrap(wire)
	}
	dev, err := nic.New(&nic.Config{Wire: wire, Host: hport, MAC: hostMAC, Addrs: addrs})
	if err != nil {
		wire.Close()
		hport.Close()
		return nil, fmt.Errorf("device: %w", err)
	}
	return dev, nil
}

func counter(dev *nic.Device, name string) uint64 {
	v, _ := dev.Counter(name)
	return v
}

// waitCounter polls a device counter until it reaches want.
func waitCounter(dev *nic.Device, name string, want uint64) error {
	deadline := time.Now().Add(drainWait)
	for counter(dev, name) < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("counter %s at %d, want %d", name, counter(dev, name), want)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}

func runRx(ctx context.Context, e *env, s *Scenario) error {
	n := pick(e, 20_000, 200_000)
	s.Notes = append(s.Notes,
		fmt.Sprintf("a sender on srv0 (AF_PACKET, sendmmsg in batches of %d) sends %d copies of the exact keep-alive reply (a pure ACK) of an armed slot per run to wire0 in the nic namespace, at most %d frames ahead of the receiver, so each rate is the rate with zero kernel drops (the drops are counted and shown)", pktpump.Batch, n, e.window()),
		"standbynic: the device in D3 with one armed slot and its kernel prefilter, counted by d3_rx_absorbed (every frame is decoded, matched and classified by the offload engine); the baselines only count frames on the same veth: the plain TPACKET_V3 ring loop (nic.OpenPacketPort, ReadBatch) and a recvfrom loop on a plain AF_PACKET socket",
		"only one receiver is open on wire0 at a time; the three alternate within each run, each going first in turn",
		"baseline: "+implTPacket,
	)
	l, err := newLab(ctx)
	if err != nil {
		return skipOrFail(s, "receive path", err)
	}
	defer l.Close()
	fx, err := newSlotFixture(l)
	if err != nil {
		return err
	}
	frame, err := tcpFrame(segment{srcMAC: fx.srvMAC, dstMAC: fx.hostMAC, src: fx.srvAP, dst: fx.hostAP, seq: 5000, ack: 1000, window: 1000})
	if err != nil {
		return err
	}
	frames := [][]byte{frame}
	src, err := openPort(l, netlab.Srv, netlab.SrvLink)
	if err != nil {
		return err
	}
	defer src.Close()

	param := fmt.Sprintf("%d-byte frames", len(frame))
	mD3 := s.add(&Measurement{Impl: implD3, Param: param, Metric: metricRate, Unit: "frames/s", BaselineImpl: implTPacket})
	mTP := s.add(&Measurement{Impl: implTPacket, Param: param, Metric: metricRate, Unit: "frames/s", BaselineImpl: implTPacket})
	mRv := s.add(&Measurement{Impl: implRecv, Param: param, Metric: metricRate, Unit: "frames/s", BaselineImpl: implTPacket})
	var dropsD3, dropsTP, dropsRv uint64

	retries := 0
	d3 := func() error {
		var cp *countingPort
		dev, err := newDevice(l, fx.hostMAC, []netip.Addr{l.Addr.Host4}, nil, func(p nic.Port) nic.Port { cp = &countingPort{Port: p}; return cp })
		if err != nil {
			return err
		}
		defer dev.Close()
		if _, err := dev.Arm(fx.cfg); err != nil {
			return fmt.Errorf("arm: %w", err)
		}
		if err := dev.Sleep(); err != nil {
			return fmt.Errorf("sleep: %w", err)
		}
		base := counter(dev, "d3_rx_absorbed")
		start := time.Now()
		if _, err := pktpump.Pump(ctx, src, frames, n, e.window(), stallWait, cp.n.Load); err != nil {
			return fmt.Errorf("%s: %w", implD3, err)
		}
		if err := waitCounter(dev, "d3_rx_absorbed", base+uint64(n)); err != nil {
			return fmt.Errorf("%s: %w", implD3, err)
		}
		mD3.Samples = append(mD3.Samples, float64(n)/time.Since(start).Seconds())
		dropsD3 += counter(dev, "d3_rx_dropped_kernel")
		return dev.Close()
	}
	ring := func() error {
		p, err := openPort(l, netlab.NIC, netlab.WireLink)
		if err != nil {
			return err
		}
		var count atomic.Uint64
		done := make(chan struct{})
		go pktpump.CountLoop(p, &count, done)
		rate, err := pktpump.Pump(ctx, src, frames, n, e.window(), stallWait, count.Load)
		dropsTP += p.Stats().RxDropped
		p.Close()
		<-done
		if err != nil {
			return fmt.Errorf("%s: %w", implTPacket, err)
		}
		mTP.Samples = append(mTP.Samples, rate)
		return nil
	}
	recv := func() error {
		r, err := openRaw(l, netlab.NIC, netlab.WireLink)
		if err != nil {
			return err
		}
		var count atomic.Uint64
		var stop atomic.Bool
		done := make(chan struct{})
		go r.loop(&count, &stop, done)
		rate, err := pktpump.Pump(ctx, src, frames, n, e.window(), stallWait, count.Load)
		stop.Store(true)
		<-done
		dropsRv += r.drops()
		r.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", implRecv, err)
		}
		mRv.Samples = append(mRv.Samples, rate)
		return nil
	}
	err = pinSender(s, func() error {
		return repeat(ctx, e.runs, func(run int) error {
			// Each receiver goes first in turn, so that none always
			// follows the same one.
			order := []func() error{d3, ring, recv}
			for i := range order {
				if err := retryLost(&retries, order[(run+i)%len(order)]); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if retries > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("%d runs repeated because frames were lost before the receiver (a veth backlog shared with the machine)", retries))
	}
	mD3.Extra = append(mD3.Extra, fmt.Sprintf("kernel drops %d", dropsD3))
	if len(mD3.Samples) == len(mTP.Samples) && len(mTP.Samples) > 0 {
		// The two ran side by side in each run: the median of the
		// per-run ratios is the steadier figure on a shared machine.
		r := make([]float64, len(mTP.Samples))
		for i := range r {
			r[i] = mD3.Samples[i] / mTP.Samples[i]
		}
		mD3.Extra = append(mD3.Extra, fmt.Sprintf("median of the per-run ratios %.3g×", median(r)))
	}
	mTP.Extra = append(mTP.Extra, fmt.Sprintf("kernel drops %d", dropsTP))
	mRv.Extra = append(mRv.Extra, fmt.Sprintf("kernel drops %d", dropsRv))
	return err
}
