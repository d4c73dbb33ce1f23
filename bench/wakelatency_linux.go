package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/nic"
	wp "github.com/standbynic/standbynic/wakepattern"
)

const (
	metricWakeP50 = "latency p50"
	metricWakeP99 = "latency p99"
)

// magicFrame is a wake-on-LAN magic packet for mac, from src.
func magicFrame(mac, src [6]byte) []byte {
	f := append(append(append([]byte(nil), mac[:]...), src[:]...), 0x08, 0x42)
	for range 6 {
		f = append(f, 0xff)
	}
	for range 16 {
		f = append(f, mac[:]...)
	}
	return f
}

// isMagic reports whether f is one of the magic frames sent (EtherType
// 0x0842), not a stray frame of the link.
func isMagic(f []byte) bool {
	return len(f) >= 14 && f[12] == 0x08 && f[13] == 0x42
}

func runWakeLatency(ctx context.Context, e *env, s *Scenario) error {
	per := pick(e, 40, 200)
	perHost := pick(e, 20, 100)
	s.Notes = append(s.Notes,
		fmt.Sprintf("%d wakes per run: the device in D3 with a magic-packet wake pattern; srv0 sends one magic packet (AF_PACKET); the time runs from just before the send to the wake event received from Device.Wakes, and from the wire port's kernel receive timestamp (WakeEvent.RxTime) to the same event; the device goes back to sleep between wakes; the same again with the wire port in immediate mode (nic.PortConfig.Immediate: a TPACKET_V2 ring that hands over each frame as it arrives, nic --wire-rx immediate)", per),
		fmt.Sprintf("%d pushes per run to the host runtime on the device (host.Config.NIC = the device with one hardware slot, resume latency 0): the push server in srv pushes to one stream channel whose socket is frozen by TCP_REPAIR and armed on the slot while the host is in standby; the push's TCP segment wakes the device (WakeData); from the same frame's kernel receive timestamp on wire0 (WakeEvent.RxTime), the time to the wake event (nic.Config.OnWake, as the device raises it) and to the start of the channel's push task (host.Config.OnTaskStart: the host's hand-back — disarm, thaw, resume — and the read of the push); each push has a %v deadline (standby re-entry, push, acknowledgement); a modelled resume latency (host.Config.ResumeLatency) adds to the task start as it is; the ratio of these rows is against the recvfrom read of the magic packet on the same veth", perHost, hostPushWait),
		"baselines: the same frame read by a reader blocked on the same veth — the plain TPACKET_V3 ring port (the device's own receive path: the kernel retires a partly filled ring block after its 1 ms timeout, which bounds its latency) and a recvfrom loop on a plain packet socket",
		"baseline: "+implRecvRead,
	)
	l, err := newLab(ctx)
	if err != nil {
		return skipOrFail(s, "wake latency", err)
	}
	defer l.Close()
	hostMAC, srvMAC, err := labMACs(l)
	if err != nil {
		return err
	}
	magic := [][]byte{magicFrame(hostMAC, srvMAC)}
	src, err := openPort(l, netlab.Srv, netlab.SrvLink)
	if err != nil {
		return err
	}
	defer src.Close()

	impls := []string{implWakeSend, implWakeRx, implWakeImm, implHostWake, implHostTask, implRingRead, implRecvRead}
	ms := map[string][2]*Measurement{}
	all := map[string][]float64{}
	for _, impl := range impls {
		param := "magic packet"
		if impl == implHostWake || impl == implHostTask {
			param = "push (TCP segment)"
		}
		ms[impl] = [2]*Measurement{
			s.add(&Measurement{Impl: impl, Param: param, Metric: metricWakeP50, Unit: "µs", BaselineImpl: implRecvRead, BaselineParam: "magic packet"}),
			s.add(&Measurement{Impl: impl, Param: param, Metric: metricWakeP99, Unit: "µs", BaselineImpl: implRecvRead, BaselineParam: "magic packet"}),
		}
	}
	record := func(impl string, lat []float64) {
		slices.Sort(lat)
		ms[impl][0].Samples = append(ms[impl][0].Samples, sortedQuantile(lat, 0.5))
		ms[impl][1].Samples = append(ms[impl][1].Samples, sortedQuantile(lat, 0.99))
		all[impl] = append(all[impl], lat...)
	}
	err = repeat(ctx, e.runs, func(int) error {
		send, rx, err := deviceWakes(ctx, l, hostMAC, src, magic, per, nil)
		if err != nil {
			return err
		}
		record(implWakeSend, send)
		record(implWakeRx, rx)
		_, rx, err = deviceWakes(ctx, l, hostMAC, src, magic, per, &nic.PortConfig{Immediate: true})
		if err != nil {
			return fmt.Errorf("immediate: %w", err)
		}
		record(implWakeImm, rx)
		hw, ht, err := hostWakes(ctx, l, perHost)
		if err != nil {
			return fmt.Errorf("host: %w", err)
		}
		record(implHostWake, hw)
		record(implHostTask, ht)
		ring, err := ringReads(ctx, l, src, magic, per)
		if err != nil {
			return err
		}
		record(implRingRead, ring)
		rv, err := recvReads(ctx, l, src, magic, per)
		if err != nil {
			return err
		}
		record(implRecvRead, rv)
		return nil
	})
	if err != nil {
		return err
	}
	plot := &Plot{File: "wakelatency.svg", Title: "Wake latency CDF: frame on the wire → wake event → task start", XLabel: "latency (µs)", YLabel: "fraction of wakes (CDF)", LogX: true}
	for _, impl := range impls {
		v := all[impl]
		slices.Sort(v)
		ms[impl][0].Values = v
		sr := Series{Name: impl}
		for i, x := range v {
			sr.Points = append(sr.Points, Point{x, float64(i+1) / float64(len(v))})
		}
		plot.Series = append(plot.Series, sr)
	}
	s.Plots = append(s.Plots, plot)
	return nil
}

