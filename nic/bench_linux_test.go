package nic_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/bpf"

	"github.com/standbynic/standbynic/internal/cpupin"
	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/pktpump"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// Benchmarks on a veth lab (root only): the device against the kernel
// doing the same job. Run:
//
//	go test -run '^$' -bench 'BenchmarkIntegration' -benchtime 200000x ./nic/

func benchLab(b *testing.B) (*netlab.Lab, [6]byte, [6]byte) {
	l := netlab.NewForTest(b, nil)
	ifi, err := l.Interface(netlab.Host, netlab.HostLink)
	if err != nil {
		b.Fatal(err)
	}
	sfi, err := l.Interface(netlab.Srv, netlab.SrvLink)
	if err != nil {
		b.Fatal(err)
	}
	return l, [6]byte(ifi.HardwareAddr), [6]byte(sfi.HardwareAddr)
}

func benchOpen(b *testing.B, l *netlab.Lab, ns netlab.Namespace, link string) nic.Port {
	var p nic.Port
	if err := l.Do(ns, func() error {
		var err error
		p, err = nic.OpenPacketPort(link, nil)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	return p
}

// benchStall is how long a benchmark's sender waits for its receiver to
// count a frame before the benchmark fails.
const benchStall = 10 * time.Second

// pump sends n copies of frame from p through internal/pktpump and
// returns the frames per second done() saw; what names the receiver in a
// failure, which also lists the counters lossDiag gives.
func pump(b *testing.B, what string, p nic.Port, frame []byte, n int, done func() uint64) float64 {
	rate, err := pktpump.Pump(context.Background(), p, [][]byte{frame}, n, pktpump.Window, benchStall, done)
	if err != nil {
		b.Fatalf("%s: %v%s", what, err, lossDiag())
	}
	return rate
}

// lossDiag is set by a benchmark to say where a lost frame may be (counters
// along the path) when pump gives up waiting.
var lossDiag = func() string { return "" }

// countersDiag lists the non-zero counters of dev and the kernel drops of
// the ports given.
func countersDiag(dev *nic.Device, ports ...nic.Port) func() string {
	return func() string {
		var sb strings.Builder
		for _, p := range ports {
			fmt.Fprintf(&sb, "; %s kernel drops %d", p.Name(), p.Stats().RxDropped)
		}
		if dev != nil {
			for _, c := range dev.Counters() {
				if c.Value != 0 {
					fmt.Fprintf(&sb, "; %s %d", c.Name, c.Value)
				}
			}
		}
		return sb.String()
	}
}

func ackFrame(b *testing.B, srcMAC, dstMAC [6]byte, src, dst netip.AddrPort, seq, ack uint32) []byte {
	return tcpFrame(b, seg{src: src, dst: dst, srcMAC: srcMAC, dstMAC: dstMAC, seq: seq, ack: ack, window: 1000})
}

// benchRounds is how many times each side runs, in turn; the figures
// reported are medians over the rounds, so that a neighbour's burst on a
// shared machine decides neither a rate nor the ratio.
const benchRounds = 7

// benchPin gives the sender (the calling goroutine) a CPU of its own and
// every other thread — the receiver under test, whichever it is — the
// others (internal/cpupin). Without two CPUs it runs unpinned and says so.
// It returns whether it pinned, for the "pinned" metric (b.ResetTimer
// drops metrics reported before it).
func benchPin(b *testing.B) float64 {
	_, restore, err := cpupin.Split()
	if err != nil {
		b.Logf("sender not pinned: %v", err)
		return 0
	}
	b.Cleanup(restore)
	return 1
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// slotBench builds the lab of the slot benchmarks: the guarded
// connection's two ends, the peer's keep-alive reply (a pure ACK the slot
// absorbs) and a sender on srv, closed with the benchmark.
func slotBench(b *testing.B) (l *netlab.Lab, hostMAC, srvMAC [6]byte, hostAP, srvAP netip.AddrPort, frame []byte, src nic.Port) {
	l, hostMAC, srvMAC = benchLab(b)
	hostAP = netip.AddrPortFrom(l.Addr.Host4, 40000)
	srvAP = netip.AddrPortFrom(l.Addr.Srv4, 443)
	frame = ackFrame(b, srvMAC, hostMAC, srvAP, hostAP, 5000, 1000)
	src = benchOpen(b, l, netlab.Srv, netlab.SrvLink)
	b.Cleanup(func() { src.Close() })
	return l, hostMAC, srvMAC, hostAP, srvAP, frame, src
}

// BenchmarkIntegrationD3Classify measures the D3 datapath absorbing a
// slot's pure ACKs on the wire port, against a plain TPACKET loop that
// only counts the same frames on the same veth; the two run in turn
// (which goes first alternates), and the ratio is the median of the
// per-round ratios.
func BenchmarkIntegrationD3Classify(b *testing.B) {
	l, hostMAC, srvMAC, hostAP, srvAP, frame, src := slotBench(b)
	n := max(b.N/benchRounds, 10000)
	snap := offload.Snapshot{LocalMAC: hostMAC, RemoteMAC: srvMAC, Local: hostAP, Remote: srvAP, SndNxt: 1000, RcvNxt: 5000,
		SndWnd: 65535, RcvWnd: 65535, TTL: 64, MSS: 1460}
	spec := offload.Spec{Kind: offload.KindTCPProbe, Interval: time.Hour, RetryInterval: time.Minute, RetryCount: 1}
	var baseRates, devRates, ratios []float64
	var drops uint64
	baseline := func() float64 {
		var count atomic.Uint64
		base := benchOpen(b, l, netlab.NIC, netlab.WireLink)
		done := make(chan struct{})
		go pktpump.CountLoop(base, &count, done)
		lossDiag = countersDiag(nil, base)
		rate := pump(b, "plain TPACKET loop", src, frame, n, count.Load)
		drops += base.Stats().RxDropped
		base.Close()
		<-done
		return rate
	}
	device := func() float64 {
		dev, err := nic.New(&nic.Config{Wire: benchOpen(b, l, netlab.NIC, netlab.WireLink), Host: benchOpen(b, l, netlab.NIC, netlab.HostPortLink),
			MAC: hostMAC, Addrs: []netip.Addr{l.Addr.Host4}})
		if err != nil {
			b.Fatal(err)
		}
		defer dev.Close()
		if _, err := dev.Arm(nic.SlotConfig{Pattern: wp.TCPConn{Local: hostAP, Remote: srvAP}, Spec: spec, Snapshot: snap}); err != nil {
			b.Fatal(err)
		}
		if err := dev.Sleep(); err != nil {
			b.Fatal(err)
		}
		if pf, ok := dev.Prefilter(); !ok || pf.Level != wp.BPFExact {
			b.Fatalf("D3 without the exact prefilter: attached %v, %+v", ok, pf)
		}
		lossDiag = countersDiag(dev)
		rate := pump(b, "device in D3", src, frame, n, nic.CounterFunc(dev, "d3_rx_absorbed"))
		d, _ := dev.Counter("d3_rx_dropped_kernel")
		drops += d
		return rate
	}
	pinned := benchPin(b)
	b.ResetTimer()
	for r := range benchRounds {
		var br, dr float64
		if r%2 == 0 {
			br, dr = baseline(), device()
		} else {
			dr, br = device(), baseline()
		}
		b.Logf("round %d: baseline %.0f frames/s, device %.0f frames/s, %.1f %%", r, br, dr, 100*dr/br)
		baseRates, devRates, ratios = append(baseRates, br), append(devRates, dr), append(ratios, dr/br)
	}
	b.StopTimer()
	b.ReportMetric(median(devRates), "frames/s")
	b.ReportMetric(median(baseRates), "baseline-frames/s")
	b.ReportMetric(100*median(ratios), "%-of-baseline")
	b.ReportMetric(100*slices.Min(ratios), "min-%")
	b.ReportMetric(float64(drops), "kernel-drops")
	b.ReportMetric(pinned, "pinned")
	if drops != 0 {
		b.Errorf("kernel drops: %d", drops)
	}
}

// BenchmarkIntegrationPrefilterCost measures what a socket filter costs
// the kernel's receive path on veth: the plain TPACKET loop without a
// filter, with a one-instruction accept-all filter, and with the
// device's D3 prefilter for the slot the frames belong to (they all
// pass it), in turn; each ratio is the median of the per-round ratios
// against the loop without a filter.
func BenchmarkIntegrationPrefilterCost(b *testing.B) {
	l, _, _, hostAP, srvAP, frame, src := slotBench(b)
	n := max(b.N/benchRounds/3, 10000)
	acceptAll, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 1 << 18}})
	if err != nil {
		b.Fatal(err)
	}
	prefilter, err := wp.CompileBPFRaw([]wp.Pattern{{ID: 1, Kind: wp.KindTCPConn, Conn: wp.TCPConn{Local: hostAP, Remote: srvAP}}},
		wp.BPFOptions{AcceptARPFor: []netip.Addr{l.Addr.Host4}, KernelStripsVLAN: true, SnapLen: 9234})
	if err != nil {
		b.Fatal(err)
	}
	loop := func(prog []bpf.RawInstruction) float64 {
		var count atomic.Uint64
		p := benchOpen(b, l, netlab.NIC, netlab.WireLink)
		if prog != nil {
			if err := p.SetFilter(prog); err != nil {
				b.Fatal(err)
			}
		}
		done := make(chan struct{})
		go pktpump.CountLoop(p, &count, done)
		lossDiag = countersDiag(nil, p)
		rate := pump(b, "plain TPACKET loop", src, frame, n, count.Load)
		p.Close()
		<-done
		return rate
	}
	var none, all, pre []float64
	pinned := benchPin(b)
	b.ResetTimer()
	for range benchRounds {
		r0, r1, r2 := loop(nil), loop(acceptAll), loop(prefilter)
		none, all, pre = append(none, r0), append(all, r1/r0), append(pre, r2/r0)
	}
	b.StopTimer()
	b.ReportMetric(median(none), "no-filter-frames/s")
	b.ReportMetric(100*median(all), "%-accept-all")
	b.ReportMetric(100*median(pre), "%-prefilter")
	b.ReportMetric(float64(len(prefilter)), "prefilter-insns")
	b.ReportMetric(pinned, "pinned")
}

