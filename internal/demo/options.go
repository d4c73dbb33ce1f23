package demo

import (
	"fmt"
	"time"

	"github.com/standbynic/standbynic/profile"
	"github.com/standbynic/standbynic/slotmgr"
)

// Defaults and limits of Options.
const (
	DefaultDuration = time.Minute
	MinDuration     = 10 * time.Second
	MaxDuration     = time.Hour
	DefaultSlots    = 4
	DefaultSeed     = 1
	// DefaultDrain bounds the wait, after the scenario, for pushes still
	// on their way (software channels deliver at the next wake).
	DefaultDrain = 15 * time.Second
)

// Options configure a demo run. The zero value of a field means its
// default.
type Options struct {
	// Duration is the length of the scripted scenario once the host is
	// asleep (10 s–1 h, default 1 min); setup and the final drain come on
	// top of it.
	Duration time.Duration
	// Slots is the NIC's number of hardware keep-alive slots (1–64,
	// default 4). The sample apps open six channels, so with the default
	// two of them stay on software slots.
	Slots int
	// Seed seeds the scenario's random times and the wire's fault
	// injection (default 1): a seed gives the same script.
	Seed uint64
	// Loss is the probability that the wire drops a frame, each
	// direction (0–0.2, default 0). TCP and the NIC's keep-alive retries
	// recover.
	Loss float64
	// OutDir is the folder the pcap files are written to; it is created
	// if missing. "" means ./standbynic-demo-<timestamp>.
	OutDir string
	// Quiet omits the live timeline; the summary is still written.
	Quiet bool
	// Drain bounds the wait for pushes still in flight after the
	// scenario (default 15 s).
	Drain time.Duration
	// Profile is the NIC's firmware profile (profile.Names; "" is
	// generic), its durations divided by ProfileScale like the demo's
	// keep-alive intervals. With Slots 0 the profile's slot count is used.
	Profile string
}

// ProfileScale divides a firmware profile's durations in the demo, whose
// keep-alive intervals are seconds where real ones are minutes: Android's
// 10 s minimum interval becomes 1 s, Infineon's 20 s interval 2 s.
const ProfileScale = 10

// withDefaults returns o with zero fields set to their defaults, and the
// out folder named after now when empty.
func (o Options) withDefaults(now time.Time) Options {
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Slots == 0 {
		o.Slots = DefaultSlots
		if p, err := profile.Lookup(o.Profile); o.Profile != "" && err == nil && p.Slots > 0 {
			o.Slots = min(p.Slots, slotmgr.MaxHardwareSlots)
		}
	}
	if o.Seed == 0 {
		o.Seed = DefaultSeed
	}
	if o.Drain == 0 {
		o.Drain = DefaultDrain
	}
	if o.OutDir == "" {
		o.OutDir = DefaultOutDir(now)
	}
	return o
}

// DefaultOutDir is the out folder of a run started at t.
func DefaultOutDir(t time.Time) string {
	return "standbynic-demo-" + t.Format("20060102-150405")
}

// Validate reports the first option out of its limits, naming the
// option and the limit. Zero values are valid (defaults).
func (o Options) Validate() error {
	if o.Duration != 0 && (o.Duration < MinDuration || o.Duration > MaxDuration) {
		return fmt.Errorf("duration %v outside %v–%v", o.Duration, MinDuration, MaxDuration)
	}
	if o.Slots < 0 || o.Slots > slotmgr.MaxHardwareSlots {
		return fmt.Errorf("slots %d outside 1–%d", o.Slots, slotmgr.MaxHardwareSlots)
	}
	if !(o.Loss >= 0 && o.Loss <= MaxLoss) {
		return fmt.Errorf("loss %v outside 0–%v", o.Loss, MaxLoss)
	}
	if o.Drain < 0 {
		return fmt.Errorf("drain %v below 0", o.Drain)
	}
	if o.Profile != "" {
		if _, err := profile.Lookup(o.Profile); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	return nil
}

// MaxLoss is the highest wire loss probability the demo accepts: above
// it keep-alive retries and TCP retransmissions no longer keep the
// scenario inside its time.
const MaxLoss = 0.2
