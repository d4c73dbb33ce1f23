package profile

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// Family is a set of IP address families.
type Family uint8

const (
	IPv4 Family = 1 << iota
	IPv6
	BothFamilies = IPv4 | IPv6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	case BothFamilies:
		return "IPv4+IPv6"
	}
	return "none"
}

// Admission is what a profile does with a request when its slots are full.
type Admission uint8

const (
	// Refuse: the request fails with the profile's "no resources" error.
	Refuse Admission = iota
	// MostRecent: the slot armed longest ago is evicted, so the most
	// recently used connections are the ones offloaded (Infineon TKO).
	MostRecent
)

func (a Admission) String() string {
	if a == MostRecent {
		return "most-recently-used"
	}
	return "refuse"
}

// Code is a part's own error: its number (0 when the part has none) and
// its name.
type Code struct {
	Num  int
	Name string
}

// Errors are the codes a profile refuses requests with; a zero Code
// falls back to Generic's.
type Errors struct {
	NoSlot, Family, Kind, Interval, Length Code
}

// Profile is one shipping offload: capabilities and behaviour. The zero
// value of a capability field means the emulator's default (no limit of
// the part's own).
type Profile struct {
	// Name is how the profile is selected (nic --profile NAME).
	Name string
	// Part says what is modelled, Sources where the facts come from.
	Part, Sources string

	// Slots is the number of hardware keep-alive slots (0: the device's
	// default).
	Slots int
	// Families are the address families a slot may guard.
	Families Family
	// Kinds are the keep-alive kinds accepted (nil: all).
	Kinds []offload.Kind
	// MinInterval and MaxInterval bound Spec.Interval (0: the engine's
	// bounds).
	MinInterval, MaxInterval time.Duration
	// MaxPacket bounds the IP packet of one keep-alive, headers and
	// options included (0: no bound of the part's own).
	MaxPacket int
	// MaxRequest and MaxReply bound the bytes of a payload keep-alive and
	// of its expected reply (0: the engine's).
	MaxRequest, MaxReply int
	// WakePacketSave, ARPOffloads, NSOffloads: the device capabilities
	// (0: the device's defaults).
	WakePacketSave, ARPOffloads, NSOffloads int
	// Patterns are the wake-pattern limits (zero: the emulator's).
	Patterns wp.Capabilities

	// Firmware are the engine behaviours.
	Firmware offload.Firmware
	// Admission is the policy when the slots are full.
	Admission Admission
	// DefaultInterval, RetryInterval and RetryCount fill a spec that
	// leaves Interval (resp. RetryInterval) zero.
	DefaultInterval, RetryInterval time.Duration
	RetryCount                     int
	// Errors are the part's refusal codes.
	Errors Errors
	// StatusNames and ReasonNames are the part's names for the engine's
	// statuses and wake reasons (missing: the engine's names).
	StatusNames map[offload.Status]string
	ReasonNames map[offload.Reason]string
}

// ErrRefused is matched by every *Error.
var ErrRefused = errors.New("refused by the firmware profile")

// Error is a profile's refusal of a request, with the part's own code.
type Error struct {
	Profile string
	Code    Code
	// Field names what was refused ("slots", "family", "kind",
	// "interval", "packet", "request", "reply"), Detail the value and the
	// limit.
	Field, Detail string
}

func (e *Error) Error() string {
	c := e.Code.Name
	if e.Code.Num != 0 {
		c = fmt.Sprintf("%s (%d)", c, e.Code.Num)
	}
	return fmt.Sprintf("%s: %s: %s: %s", e.Profile, c, e.Field, e.Detail)
}

// Is makes errors.Is(err, ErrRefused) hold, and errors.Is(err,
// offload.ErrInvalidSpec) for every refusal but a full device (which the
// nic wraps with its ErrNoSlot), so callers that map the engine's
// validation errors (the control API: 422) map a profile's too.
func (e *Error) Is(target error) bool {
	return target == ErrRefused || target == offload.ErrInvalidSpec && e.Field != "slots"
}

// Request is what Check judges: a connection, its keep-alive, and how
// many slots are armed already.
type Request struct {
	Local, Remote netip.AddrPort
	Spec          offload.Spec
	// Armed is the number of slots in use (before this request).
	Armed int
}

func (p *Profile) refuse(c Code, field, format string, args ...any) *Error {
	if c == (Code{}) {
		c = genericCode(field)
	}
	return &Error{Profile: p.Name, Code: c, Field: field, Detail: fmt.Sprintf(format, args...)}
}

func genericCode(field string) Code {
	switch field {
	case "slots":
		return Code{Name: "no-slot"}
	case "family":
		return Code{Name: "unsupported-family"}
	case "kind":
		return Code{Name: "unsupported-kind"}
	case "interval":
		return Code{Name: "invalid-interval"}
	}
	return Code{Name: "invalid-length"}
}

// Spec returns s with the profile's defaults filled in: Interval when 0,
// RetryInterval and RetryCount when RetryInterval is 0.
func (p *Profile) Spec(s offload.Spec) offload.Spec {
	if s.Interval == 0 && p.DefaultInterval != 0 {
		s.Interval = p.DefaultInterval
	}
	if s.RetryInterval == 0 && p.RetryInterval != 0 {
		s.RetryInterval, s.RetryCount = p.RetryInterval, p.RetryCount
	}
	return s
}

