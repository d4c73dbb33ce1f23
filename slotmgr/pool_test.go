package slotmgr

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeClock is a settable clock.
type fakeClock struct{ now time.Duration }

func (c *fakeClock) Now() time.Duration { return c.now }

// secondsConfig is the demo's policy: intervals 15–1439 s.
func secondsConfig(hw int) Config {
	return Config{HardwareSlots: hw, IntervalUnit: time.Second, MinInterval: 15, MaxInterval: 1439}
}

func hwReq(ch, app string, prio int) Request {
	return Request{Channel: ch, App: app, Resource: RequestHardwareSlot, Interval: 60 * time.Second, Priority: prio}
}

func swReq(ch, app string) Request {
	return Request{Channel: ch, App: app, Resource: RequestSoftwareSlot, Interval: 60 * time.Second}
}

func newPool(t *testing.T, cfg Config, clk Clock) *Pool {
	t.Helper()
	if clk == nil {
		clk = &fakeClock{}
	}
	p, err := New(&cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func hw(ch, app string, slot int) Result {
	return Result{Channel: ch, App: app, Status: HardwareSlotAllocated, Kind: Hardware, Slot: slot}
}

func sw(ch, app string, slot int, reason string) Result {
	return Result{Channel: ch, App: app, Status: SoftwareSlotAllocated, Kind: Software, Slot: slot, Reason: reason}
}

func failed(ch, app string, s Status, reason string) Result {
	return Result{Channel: ch, App: app, Status: s, Kind: NoSlot, Slot: -1, Reason: reason}
}

func TestStatusNumbering(t *testing.T) {
	got := map[Status]string{}
	for s := Status(0); s <= 7; s++ {
		got[s] = s.String()
	}
	want := map[Status]string{
		0: "HardwareSlotRequested", 1: "SoftwareSlotAllocated", 2: "HardwareSlotAllocated",
		3: "PolicyError", 4: "SystemError", 5: "TransportDisconnected", 6: "ServiceUnavailable",
		7: "Status(7)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Status names (-want +got):\n%s", diff)
	}
	if RequestSoftwareSlot != 0 || RequestHardwareSlot != 1 {
		t.Errorf("resource types = %d, %d, want 0, 1", RequestSoftwareSlot, RequestHardwareSlot)
	}
	if RequestSoftwareSlot.String() != "RequestSoftwareSlot" || RequestHardwareSlot.String() != "RequestHardwareSlot" {
		t.Errorf("resource type names = %v, %v", RequestSoftwareSlot, RequestHardwareSlot)
	}
}

func TestPlacement(t *testing.T) {
	ten := func() (reqs []Request, want []Result) {
		for i := range 10 {
			ch := fmt.Sprintf("ch%d", i)
			reqs = append(reqs, hwReq(ch, "mail", 0))
			if i < 4 {
				want = append(want, hw(ch, "mail", i))
			} else {
				want = append(want, sw(ch, "mail", i-4, "hardware pool full (4/4)"))
			}
		}
		return reqs, want
	}
	tenReqs, tenWant := ten()
	withApps := func(c Config, apps ...string) Config { c.Apps = apps; return c }
	with := func(c Config, f func(*Config)) Config { f(&c); return c }
	tests := []struct {
		name         string
		cfg          Config
		state        SystemState
		reqs         []Request
		want         []Result
		wantFinal    []Result // Channels() afterwards; nil: the allocated ones of want
		wantCounters Counters
	}{
		{
			name: "10 channels on 4 hardware slots",
			cfg:  secondsConfig(4),
			reqs: tenReqs,
			want: tenWant,
			wantCounters: Counters{Requests: 10, HardwareAllocated: 4, SoftwareAllocated: 6, Fallbacks: 6,
				Channels: 10, HardwareInUse: 4, SoftwareInUse: 6},
		},
		{
			name: "app outside the permitted list",
			cfg:  withApps(secondsConfig(4), "mail"),
			reqs: []Request{hwReq("m", "mail", 0), hwReq("c", "chat", 0)},
			want: []Result{hw("m", "mail", 0), failed("c", "chat", PolicyError, "app chat not permitted")},
			wantCounters: Counters{Requests: 2, HardwareAllocated: 1, PolicyErrors: 1,
				Channels: 1, HardwareInUse: 1},
		},
		{
			name: "apps admitted in order of registration",
			cfg:  with(secondsConfig(4), func(c *Config) { c.PermittedApps = 2 }),
			reqs: []Request{swReq("a1", "a"), swReq("b1", "b"), swReq("c1", "c"), swReq("a2", "a")},
			want: []Result{sw("a1", "a", 0, ""), sw("b1", "b", 1, ""),
				failed("c1", "c", PolicyError, "app c not permitted"), sw("a2", "a", 2, "")},
			wantCounters: Counters{Requests: 4, SoftwareAllocated: 3, PolicyErrors: 1,
				Channels: 3, SoftwareInUse: 3},
		},
		{
			name: "channel quota",
			cfg:  with(secondsConfig(4), func(c *Config) { c.AppChannelQuota = 2 }),
			reqs: []Request{hwReq("m1", "mail", 0), swReq("m2", "mail"), hwReq("m3", "mail", 9), swReq("c1", "chat")},
			want: []Result{hw("m1", "mail", 0), sw("m2", "mail", 0, ""),
				failed("m3", "mail", PolicyError, "quota 2 reached for app mail"), sw("c1", "chat", 1, "")},
			wantCounters: Counters{Requests: 4, HardwareAllocated: 1, SoftwareAllocated: 2, PolicyErrors: 1,
				Channels: 3, HardwareInUse: 1, SoftwareInUse: 2},
		},
		{
			name: "hardware quota",
			cfg:  with(secondsConfig(4), func(c *Config) { c.AppHardwareQuota = 1 }),
			reqs: []Request{hwReq("m1", "mail", 0), hwReq("m2", "mail", 0), swReq("m3", "mail"), hwReq("c1", "chat", 0)},
			want: []Result{hw("m1", "mail", 0), failed("m2", "mail", PolicyError, "hardware quota 1 reached for app mail"),
				sw("m3", "mail", 0, ""), hw("c1", "chat", 1)},
			wantCounters: Counters{Requests: 4, HardwareAllocated: 2, SoftwareAllocated: 1, PolicyErrors: 1,
				Channels: 3, HardwareInUse: 2, SoftwareInUse: 1},
		},
		{
			name: "interval bounds in minutes",
			cfg:  Config{HardwareSlots: 4},
			reqs: []Request{
				{Channel: "lo", App: "a", Interval: 5 * time.Minute},
				{Channel: "hi", App: "a", Interval: 1440 * time.Minute},
				{Channel: "odd", App: "a", Interval: 14*time.Minute + 30*time.Second},
				{Channel: "min", App: "a", Interval: 15 * time.Minute},
				{Channel: "max", App: "a", Interval: 1439 * time.Minute},
			},
			want: []Result{
				failed("lo", "a", PolicyError, "interval 5m below minimum 15m"),
				failed("hi", "a", PolicyError, "interval 1440m above maximum 1439m"),
				failed("odd", "a", PolicyError, "interval 14m30s below minimum 15m"),
				sw("min", "a", 0, ""),
				sw("max", "a", 1, ""),
			},
			wantCounters: Counters{Requests: 5, SoftwareAllocated: 2, PolicyErrors: 3, Channels: 2, SoftwareInUse: 2},
		},
		{
			name:         "interval bounds in seconds",
			cfg:          secondsConfig(4),
			reqs:         []Request{{Channel: "lo", App: "a", Interval: 10 * time.Second, Resource: RequestHardwareSlot}},
			want:         []Result{failed("lo", "a", PolicyError, "interval 10s below minimum 15s")},
			wantCounters: Counters{Requests: 1, PolicyErrors: 1},
		},
		{
			name: "strict mode fails when the pool is full",
			cfg:  with(secondsConfig(1), func(c *Config) { c.Strict = true }),
			reqs: []Request{hwReq("a", "x", 0), hwReq("b", "x", 0), swReq("c", "x")},
			want: []Result{hw("a", "x", 0), failed("b", "x", SystemError, "hardware pool full (1/1)"), sw("c", "x", 0, "")},
			wantCounters: Counters{Requests: 3, HardwareAllocated: 1, SoftwareAllocated: 1, SystemErrors: 1,
				Channels: 2, HardwareInUse: 1, SoftwareInUse: 1},
		},
		{
			name:  "entering standby refuses software",
			cfg:   secondsConfig(1),
			state: EnteringStandby,
			reqs:  []Request{swReq("s", "x"), hwReq("h1", "x", 0), hwReq("h2", "x", 0)},
			want: []Result{
				failed("s", "x", ServiceUnavailable, "no software slot while entering-standby"),
				hw("h1", "x", 0),
				failed("h2", "x", ServiceUnavailable, "hardware pool full (1/1); no software slot while entering-standby"),
			},
			wantCounters: Counters{Requests: 3, HardwareAllocated: 1, ServiceUnavailable: 2, Channels: 1, HardwareInUse: 1},
		},
		{
			name: "higher priority evicts the youngest lowest holder",
			cfg:  secondsConfig(2),
			reqs: []Request{hwReq("a", "x", 1), hwReq("b", "x", 1), hwReq("c", "x", 5), hwReq("d", "x", 1)},
			want: []Result{hw("a", "x", 0), hw("b", "x", 1), hw("c", "x", 1), sw("d", "x", 1, "hardware pool full (2/2)")},
			wantFinal: []Result{hw("a", "x", 0),
				sw("b", "x", 0, "evicted from hardware slot 1 by channel c (priority 5 > 1)"),
				hw("c", "x", 1), sw("d", "x", 1, "hardware pool full (2/2)")},
			wantCounters: Counters{Requests: 4, HardwareAllocated: 3, SoftwareAllocated: 1, Fallbacks: 1, Evictions: 1, Events: 1,
				Channels: 4, HardwareInUse: 2, SoftwareInUse: 2},
		},
		{
			name: "strict mode still evicts a lower priority",
			cfg:  with(secondsConfig(1), func(c *Config) { c.Strict = true }),
			reqs: []Request{hwReq("a", "x", 0), hwReq("b", "x", 1)},
			want: []Result{hw("a", "x", 0), hw("b", "x", 0)},
			wantFinal: []Result{sw("a", "x", 0, "evicted from hardware slot 0 by channel b (priority 1 > 0)"),
				hw("b", "x", 0)},
			wantCounters: Counters{Requests: 2, HardwareAllocated: 2, Evictions: 1, Events: 1,
				Channels: 2, HardwareInUse: 1, SoftwareInUse: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(t, tt.cfg, nil)
			if tt.state != 0 {
				if err := p.SetSystemState(tt.state); err != nil {
					t.Fatal(err)
				}
			}
			var got []Result
			for _, r := range tt.reqs {
				res, err := p.Request(r)
				if err != nil {
					t.Fatalf("Request(%+v): %v", r, err)
				}
				got = append(got, res)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			wantFinal := tt.wantFinal
			if wantFinal == nil {
				for _, r := range tt.want {
					if r.Status.Allocated() {
						wantFinal = append(wantFinal, r)
					}
				}
			}
			if diff := cmp.Diff(wantFinal, p.Channels(nil)); diff != "" {
				t.Errorf("Channels (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCounters, p.Counters()); diff != "" {
				t.Errorf("Counters (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestInvalid(t *testing.T) {
	ok := Request{Channel: "c", App: "a", Interval: time.Minute}
	with := func(f func(*Request)) Request { r := ok; f(&r); return r }
	tests := []struct {
		name    string
		req     Request
		wantSub string // "" means valid
	}{
		{"valid", ok, ""},
		{"empty channel", with(func(r *Request) { r.Channel = "" }), "Channel empty"},
		{"65-character channel", with(func(r *Request) { r.Channel = strings.Repeat("x", 65) }), "Channel 65 characters, more than 64"},
		{"64-character channel", with(func(r *Request) { r.Channel = strings.Repeat("x", 64) }), ""},
		{"64 two-byte characters", with(func(r *Request) { r.Channel = strings.Repeat("é", 64) }), ""},
		{"65 two-byte characters", with(func(r *Request) { r.Channel = strings.Repeat("é", 65) }), "Channel 65 characters, more than 64"},
		{"control character", with(func(r *Request) { r.Channel = "a\nb" }), "Channel has control character U+000A"},
		{"invalid UTF-8", with(func(r *Request) { r.Channel = "a\xffb" }), "Channel not valid UTF-8"},
		{"empty app", with(func(r *Request) { r.App = "" }), "App empty"},
		{"257-character app", with(func(r *Request) { r.App = strings.Repeat("a", 257) }), "App 257 characters, more than 256"},
		{"resource 2", with(func(r *Request) { r.Resource = 2 }), "Resource 2 not RequestSoftwareSlot (0) or RequestHardwareSlot (1)"},
		{"zero interval", with(func(r *Request) { r.Interval = 0 }), "Interval 0s not positive"},
		{"negative interval", with(func(r *Request) { r.Interval = -time.Second }), "Interval -1s not positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(t, Config{IntervalUnit: time.Second, MinInterval: 1}, nil)
			_, err := p.Request(tt.req)
			if tt.wantSub == "" {
				if err != nil {
					t.Fatalf("Request: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), tt.wantSub) {
				t.Fatalf("Request error = %v, want ErrInvalidRequest containing %q", err, tt.wantSub)
			}
			if got := p.Counters(); got.Invalid != 1 || got.Requests != 0 {
				t.Errorf("counters Invalid=%d Requests=%d, want 1, 0", got.Invalid, got.Requests)
			}
		})
	}
}

func TestRequestDuplicate(t *testing.T) {
	p := newPool(t, secondsConfig(2), nil)
	if _, err := p.Request(hwReq("c", "a", 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Request(swReq("c", "b")); !errors.Is(err, ErrChannelExists) {
		t.Fatalf("second Request error = %v, want ErrChannelExists", err)
	}
	// A failed request leaves nothing behind: the id is free again.
	if res, _ := p.Request(Request{Channel: "d", App: "a", Interval: time.Second}); res.Status != PolicyError {
		t.Fatalf("status = %v, want PolicyError", res.Status)
	}
	if res, err := p.Request(swReq("d", "a")); err != nil || res.Status != SoftwareSlotAllocated {
		t.Fatalf("Request after failure = %+v, %v", res, err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantSub string
	}{
		{"defaults", Config{}, ""},
		{"hardware slots 64", Config{HardwareSlots: 64}, ""},
		{"hardware slots 65", Config{HardwareSlots: 65}, "HardwareSlots 65 out of range 1-64"},
		{"hardware slots negative", Config{HardwareSlots: -1}, "HardwareSlots -1 out of range 1-64"},
		{"permitted apps", Config{PermittedApps: 2000}, "PermittedApps 2000 out of range 1-1024"},
		{"apps beyond permitted", Config{PermittedApps: 1, Apps: []string{"a", "b"}}, "Apps lists 2 apps, more than PermittedApps 1"},
		{"app listed twice", Config{Apps: []string{"a", "a"}}, `Apps[1] "a" listed twice`},
		{"empty app", Config{Apps: []string{""}}, "Apps[0]: empty"},
		{"negative channel quota", Config{AppChannelQuota: -1}, "AppChannelQuota -1 below 0"},
		{"negative hardware quota", Config{AppHardwareQuota: -2}, "AppHardwareQuota -2 below 0"},
		{"negative unit", Config{IntervalUnit: -time.Second}, "IntervalUnit -1s below 0"},
		{"negative min", Config{MinInterval: -1}, "MinInterval -1 below 1"},
		{"max below min", Config{MinInterval: 20, MaxInterval: 10}, "MaxInterval 10 below MinInterval 20"},
		{"overflow", Config{IntervalUnit: time.Hour, MaxInterval: 1 << 40}, "overflows a time.Duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			_, newErr := New(&tt.cfg, &fakeClock{})
			if tt.wantSub == "" {
				if err != nil || newErr != nil {
					t.Fatalf("Validate = %v, New = %v, want nil", err, newErr)
				}
				return
			}
			for _, e := range []error{err, newErr} {
				if !errors.Is(e, ErrInvalidConfig) || !strings.Contains(e.Error(), tt.wantSub) {
					t.Errorf("error = %v, want ErrInvalidConfig containing %q", e, tt.wantSub)
				}
			}
		})
	}
	if _, err := New(nil, nil); err == nil {
		t.Error("New with a nil clock succeeded")
	}
	p, err := New(nil, &fakeClock{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{HardwareSlots: 4, PermittedApps: 7, IntervalUnit: time.Minute, MinInterval: 15, MaxInterval: 1439}
	if diff := cmp.Diff(want, p.Config()); diff != "" {
		t.Errorf("default Config (-want +got):\n%s", diff)
	}
}

func TestPermit(t *testing.T) {
	p := newPool(t, Config{PermittedApps: 2}, nil)
	if err := p.Permit("b"); err != nil {
		t.Fatal(err)
	}
	if err := p.Permit("a"); err != nil {
		t.Fatal(err)
	}
	if err := p.Permit("b"); err != nil {
		t.Fatalf("Permit of an admitted app: %v", err)
	}
	if err := p.Permit("c"); !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), "2/2 apps admitted") {
		t.Fatalf("Permit(c) = %v, want ErrNotPermitted (2/2 apps admitted)", err)
	}
	if diff := cmp.Diff([]string{"b", "a"}, p.Permitted()); diff != "" {
		t.Errorf("Permitted (-want +got):\n%s", diff)
	}

	list := newPool(t, Config{Apps: []string{"mail", "chat"}}, nil)
	if err := list.Permit("news"); !errors.Is(err, ErrNotPermitted) {
		t.Fatalf("Permit outside the list = %v, want ErrNotPermitted", err)
	}
	if diff := cmp.Diff([]string{"mail", "chat"}, list.Permitted()); diff != "" {
		t.Errorf("Permitted (-want +got):\n%s", diff)
	}
	// A refused request does not take an app's place.
	reg := newPool(t, Config{PermittedApps: 1}, nil)
	if res, _ := reg.Request(Request{Channel: "x", App: "early", Interval: time.Minute}); res.Status != PolicyError {
		t.Fatalf("status = %v, want PolicyError", res.Status)
	}
	if res, _ := reg.Request(Request{Channel: "y", App: "late", Interval: 20 * time.Minute}); res.Status != SoftwareSlotAllocated {
		t.Fatalf("status = %v (%s), want SoftwareSlotAllocated", res.Status, res.Reason)
	}
}

func drain(p *Pool) []Event { return p.DrainEvents(nil) }

func TestPromotionAndEviction(t *testing.T) {
	clk := &fakeClock{}
	p := newPool(t, secondsConfig(2), clk)
	must := func(r Request) Result {
		t.Helper()
		res, err := p.Request(r)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	must(hwReq("a", "x", 0)) // hw 0
	must(hwReq("b", "y", 0)) // hw 1
	must(swReq("c", "x"))    // sw 0, asked for software: never promoted
	must(hwReq("d", "x", 0)) // sw 1, waits
	must(hwReq("f", "y", 2)) // evicts b (youngest of the lowest) → hw 1; b → sw 2
	clk.now = 10 * time.Second
	must(hwReq("g", "x", 1)) // evicts a (the only priority 0 holder) → hw 0; a → sw 3
	wantEv := []Event{
		{Kind: Evicted, Channel: "b", App: "y", From: Hardware, To: Software, Slot: 2,
			Reason: "evicted from hardware slot 1 by channel f (priority 2 > 0)", At: 0},
		{Kind: Evicted, Channel: "a", App: "x", From: Hardware, To: Software, Slot: 3,
			Reason: "evicted from hardware slot 0 by channel g (priority 1 > 0)", At: 10 * time.Second},
	}
	if diff := cmp.Diff(wantEv, drain(p)); diff != "" {
		t.Errorf("eviction events (-want +got):\n%s", diff)
	}
	select {
	case <-p.Notify():
	default:
		t.Fatal("Notify not signalled after events")
	}

	// Waiting for hardware: d (p0, seq 4), b (p0, seq 2), a (p0, seq 1).
	// f leaves: the oldest waiter, a, is promoted into slot 1.
	clk.now = 20 * time.Second
	if err := p.Release("f"); err != nil {
		t.Fatal(err)
	}
	// g leaves: then b.
	clk.now = 30 * time.Second
	if err := p.Release("g"); err != nil {
		t.Fatal(err)
	}
	want := []Event{
		{Kind: Promoted, Channel: "a", App: "x", From: Software, To: Hardware, Slot: 1,
			Reason: "promoted to hardware slot 1 freed by channel f", At: 20 * time.Second},
		{Kind: Promoted, Channel: "b", App: "y", From: Software, To: Hardware, Slot: 0,
			Reason: "promoted to hardware slot 0 freed by channel g", At: 30 * time.Second},
	}
	if diff := cmp.Diff(want, drain(p)); diff != "" {
		t.Errorf("promotion events (-want +got):\n%s", diff)
	}
	wantCh := []Result{
		{Channel: "a", App: "x", Status: HardwareSlotAllocated, Kind: Hardware, Slot: 1, Reason: "promoted to hardware slot 1 freed by channel f"},
		{Channel: "b", App: "y", Status: HardwareSlotAllocated, Kind: Hardware, Slot: 0, Reason: "promoted to hardware slot 0 freed by channel g"},
		sw("c", "x", 0, ""),
		sw("d", "x", 1, "hardware pool full (2/2)"),
	}
	if diff := cmp.Diff(wantCh, p.Channels(nil)); diff != "" {
		t.Errorf("Channels (-want +got):\n%s", diff)
	}

	// A waiter with a higher priority beats an older one.
	must(hwReq("h", "y", 3)) // evicts b (p0, younger than a) → hw 0; b → sw 2
	must(hwReq("i", "y", 1)) // evicts a → hw 1; a → sw 3
	// Waiting: d, b, a, all priority 0. Request d again at priority 1: it
	// ties i (p1, older) and falls back, now the highest-ranked waiter.
	if err := p.Release("d"); err != nil {
		t.Fatal(err)
	}
	must(Request{Channel: "d", App: "x", Resource: RequestHardwareSlot, Interval: time.Minute, Priority: 1})
	drain(p)
	clk.now = 40 * time.Second
	if err := p.Release("h"); err != nil {
		t.Fatal(err)
	}
	got := drain(p)
	if len(got) != 1 || got[0].Channel != "d" || got[0].Kind != Promoted {
		t.Fatalf("events after Release(h) = %+v, want d promoted", got)
	}
	// Releasing a software channel promotes nobody.
	if err := p.Release("c"); err != nil {
		t.Fatal(err)
	}
	if got := drain(p); len(got) != 0 {
		t.Errorf("events after releasing a software channel = %+v", got)
	}
	wantC := Counters{Requests: 9, HardwareAllocated: 6, SoftwareAllocated: 3, Fallbacks: 2,
		Evictions: 4, Promotions: 3, Releases: 5, Events: 7,
		Channels: 4, HardwareInUse: 2, SoftwareInUse: 2}
	if diff := cmp.Diff(wantC, p.Counters()); diff != "" {
		t.Errorf("Counters (-want +got):\n%s", diff)
	}
	if err := p.Release("nope"); !errors.Is(err, ErrUnknownChannel) {
		t.Errorf("Release(unknown) = %v, want ErrUnknownChannel", err)
	}
}

func TestPromotionRespectsHardwareQuota(t *testing.T) {
	cfg := secondsConfig(2)
	cfg.AppHardwareQuota = 1
	p := newPool(t, cfg, nil)
	for _, r := range []Request{hwReq("a1", "a", 0), hwReq("b1", "b", 0), hwReq("c1", "c", 0), hwReq("b2", "b", 0)} {
		if _, err := p.Request(r); err != nil {
			t.Fatal(err)
		}
	}
	// b2 got PolicyError (b at quota); c1 waits. Releasing a1 promotes c1.
	if err := p.Release("a1"); err != nil {
		t.Fatal(err)
	}
	if r, _ := p.Lookup("c1"); r.Kind != Hardware {
		t.Fatalf("c1 = %+v, want hardware", r)
	}
}

func TestMarkDisconnected(t *testing.T) {
	clk := &fakeClock{now: 5 * time.Second}
	cfg := secondsConfig(1)
	cfg.AppChannelQuota = 2
	p := newPool(t, cfg, clk)
	for _, r := range []Request{hwReq("a", "x", 0), hwReq("b", "x", 0)} {
		if _, err := p.Request(r); err != nil {
			t.Fatal(err)
		}
	}
	res, err := p.MarkDisconnected("a", "peer reset")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(failed("a", "x", TransportDisconnected, "transport disconnected: peer reset"), res); diff != "" {
		t.Errorf("MarkDisconnected (-want +got):\n%s", diff)
	}
	want := []Event{
		{Kind: Disconnected, Channel: "a", App: "x", From: Hardware, To: NoSlot, Slot: -1,
			Reason: "transport disconnected: peer reset", At: 5 * time.Second},
		{Kind: Promoted, Channel: "b", App: "x", From: Software, To: Hardware, Slot: 0,
			Reason: "promoted to hardware slot 0 freed by channel a", At: 5 * time.Second},
	}
	if diff := cmp.Diff(want, drain(p)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// Marking twice changes nothing.
	if res2, err := p.MarkDisconnected("a", "again"); err != nil || res2 != res {
		t.Errorf("second MarkDisconnected = %+v, %v", res2, err)
	}
	// The disconnected channel still counts against the app's quota.
	if r, _ := p.Request(swReq("c", "x")); r.Status != PolicyError {
		t.Errorf("third channel status = %v, want PolicyError", r.Status)
	}
	// Reconnect: a is older than b at equal priority, so it takes the slot back.
	if _, err := p.Reconnect("b"); !errors.Is(err, ErrNotDisconnected) {
		t.Errorf("Reconnect(b) = %v, want ErrNotDisconnected", err)
	}
	res, err = p.Reconnect("a")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(hw("a", "x", 0), res); diff != "" {
		t.Errorf("Reconnect (-want +got):\n%s", diff)
	}
	if r, _ := p.Lookup("b"); r.Kind != Software {
		t.Errorf("b = %+v, want evicted to software", r)
	}
	// Reconnect while entering standby with the pool full fails and leaves
	// the channel disconnected.
	if _, err := p.MarkDisconnected("b", ""); err != nil {
		t.Fatal(err)
	}
	if err := p.SetSystemState(EnteringStandby); err != nil {
		t.Fatal(err)
	}
	res, err = p.Reconnect("b")
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != ServiceUnavailable {
		t.Errorf("Reconnect status = %v, want ServiceUnavailable", res.Status)
	}
	if r, _ := p.Lookup("b"); r.Status != TransportDisconnected || r.Kind != NoSlot {
		t.Errorf("b after failed reconnect = %+v", r)
	}
	if err := p.Release("b"); err != nil {
		t.Fatal(err)
	}
	wantC := Counters{Requests: 5, HardwareAllocated: 2, SoftwareAllocated: 1, Fallbacks: 1, PolicyErrors: 1,
		ServiceUnavailable: 1, Promotions: 1, Evictions: 1, Releases: 1, Disconnects: 2, Reconnects: 2, Events: 4,
		Channels: 1, HardwareInUse: 1}
	if diff := cmp.Diff(wantC, p.Counters()); diff != "" {
		t.Errorf("Counters (-want +got):\n%s", diff)
	}
}

func TestSystemState(t *testing.T) {
	p := newPool(t, secondsConfig(1), nil)
	if p.SystemState() != Awake {
		t.Fatalf("initial state %v, want awake", p.SystemState())
	}
	if err := p.SetSystemState(0); err == nil {
		t.Error("SetSystemState(0) succeeded")
	}
	for _, s := range []SystemState{EnteringStandby, Standby} {
		if err := p.SetSystemState(s); err != nil {
			t.Fatal(err)
		}
		if r, _ := p.Request(swReq("s"+s.String(), "x")); r.Status != ServiceUnavailable {
			t.Errorf("%v: status %v, want ServiceUnavailable", s, r.Status)
		}
	}
	if err := p.SetSystemState(Awake); err != nil {
		t.Fatal(err)
	}
	if r, _ := p.Request(swReq("s", "x")); r.Status != SoftwareSlotAllocated {
		t.Errorf("awake: status %v, want SoftwareSlotAllocated", r.Status)
	}
}

func TestClose(t *testing.T) {
	p := newPool(t, secondsConfig(1), nil)
	if _, err := p.Request(hwReq("a", "x", 0)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := <-p.Notify(); ok {
		t.Error("Notify not closed")
	}
	if _, err := p.Request(hwReq("b", "x", 0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Request after Close = %v, want ErrClosed", err)
	}
	if err := p.Release("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Release after Close = %v, want ErrClosed", err)
	}
	if _, err := p.MarkDisconnected("a", ""); !errors.Is(err, ErrClosed) {
		t.Errorf("MarkDisconnected after Close = %v, want ErrClosed", err)
	}
	if _, err := p.Reconnect("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Reconnect after Close = %v, want ErrClosed", err)
	}
	if err := p.Permit("y"); !errors.Is(err, ErrClosed) {
		t.Errorf("Permit after Close = %v, want ErrClosed", err)
	}
}

// TestConcurrentUse runs requests, releases and drains from several
// goroutines (run with -race) and checks the books balance at the end.
func TestConcurrentUse(t *testing.T) {
	p := newPool(t, secondsConfig(3), nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				ch := fmt.Sprintf("g%d-%d", g, i%5)
				if _, err := p.Request(hwReq(ch, fmt.Sprint("app", g), i%3)); err != nil && !errors.Is(err, ErrChannelExists) {
					t.Error(err)
					return
				}
				if i%2 == 1 {
					if err := p.Release(ch); err != nil && !errors.Is(err, ErrUnknownChannel) {
						t.Error(err)
						return
					}
				}
				p.DrainEvents(nil)
			}
		}()
	}
	wg.Wait()
	c := p.Counters()
	if int(c.HardwareAllocated+c.SoftwareAllocated-c.Releases) != c.Channels {
		t.Errorf("allocated %d + %d, released %d, but %d channels", c.HardwareAllocated, c.SoftwareAllocated, c.Releases, c.Channels)
	}
	if c.HardwareInUse > 3 || c.HardwareInUse+c.SoftwareInUse != c.Channels {
		t.Errorf("gauges %+v", c)
	}
}
