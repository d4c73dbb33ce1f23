package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// Implementations compared in the classification scenario.
const (
	implMatcher    = "standbynic Matcher"
	implNewPacket  = "gopacket NewPacket + map"
	implDLP        = "gopacket DecodingLayerParser + map"
	implBPFVM      = "compiled BPF in the x/net/bpf VM"
	implKernelBPF  = "compiled BPF in the kernel (AF_PACKET on veth)"
	implKernelNone = "AF_PACKET on veth, no filter"
	metricFrame    = "time per frame"
)

// classifier classifies frames[i%len] for i < k and reports an error
// when a frame that should match does not.
type classifier struct {
	impl string
	run  func(frames [][]byte, k int) error
}

// fourTuple is the map key a gopacket user writes.
type fourTuple struct {
	src, dst         netip.Addr
	srcPort, dstPort uint16
}

var errNoMatch = errors.New("a matching frame was not classified as such")

func classifiers(cs *connSet) ([]classifier, string, error) {
	m, err := wp.Compile(cs.patterns, wp.DefaultCapabilities())
	if err != nil {
		return nil, "", fmt.Errorf("compile matcher: %w", err)
	}
	conns := make(map[fourTuple]int, cs.n)
	for i, p := range cs.patterns {
		conns[fourTuple{p.Conn.Remote.Addr(), p.Conn.Local.Addr(), p.Conn.Remote.Port(), p.Conn.Local.Port()}] = i
	}
	// The VM knows no ancillary loads: the program reads VLAN tags inline.
	prog, err := wp.BuildBPF(cs.patterns, wp.BPFOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("compile bpf: %w", err)
	}
	vm, err := bpf.NewVM(prog.Instructions)
	if err != nil {
		return nil, "", fmt.Errorf("bpf vm: %w", err)
	}
	level := fmt.Sprintf("%d patterns: BPF program of %d instructions, precision %s", cs.n, len(prog.Instructions), prog.Level)

	var (
		f       wp.Frame
		r       wp.Result
		eth     layers.Ethernet
		dot1q   layers.Dot1Q
		ip4     layers.IPv4
		ip6     layers.IPv6
		tcp     layers.TCP
		payload gopacket.Payload
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &dot1q, &ip4, &ip6, &tcp, &payload)
	parser.IgnoreUnsupported = true
	decoded := make([]gopacket.LayerType, 0, 8)

	return []classifier{
		{implMatcher, func(frames [][]byte, k int) error {
			for i := range k {
				if !m.MatchFrame(frames[i%len(frames)], &f, &r) {
					return errNoMatch
				}
			}
			return nil
		}},
		{implNewPacket, func(frames [][]byte, k int) error {
			for i := range k {
				pkt := gopacket.NewPacket(frames[i%len(frames)], layers.LayerTypeEthernet, gopacket.Default)
				var key fourTuple
				if l := pkt.Layer(layers.LayerTypeIPv4); l != nil {
					ip := l.(*layers.IPv4)
					key.src, _ = netip.AddrFromSlice(ip.SrcIP)
					key.dst, _ = netip.AddrFromSlice(ip.DstIP)
				} else if l := pkt.Layer(layers.LayerTypeIPv6); l != nil {
					ip := l.(*layers.IPv6)
					key.src, _ = netip.AddrFromSlice(ip.SrcIP)
					key.dst, _ = netip.AddrFromSlice(ip.DstIP)
				}
				l := pkt.Layer(layers.LayerTypeTCP)
				if l == nil {
					return errNoMatch
				}
				t := l.(*layers.TCP)
				key.srcPort, key.dstPort = uint16(t.SrcPort), uint16(t.DstPort)
				if _, ok := conns[key]; !ok {
					return errNoMatch
				}
			}
			return nil
		}},
		{implDLP, func(frames [][]byte, k int) error {
			for i := range k {
				if err := parser.DecodeLayers(frames[i%len(frames)], &decoded); err != nil {
					return fmt.Errorf("decode: %w", err)
				}
				var key fourTuple
				var isTCP bool
				for _, lt := range decoded {
					switch lt {
					case layers.LayerTypeIPv4:
						key.src = netip.AddrFrom4([4]byte(ip4.SrcIP))
						key.dst = netip.AddrFrom4([4]byte(ip4.DstIP))
					case layers.LayerTypeIPv6:
						key.src = netip.AddrFrom16([16]byte(ip6.SrcIP))
						key.dst = netip.AddrFrom16([16]byte(ip6.DstIP))
					case layers.LayerTypeTCP:
						key.srcPort, key.dstPort = uint16(tcp.SrcPort), uint16(tcp.DstPort)
						isTCP = true
					}
				}
				if _, ok := conns[key]; !ok || !isTCP {
					return errNoMatch
				}
			}
			return nil
		}},
		{implBPFVM, func(frames [][]byte, k int) error {
			for i := range k {
				n, err := vm.Run(frames[i%len(frames)])
				if err != nil {
					return fmt.Errorf("vm: %w", err)
				}
				if n == 0 {
					return errNoMatch
				}
			}
			return nil
		}},
	}, level, nil
}

