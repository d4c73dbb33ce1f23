package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/slotmgr"
)

// simClock is the fixed clock of the simulated pool: placement only.
type simClock struct{}

func (simClock) Now() time.Duration { return 0 }

// wakeSim is what one simulated hour of standby cost the host.
type wakeSim struct {
	hardware, software int
	wakes, keepAlives  uint64
	energyMJ           float64
}

// simulateHostWakes places channels that all ask for a hardware slot
// (random priorities 0–3, intervals 30 s–10 min, random phases; seeded)
// on a slotmgr.Pool of hw hardware slots (0: a NIC without slots), plans
// the rest on a slotmgr.Planner with coalescing (tolerance 30 s) or
// without (one timer per channel), and runs the plan over d of fake
// time. Energy follows host.Power's defaults: each wake costs a resume
// and DefaultSoftwareWake awake, the rest is standby.
func simulateHostWakes(channels, hw int, coalesce bool, d time.Duration, seed uint64) (wakeSim, error) {
	rng := rand.New(rand.NewPCG(seed, uint64(channels)))
	var pool *slotmgr.Pool
	if hw > 0 {
		var err error
		pool, err = slotmgr.New(&slotmgr.Config{HardwareSlots: hw, IntervalUnit: time.Second, MinInterval: 15, MaxInterval: 1439}, simClock{})
		if err != nil {
			return wakeSim{}, fmt.Errorf("pool: %w", err)
		}
		defer pool.Close()
	}
	planner, err := slotmgr.NewPlanner(&slotmgr.PlannerConfig{Coalesce: coalesce, Tolerance: 30 * time.Second})
	if err != nil {
		return wakeSim{}, fmt.Errorf("planner: %w", err)
	}
	type ch struct {
		req   slotmgr.Request
		phase time.Duration
	}
	chs := make([]ch, channels)
	for i := range chs {
		req := slotmgr.Request{
			Channel:  fmt.Sprintf("ch%04d", i),
			App:      fmt.Sprint("app", i%7),
			Resource: slotmgr.RequestHardwareSlot,
			Interval: time.Duration(30+rng.IntN(571)) * time.Second,
			Priority: rng.IntN(4),
		}
		chs[i] = ch{req, -time.Duration(rng.Int64N(int64(req.Interval)))}
		if pool != nil {
			if r, err := pool.Request(req); err != nil || !r.Status.Allocated() {
				return wakeSim{}, fmt.Errorf("request %s: %v %v", req.Channel, r.Status, err)
			}
		}
	}
	var res wakeSim
	// Placement is final once every request is in: later ones evict.
	for _, c := range chs {
		if pool != nil {
			if r, _ := pool.Lookup(c.req.Channel); r.Kind == slotmgr.Hardware {
				res.hardware++
				continue
			}
		}
		res.software++
		if err := planner.Add(c.req.Channel, c.req.Interval, c.phase); err != nil {
			return wakeSim{}, fmt.Errorf("plan %s: %w", c.req.Channel, err)
		}
	}
	planner.RunUntil(0, d)
	c := planner.Counters()
	if c.Late != 0 {
		return wakeSim{}, fmt.Errorf("%d keep-alives late", c.Late)
	}
	res.wakes, res.keepAlives = c.Wakes, c.KeepAlives
	awake := min(time.Duration(res.wakes)*host.DefaultSoftwareWake, d)
	res.energyMJ = host.DefaultAwakeMW*awake.Seconds() + host.DefaultStandbyMW*(d-awake).Seconds() + host.DefaultResumeMJ*float64(res.wakes)
	return res, nil
}

func hostWakesImpl(hw int, coalesce bool) string {
	return fmt.Sprintf("%d hw slots, coalescing %s", hw, map[bool]string{true: "on", false: "off"}[coalesce])
}

func runHostWakes(ctx context.Context, e *env, s *Scenario) error {
	channels := pick(e, []int{10, 100, 1000}, []int{10, 30, 100, 300, 1000})
	hws := []int{0, 1, 4, 8, 16}
	const hour = time.Hour
	s.Notes = append(s.Notes,
		"simulation on a fake clock: one hour of standby; channels all ask for a hardware slot (slotmgr.Pool places them by priority, the rest fall back to software); intervals 30 s – 10 min, priorities 0–3, random phases; each run is another seed",
		"software keep-alives are planned by slotmgr.Planner: coalescing on = a wake serves every channel due within 30 s (never late), off = one timer per channel",
		fmt.Sprintf("energy: host.Power defaults (awake %.0f mW, standby %.0f mW, %.0f mJ per resume, %v awake per software wake); the NIC's own draw is not modelled", host.DefaultAwakeMW, host.DefaultStandbyMW, host.DefaultResumeMJ, host.DefaultSoftwareWake),
		"baseline: the same channels on a host with 0 hardware slots and one timer per channel",
	)
	wakesPlot := &Plot{File: "hostwakes.svg", Title: "Host wakes per hour of standby", XLabel: "channels", YLabel: "host wakes per hour (wakes/h)", LogX: true, LogY: true}
	energyPlot := &Plot{File: "hostenergy.svg", Title: "Estimated mean host power in standby", XLabel: "channels", YLabel: "mean power (mW)", LogX: true, LogY: true}
	for _, hw := range hws {
		for _, co := range []bool{false, true} {
			impl := hostWakesImpl(hw, co)
			ws := Series{Name: impl}
			es := Series{Name: impl}
			for _, n := range channels {
				param := fmt.Sprintf("%d channels", n)
				mw := &Measurement{Impl: impl, Param: param, X: float64(n), Metric: "host wakes per hour", Unit: "wakes/h", BaselineImpl: hostWakesImpl(0, false)}
				me := &Measurement{Impl: impl, Param: param, X: float64(n), Metric: "estimated mean host power", Unit: "mW", BaselineImpl: hostWakesImpl(0, false)}
				err := repeat(ctx, e.runs, func(run int) error {
					r, err := simulateHostWakes(n, hw, co, hour, uint64(2026+run))
					if err != nil {
						return err
					}
					mw.Samples = append(mw.Samples, float64(r.wakes)/hour.Hours())
					me.Samples = append(me.Samples, r.energyMJ/hour.Seconds())
					return nil
				})
				if err != nil {
					return fmt.Errorf("%s, %s: %w", impl, param, err)
				}
				s.add(mw)
				s.add(me)
				ws.Points = append(ws.Points, Point{float64(n), median(mw.Samples)})
				es.Points = append(es.Points, Point{float64(n), median(me.Samples)})
			}
			wakesPlot.Series = append(wakesPlot.Series, ws)
			energyPlot.Series = append(energyPlot.Series, es)
		}
	}
	s.Notes = append(s.Notes, "a configuration with 0 wakes/h (every channel on a hardware slot) has no point on the log-scale wakes plot")
	s.Plots = append(s.Plots, wakesPlot, energyPlot)
	return nil
}
