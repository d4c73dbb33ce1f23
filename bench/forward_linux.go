package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/pktpump"
)

func runForward(ctx context.Context, e *env, s *Scenario) error {
	n := pick(e, 20_000, 200_000)
	tcpBytes := pick(e, 8<<20, 64<<20)
	s.Notes = append(s.Notes,
		fmt.Sprintf("frames: %d 60-byte frames per run (local experimental EtherType 0x88b5, so no protocol stack touches them) from srv0 through the nic namespace to a TPACKET_V3 counter on host0, at most %d in flight", n, e.window()),
		fmt.Sprintf("TCP: one connection from host to srv (Go net, default socket options, MTU 1500, veth offloads off) writes %d MiB per run; the time runs from the first write to the last byte read at srv", tcpBytes>>20),
		"standbynic: the device in D0 (AF_PACKET ports on wire0 and hport0, forwarding both ways); baseline: a Linux bridge created with vishvananda/netlink in the nic namespace, enslaving the same two veths, after the device is closed",
		"baseline: "+implBridge,
	)
	l, err := newLab(ctx)
	if err != nil {
		return skipOrFail(s, "forwarding", err)
	}
	defer l.Close()
	hostMAC, srvMAC, err := labMACs(l)
	if err != nil {
		return err
	}
	frame := make([]byte, 60)
	copy(frame[0:], hostMAC[:])
	copy(frame[6:], srvMAC[:])
	frame[12], frame[13] = 0x88, 0xb5
	frames := [][]byte{frame}
	src, err := openPort(l, netlab.Srv, netlab.SrvLink)
	if err != nil {
		return err
	}
	defer src.Close()
	ln, err := l.ListenTCP(netlab.Srv, net.JoinHostPort(l.Addr.Srv4.String(), "0"))
	if err != nil {
		return err
	}
	defer ln.Close()

	frameParam, tcpParam := "60-byte frames", fmt.Sprintf("%d MiB TCP", tcpBytes>>20)
	ms := map[string][2]*Measurement{}
	for _, impl := range []string{implD0, implBridge} {
		ms[impl] = [2]*Measurement{
			s.add(&Measurement{Impl: impl, Param: frameParam, Metric: metricRate, Unit: "frames/s", BaselineImpl: implBridge}),
			s.add(&Measurement{Impl: impl, Param: tcpParam, Metric: "TCP throughput", Unit: "Mbit/s", BaselineImpl: implBridge}),
		}
	}
	retries := 0
	defer func() {
		if retries > 0 {
			s.Notes = append(s.Notes, fmt.Sprintf("%d frame runs repeated because frames were lost before the receiver (a veth backlog shared with the machine)", retries))
		}
	}()
	measure := func(impl string) error {
		sink, err := openPort(l, netlab.Host, netlab.HostLink)
		if err != nil {
			return err
		}
		var count atomic.Uint64
		done := make(chan struct{})
		go pktpump.CountLoop(sink, &count, done)
		var rate float64
		err = retryLost(&retries, func() error {
			var err error
			rate, err = pktpump.Pump(ctx, src, frames, n, e.window(), stallWait, count.Load)
			return err
		})
		sink.Close()
		<-done
		if err != nil {
			return fmt.Errorf("%s frames: %w", impl, err)
		}
		bps, err := tcpThroughput(ctx, l, ln, tcpBytes)
		if err != nil {
			return fmt.Errorf("%s tcp: %w", impl, err)
		}
		e.logf("bench: forward: %s: %.0f frames/s, %.0f Mbit/s", impl, rate, bps*8/1e6)
		ms[impl][0].Samples = append(ms[impl][0].Samples, rate)
		ms[impl][1].Samples = append(ms[impl][1].Samples, bps*8/1e6)
		return nil
	}

	dev, err := newDevice(l, hostMAC, nil, nil, nil)
	if err != nil {
		return err
	}
	err = repeat(ctx, e.runs, func(int) error { return measure(implD0) })
	if cerr := dev.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}

	if err := addBridge(l); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if err := waitBridge(ctx, l, src, frame); err != nil {
		return err
	}
	return repeat(ctx, e.runs, func(int) error { return measure(implBridge) })
}

// addBridge joins wire0 and hport0 with a bridge br0 in the nic
// namespace.
func addBridge(l *netlab.Lab) error {
	return l.Do(netlab.NIC, func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("add br0: %w", err)
		}
		for _, name := range []string{netlab.WireLink, netlab.HostPortLink} {
			lk, err := netlink.LinkByName(name)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := netlink.LinkSetMaster(lk, br); err != nil {
				return fmt.Errorf("enslave %s: %w", name, err)
			}
		}
		if err := netlink.LinkSetUp(br); err != nil {
			return fmt.Errorf("br0 up: %w", err)
		}
		return nil
	})
}

// waitBridge waits until a frame from srv0 reaches host0 through the
// bridge (its ports forward once they are up).
func waitBridge(ctx context.Context, l *netlab.Lab, src interface{ WriteBatch([][]byte) (int, error) }, frame []byte) error {
	sink, err := openPort(l, netlab.Host, netlab.HostLink)
	if err != nil {
		return err
	}
	var count atomic.Uint64
	done := make(chan struct{})
	go pktpump.CountLoop(sink, &count, done)
	defer func() { sink.Close(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for count.Load() == 0 {
		if time.Now().After(deadline) {
			return errors.New("bridge: no frame forwarded within 10 s")
		}
		if _, err := src.WriteBatch([][]byte{frame}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// tcpThroughput sends size bytes on a new connection from host to the
// listener in srv and returns the bytes per second the listener read.
func tcpThroughput(ctx context.Context, l *netlab.Lab, ln *net.TCPListener, size int) (float64, error) {
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	type result struct {
		n   int64
		end time.Time
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		n, err := io.Copy(io.Discard, c)
		res <- result{n, time.Now(), err}
	}()
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := l.DialTCP(dctx, netlab.Host, ln.Addr().String())
	if err != nil {
		ln.SetDeadline(time.Now())
		<-res
		ln.SetDeadline(time.Time{})
		return 0, err
	}
	c.SetDeadline(deadline)
	buf := make([]byte, 64<<10)
	start := time.Now()
	var werr error
	for sent := 0; sent < size && werr == nil; {
		k, err := c.Write(buf[:min(len(buf), size-sent)])
		sent += k
		werr = err
	}
	c.Close()
	r := <-res
	if werr != nil {
		return 0, werr
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.n != int64(size) {
		return 0, fmt.Errorf("read %d of %d bytes", r.n, size)
	}
	return float64(size) / r.end.Sub(start).Seconds(), nil
}