// classifyCounts returns the pattern counts of the scenario.
func classifyCounts(e *env) []int {
	return pick(e, []int{1, 64, 4096}, []int{1, 16, 256, 4096, 65536})
}

func runClassify(ctx context.Context, e *env, s *Scenario) error {
	k := pick(e, 20_000, 200_000)
	s.Notes = append(s.Notes,
		fmt.Sprintf("each run classifies %d IPv4 keep-alive ACKs (with timestamps) cycling over %d frames that each match one of the connection patterns; time per frame includes decoding", k, connSetFrames),
		"gopacket rows: decode, then look the 4-tuple up in a Go map of the patterns (what a user of gopacket would write)",
		fmt.Sprintf("BPF rows: the program wakepattern.CompileBPF builds for the same patterns (a superset filter: beyond 4096 instructions it degrades to a coarser precision, listed below); the kernel rows time the whole path — sendmmsg on one end of a veth, the filter, the TPACKET_V3 ring, the reader — with at most %d frames in flight, so they include what the userspace rows do not", e.window()),
		"baseline: "+implDLP,
	)
	var sets []*connSet
	for _, n := range classifyCounts(e) {
		cs, err := newConnSet(n)
		if err != nil {
			return err
		}
		sets = append(sets, cs)
	}
	plot := &Plot{File: "classify.svg", Title: "Classification cost per frame", XLabel: "connection patterns", YLabel: "time per frame (ns)", LogX: true, LogY: true}
	series := map[string]*Series{}
	var order []string
	addPoint := func(impl string, x, y float64) {
		sr := series[impl]
		if sr == nil {
			sr = &Series{Name: impl}
			series[impl] = sr
			order = append(order, impl)
		}
		sr.Points = append(sr.Points, Point{x, y})
	}
	for _, cs := range sets {
		cls, level, err := classifiers(cs)
		if err != nil {
			return err
		}
		s.Notes = append(s.Notes, level)
		param := fmt.Sprintf("%d patterns", cs.n)
		ms := make([]*Measurement, len(cls))
		for i, c := range cls {
			ms[i] = s.add(&Measurement{Impl: c.impl, Param: param, X: float64(cs.n), Metric: metricFrame, Unit: "ns", BaselineImpl: implDLP})
			// Warm up: caches, the map, the parser's layers.
			if err := c.run(cs.frames, min(k, 2000)); err != nil {
				return fmt.Errorf("%s, %s: %w", c.impl, param, err)
			}
		}
		err = repeat(ctx, e.runs, func(int) error {
			for i, c := range cls {
				start := time.Now()
				if err := c.run(cs.frames, k); err != nil {
					return fmt.Errorf("%s, %s: %w", c.impl, param, err)
				}
				ms[i].Samples = append(ms[i].Samples, float64(time.Since(start).Nanoseconds())/float64(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, m := range ms {
			addPoint(m.Impl, m.X, median(m.Samples))
		}
	}
	if err := classifyKernel(ctx, e, s, sets, addPoint); err != nil {
		return err
	}
	for _, impl := range order {
		plot.Series = append(plot.Series, *series[impl])
	}
	s.Plots = append(s.Plots, plot)
	return nil
}