// BenchmarkIntegrationD0Forward measures D0 forwarding of 60-byte frames
// wire → host against a Linux bridge joining the same two veths (default
// offloads), device and bridge rounds alternating.
func BenchmarkIntegrationD0Forward(b *testing.B) {
	l, hostMAC, srvMAC := benchLab(b)
	frame := make([]byte, 60)
	copy(frame[0:], hostMAC[:])
	copy(frame[6:], srvMAC[:])
	frame[12], frame[13] = 0x88, 0xb5 // local experimental EtherType: no kernel protocol handles it
	src := benchOpen(b, l, netlab.Srv, netlab.SrvLink)
	defer src.Close()
	sink := benchOpen(b, l, netlab.Host, netlab.HostLink)
	var count atomic.Uint64
	done := make(chan struct{})
	go pktpump.CountLoop(sink, &count, done)
	defer func() { sink.Close(); <-done }()
	n := max(b.N/benchRounds, 10000)
	br := newLabBridge(b, l)

	var devRates, brRates []float64
	pinned := benchPin(b)
	b.ResetTimer()
	for range benchRounds {
		dev, err := nic.New(&nic.Config{Wire: benchOpen(b, l, netlab.NIC, netlab.WireLink), Host: benchOpen(b, l, netlab.NIC, netlab.HostPortLink), MAC: hostMAC})
		if err != nil {
			b.Fatal(err)
		}
		lossDiag = countersDiag(dev, sink)
		devRates = append(devRates, pump(b, "device in D0", src, frame, n, count.Load))
		dev.Close()

		br.set(b, true)
		// The bridge forwards once its ports are forwarding: wait for
		// the first frame through.
		deadline := time.Now().Add(10 * time.Second)
		for before := count.Load(); count.Load() == before; {
			if time.Now().After(deadline) {
				b.Fatal("bridge never forwarded")
			}
			src.WriteBatch([][]byte{frame})
			time.Sleep(time.Millisecond)
		}
		lossDiag = countersDiag(nil, sink)
		brRates = append(brRates, pump(b, "bridge", src, frame, n, count.Load))
		br.set(b, false)
	}
	b.StopTimer()
	b.Logf("device frames/s %.0f, bridge frames/s %.0f (rounds alternating)", devRates, brRates)
	b.ReportMetric(median(devRates), "frames/s")
	b.ReportMetric(median(brRates), "bridge-frames/s")
	b.ReportMetric(100*median(devRates)/median(brRates), "%-of-bridge")
	b.ReportMetric(pinned, "pinned")
}

