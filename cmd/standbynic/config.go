package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/slotmgr"
)

// The host command's configuration file (JSON). docs/cli.md documents it;
// keep the two in step.
type hostConfig struct {
	Server serverConfig  `json:"server"`
	Policy policyConfig  `json:"policy"`
	Host   runtimeConfig `json:"host"`
	Apps   []appConfig   `json:"apps"`
}

type serverConfig struct {
	// TCP is host:port of the push server's TCP line transport.
	TCP string `json:"tcp"`
	// WebSocket is the ws:// URL of its WebSocket transport.
	WebSocket string `json:"websocket"`
}

type policyConfig struct {
	HardwareSlots    int      `json:"hardware_slots"`
	PermittedApps    int      `json:"permitted_apps"`
	AppChannelQuota  int      `json:"app_channel_quota"`
	AppHardwareQuota int      `json:"app_hardware_quota"`
	IntervalUnit     duration `json:"interval_unit"`
	MinInterval      int      `json:"min_interval"`
	MaxInterval      int      `json:"max_interval"`
	Strict           bool     `json:"strict"`
}

type runtimeConfig struct {
	ResumeLatency     duration    `json:"resume_latency"`
	PushCheckInterval duration    `json:"push_check_interval"`
	WakeHold          duration    `json:"wake_hold"`
	SoftwareWakeHold  duration    `json:"software_wake_hold"`
	IdleWait          duration    `json:"idle_wait"`
	StayAwake         bool        `json:"stay_awake"`
	Power             powerConfig `json:"power"`
}

type powerConfig struct {
	AwakeMW      float64  `json:"awake_mw"`
	StandbyMW    float64  `json:"standby_mw"`
	ResumeMJ     float64  `json:"resume_mj"`
	SoftwareWake duration `json:"software_wake"`
}

type appConfig struct {
	Name     string          `json:"name"`
	Priority int             `json:"priority"`
	Channels []channelConfig `json:"channels"`
}

type channelConfig struct {
	ID        string   `json:"id"`
	Transport string   `json:"transport"`
	Slot      string   `json:"slot"`
	Interval  duration `json:"interval"`
	Priority  *int     `json:"priority"`
	KeepAlive *string  `json:"keepalive"`
}

// Limits of the configuration.
const (
	maxConfigBytes  = 1 << 20
	maxConfigChans  = 4096
	maxPriority     = 1 << 20
	maxKeepAlive    = 1024 // bytes of a stream keep-alive line
	minIntervalUnit = time.Millisecond
	maxIntervalUnit = time.Hour
	maxHostDuration = time.Hour
	minPushCheck    = 100 * time.Millisecond
	maxPowerValue   = 1e9
	defaultKA       = "ka"
)

// duration is a time.Duration written as a string ("30s", "2m").
type duration time.Duration

var durationType = reflect.TypeFor[duration]()

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a duration string like "30s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. \"500ms\", \"30s\", \"2m\")", s)
	}
	*d = duration(v)
	return nil
}

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// loadHostConfig decodes and validates a configuration. Every error starts
// with "config: " and names the field: "apps[1].channels[0].interval: 5s
// below minimum 15s".
func loadHostConfig(data []byte) (*hostConfig, error) {
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("config: %d bytes, more than %d", len(data), maxConfigBytes)
	}
	// First pass: syntax, then shape (unknown fields, types), with paths.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("config: %s", syntaxError(data, err))
	}
	if dec.More() {
		return nil, errors.New("config: trailing data after the JSON object")
	}
	if err := checkShape(raw, reflect.TypeFor[hostConfig](), ""); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// Second pass: the typed decode, which the first made safe.
	var c hostConfig
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// syntaxError turns a JSON syntax error into "line L, column C: …".
func syntaxError(data []byte, err error) string {
	var se *json.SyntaxError
	off := int64(-1)
	if errors.As(err, &se) {
		off = se.Offset
	} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "empty or truncated JSON"
	}
	if off < 0 {
		return err.Error()
	}
	// Offset counts the bytes read, the offending one included.
	off = max(min(off, int64(len(data)))-1, 0)
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(data[:off], '\n'))
	return fmt.Sprintf("line %d, column %d: %v", line, col, err)
}

