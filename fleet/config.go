package fleet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Shard is one part of a fleet: the devices whose global index i has
// i mod Count == Index. The zero value is the whole fleet (0/1).
type Shard struct {
	Index, Count int
}

// ParseShard parses "i/N" (0 ≤ i < N ≤ MaxShards).
func ParseShard(s string) (Shard, error) {
	a, b, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, fmt.Errorf("shard %q: want i/N", s)
	}
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("shard %q: want i/N with integers", s)
	}
	if n < 1 {
		return Shard{}, fmt.Errorf("shard %q: want N ≥ 1", s)
	}
	sh := Shard{Index: i, Count: n}
	return sh, sh.validate()
}

// MaxShards bounds Shard.Count.
const MaxShards = 10000

func (s Shard) norm() Shard {
	if s.Count == 0 {
		return Shard{0, 1}
	}
	return s
}

func (s Shard) validate() error {
	s = s.norm()
	if s.Count < 1 || s.Count > MaxShards || s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("shard %d/%d: want 0 ≤ i < N ≤ %d", s.Index, s.Count, MaxShards)
	}
	return nil
}

// String returns "i/N".
func (s Shard) String() string { s = s.norm(); return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// Behaviour is the seeded distribution the devices are drawn from. Every
// device draws its own values from its own stream (the seed and its
// global index), so a device behaves the same in every shard layout.
type Behaviour struct {
	// Channels per device, 1–MaxChannels.
	Channels int `json:"channels"`
	// KeepAliveMin, KeepAliveMax: each channel's keep-alive interval,
	// uniform in whole seconds, 1 s–1 h. An MQTT channel asks the broker
	// for ceil(interval / 0.75) s, as host caps a channel at 0.75× the
	// negotiated keep-alive.
	KeepAliveMin time.Duration `json:"keepalive_min_ns"`
	KeepAliveMax time.Duration `json:"keepalive_max_ns"`
	// PushEvery is the mean time between pushes to a device (exponential;
	// 0: no pushes). Each push goes to one of its channels, uniform.
	PushEvery time.Duration `json:"push_every_ns"`
	// HardwareSlotsMin, HardwareSlotsMax: NIC slots of a device, uniform;
	// its first that many channels are hardware, the rest software
	// (coalesced host wakes). 0 and 0: an all-software fleet.
	HardwareSlotsMin int `json:"hw_slots_min"`
	HardwareSlotsMax int `json:"hw_slots_max"`
	// MaintenanceEvery, MaintenanceFor: Doze-like maintenance windows,
	// every MaintenanceEvery (each device at its own phase) the device is
	// awake for MaintenanceFor (0: no windows).
	MaintenanceEvery time.Duration `json:"maintenance_every_ns"`
	MaintenanceFor   time.Duration `json:"maintenance_for_ns"`
	// Tolerance is the coalescing tolerance of software keep-alives: a
	// wake serves every software channel due within Tolerance of its
	// interval (0.25 = 25 %; slotmgr.Planner's default), 0–1.
	Tolerance float64 `json:"tolerance"`
	// WakeHold is how long a device stays awake after a wake, and
	// ResumeLatency how long its resume takes (a push on a hardware
	// channel is delivered ResumeLatency after it reached the NIC).
	WakeHold      time.Duration `json:"wake_hold_ns"`
	ResumeLatency time.Duration `json:"resume_latency_ns"`
	// Power model: mW awake, mW in standby, mJ per resume.
	AwakeMW, StandbyMW, ResumeMJ float64
}

// Limits of the configuration.
const (
	MaxDevices  = 1_000_000
	MaxChannels = 8
	MaxSlots    = 8
)

// DefaultBehaviour is a phone-like device: 2 channels at 60–240 s
// keep-alives, a push every 10 min, 0–2 hardware slots, a 10 s Doze
// maintenance window every 15 min.
func DefaultBehaviour() Behaviour {
	return Behaviour{
		Channels:     2,
		KeepAliveMin: 60 * time.Second, KeepAliveMax: 240 * time.Second,
		PushEvery:        10 * time.Minute,
		HardwareSlotsMin: 0, HardwareSlotsMax: 2,
		MaintenanceEvery: 15 * time.Minute, MaintenanceFor: 10 * time.Second,
		Tolerance: 0.25,
		WakeHold:  2 * time.Second, ResumeLatency: 100 * time.Millisecond,
		AwakeMW: 1500, StandbyMW: 20, ResumeMJ: 300,
	}
}

func (b *Behaviour) validate() error {
	switch {
	case b.Channels < 1 || b.Channels > MaxChannels:
		return fmt.Errorf("channels %d: want 1–%d", b.Channels, MaxChannels)
	case b.KeepAliveMin < time.Second || b.KeepAliveMax > time.Hour || b.KeepAliveMax < b.KeepAliveMin:
		return fmt.Errorf("keep-alive %v–%v: want 1s ≤ min ≤ max ≤ 1h", b.KeepAliveMin, b.KeepAliveMax)
	case b.PushEvery < 0 || (b.PushEvery > 0 && b.PushEvery < 100*time.Millisecond):
		return fmt.Errorf("push every %v: want 0 (none) or ≥ 100ms", b.PushEvery)
	case b.HardwareSlotsMin < 0 || b.HardwareSlotsMax > MaxSlots || b.HardwareSlotsMax < b.HardwareSlotsMin:
		return fmt.Errorf("hardware slots %d–%d: want 0 ≤ min ≤ max ≤ %d", b.HardwareSlotsMin, b.HardwareSlotsMax, MaxSlots)
	case b.MaintenanceEvery < 0 || (b.MaintenanceEvery > 0 && (b.MaintenanceEvery < time.Second || b.MaintenanceFor < 0 || b.MaintenanceFor >= b.MaintenanceEvery)):
		return fmt.Errorf("maintenance every %v for %v: want 0 or every ≥ 1s and 0 ≤ for < every", b.MaintenanceEvery, b.MaintenanceFor)
	case b.Tolerance < 0 || b.Tolerance > 1:
		return fmt.Errorf("tolerance %v: want 0–1", b.Tolerance)
	case b.WakeHold < 0 || b.WakeHold > time.Hour:
		return fmt.Errorf("wake hold %v: want 0–1h", b.WakeHold)
	case b.ResumeLatency < 0 || b.ResumeLatency > time.Minute:
		return fmt.Errorf("resume latency %v: want 0–1m", b.ResumeLatency)
	case b.AwakeMW < 0 || b.StandbyMW < 0 || b.ResumeMJ < 0:
		return fmt.Errorf("power model %v/%v mW, %v mJ: want ≥ 0", b.AwakeMW, b.StandbyMW, b.ResumeMJ)
	}
	return nil
}

// Channel protocols.
const (
	ProtocolMQTT = "mqtt"
	ProtocolLine = "line"
)

// DialFunc opens a device's TCP connection from laddr (invalid: the
// system's choice) to raddr. Tests wrap it to dial inside a namespace.
type DialFunc func(ctx context.Context, laddr netip.Addr, raddr netip.AddrPort) (net.Conn, error)

// Config configures a fleet run.
type Config struct {
	// Devices is the size of the whole fleet (all shards), 1–MaxDevices.
	Devices int
	Shard   Shard
	Seed    uint64
	Behaviour
	// Duration of the run after every channel connected (engine time).
	Duration time.Duration
	// Protocol of the channels: ProtocolMQTT ("": the default) or
	// ProtocolLine (the reference push server's line stream).
	Protocol string
	// Broker is the MQTT broker (3.1.1, plain TCP), or the push server's
	// stream listener. Invalid with Sim.
	Broker netip.AddrPort
	// PushAPI is the push server's HTTP API (ProtocolLine only).
	PushAPI netip.AddrPort
	// Sources gives each device its own host address: device i dials
	// from the prefix's address + 1 + i (e.g. 127.1.0.0/16 on lo, or
	// addresses added to the pod's interface). Invalid: every device
	// dials from the system's choice.
	Sources netip.Prefix
	// Sim runs the model on a virtual clock without a network: every
	// push reaches its channel when published, every keep-alive is
	// answered. Deterministic for a seed.
	Sim bool
	// Dial opens the connections (nil: net.Dialer).
	Dial DialFunc
	// ConnectWorkers bounds the concurrent connects (0: 64).
	ConnectWorkers int
	// Timeout bounds the connect phase and the final probe (0: 2 min).
	Timeout time.Duration
	// Progress, when set, is called every ProgressEvery (0: 1 s; engine
	// time) from the engine's goroutine; it must not block.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// SampleEvery is the timeline's step (0: Duration/60, at least 1 s).
	SampleEvery time.Duration
}

func (c *Config) validate() error {
	if c.Devices < 1 || c.Devices > MaxDevices {
		return fmt.Errorf("devices %d: want 1–%d", c.Devices, MaxDevices)
	}
	if err := c.Shard.validate(); err != nil {
		return err
	}
	if c.Shard.norm().Count > c.Devices {
		return fmt.Errorf("shard %v: more shards than %d devices", c.Shard, c.Devices)
	}
	if err := c.Behaviour.validate(); err != nil {
		return err
	}
	if c.Duration <= 0 || c.Duration > 7*24*time.Hour {
		return fmt.Errorf("duration %v: want 0 < d ≤ 168h", c.Duration)
	}
	switch c.Protocol {
	case "", ProtocolMQTT:
	case ProtocolLine:
		if !c.Sim && !c.PushAPI.IsValid() {
			return fmt.Errorf("push API: the line protocol needs the push server's HTTP address")
		}
	default:
		return fmt.Errorf("protocol %q: want %s or %s", c.Protocol, ProtocolMQTT, ProtocolLine)
	}
	if !c.Sim && !c.Broker.IsValid() {
		return fmt.Errorf("broker: want an address:port (or sim)")
	}
	if c.Sources.IsValid() {
		if !c.Sources.Addr().Is4() {
			return fmt.Errorf("sources %v: want an IPv4 prefix", c.Sources)
		}
		if room := 32 - c.Sources.Bits(); room < 31 && c.Devices+2 > 1<<room {
			return fmt.Errorf("sources %v: %d addresses for %d devices", c.Sources, 1<<room-2, c.Devices)
		}
	}
	if c.ConnectWorkers < 0 || c.ConnectWorkers > 4096 {
		return fmt.Errorf("connect workers %d: want 0–4096", c.ConnectWorkers)
	}
	if c.Timeout < 0 || c.ProgressEvery < 0 || c.SampleEvery < 0 {
		return fmt.Errorf("timeout, progress and sample steps: want ≥ 0")
	}
	return nil
}

// sourceAddr is device i's host address (invalid without Sources).
func (c *Config) sourceAddr(i int) netip.Addr {
	if !c.Sources.IsValid() {
		return netip.Addr{}
	}
	b := c.Sources.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(1 + i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (c *Config) protocol() string {
	if c.Protocol == "" {
		return ProtocolMQTT
	}
	return c.Protocol
}