// deviceWakes runs per wakes of a fresh device and returns, in µs, the
// latencies from the send and from the kernel's receive timestamp to the
// wake event.
func deviceWakes(ctx context.Context, l *netlab.Lab, hostMAC [6]byte, src nic.Port, magic [][]byte, per int, wireCfg *nic.PortConfig) (send, rx []float64, err error) {
	dev, err := newDevice(l, hostMAC, nil, wireCfg, nil)
	if err != nil {
		return nil, nil, err
	}
	defer dev.Close()
	if err := dev.AddWakePattern(wp.Pattern{ID: 1, Kind: wp.KindMagic, Magic: wp.Magic{MAC: hostMAC}}); err != nil {
		return nil, nil, fmt.Errorf("wake pattern: %w", err)
	}
	timeout := time.NewTimer(time.Hour)
	defer timeout.Stop()
	for range per {
		if err := dev.Sleep(); err != nil {
			return nil, nil, fmt.Errorf("sleep: %w", err)
		}
		t0 := time.Now()
		if _, err := src.WriteBatch(magic); err != nil {
			return nil, nil, fmt.Errorf("send: %w", err)
		}
		timeout.Reset(5 * time.Second)
		select {
		case ev := <-dev.Wakes():
			t2 := time.Now()
			if ev.Reason != nic.WakePattern {
				return nil, nil, fmt.Errorf("wake reason %v, want %v", ev.Reason, nic.WakePattern)
			}
			send = append(send, float64(t2.Sub(t0).Nanoseconds())/1e3)
			rx = append(rx, float64(t2.Sub(ev.RxTime).Nanoseconds())/1e3)
		case <-timeout.C:
			return nil, nil, errors.New("no wake within 5 s of a magic packet")
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		if err := dev.Resume(); err != nil {
			return nil, nil, fmt.Errorf("resume: %w", err)
		}
	}
	return send, rx, nil
}

// ringReads times per frames from the send to a blocked ReadBatch of a
// TPACKET_V3 port on wire0 returning them, in µs.
func ringReads(ctx context.Context, l *netlab.Lab, src nic.Port, magic [][]byte, per int) ([]float64, error) {
	p, err := openPort(l, netlab.NIC, netlab.WireLink)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	pkts := []nic.Packet{{Buf: make([]byte, 2048)}}
	var lat []float64
	for range per {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := p.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if _, err := src.WriteBatch(magic); err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		for {
			if _, err := p.ReadBatch(pkts); err != nil {
				return nil, fmt.Errorf("ring read: %w", err)
			}
			if isMagic(pkts[0].Frame()) {
				break
			}
		}
		lat = append(lat, float64(time.Since(t0).Nanoseconds())/1e3)
	}
	return lat, nil
}

// recvReads is ringReads with a recvfrom loop on a plain packet socket.
func recvReads(ctx context.Context, l *netlab.Lab, src nic.Port, magic [][]byte, per int) ([]float64, error) {
	r, err := openRaw(l, netlab.NIC, netlab.WireLink)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := make([]byte, 2048)
	var lat []float64
	for range per {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if _, err := src.WriteBatch(magic); err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		for {
			n, err := r.recvOne(buf)
			if err != nil {
				return nil, fmt.Errorf("recvfrom: %w", os.NewSyscallError("recvfrom", err))
			}
			if isMagic(buf[:n]) {
				break
			}
		}
		lat = append(lat, float64(time.Since(t0).Nanoseconds())/1e3)
	}
	return lat, nil
}
