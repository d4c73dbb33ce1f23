package slotmgr

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// modelChan is the test's own record of an accepted channel: what ranks it.
type modelChan struct {
	prio     int
	order    int // request order: smaller is older
	resource ResourceType
}

func (m modelChan) outranks(o modelChan) bool {
	if m.prio != o.prio {
		return m.prio > o.prio
	}
	return m.order < o.order
}

// TestPropertyRandomSequences drives pools with random requests, releases,
// disconnects, reconnects and state changes, and checks after every step
// that at most N hardware slots are held, no channel is lost or invented,
// slots are unique, no waiter outranks a holder, promotions pick the
// highest-ranked waiter and evictions the lowest-ranked holder.
func TestPropertyRandomSequences(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			runProperty(t, seed)
		})
	}
}

func runProperty(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x510f))
	n := 1 + rng.IntN(6)
	cfg := secondsConfig(n)
	cfg.Strict = rng.IntN(4) == 0
	clk := &fakeClock{}
	p := newPool(t, cfg, clk)
	model := map[string]modelChan{}
	names := make([]string, 24)
	for i := range names {
		names[i] = fmt.Sprintf("ch%02d", i)
	}
	order := 0
	var before []Result

	pickLive := func() (string, bool) {
		if len(model) == 0 {
			return "", false
		}
		live := p.Channels(nil)
		return live[rng.IntN(len(live))].Channel, true
	}
	// bestWaiter is the channel that must be promoted into a freed slot.
	bestWaiter := func(snap []Result, except string) string {
		best := ""
		for _, r := range snap {
			m := model[r.Channel]
			if r.Channel == except || r.Kind != Software || m.resource != RequestHardwareSlot {
				continue
			}
			if best == "" || m.outranks(model[best]) {
				best = r.Channel
			}
		}
		return best
	}
	lowestHolder := func(snap []Result) string {
		low := ""
		for _, r := range snap {
			if r.Kind == Hardware && (low == "" || model[low].outranks(model[r.Channel])) {
				low = r.Channel
			}
		}
		return low
	}

	for step := range 400 {
		clk.now += time.Second
		before = p.Channels(before[:0])
		var wantPromoted, wantEvicted string
		op := rng.IntN(10)
		switch {
		case op < 5: // request
			ch := names[rng.IntN(len(names))]
			req := Request{
				Channel:  ch,
				App:      fmt.Sprint("app", rng.IntN(3)),
				Resource: ResourceType(rng.IntN(2)),
				Interval: time.Duration(10+rng.IntN(30)) * time.Second,
				Priority: rng.IntN(4),
			}
			res, err := p.Request(req)
			if _, exists := model[ch]; exists {
				if err == nil {
					t.Fatalf("step %d: duplicate %s accepted", step, ch)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d: Request: %v", step, err)
			}
			order++
			m := modelChan{prio: req.Priority, order: order, resource: req.Resource}
			if res.Status.Allocated() {
				model[ch] = m
			}
			if res.Kind == Hardware && len(before) > 0 {
				if low := lowestHolder(before); low != "" && countKind(before, Hardware) == n {
					wantEvicted = low
					if !m.outranks(model[low]) {
						t.Fatalf("step %d: %s took hardware from %s without outranking it", step, ch, low)
					}
				}
			}
		case op < 7: // release
			ch, ok := pickLive()
			if !ok {
				break
			}
			if r, _ := p.Lookup(ch); r.Kind == Hardware {
				wantPromoted = bestWaiter(before, ch)
			}
			if err := p.Release(ch); err != nil {
				t.Fatalf("step %d: Release: %v", step, err)
			}
			delete(model, ch)
		case op < 8: // disconnect
			ch, ok := pickLive()
			if !ok {
				break
			}
			r, _ := p.Lookup(ch)
			if r.Kind == Hardware {
				wantPromoted = bestWaiter(before, ch)
			}
			res, err := p.MarkDisconnected(ch, "")
			if err != nil || res.Status != TransportDisconnected {
				t.Fatalf("step %d: MarkDisconnected = %+v, %v", step, res, err)
			}
		case op < 9: // reconnect
			ch, ok := pickLive()
			if !ok {
				break
			}
			res, err := p.Reconnect(ch)
			if r, _ := p.Lookup(ch); err != nil && r.Status == TransportDisconnected {
				t.Fatalf("step %d: Reconnect of a disconnected channel: %v", step, err)
			}
			if err == nil && res.Kind == Hardware && countKind(before, Hardware) == n {
				wantEvicted = lowestHolder(before)
			}
		default:
			s := Awake
			if rng.IntN(3) == 0 {
				s = EnteringStandby
			}
			if err := p.SetSystemState(s); err != nil {
				t.Fatal(err)
			}
		}

		var promoted, evicted []string
		for _, e := range p.DrainEvents(nil) {
			switch e.Kind {
			case Promoted:
				promoted = append(promoted, e.Channel)
			case Evicted:
				evicted = append(evicted, e.Channel)
			}
		}
		if len(promoted) > 1 || len(evicted) > 1 {
			t.Fatalf("step %d: promoted %v, evicted %v: at most one of each per step", step, promoted, evicted)
		}
		if got := first(promoted); got != wantPromoted {
			t.Fatalf("step %d: promoted %q, want the highest-ranked waiter %q", step, got, wantPromoted)
		}
		if got := first(evicted); got != wantEvicted {
			t.Fatalf("step %d: evicted %q, want the lowest-ranked holder %q", step, got, wantEvicted)
		}
		checkInvariants(t, step, p, n, model)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func countKind(rs []Result, k Kind) int {
	c := 0
	for _, r := range rs {
		if r.Kind == k {
			c++
		}
	}
	return c
}

func checkInvariants(t *testing.T, step int, p *Pool, n int, model map[string]modelChan) {
	t.Helper()
	snap := p.Channels(nil)
	if len(snap) != len(model) {
		t.Fatalf("step %d: pool holds %d channels, model %d", step, len(snap), len(model))
	}
	hwSlots := map[int]string{}
	swSlots := map[int]string{}
	var holders, waiters []string
	for _, r := range snap {
		m, ok := model[r.Channel]
		if !ok {
			t.Fatalf("step %d: pool holds unknown channel %s", step, r.Channel)
		}
		switch r.Kind {
		case Hardware:
			if r.Status != HardwareSlotAllocated || r.Slot < 0 || r.Slot >= n {
				t.Fatalf("step %d: bad hardware placement %+v", step, r)
			}
			if o, dup := hwSlots[r.Slot]; dup {
				t.Fatalf("step %d: hardware slot %d held by %s and %s", step, r.Slot, o, r.Channel)
			}
			hwSlots[r.Slot] = r.Channel
			holders = append(holders, r.Channel)
		case Software:
			if r.Status != SoftwareSlotAllocated || r.Slot < 0 {
				t.Fatalf("step %d: bad software placement %+v", step, r)
			}
			if o, dup := swSlots[r.Slot]; dup {
				t.Fatalf("step %d: software slot %d held by %s and %s", step, r.Slot, o, r.Channel)
			}
			swSlots[r.Slot] = r.Channel
			if m.resource == RequestHardwareSlot {
				waiters = append(waiters, r.Channel)
			}
		case NoSlot:
			if r.Status != TransportDisconnected || r.Slot != -1 {
				t.Fatalf("step %d: slotless channel %+v not disconnected", step, r)
			}
		}
	}
	if len(hwSlots) > n {
		t.Fatalf("step %d: %d hardware slots held, pool has %d", step, len(hwSlots), n)
	}
	if len(waiters) > 0 && len(hwSlots) < n {
		t.Fatalf("step %d: %v wait for hardware while %d of %d slots are free", step, waiters, n-len(hwSlots), n)
	}
	for _, w := range waiters {
		for _, h := range holders {
			if model[w].outranks(model[h]) {
				t.Fatalf("step %d: waiter %s %+v outranks holder %s %+v", step, w, model[w], h, model[h])
			}
		}
	}
	c := p.Counters()
	if c.Channels != len(snap) || c.HardwareInUse != len(hwSlots) || c.SoftwareInUse != len(swSlots) {
		t.Fatalf("step %d: gauges %d/%d/%d, want %d/%d/%d", step, c.Channels, c.HardwareInUse, c.SoftwareInUse,
			len(snap), len(hwSlots), len(swSlots))
	}
}