// checkShape checks a decoded JSON value against the Go type it will be
// decoded into: exact field names (json.Unmarshal would accept any case),
// JSON types, integer ranges and durations, naming the path of the first
// mismatch.
func checkShape(v any, t reflect.Type, path string) error {
	at := func(format string, a ...any) error {
		p := path
		if p == "" {
			p = "(top level)"
		}
		return fmt.Errorf("%s: %s", p, fmt.Sprintf(format, a...))
	}
	if t == durationType {
		s, ok := v.(string)
		if !ok {
			return at(`want a duration string like "30s"`)
		}
		if _, err := time.ParseDuration(s); err != nil {
			return at(`%q is not a duration (e.g. "500ms", "30s", "2m")`, s)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v == nil {
			return nil
		}
		return checkShape(v, t.Elem(), path)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return at("want an object")
		}
		fields := map[string]reflect.Type{}
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			fields[name] = f.Type
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			sub := k
			if path != "" {
				sub = path + "." + k
			}
			ft, ok := fields[k]
			if !ok {
				return fmt.Errorf("%s: unknown field", sub)
			}
			if err := checkShape(m[k], ft, sub); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			return at("want an array")
		}
		for i, e := range a {
			if err := checkShape(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		if _, ok := v.(string); !ok {
			return at("want a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return at("want true or false")
		}
	case reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			return at("want an integer")
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || i < math.MinInt32 || i > math.MaxInt32 {
			return at("%s is not an integer in [%d, %d]", n, math.MinInt32, math.MaxInt32)
		}
	case reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			return at("want a number")
		}
		if _, err := strconv.ParseFloat(string(n), 64); err != nil {
			return at("%s is not a finite number", n)
		}
	default:
		return at("unsupported type %v", t) // a programming error
	}
	return nil
}

// pool returns the slot policy of c.
func (c *hostConfig) pool() slotmgr.Config {
	return slotmgr.Config{
		HardwareSlots: c.Policy.HardwareSlots, PermittedApps: c.Policy.PermittedApps,
		AppChannelQuota: c.Policy.AppChannelQuota, AppHardwareQuota: c.Policy.AppHardwareQuota,
		IntervalUnit: time.Duration(c.Policy.IntervalUnit), MinInterval: c.Policy.MinInterval,
		MaxInterval: c.Policy.MaxInterval, Strict: c.Policy.Strict,
	}
}

// intervalBounds returns the policy's [min, max] keep-alive interval.
func (c *hostConfig) intervalBounds() (lo, hi time.Duration) {
	unit := time.Duration(c.Policy.IntervalUnit)
	if unit == 0 {
		unit = slotmgr.DefaultIntervalUnit
	}
	mn, mx := c.Policy.MinInterval, c.Policy.MaxInterval
	if mn == 0 {
		mn = slotmgr.DefaultMinInterval
	}
	if mx == 0 {
		mx = slotmgr.DefaultMaxInterval
	}
	return time.Duration(mn) * unit, time.Duration(mx) * unit
}

// validate checks every value, collecting up to 10 errors, each naming its
// field and the limit.
func (c *hostConfig) validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		if len(errs) < 10 {
			errs = append(errs, fmt.Errorf("config: %s: %s", field, fmt.Sprintf(format, a...)))
		}
	}
	if c.Server.TCP != "" {
		if err := checkDialAddr(c.Server.TCP); err != nil {
			bad("server.tcp", "%q: %v", c.Server.TCP, err)
		}
	}
	if c.Server.WebSocket != "" {
		if err := checkWSURL(c.Server.WebSocket); err != nil {
			bad("server.websocket", "%q: %v", c.Server.WebSocket, err)
		}
	}

	p := c.Policy
	intRange := func(field string, v, lo, hi int) bool {
		if v < lo || v > hi {
			bad(field, "%d out of range %d–%d (0: default)", v, lo, hi)
			return false
		}
		return true
	}
	intRange("policy.hardware_slots", p.HardwareSlots, 0, slotmgr.MaxHardwareSlots)
	intRange("policy.permitted_apps", p.PermittedApps, 0, slotmgr.MaxPermittedApps)
	intRange("policy.app_channel_quota", p.AppChannelQuota, 0, maxConfigChans)
	intRange("policy.app_hardware_quota", p.AppHardwareQuota, 0, slotmgr.MaxHardwareSlots)
	unitOK := true
	if u := time.Duration(p.IntervalUnit); u != 0 && (u < minIntervalUnit || u > maxIntervalUnit) {
		bad("policy.interval_unit", "%v out of range %v–%v", u, minIntervalUnit, maxIntervalUnit)
		unitOK = false
	}
	minOK := intRange("policy.min_interval", p.MinInterval, 0, 1_000_000)
	maxOK := intRange("policy.max_interval", p.MaxInterval, 0, 1_000_000)
	lo, hi := c.intervalBounds()
	boundsOK := unitOK && minOK && maxOK
	if boundsOK && hi < lo {
		bad("policy.max_interval", "%s below policy.min_interval %s", fmtDuration(hi), fmtDuration(lo))
		boundsOK = false
	}

	h := c.Host
	durRange := func(field string, d duration, lo, hi time.Duration) {
		if v := time.Duration(d); v < lo || v > hi {
			bad(field, "%v out of range %v–%v", v, lo, hi)
		}
	}
	durRange("host.resume_latency", h.ResumeLatency, 0, time.Minute)
	if v := time.Duration(h.PushCheckInterval); v != 0 && (v < minPushCheck || v > maxHostDuration) {
		bad("host.push_check_interval", "%v out of range %v–%v (0: off)", v, minPushCheck, maxHostDuration)
	}
	durRange("host.wake_hold", h.WakeHold, 0, maxHostDuration)
	durRange("host.software_wake_hold", h.SoftwareWakeHold, 0, maxHostDuration)
	durRange("host.idle_wait", h.IdleWait, 0, time.Minute)
	durRange("host.power.software_wake", h.Power.SoftwareWake, 0, maxHostDuration)
	for _, pv := range []struct {
		field string
		v     float64
	}{{"host.power.awake_mw", h.Power.AwakeMW}, {"host.power.standby_mw", h.Power.StandbyMW}, {"host.power.resume_mj", h.Power.ResumeMJ}} {
		if !(pv.v >= 0 && pv.v <= maxPowerValue) {
			bad(pv.field, "%v out of range 0–%g (0: default)", pv.v, maxPowerValue)
		}
	}

	if len(c.Apps) == 0 {
		bad("apps", "empty: at least one app with a channel")
	}
	apps := map[string]int{}
	chans := map[string]string{}
	total := 0
	for i, a := range c.Apps {
		ap := fmt.Sprintf("apps[%d]", i)
		if err := checkID(a.Name, slotmgr.MaxAppID); err != nil {
			bad(ap+".name", "%v", err)
		} else if j, dup := apps[a.Name]; dup {
			bad(ap+".name", "%q already used by apps[%d]", a.Name, j)
		} else {
			apps[a.Name] = i
		}
		if a.Priority < -maxPriority || a.Priority > maxPriority {
			bad(ap+".priority", "%d out of range %d–%d", a.Priority, -maxPriority, maxPriority)
		}
		if len(a.Channels) == 0 {
			bad(ap+".channels", "empty: at least one channel")
		}
		for j, ch := range a.Channels {
			cp := fmt.Sprintf("%s.channels[%d]", ap, j)
			total++
			if err := checkChannelName(ch.ID); err != nil {
				bad(cp+".id", "%v", err)
			} else if err := checkID(ch.ID, slotmgr.MaxChannelID); err != nil {
				bad(cp+".id", "%v", err)
			} else if prev, dup := chans[ch.ID]; dup {
				bad(cp+".id", "%q already used by %s", ch.ID, prev)
			} else {
				chans[ch.ID] = cp
			}
			switch ch.Transport {
			case "tcp":
				if c.Server.TCP == "" {
					bad(cp+".transport", "tcp needs server.tcp")
				}
			case "websocket":
				if c.Server.WebSocket == "" {
					bad(cp+".transport", "websocket needs server.websocket")
				}
			case "":
				bad(cp+".transport", "missing: tcp or websocket")
			default:
				bad(cp+".transport", "%q: want tcp or websocket", ch.Transport)
			}
			switch ch.Slot {
			case "", "software", "hardware":
			default:
				bad(cp+".slot", "%q: want hardware or software (default software)", ch.Slot)
			}
			iv := time.Duration(ch.Interval)
			switch {
			case iv == 0:
				bad(cp+".interval", "missing: the server keep-alive interval")
			case !boundsOK:
			case iv < lo:
				bad(cp+".interval", "%s below minimum %s", fmtDuration(iv), fmtDuration(lo))
			case iv > hi:
				bad(cp+".interval", "%s above maximum %s", fmtDuration(iv), fmtDuration(hi))
			}
			if ch.Priority != nil && (*ch.Priority < -maxPriority || *ch.Priority > maxPriority) {
				bad(cp+".priority", "%d out of range %d–%d", *ch.Priority, -maxPriority, maxPriority)
			}
			if ch.KeepAlive != nil {
				switch ka := *ch.KeepAlive; {
				case ch.Transport != "tcp":
					bad(cp+".keepalive", "only for tcp channels (a websocket is kept alive with Pings)")
				case ka == "":
					bad(cp+".keepalive", "empty")
				case len(ka) > maxKeepAlive:
					bad(cp+".keepalive", "%d bytes, more than %d", len(ka), maxKeepAlive)
				case strings.ContainsAny(ka, "\r\n"):
					bad(cp+".keepalive", "contains a line break")
				case strings.HasPrefix(ka, "ack "), strings.HasPrefix(ka, "hello "):
					bad(cp+".keepalive", "%q would read as a protocol line", ka)
				}
			}
		}
	}
	if total > maxConfigChans {
		bad("apps", "%d channels, more than %d", total, maxConfigChans)
	}
	if len(errs) == 0 {
		pc := c.pool()
		if err := pc.Validate(); err != nil {
			bad("policy", "%v", err)
		}
	}
	return errors.Join(errs...)
}

