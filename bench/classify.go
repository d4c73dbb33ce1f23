package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/net/bpf"

	"github.com/standbynic/standbynic/internal/gopacketref"
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

var errNoMatch = errors.New("a matching frame was not classified as such")

func classifiers(cs *connSet) ([]classifier, string, error) {
	m, err := wp.Compile(cs.patterns, wp.DefaultCapabilities())
	if err != nil {
		return nil, "", fmt.Errorf("compile matcher: %w", err)
	}
	conns := make(map[gopacketref.Key]int, cs.n)
	for i, p := range cs.patterns {
		conns[gopacketref.Key{Src: p.Conn.Remote.Addr(), Dst: p.Conn.Local.Addr(), SrcPort: p.Conn.Remote.Port(), DstPort: p.Conn.Local.Port()}] = i
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
		f wp.Frame
		r wp.Result
	)
	parser := gopacketref.NewParser()

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
				key, ok := gopacketref.NewPacketKey(frames[i%len(frames)])
				if !ok {
					return errNoMatch
				}
				if _, ok := conns[key]; !ok {
					return errNoMatch
				}
			}
			return nil
		}},
		{implDLP, func(frames [][]byte, k int) error {
			for i := range k {
				var key gopacketref.Key
				isTCP, err := parser.Key(frames[i%len(frames)], &key)
				if err != nil {
					return fmt.Errorf("decode: %w", err)
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
