package slotmgr

import (
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of request fields.
const (
	MaxChannelID = 64  // characters, as Windows ControlChannelTrigger
	MaxAppID     = 256 // characters
)

// Errors of malformed requests and unknown channels. Policy decisions are
// not errors: they are a Result with PolicyError.
var (
	ErrInvalidRequest  = errors.New("invalid request")
	ErrChannelExists   = errors.New("channel exists")
	ErrUnknownChannel  = errors.New("unknown channel")
	ErrNotDisconnected = errors.New("channel not disconnected")
	ErrClosed          = errors.New("pool closed")
)

// Request asks the pool for a slot for one control channel.
type Request struct {
	// Channel is the channel id, 1–64 characters of valid UTF-8 without
	// control characters, unique in the pool.
	Channel string
	// App is the owning app, 1–256 characters as Channel.
	App string
	// Resource is the requested kind; the zero value is
	// RequestSoftwareSlot, the Windows default.
	Resource ResourceType
	// Interval is the server keep-alive interval. It must lie within the
	// config's [MinInterval, MaxInterval] × IntervalUnit, else PolicyError.
	Interval time.Duration
	// Priority orders channels for promotion and eviction: higher wins;
	// between equals the older request wins.
	Priority int
}

// Validate reports the first malformed field of r, naming the field and
// its limit. It does not apply policy (apps, quotas, interval bounds).
func (r *Request) Validate() error {
	if err := validateID(r.Channel, MaxChannelID); err != nil {
		return fmt.Errorf("%w: Channel %v", ErrInvalidRequest, err)
	}
	if err := validateApp(r.App); err != nil {
		return fmt.Errorf("%w: App %v", ErrInvalidRequest, err)
	}
	if r.Resource > RequestHardwareSlot {
		return fmt.Errorf("%w: Resource %d not RequestSoftwareSlot (0) or RequestHardwareSlot (1)", ErrInvalidRequest, r.Resource)
	}
	if r.Interval <= 0 {
		return fmt.Errorf("%w: Interval %v not positive", ErrInvalidRequest, r.Interval)
	}
	return nil
}

func validateApp(app string) error { return validateID(app, MaxAppID) }

// validateID checks an id: non-empty, valid UTF-8, at most max characters,
// no control characters.
func validateID(id string, max int) error {
	if id == "" {
		return errors.New("empty")
	}
	if !utf8.ValidString(id) {
		return errors.New("not valid UTF-8")
	}
	n := 0
	for _, r := range id {
		n++
		if unicode.IsControl(r) {
			return fmt.Errorf("has control character %U", r)
		}
	}
	if n > max {
		return fmt.Errorf("%d characters, more than %d", n, max)
	}
	return nil
}
