package slotmgr

import (
	"errors"
	"fmt"
	"time"
)

// Limits and defaults of Config.
const (
	MaxHardwareSlots     = 64 // most hardware slots a NIC may advertise
	DefaultHardwareSlots = 4  // used when Config.HardwareSlots is 0
	DefaultPermittedApps = 7  // Windows 8 lock screen: 7 app slots
	MaxPermittedApps     = 1024
	DefaultMinInterval   = 15   // Windows: 15 minutes
	DefaultMaxInterval   = 1439 // Windows: 1439 minutes
	DefaultIntervalUnit  = time.Minute
)

// ErrInvalidConfig is wrapped by every Config validation error.
var ErrInvalidConfig = errors.New("invalid config")

// Config is the pool's size and policy. Zero fields take the defaults
// listed with each field; New(nil) uses them all.
type Config struct {
	// HardwareSlots is N, the NIC's advertised number of keep-alive slots,
	// 1–64. 0 means DefaultHardwareSlots.
	HardwareSlots int

	// PermittedApps is the most apps that may hold channels (the Windows
	// lock-screen analogue), 1–1024. 0 means 7. Without an Apps list, apps
	// are admitted in order of registration (Pool.Permit or their first
	// request) until PermittedApps are in; later apps get PolicyError.
	PermittedApps int

	// Apps, when non-empty, is the complete permitted list (at most
	// PermittedApps distinct, non-empty ids); no other app is ever admitted.
	Apps []string

	// AppChannelQuota is the most channels (of any kind, disconnected ones
	// included) one app may hold; 0 means no limit.
	AppChannelQuota int

	// AppHardwareQuota is the most hardware slots one app may hold; 0
	// means no limit. A hardware request beyond it gets PolicyError; a
	// software channel of an app at its quota is never promoted.
	AppHardwareQuota int

	// IntervalUnit is the unit of MinInterval and MaxInterval: Windows uses
	// minutes, tests and the demo seconds. 0 means time.Minute.
	IntervalUnit time.Duration

	// MinInterval and MaxInterval bound a request's keep-alive interval, in
	// IntervalUnit; 0 means 15 and 1439 (the Windows bounds).
	MinInterval, MaxInterval int

	// Strict selects the connected-standby behaviour of Windows: a
	// hardware request that finds the pool full (after eviction was tried)
	// fails with SystemError instead of falling back to a software slot.
	Strict bool
}

// withDefaults returns a copy of c (or the defaults when c is nil) with
// zero fields filled in.
func (c *Config) withDefaults() Config {
	var out Config
	if c != nil {
		out = *c
		out.Apps = append([]string(nil), c.Apps...)
	}
	if out.HardwareSlots == 0 {
		out.HardwareSlots = DefaultHardwareSlots
	}
	if out.PermittedApps == 0 {
		out.PermittedApps = DefaultPermittedApps
	}
	if out.IntervalUnit == 0 {
		out.IntervalUnit = DefaultIntervalUnit
	}
	if out.MinInterval == 0 {
		out.MinInterval = DefaultMinInterval
	}
	if out.MaxInterval == 0 {
		out.MaxInterval = DefaultMaxInterval
	}
	return out
}

// Validate reports the first field of c (after defaults) that is out of
// its limits, naming the field and the limit.
func (c *Config) Validate() error {
	d := c.withDefaults()
	return d.validate()
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.HardwareSlots < 1 || c.HardwareSlots > MaxHardwareSlots {
		return bad("HardwareSlots %d out of range 1-%d", c.HardwareSlots, MaxHardwareSlots)
	}
	if c.PermittedApps < 1 || c.PermittedApps > MaxPermittedApps {
		return bad("PermittedApps %d out of range 1-%d", c.PermittedApps, MaxPermittedApps)
	}
	seen := make(map[string]bool, len(c.Apps))
	for i, a := range c.Apps {
		if err := validateApp(a); err != nil {
			return bad("Apps[%d]: %v", i, err)
		}
		if seen[a] {
			return bad("Apps[%d] %q listed twice", i, a)
		}
		seen[a] = true
	}
	if len(c.Apps) > c.PermittedApps {
		return bad("Apps lists %d apps, more than PermittedApps %d", len(c.Apps), c.PermittedApps)
	}
	if c.AppChannelQuota < 0 {
		return bad("AppChannelQuota %d below 0", c.AppChannelQuota)
	}
	if c.AppHardwareQuota < 0 {
		return bad("AppHardwareQuota %d below 0", c.AppHardwareQuota)
	}
	if c.IntervalUnit < 0 {
		return bad("IntervalUnit %v below 0", c.IntervalUnit)
	}
	if c.MinInterval < 1 {
		return bad("MinInterval %d below 1", c.MinInterval)
	}
	if c.MaxInterval < c.MinInterval {
		return bad("MaxInterval %d below MinInterval %d", c.MaxInterval, c.MinInterval)
	}
	if int64(c.MaxInterval) > int64(time.Duration(1<<62)/c.IntervalUnit) {
		return bad("MaxInterval %d×%v overflows a time.Duration", c.MaxInterval, c.IntervalUnit)
	}
	return nil
}

// formatInterval writes d in the config's unit when it is a whole number of
// a common unit ("5m", "15s"), else as a time.Duration.
func formatInterval(d, unit time.Duration) string {
	suffix := ""
	switch unit {
	case time.Hour:
		suffix = "h"
	case time.Minute:
		suffix = "m"
	case time.Second:
		suffix = "s"
	case time.Millisecond:
		suffix = "ms"
	}
	if suffix == "" || d%unit != 0 {
		return d.String()
	}
	return fmt.Sprintf("%d%s", d/unit, suffix)
}
