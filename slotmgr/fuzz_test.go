package slotmgr

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// FuzzRequest feeds arbitrary requests to a fresh pool (seconds policy,
// 15–1439 s, 2 hardware slots). Invariants: nothing panics; the pool
// refuses exactly what Validate refuses, with an error naming a field; an
// accepted channel id is 1–64 characters of valid UTF-8 without control
// characters; the status follows the interval bounds; an allocated channel
// is found by Lookup with the same Result and can be released.
func FuzzRequest(f *testing.F) {
	f.Add("mail", "app", uint8(1), int64(60*time.Second), 0)
	f.Add("", "app", uint8(0), int64(time.Minute), 1)
	f.Add(strings.Repeat("x", 65), "app", uint8(1), int64(time.Minute), -3)
	f.Add("é", "app", uint8(2), int64(-1), 7)
	f.Add("a\x00b", "a\xff", uint8(1), int64(15*time.Second), 0)
	f.Fuzz(func(t *testing.T, channel, app string, resource uint8, interval int64, priority int) {
		req := Request{Channel: channel, App: app, Resource: ResourceType(resource), Interval: time.Duration(interval), Priority: priority}
		cfg := secondsConfig(2)
		p, err := New(&cfg, &fakeClock{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		verr := req.Validate()
		res, err := p.Request(req)
		if (verr == nil) != (err == nil) {
			t.Fatalf("Validate = %v but Request = %v", verr, err)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap ErrInvalidRequest", err)
			}
			named := false
			for _, f := range []string{"Channel", "App", "Resource", "Interval"} {
				named = named || strings.Contains(err.Error(), ": "+f+" ")
			}
			if !named {
				t.Fatalf("error %q names no field", err)
			}
			if _, ok := p.Lookup(channel); ok {
				t.Fatal("refused channel found in the pool")
			}
			return
		}
		n := utf8.RuneCountInString(channel)
		if n < 1 || n > MaxChannelID || !utf8.ValidString(channel) || strings.IndexFunc(channel, unicode.IsControl) >= 0 {
			t.Fatalf("accepted channel id %q (%d characters)", channel, n)
		}
		inBounds := req.Interval >= 15*time.Second && req.Interval <= 1439*time.Second
		switch {
		case !inBounds:
			if res.Status != PolicyError || !strings.HasPrefix(res.Reason, "interval ") {
				t.Fatalf("interval %v out of bounds: %+v", req.Interval, res)
			}
		case req.Resource == RequestHardwareSlot:
			if res.Status != HardwareSlotAllocated || res.Kind != Hardware || res.Slot != 0 {
				t.Fatalf("hardware request on an empty pool: %+v", res)
			}
		default:
			if res.Status != SoftwareSlotAllocated || res.Kind != Software || res.Slot != 0 {
				t.Fatalf("software request: %+v", res)
			}
		}
		got, ok := p.Lookup(channel)
		if ok != res.Status.Allocated() || (ok && got != res) {
			t.Fatalf("Lookup = %+v, %v after %+v", got, ok, res)
		}
		if ok {
			if _, err := p.Request(req); !errors.Is(err, ErrChannelExists) {
				t.Fatalf("second Request = %v, want ErrChannelExists", err)
			}
			if err := p.Release(channel); err != nil {
				t.Fatal(err)
			}
			if c := p.Counters(); c.Channels != 0 || c.HardwareInUse != 0 || c.SoftwareInUse != 0 {
				t.Fatalf("after Release: %+v", c)
			}
		}
	})
}