// BenchmarkIntegrationWakeLatency measures, per wake, the time from the
// wire port's kernel timestamp of a magic packet to the wake event
// received from Device.Wakes, with the wire port on the TPACKET_V3 ring
// (v3: the kernel hands a block over when it is full or 1 ms after its
// first frame) and in immediate mode (a TPACKET_V2 ring: each frame as
// it arrives).
func BenchmarkIntegrationWakeLatency(b *testing.B) {
	for _, mode := range []struct {
		name string
		cfg  *nic.PortConfig
	}{{"v3", nil}, {"immediate", &nic.PortConfig{Immediate: true}}} {
		b.Run(mode.name, func(b *testing.B) { benchWakeLatency(b, mode.cfg) })
	}
}

func benchWakeLatency(b *testing.B, wireCfg *nic.PortConfig) {
	l, hostMAC, srvMAC := benchLab(b)
	src := benchOpen(b, l, netlab.Srv, netlab.SrvLink)
	defer src.Close()
	var wire nic.Port
	if err := l.Do(netlab.NIC, func() (err error) {
		wire, err = nic.OpenPacketPort(netlab.WireLink, wireCfg)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	dev, err := nic.New(&nic.Config{Wire: wire, Host: benchOpen(b, l, netlab.NIC, netlab.HostPortLink), MAC: hostMAC})
	if err != nil {
		b.Fatal(err)
	}
	defer dev.Close()
	if err := dev.AddWakePattern(wp.Pattern{ID: 1, Kind: wp.KindMagic, Magic: wp.Magic{MAC: hostMAC}}); err != nil {
		b.Fatal(err)
	}
	magic := append(append(append([]byte(nil), hostMAC[:]...), srvMAC[:]...), 0x08, 0x42)
	for range 6 {
		magic = append(magic, 0xff)
	}
	for range 16 {
		magic = append(magic, hostMAC[:]...)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		if err := dev.Sleep(); err != nil {
			b.Fatal(err)
		}
		if _, err := src.WriteBatch([][]byte{magic}); err != nil {
			b.Fatal(err)
		}
		select {
		case ev := <-dev.Wakes():
			lat = append(lat, time.Since(ev.RxTime))
		case <-time.After(5 * time.Second):
			b.Fatal("no wake")
		}
		if err := dev.Resume(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-wake-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-wake-ns")
}
