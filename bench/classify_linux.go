package bench

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/net/bpf"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/internal/pktpump"
	"github.com/standbynic/standbynic/nic"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// classifyKernel measures the compiled program attached to an AF_PACKET
// socket on the nic end of a veth, against the same socket without a
// filter, for each pattern set.
func classifyKernel(ctx context.Context, e *env, s *Scenario, sets []*connSet, addPoint func(impl string, x, y float64)) error {
	l, err := newLab(ctx)
	if err != nil {
		return skipOrFail(s, "kernel BPF rows", err)
	}
	defer l.Close()
	src, err := openPort(l, netlab.Srv, netlab.SrvLink)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openPort(l, netlab.NIC, netlab.WireLink)
	if err != nil {
		return err
	}
	var count atomic.Uint64
	done := make(chan struct{})
	go pktpump.CountLoop(dst, &count, done)
	defer func() { dst.Close(); <-done }()

	k := pick(e, 10_000, 100_000)
	retries := 0
	defer func() {
		if retries > 0 {
			s.Notes = append(s.Notes, fmt.Sprintf("kernel rows: %d runs repeated because frames were lost before the receiver (a veth backlog shared with the machine)", retries))
		}
	}()
	return pinSender(s, func() error { return classifyKernelSets(ctx, e, s, sets, addPoint, src, dst, &count, &retries, k) })
}

// classifyKernelSets measures each set's program on dst against no filter,
// the two in turn (which goes first alternates by run).
func classifyKernelSets(ctx context.Context, e *env, s *Scenario, sets []*connSet, addPoint func(impl string, x, y float64),
	src, dst nic.Port, count *atomic.Uint64, retries *int, k int) error {
	for _, cs := range sets {
		prog, err := wp.CompileBPFRaw(cs.patterns, wp.BPFOptions{KernelStripsVLAN: true})
		if err != nil {
			return fmt.Errorf("compile bpf: %w", err)
		}
		param := fmt.Sprintf("%d patterns", cs.n)
		withF := s.add(&Measurement{Impl: implKernelBPF, Param: param, X: float64(cs.n), Metric: metricFrame, Unit: "ns", BaselineImpl: implDLP})
		noF := s.add(&Measurement{Impl: implKernelNone, Param: param, X: float64(cs.n), Metric: metricFrame, Unit: "ns", BaselineImpl: implDLP})
		before := dst.Stats().RxDropped
		err = repeat(ctx, e.runs, func(run int) error {
			type side struct {
				m    *Measurement
				prog []bpf.RawInstruction
			}
			order := []side{{withF, prog}, {noF, nil}}
			if run%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			for _, c := range order {
				if err := dst.SetFilter(c.prog); err != nil {
					return fmt.Errorf("attach %d-instruction filter: %w", len(c.prog), err)
				}
				var rate float64
				err := retryLost(retries, func() error {
					var err error
					rate, err = pktpump.Pump(ctx, src, cs.frames, k, e.window(), stallWait, count.Load)
					return err
				})
				if err != nil {
					return fmt.Errorf("%s, %s: %w", c.m.Impl, param, err)
				}
				c.m.Samples = append(c.m.Samples, 1e9/rate)
			}
			return nil
		})
		if err != nil {
			return err
		}
		drops := dst.Stats().RxDropped - before
		withF.Extra = append(withF.Extra, fmt.Sprintf("kernel drops %d", drops))
		addPoint(implKernelBPF, float64(cs.n), median(withF.Samples))
		addPoint(implKernelNone, float64(cs.n), median(noF.Samples))
	}
	return nil
}
