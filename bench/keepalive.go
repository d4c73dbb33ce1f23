package bench

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"github.com/standbynic/standbynic/offload"
)

const (
	implEngine   = "standbynic offload engine"
	implKernelKA = "Linux TCP keep-alive (SO_KEEPALIVE)"
	metricCPU    = "CPU per keep-alive"
	metricP50    = "send lateness p50"
	metricP99    = "send lateness p99"
	metricMem    = "memory per slot"
)

// lateOutput records, for every keep-alive the engine builds, how late it
// left after its slot's due time. The slot is recovered from the frame's
// source address and port (IPv4, untagged: fixed offsets).
type lateOutput struct {
	start time.Time
	base  time.Duration
	dues  []time.Duration
	late  []float64 // ns
	wakes int
}

// Send implements offload.Output.Send.
func (o *lateOutput) Send(frame []byte) {
	now := o.base + time.Since(o.start)
	port := int(frame[34])<<8 | int(frame[35])
	i := int(frame[28])<<16 | int(frame[29])<<8 | (port - 1024)
	if i >= 0 && i < len(o.dues) {
		o.late = append(o.late, float64(now-o.dues[i]))
	}
}

// Wake implements offload.Output.Wake.
func (o *lateOutput) Wake(offload.Event) { o.wakes++ }

// engineRun is one run of the engine at n slots.
type engineRun struct {
	cpuPerKA   float64 // ns of process CPU per keep-alive
	p50, p99   float64 // ns late
	bytesPerSl float64
}

// runEngine arms n TCP-probe slots whose first keep-alives fall due,
// spread uniformly, over span of real time after lead, drives the engine
// as the NIC does (sleep on a timer until NextDeadline, Fire), and
// measures the process CPU spent driving it, how late each keep-alive
// was built, and the heap per armed slot.
func runEngine(ctx context.Context, n int, lead, span time.Duration) (engineRun, error) {
	const base = 2 * time.Hour // the engine timeline's origin for the run
	spec := offload.Spec{Kind: offload.KindTCPProbe, Interval: time.Hour, RetryInterval: time.Hour, RetryCount: 1}
	out := &lateOutput{dues: make([]time.Duration, n), late: make([]float64, 0, n)}
	snap := offload.Snapshot{
		LocalMAC: benchDstMAC, RemoteMAC: benchSrcMAC,
		Remote: netip.AddrPortFrom(srvIP, 443),
		SndNxt: 1000, RcvNxt: 5000,
		SndWnd: 64240, RcvWnd: 65535 << 2, SndWScale: 7, RcvWScale: 7,
		Timestamps: offload.Timestamps{Enabled: true, Val: 777000, Rate: 1000, Recent: 42},
		TTL:        64, MSS: 1460,
	}
	var clk time.Duration
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	e := offload.New(&offload.Config{MaxSlots: n, Clock: offload.ClockFunc(func() time.Duration { return clk })})
	for i := range n {
		due := base + lead + time.Duration(int64(span)*int64(i)/int64(n))
		out.dues[i] = due
		snap.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)}), uint16(1024+i&0xff))
		clk = due - spec.Interval
		if err := e.Arm(offload.SlotID(i), snap, spec); err != nil {
			return engineRun{}, fmt.Errorf("arm slot %d: %w", i, err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	var r engineRun
	r.bytesPerSl = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)

	cpu0, err := processCPU()
	if err != nil {
		return engineRun{}, err
	}
	out.start, out.base = time.Now(), base
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	deadline := base + lead + span + 10*time.Second
	for len(out.late) < n {
		next, ok := e.NextDeadline()
		if !ok {
			return engineRun{}, fmt.Errorf("no deadline with %d of %d keep-alives sent", len(out.late), n)
		}
		if d := next - (base + time.Since(out.start)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return engineRun{}, ctx.Err()
			}
		}
		now := base + time.Since(out.start)
		if now > deadline {
			return engineRun{}, fmt.Errorf("ran past the deadline with %d of %d keep-alives sent", len(out.late), n)
		}
		clk = now
		e.Fire(now, out)
	}
	cpu1, err := processCPU()
	if err != nil {
		return engineRun{}, err
	}
	runtime.KeepAlive(e)
	if len(out.late) != n {
		return engineRun{}, fmt.Errorf("sent %d keep-alives, want %d (one per slot)", len(out.late), n)
	}
	slices.Sort(out.late)
	if out.late[0] < 0 {
		return engineRun{}, fmt.Errorf("a keep-alive left %v early with tolerance 0", time.Duration(-out.late[0]))
	}
	r.p50, r.p99 = sortedQuantile(out.late, 0.5), sortedQuantile(out.late, 0.99)
	r.cpuPerKA = float64((cpu1 - cpu0).Nanoseconds()) / float64(n)
	return r, nil
}

// fmtSamples formats samples with three significant digits.
func fmtSamples(xs []float64) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = fmtVal(x, "")
	}
	return out
}

func slotsParam(n int) string {
	if e := math.Log10(float64(n)); e == math.Trunc(e) {
		return fmt.Sprintf("10^%d slots", int(e))
	}
	return fmt.Sprintf("%d slots", n)
}

