package nic

import (
	"errors"
	"fmt"

	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/profile"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// This file runs a firmware profile (package profile) on the device:
// the profile's capabilities fill the zero fields of the Config, its
// behaviours go to the offload engine (offload.Firmware), and Arm asks it
// first (admitLocked): a request it cannot honour is refused with the
// part's own error (*profile.Error, errors.Is(err, profile.ErrRefused));
// under most-recently-used admission a full device evicts the slot armed
// longest ago (TakeEvictions).

// withProfile returns the Config the device runs: cfg with its profile's
// capabilities in the fields cfg leaves zero, and the profile's firmware
// behaviours for the engine. A nil Profile is generic.
func withProfile(cfg *Config) (*Config, *profile.Profile, error) {
	if cfg.Profile == nil {
		p, _ := profile.Lookup(profile.GenericName)
		return cfg, &p, nil
	}
	p := *cfg.Profile
	if p.Slots > MaxSlots {
		return nil, nil, fmt.Errorf("profile %s: %w", p.Name, limitError("slots", p.Slots, fmt.Sprintf("must be 1–%d", MaxSlots)))
	}
	c := *cfg
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Capabilities.Slots, p.Slots)
	def(&c.Capabilities.WakePacketSave, p.WakePacketSave)
	def(&c.Capabilities.ARPOffloads, p.ARPOffloads)
	def(&c.Capabilities.NSOffloads, p.NSOffloads)
	if c.Patterns == (wp.Capabilities{}) {
		c.Patterns = p.Patterns
	}
	if c.Engine.Firmware == (offload.Firmware{}) {
		c.Engine.Firmware = p.Firmware
	}
	return &c, &p, nil
}

// Profile returns the firmware profile the device runs.
func (d *Device) Profile() profile.Profile { return *d.prof }

// Eviction is a slot that most-recently-used admission took from its
// connection to arm a newer one: the connection is no longer guarded and
// Report is the slot's final account (as Disarm returns it).
type Eviction struct {
	Slot   SlotID
	Conn   wp.TCPConn
	Owner  string
	Report offload.Report
}

// TakeEvictions returns the evictions since the last call, oldest first.
// A host arming more connections than the profile's slots calls it after
// arming, and keeps the evicted connections itself (a software slot).
func (d *Device) TakeEvictions() []Eviction {
	d.mu.Lock()
	defer d.mu.Unlock()
	ev := d.evictions
	d.evictions = nil
	return ev
}

// admitLocked applies the profile to an Arm request: its spec defaults,
// its refusals, and its admission when the slots are full. Called with
// d.mu held, before Arm's own checks.
func (d *Device) admitLocked(s *SlotConfig) error {
	p := *d.prof
	if p.Slots != 0 {
		// The part refuses a full device with its own error, counting the
		// device's slots (Capabilities.Slots, --slots, may override it). A
		// profile without a slot count (generic) leaves it to Arm.
		p.Slots = d.caps.Slots
	}
	s.Spec = p.Spec(s.Spec)
	err := p.Check(profile.Request{Local: s.Snapshot.Local, Remote: s.Snapshot.Remote, Spec: s.Spec, Armed: len(d.slots)})
	var pe *profile.Error
	switch {
	case errors.As(err, &pe) && pe.Field == "slots":
		return fmt.Errorf("arm slot: %w: %w", ErrNoSlot, err)
	case err != nil:
		return fmt.Errorf("arm slot: %w", err)
	}
	if p.Admission != profile.MostRecent || len(d.slots) < d.caps.Slots {
		return nil
	}
	var lru *slotEntry
	for _, se := range d.slots {
		if lru == nil || se.armed < lru.armed || se.armed == lru.armed && se.id < lru.id {
			lru = se
		}
	}
	return d.evictLocked(lru)
}

// evictLocked disarms se for a newer connection and records the eviction.
func (d *Device) evictLocked(se *slotEntry) error {
	next := make(map[SlotID]*slotEntry, len(d.slots))
	for k, v := range d.slots {
		if k != se.id {
			next[k] = v
		}
	}
	t, err := d.buildTable(next, d.patterns)
	if err != nil {
		return fmt.Errorf("arm slot: evict slot %d: %w", se.id, err)
	}
	if err := d.installTable(t); err != nil {
		return fmt.Errorf("arm slot: evict slot %d: %w", se.id, err)
	}
	d.engMu.Lock()
	r, err := d.eng.Disarm(offload.SlotID(se.id))
	d.engMu.Unlock()
	d.slots = next
	if err != nil {
		return fmt.Errorf("arm slot: evict slot %d: %w", se.id, err)
	}
	d.evictions = append(d.evictions, Eviction{Slot: se.id, Conn: se.cfg.Pattern, Owner: se.cfg.Owner, Report: r})
	d.log.Info("slot evicted", "slot", se.id, "owner", se.cfg.Owner, "profile", d.prof.Name, "admission", d.prof.Admission)
	return nil
}