// checkID applies slotmgr's rule for ids: 1–max characters of valid UTF-8
// without control characters.
func checkID(s string, max int) error {
	switch {
	case s == "":
		return errors.New("empty")
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case len([]rune(s)) > max:
		return fmt.Errorf("longer than %d characters", max)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("contains a control character")
	}
	return nil
}

// checkDialAddr checks host:port with a port 1–65535.
func checkDialAddr(s string) error {
	h, port, err := net.SplitHostPort(s)
	if err != nil || h == "" {
		return errors.New("not host:port")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return errors.New("port must be a number 1–65535")
	}
	return nil
}

// checkWSURL checks a ws:// URL with a host and port.
func checkWSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	switch u.Scheme {
	case "ws":
	case "wss":
		return errors.New("wss:// is refused: the NIC must see the WebSocket frames to answer Pings (use ws://)")
	default:
		return errors.New("scheme must be ws://")
	}
	if u.Port() == "" {
		return checkDialAddr(u.Host + ":80")
	}
	return checkDialAddr(u.Host)
}

// fmtDuration writes d without trailing zero units: "15m", "1h30m", "5s".
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// resource returns the slot kind a channel asks for.
func (ch *channelConfig) resource() slotmgr.ResourceType {
	if ch.Slot == "hardware" {
		return slotmgr.RequestHardwareSlot
	}
	return slotmgr.RequestSoftwareSlot
}

// keepAlive returns the stream keep-alive line of a tcp channel.
func (ch *channelConfig) keepAlive() []byte {
	if ch.KeepAlive != nil {
		return []byte(*ch.KeepAlive)
	}
	return []byte(defaultKA)
}

// hostRuntime returns the host.Config fields the file sets.
func (c *hostConfig) hostRuntime() host.Config {
	pool := c.pool()
	return host.Config{
		Pool:              &pool,
		ResumeLatency:     time.Duration(c.Host.ResumeLatency),
		PushCheckInterval: time.Duration(c.Host.PushCheckInterval),
		WakeHold:          time.Duration(c.Host.WakeHold),
		SoftwareWakeHold:  time.Duration(c.Host.SoftwareWakeHold),
		IdleWait:          time.Duration(c.Host.IdleWait),
		Power: host.Power{
			AwakeMW: c.Host.Power.AwakeMW, StandbyMW: c.Host.Power.StandbyMW,
			ResumeMJ: c.Host.Power.ResumeMJ, SoftwareWake: time.Duration(c.Host.Power.SoftwareWake),
		},
	}
}