func runKeepalive(ctx context.Context, e *env, s *Scenario) error {
	counts := pick(e, []int{1_000, 10_000, 100_000}, []int{1_000, 10_000, 100_000, 1_000_000})
	lead, span := pick(e, 100*time.Millisecond, 200*time.Millisecond), pick(e, 250*time.Millisecond, 2*time.Second)
	s.Notes = append(s.Notes,
		fmt.Sprintf("engine: n TCP-probe slots (timestamps on) whose first keep-alives fall due uniformly over %v of real time; the driver sleeps on a timer until NextDeadline and calls Fire, as the device's timer loop does; tolerance 0, so nothing is sent early", span),
		"engine CPU: getrusage(RUSAGE_SELF) user+system time of the process while it drives the engine, divided by the keep-alives built (frame built and handed to the output; no socket write); lateness: time from a slot's due time to its frame reaching the output; memory: Go heap growth after arming, per slot",
	)
	cpuPlot := &Plot{File: "keepalive-cpu.svg", Title: "CPU per keep-alive", XLabel: "armed slots / kernel sockets", YLabel: "CPU per keep-alive (ns)", LogX: true, LogY: true}
	latePlot := &Plot{File: "keepalive-lateness.svg", Title: "Keep-alive send lateness (engine)", XLabel: "armed slots", YLabel: "lateness after due time (µs)", LogX: true, LogY: true}
	memPlot := &Plot{File: "keepalive-memory.svg", Title: "Memory per keep-alive slot", XLabel: "armed slots / kernel sockets", YLabel: "memory per slot (bytes)", LogX: true, LogY: true}

	// The kernel first: its figures are the baselines of the engine rows.
	kcpu, kmem, kparam, err := kernelKeepalive(ctx, e, s)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		s.Skipped = append(s.Skipped, fmt.Sprintf("kernel keep-alive: %v", err))
		kcpu, kmem, kparam = nil, nil, ""
	}
	// The kernel's CPU is measured against the whole machine's: when the
	// rest of the machine's load swamps it, there is no baseline to give.
	cpuBase := kcpu != nil && median(kcpu.Samples) > 0
	if kcpu != nil && !cpuBase {
		kcpu.BaselineImpl = ""
		s.Notes = append(s.Notes, fmt.Sprintf("kernel CPU per probe could not be told apart from the machine's other load in this run (median of keep-alive minus idle windows %.0f ns, samples %v ns): the engine's CPU rows carry no ratio", median(kcpu.Samples), fmtSamples(kcpu.Samples)))
	}
	var cpuS, p50S, p99S, memS Series
	cpuS.Name, p50S.Name, p99S.Name, memS.Name = implEngine, implEngine+" p50", implEngine+" p99", implEngine
	for _, n := range counts {
		param := slotsParam(n)
		add := func(metric, unit string, withBase bool) *Measurement {
			if metric == metricCPU {
				withBase = withBase && cpuBase
			}
			m := &Measurement{Impl: implEngine, Param: param, X: float64(n), Metric: metric, Unit: unit}
			if withBase && kparam != "" {
				m.BaselineImpl, m.BaselineParam = implKernelKA, kparam
			}
			return s.add(m)
		}
		mc, m50, m99, mm := add(metricCPU, "ns", true), add(metricP50, "µs", false), add(metricP99, "µs", false), add(metricMem, "B", true)
		err := repeat(ctx, e.runs, func(int) error {
			r, err := runEngine(ctx, n, lead, span)
			if err != nil {
				return fmt.Errorf("%s: %w", param, err)
			}
			mc.Samples = append(mc.Samples, r.cpuPerKA)
			m50.Samples = append(m50.Samples, r.p50/1e3)
			m99.Samples = append(m99.Samples, r.p99/1e3)
			mm.Samples = append(mm.Samples, r.bytesPerSl)
			return nil
		})
		runtime.GC()
		if err != nil {
			return err
		}
		cpuS.Points = append(cpuS.Points, Point{float64(n), median(mc.Samples)})
		p50S.Points = append(p50S.Points, Point{float64(n), median(m50.Samples)})
		p99S.Points = append(p99S.Points, Point{float64(n), median(m99.Samples)})
		memS.Points = append(memS.Points, Point{float64(n), median(mm.Samples)})
	}
	cpuPlot.Series = append(cpuPlot.Series, cpuS)
	memPlot.Series = append(memPlot.Series, memS)
	latePlot.Series = append(latePlot.Series, p50S, p99S)
	if cpuBase {
		cpuPlot.Series = append(cpuPlot.Series, Series{Name: implKernelKA, Points: []Point{{kcpu.X, median(kcpu.Samples)}}})
	}
	if kmem != nil {
		memPlot.Series = append(memPlot.Series, Series{Name: implKernelKA + " (slab per socket)", Points: []Point{{kmem.X, median(kmem.Samples)}}})
	}
	s.Plots = append(s.Plots, cpuPlot, latePlot, memPlot)
	return nil
}