// Check reports whether the profile honours r, and the part's refusal
// when not. Slots full is refused only under the Refuse admission (with
// MostRecent the caller evicts). It does not check what the engine
// checks itself (offload.Spec.Validate).
func (p *Profile) Check(r Request) error {
	e := &p.Errors
	if p.Admission == Refuse && p.Slots > 0 && r.Armed >= p.Slots {
		return p.refuse(e.NoSlot, "slots", "all %d hardware slots are in use", p.Slots)
	}
	fam := IPv4
	if r.Local.Addr().Is6() && !r.Local.Addr().Is4In6() {
		fam = IPv6
	}
	if p.Families != 0 && p.Families&fam == 0 {
		return p.refuse(e.Family, "family", "%v connection %v→%v: the part offloads %v only", fam, r.Local, r.Remote, p.Families)
	}
	s := &r.Spec
	if p.Kinds != nil && !slices.Contains(p.Kinds, s.Kind) {
		return p.refuse(e.Kind, "kind", "%v keep-alive: the part sends %s only", s.Kind, kindList(p.Kinds))
	}
	if p.MinInterval != 0 && s.Interval < p.MinInterval || p.MaxInterval != 0 && s.Interval > p.MaxInterval {
		return p.refuse(e.Interval, "interval", "%v outside %v..%v", s.Interval, p.MinInterval, p.MaxInterval)
	}
	if s.Kind == offload.KindPayload {
		if p.MaxRequest != 0 && len(s.Payload.Request) > p.MaxRequest {
			return p.refuse(e.Length, "request", "%d bytes above %d", len(s.Payload.Request), p.MaxRequest)
		}
		if p.MaxReply != 0 && len(s.Payload.Reply) > p.MaxReply {
			return p.refuse(e.Length, "reply", "%d bytes above %d", len(s.Payload.Reply), p.MaxReply)
		}
	}
	if p.MaxPacket != 0 {
		if n := PacketLen(fam, s, !p.Firmware.NoTimestamps); n > p.MaxPacket {
			return p.refuse(e.Length, "packet", "a %d-byte keep-alive packet above %d (with the timestamp option if negotiated)", n, p.MaxPacket)
		}
	}
	return nil
}

// PacketLen is the IP packet length of one keep-alive of s: IP and TCP
// headers, the timestamp option when ts, and the keep-alive's bytes.
func PacketLen(fam Family, s *offload.Spec, ts bool) int {
	n := 20 + 20
	if fam == IPv6 {
		n = 40 + 20
	}
	if ts {
		n += 12
	}
	switch s.Kind {
	case offload.KindTCPProbe:
		if s.Probe == offload.ProbeOneByte {
			n++
		}
	case offload.KindPayload:
		n += len(s.Payload.Request)
	case offload.KindWebSocket:
		n += 6 + len(s.WebSocket.Payload)
	}
	return n
}

func kindList(ks []offload.Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.String()
	}
	return strings.Join(s, ", ")
}

// StatusName is the part's name of an engine status.
func (p *Profile) StatusName(s offload.Status) string {
	if n, ok := p.StatusNames[s]; ok {
		return n
	}
	return s.String()
}

// ReasonName is the part's name of an engine wake reason.
func (p *Profile) ReasonName(r offload.Reason) string {
	if n, ok := p.ReasonNames[r]; ok {
		return n
	}
	return r.String()
}

// Scaled returns a copy of p with every duration divided by k (k ≥ 1):
// the parts' real intervals are tens of seconds to an hour, tests run in
// seconds. The engine's own bounds still apply (Interval ≥ 1 s).
func (p Profile) Scaled(k int) Profile {
	if k <= 1 {
		return p
	}
	d := func(v *time.Duration) { *v /= time.Duration(k) }
	d(&p.MinInterval)
	d(&p.MaxInterval)
	d(&p.DefaultInterval)
	d(&p.RetryInterval)
	if p.RetryInterval != 0 && p.RetryInterval < offload.MinRetryInterval {
		p.RetryInterval = offload.MinRetryInterval
	}
	p.Name = fmt.Sprintf("%s/%d", p.Name, k)
	return p
}

// Names returns the profiles' names in table order.
func Names() []string {
	out := make([]string, len(all))
	for i, p := range all {
		out[i] = p.Name
	}
	return out
}

// All returns every profile in table order (copies).
func All() []Profile {
	out := make([]Profile, len(all))
	for i, p := range all {
		out[i] = *p
	}
	return out
}

// ErrUnknown is returned by Lookup for a name no profile has.
var ErrUnknown = errors.New("unknown firmware profile")

// Lookup returns the named profile ("" is generic).
func Lookup(name string) (Profile, error) {
	if name == "" {
		name = GenericName
	}
	for _, p := range all {
		if p.Name == name {
			return *p, nil
		}
	}
	return Profile{}, fmt.Errorf("profile %q: %w (one of %s)", name, ErrUnknown, strings.Join(Names(), ", "))
}
