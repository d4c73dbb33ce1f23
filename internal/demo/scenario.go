package demo

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/standbynic/standbynic/host"
)

// app is one sample app: it opens one control channel, requests a
// hardware slot for it, and acknowledges every push it gets.
type app struct {
	Channel   string
	Transport host.TransportKind
	// Interval is the server keep-alive interval, in seconds where
	// Windows counts minutes.
	Interval time.Duration
	// Priority orders the channels for the hardware slots: higher wins.
	Priority int
	// What the app's pushes say.
	Payload string
}

// sampleApps are the demo's apps, highest priority first: with the
// default four hardware slots, voip, chat, mail and news get them;
// social and weather fall back to software slots.
var sampleApps = []app{
	{Channel: "voip", Transport: host.KindWebSocket, Interval: 3 * time.Second, Priority: 7, Payload: "incoming call"},
	{Channel: "chat", Transport: host.KindWebSocket, Interval: 4 * time.Second, Priority: 6, Payload: "new message"},
	{Channel: "mail", Transport: host.KindStream, Interval: 4 * time.Second, Priority: 5, Payload: "new mail"},
	{Channel: "news", Transport: host.KindStream, Interval: 5 * time.Second, Priority: 4, Payload: "breaking news"},
	{Channel: "social", Transport: host.KindWebSocket, Interval: 8 * time.Second, Priority: 3, Payload: "someone liked your post"},
	{Channel: "weather", Transport: host.KindStream, Interval: 10 * time.Second, Priority: 2, Payload: "rain at 5 pm"},
}

// resetChannel is the channel whose connection the server resets once,
// halfway through the scenario.
const resetChannel = "mail"

// stepKind is what a scenario step does. The zero value is invalid.
type stepKind uint8

const (
	_ stepKind = iota
	stepPush
	stepPing
	stepReset
)

func (k stepKind) String() string {
	switch k {
	case stepPush:
		return "push"
	case stepPing:
		return "ping"
	case stepReset:
		return "reset"
	}
	return fmt.Sprintf("stepKind(%d)", uint8(k))
}

// step is one action of the server at a time after the host fell asleep.
type step struct {
	At      time.Duration
	Kind    stepKind
	Channel string
}

// Scenario shape, as fractions of the duration: a quiet first part where
// only keep-alives and Pings happen (the NIC does all of it, the host
// sleeps through), then the pushes, with the reset among them.
const (
	pushStart  = 0.35 // first push
	pushEnd    = 0.88 // last push
	pingStart  = 0.05
	pingEnd    = 0.90
	resetAt    = 0.6
	resetQuiet = 3 * time.Second // no push on the reset channel this close to the reset
)

// resetQuietFor is the time around the reset without a push on the reset
// channel: resetQuiet, less in short scenarios.
func resetQuietFor(d time.Duration) time.Duration { return min(resetQuiet, d/10) }

// pushesPer and pingsPer are the pushes per channel and the Pings per
// WebSocket channel of a scenario of duration d.
func pushesPer(d time.Duration) int { return 1 + int(d/(30*time.Second)) }
func pingsPer(d time.Duration) int  { return 1 + int(d/(20*time.Second)) }

// script returns the server's actions for a scenario of duration d,
// ordered by time: pushes on every channel, Pings on the WebSocket
// channels, and one reset of resetChannel halfway. The same seed gives
// the same script.
func script(d time.Duration, seed uint64, apps []app) []step {
	r := rand.New(rand.NewPCG(seed, 0x5eed_57a9_db1c))
	frac := func(f float64) time.Duration { return time.Duration(f * float64(d)) }
	// at returns a random time in [lo, hi) outside the gap (a, b).
	at := func(lo, hi, a, b time.Duration) time.Duration {
		a, b = max(a, lo), min(b, hi)
		gap := max(b-a, 0)
		t := lo + time.Duration(r.Int64N(int64(hi-lo-gap)))
		if gap > 0 && t >= a {
			t += gap
		}
		return t
	}
	reset := frac(resetAt)
	quiet := resetQuietFor(d)
	var out []step
	for _, a := range apps {
		for range pushesPer(d) {
			t := at(frac(pushStart), frac(pushEnd), 0, 0)
			if a.Channel == resetChannel {
				t = at(frac(pushStart), frac(pushEnd), reset-quiet, reset+quiet)
			}
			out = append(out, step{At: t, Kind: stepPush, Channel: a.Channel})
		}
		if a.Transport == host.KindWebSocket {
			for range pingsPer(d) {
				out = append(out, step{At: at(frac(pingStart), frac(pingEnd), 0, 0), Kind: stepPing, Channel: a.Channel})
			}
		}
	}
	out = append(out, step{At: reset, Kind: stepReset, Channel: resetChannel})
	slices.SortStableFunc(out, func(a, b step) int {
		if c := cmp.Compare(a.At, b.At); c != 0 {
			return c
		}
		return cmp.Compare(a.Kind, b.Kind)
	})
	return out
}
