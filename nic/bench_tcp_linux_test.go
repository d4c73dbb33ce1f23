package nic_test

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/nic"
)

// labBridge joins the nic namespace's two veths (wire0, hport0) with a
// Linux bridge for a baseline round and parts them again for a device
// round, so device and bridge rounds alternate on the same links with the
// same (default) offloads.
type labBridge struct {
	l *netlab.Lab
}

func newLabBridge(b *testing.B, l *netlab.Lab) *labBridge {
	if err := l.Do(netlab.NIC, func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return err
		}
		return netlink.LinkSetUp(br)
	}); err != nil {
		b.Fatalf("bridge: %v", err)
	}
	return &labBridge{l: l}
}

// set puts both veths in the bridge (join) or takes them out.
func (br *labBridge) set(b *testing.B, join bool) {
	if err := br.l.Do(netlab.NIC, func() error {
		master, err := netlink.LinkByName("br0")
		if err != nil {
			return err
		}
		for _, name := range []string{netlab.WireLink, netlab.HostPortLink} {
			lk, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if join {
				err = netlink.LinkSetMaster(lk, master)
			} else {
				err = netlink.LinkSetNoMaster(lk)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatalf("bridge ports (join %v): %v", join, err)
	}
}

// tcpRound sends from srv to host over one fresh TCP connection for d and
// returns the receiver's goodput in Gbit/s, from its first byte to EOF.
func tcpRound(b *testing.B, l *netlab.Lab, d time.Duration) float64 {
	ln, err := l.ListenTCP(netlab.Srv, netip.AddrPortFrom(l.Addr.Srv4, 0).String())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	sent := make(chan error, 1)
	go func() {
		ln.SetDeadline(time.Now().Add(15 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			sent <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		end := time.Now().Add(d)
		c.SetWriteDeadline(end.Add(10 * time.Second))
		for time.Now().Before(end) {
			if _, err := c.Write(buf); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	hc, err := l.DialTCP(ctx, netlab.Host, ln.Addr().String())
	if err != nil {
		b.Fatalf("dial: %v", err)
	}
	defer hc.Close()
	hc.SetReadDeadline(time.Now().Add(d + 15*time.Second))
	buf := make([]byte, 256<<10)
	var total int64
	var first time.Time
	for {
		n, err := hc.Read(buf)
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		total += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatalf("read after %d bytes: %v", total, err)
		}
	}
	elapsed := time.Since(first)
	if err := <-sent; err != nil {
		b.Fatalf("send: %v", err)
	}
	return float64(total*8) / elapsed.Seconds() / 1e9
}

// waitTCP waits until a connection from host to srv gets through.
func waitTCP(b *testing.B, l *netlab.Lab) {
	ln, err := l.ListenTCP(netlab.Srv, netip.AddrPortFrom(l.Addr.Srv4, 0).String())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		ln.SetDeadline(time.Now().Add(20 * time.Second))
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := l.DialTCP(ctx, netlab.Host, ln.Addr().String())
	if err != nil {
		b.Fatalf("no TCP through the nic namespace: %v", err)
	}
	c.Close()
}

// BenchmarkIntegrationD0TCP measures single-stream TCP goodput srv → host
// through the device in D0 against a Linux bridge joining the same two
// veths, both with the kernel's default offloads (TSO/GSO super-frames
// with partial checksums), device and bridge rounds alternating. Run:
//
//	go test -run '^$' -bench BenchmarkIntegrationD0TCP -benchtime 1x ./nic/
func BenchmarkIntegrationD0TCP(b *testing.B) {
	l := netlab.NewForTest(b, nil)
	hostIf, err := l.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		b.Fatal(err)
	}
	br := newLabBridge(b, l)
	const rounds, d = 5, 400 * time.Millisecond
	var devRates, brRates []float64
	var gso, sw uint64
	b.ResetTimer()
	for range rounds {
		dev, err := nic.New(&nic.Config{Wire: benchOpen(b, l, netlab.NIC, netlab.WireLink), Host: benchOpen(b, l, netlab.NIC, netlab.HostPortLink),
			MAC: [6]byte(hostIf.HardwareAddr)})
		if err != nil {
			b.Fatal(err)
		}
		waitTCP(b, l)
		devRates = append(devRates, tcpRound(b, l, d))
		g, _ := dev.Counter("vnet_rx_gso")
		s, _ := dev.Counter("vnet_sw_gso")
		gso, sw = gso+g, sw+s
		dev.Close()

		br.set(b, true)
		waitTCP(b, l)
		brRates = append(brRates, tcpRound(b, l, d))
		br.set(b, false)
	}
	b.StopTimer()
	b.Logf("device Gbit/s %.2f, bridge Gbit/s %.2f (rounds alternating); super-frames through the device %d, cut in software %d",
		devRates, brRates, gso, sw)
	b.ReportMetric(median(devRates), "Gbit/s")
	b.ReportMetric(median(brRates), "bridge-Gbit/s")
	b.ReportMetric(median(devRates)/median(brRates), "x-bridge")
}
