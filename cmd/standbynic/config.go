package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/slotmgr"
)

// The host command's configuration file (JSON). docs/cli.md documents it;
// keep the two in step.
type hostConfig struct {
	Server serverConfig  `json:"server"`
	Policy policyConfig  `json:"policy"`
	Host   runtimeConfig `json:"host"`
	Apps   []appConfig   `json:"apps,omitempty"`
	// Processes are real programs the host freezes with itself
	// (process.go).
	Processes []processConfig `json:"processes,omitempty"`
}

// serverConfig is the default server of the channels without an
// endpoint (the reference push server's two transports).
type serverConfig struct {
	// TCP is host:port of the push server's TCP line transport.
	TCP string `json:"tcp"`
	// WebSocket is the ws:// (or wss://) URL of its WebSocket transport.
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
	ResumeLatency     duration `json:"resume_latency"`
	PushCheckInterval duration `json:"push_check_interval"`
	WakeHold          duration `json:"wake_hold"`
	SoftwareWakeHold  duration `json:"software_wake_hold"`
	IdleWait          duration `json:"idle_wait"`
	// ReconnectMin and ReconnectMax bound the reconnect schedule of a
	// channel that lost its transport (0: 500ms and 5m).
	ReconnectMin duration    `json:"reconnect_min"`
	ReconnectMax duration    `json:"reconnect_max"`
	StayAwake    bool        `json:"stay_awake"`
	Power        powerConfig `json:"power"`
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
	ID string `json:"id"`
	// Transport is "tcp" or "websocket": the channel dials server.tcp or
	// server.websocket. With an endpoint it may be left out.
	Transport string `json:"transport"`
	// Endpoint is the channel's own server: tcp://, ws://, wss://,
	// mqtt://, mqtts:// (host.ParseEndpoint).
	Endpoint string `json:"endpoint"`
	// Protocol is line, raw, websocket or mqtt; "": from the scheme.
	Protocol  string           `json:"protocol"`
	Slot      string           `json:"slot"`
	Interval  duration         `json:"interval"`
	Priority  *int             `json:"priority"`
	KeepAlive *keepAliveConfig `json:"keepalive"`
	// RawKeepAlive is what the host writes as a raw channel's keep-alive
	// on its own wakes ("": the payload keep-alive's request).
	RawKeepAlive *bytesConfig `json:"raw_keepalive"`
	TLS          *tlsConfig   `json:"tls"`
	MQTT         *mqttConfig  `json:"mqtt"`
}

// keepAliveConfig is a channel's keep-alive: a JSON object, or (the
// original form, for line channels) a string, the line the host writes as
// the channel's keep-alive on its own wakes.
type keepAliveConfig struct {
	// Line is the string form.
	Line *string `json:"-"`
	// Kind is tcp-probe, websocket, payload or mqtt ("": the protocol's
	// default).
	Kind string `json:"kind"`
	// Probe is the TCP probe form: zero-byte (default) or one-byte.
	Probe string `json:"probe"`
	// WSMode is the WebSocket keep-alive: ping (default), pong or
	// responder.
	WSMode string `json:"ws_mode"`
	// Request, Reply and ReplyMask are the payload keep-alive.
	Request   *bytesConfig `json:"request"`
	Reply     *bytesConfig `json:"reply"`
	ReplyMask *bytesConfig `json:"reply_mask"`
}

type keepAliveObject keepAliveConfig // without the methods

func (k *keepAliveConfig) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*k = keepAliveConfig{Line: &s}
		return nil
	}
	var o keepAliveObject
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	*k = keepAliveConfig(o)
	return nil
}

func (k keepAliveConfig) MarshalJSON() ([]byte, error) {
	if k.Line != nil {
		return json.Marshal(*k.Line)
	}
	return json.Marshal(keepAliveObject(k))
}

// bytesConfig is a byte string written as text or as hex, exactly one:
// {"text": "PING\r\n"} or {"hex": "c000"}.
type bytesConfig struct {
	Text *string `json:"text"`
	Hex  *string `json:"hex"`
}

// bytes decodes b; the error names what is wrong (the caller adds the
// field).
func (b *bytesConfig) bytes() ([]byte, error) {
	switch {
	case b.Text != nil && b.Hex != nil:
		return nil, errors.New("both text and hex: want one")
	case b.Text != nil:
		if *b.Text == "" {
			return nil, errors.New("empty text")
		}
		return []byte(*b.Text), nil
	case b.Hex != nil:
		h := *b.Hex
		if h == "" {
			return nil, errors.New("empty hex")
		}
		v, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("hex %q: %v", truncate(h, 40), hexError(err))
		}
		return v, nil
	}
	return nil, errors.New(`empty: want {"text": "…"} or {"hex": "…"}`)
}

// hexError words encoding/hex's errors for a config file.
func hexError(err error) string {
	var ie hex.InvalidByteError
	switch {
	case errors.As(err, &ie):
		return fmt.Sprintf("%q is not a hex digit", rune(ie))
	case errors.Is(err, hex.ErrLength):
		return "odd number of digits"
	}
	return err.Error()
}

// tlsConfig configures a wss:// or mqtts:// channel's TLS client.
type tlsConfig struct {
	// CAFile is a PEM file of the CA certificates that verify the
	// server ("": the system's roots).
	CAFile string `json:"ca_file"`
	// ServerName is the name verified and sent in SNI ("": the
	// endpoint's host).
	ServerName string `json:"server_name"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `json:"min_version"`
}

// mqttConfig is an MQTT channel's session.
type mqttConfig struct {
	// Version is "3.1.1" (default) or "5" ("5.0").
	Version string `json:"version"`
	// ClientID is the client identifier ("": the channel id).
	ClientID string `json:"client_id"`
	// KeepAlive is the CONNECT keep-alive (whole seconds; "": 60s).
	KeepAlive  duration `json:"keepalive"`
	CleanStart bool     `json:"clean_start"`
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	// Subscriptions are the topic filters subscribed after CONNACK.
	Subscriptions []mqttSubscription `json:"subscriptions"`
}

type mqttSubscription struct {
	Topic string `json:"topic"`
	QoS   int    `json:"qos"`
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
	// defaultMQTTKeepAlive is an MQTT channel's keep-alive when the
	// config sets none.
	defaultMQTTKeepAlive = 60 * time.Second
	maxMQTTKeepAlive     = 65535 * time.Second
)

var (
	durationType  = reflect.TypeFor[duration]()
	keepAliveType = reflect.TypeFor[keepAliveConfig]()
)

// duration is a time.Duration written as a string ("30s", "2m").
type duration time.Duration

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
func loadHostConfig(data []byte) (*hostConfig, error) { return loadHostConfigWith(data, nil) }

// loadHostConfigWith is loadHostConfig with extra process apps (the host
// command's --run and --adopt) appended before validation.
func loadHostConfigWith(data []byte, extra []processConfig) (*hostConfig, error) {
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
	c.Processes = append(c.Processes, extra...)
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
	if t == keepAliveType {
		if _, ok := v.(string); ok {
			return nil // the line form; validate checks it
		}
		if _, ok := v.(map[string]any); !ok {
			return at("want a string (the keep-alive line) or an object")
		}
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
			if name != "-" {
				fields[name] = f.Type
			}
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
	durRange("host.reconnect_min", h.ReconnectMin, 0, maxHostDuration)
	durRange("host.reconnect_max", h.ReconnectMax, 0, maxHostDuration)
	if mn, mx := time.Duration(h.ReconnectMin), time.Duration(h.ReconnectMax); mx != 0 {
		if mn == 0 {
			mn = host.DefaultReconnectMin
		}
		if mx < mn {
			bad("host.reconnect_max", "%v below host.reconnect_min %v", mx, mn)
		}
	}
	durRange("host.power.software_wake", h.Power.SoftwareWake, 0, maxHostDuration)
	for _, pv := range []struct {
		field string
		v     float64
	}{{"host.power.awake_mw", h.Power.AwakeMW}, {"host.power.standby_mw", h.Power.StandbyMW}, {"host.power.resume_mj", h.Power.ResumeMJ}} {
		if !(pv.v >= 0 && pv.v <= maxPowerValue) {
			bad(pv.field, "%v out of range 0–%g (0: default)", pv.v, maxPowerValue)
		}
	}

	if len(c.Apps) == 0 && len(c.Processes) == 0 {
		bad("apps", "empty: at least one app with a channel (or a process)")
	}
	c.validateProcesses(bad)
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
			if _, errs := c.dialConfig(&a.Channels[j]); len(errs) > 0 {
				for _, fe := range errs {
					bad(cp+"."+fe.field, "%s", fe.msg)
				}
			}
			switch ch.Slot {
			case "", "software", "hardware":
			default:
				bad(cp+".slot", "%q: want hardware or software (default software)", ch.Slot)
			}
			iv := c.interval(&a.Channels[j])
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

// checkWSURL checks a ws:// or wss:// URL with a host.
func checkWSURL(s string) error {
	e, err := host.ParseEndpoint(s)
	if err != nil {
		return err
	}
	if e.Scheme != "ws" && e.Scheme != "wss" {
		return errors.New("scheme must be ws:// or wss://")
	}
	return nil
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

// fieldError is a bad value of a channel, its field named relative to the
// channel ("mqtt.subscriptions[0].topic").
type fieldError struct{ field, msg string }

// transportName is the channel's TRANSPORT column: tcp, websocket or mqtt.
func (ch *channelConfig) transportName() string {
	if ch.Transport != "" {
		return ch.Transport
	}
	e, err := host.ParseEndpoint(ch.Endpoint)
	if err != nil {
		return "?"
	}
	switch e.Scheme {
	case "ws", "wss":
		return "websocket"
	case "mqtt", "mqtts":
		return "mqtt"
	}
	return "tcp"
}

// pushServer reports whether the channel talks to the default server (the
// reference push server), whose lines ("hello", "push", "ack") it speaks
// on a WebSocket too.
func (ch *channelConfig) pushServer() bool { return ch.Endpoint == "" }

// mqttKeepAlive returns an MQTT channel's CONNECT keep-alive.
func (ch *channelConfig) mqttKeepAlive() time.Duration {
	if ch.MQTT != nil && ch.MQTT.KeepAlive != 0 {
		return time.Duration(ch.MQTT.KeepAlive)
	}
	return defaultMQTTKeepAlive
}

// interval returns the channel's keep-alive interval: the configured one,
// or for an MQTT channel without one 3/4 of its keep-alive in whole
// interval units (at least one); 0 when neither is set.
func (c *hostConfig) interval(ch *channelConfig) time.Duration {
	if ch.Interval != 0 {
		return time.Duration(ch.Interval)
	}
	if p, err := c.protocol(ch); err != nil || p != host.ProtocolMQTT {
		return 0
	}
	unit := time.Duration(c.Policy.IntervalUnit)
	if unit == 0 {
		unit = slotmgr.DefaultIntervalUnit
	}
	iv := ch.mqttKeepAlive() * 3 / 4 / unit * unit
	return max(iv, unit)
}

// endpoint returns the channel's server: its endpoint, or the default
// server of its transport.
func (c *hostConfig) endpoint(ch *channelConfig) (host.Endpoint, *fieldError) {
	if ch.Endpoint != "" {
		e, err := host.ParseEndpoint(ch.Endpoint)
		if err != nil {
			return e, &fieldError{"endpoint", err.Error()}
		}
		switch ch.Transport {
		case "":
		case "tcp", "websocket":
			want := "tcp"
			if e.Scheme == "ws" || e.Scheme == "wss" {
				want = "websocket"
			}
			if ch.Transport != want {
				return e, &fieldError{"transport", fmt.Sprintf("%q does not match the endpoint's %s:// (leave transport out)", ch.Transport, e.Scheme)}
			}
		default:
			return e, &fieldError{"transport", fmt.Sprintf("%q: want tcp or websocket (or leave it out: the endpoint's scheme says it)", ch.Transport)}
		}
		return e, nil
	}
	switch ch.Transport {
	case "tcp":
		if c.Server.TCP == "" {
			return host.Endpoint{}, &fieldError{"transport", "tcp needs server.tcp (or an endpoint)"}
		}
		e, err := host.ParseEndpoint("tcp://" + c.Server.TCP)
		if err != nil {
			return e, &fieldError{"transport", "server.tcp is not valid"}
		}
		return e, nil
	case "websocket":
		if c.Server.WebSocket == "" {
			return host.Endpoint{}, &fieldError{"transport", "websocket needs server.websocket (or an endpoint)"}
		}
		e, err := host.ParseEndpoint(c.Server.WebSocket)
		if err != nil || (e.Scheme != "ws" && e.Scheme != "wss") {
			return e, &fieldError{"transport", "server.websocket is not valid"}
		}
		return e, nil
	case "":
		return host.Endpoint{}, &fieldError{"transport", "missing: an endpoint, or tcp or websocket (the default server)"}
	}
	return host.Endpoint{}, &fieldError{"transport", fmt.Sprintf("%q: want tcp or websocket", ch.Transport)}
}

// protocol returns the channel's application protocol.
func (c *hostConfig) protocol(ch *channelConfig) (host.Protocol, error) {
	if ch.Protocol != "" {
		return host.ParseProtocol(ch.Protocol)
	}
	e, ferr := c.endpoint(ch)
	if ferr != nil {
		return 0, errors.New(ferr.msg)
	}
	switch e.Scheme {
	case "ws", "wss":
		return host.ProtocolWebSocket, nil
	case "mqtt", "mqtts":
		return host.ProtocolMQTT, nil
	}
	return host.ProtocolLine, nil
}

// dialConfig returns what host.Dial needs for the channel, or every bad
// field found.
func (c *hostConfig) dialConfig(ch *channelConfig) (host.DialConfig, []fieldError) {
	var errs []fieldError
	bad := func(field, format string, a ...any) {
		errs = append(errs, fieldError{field, fmt.Sprintf(format, a...)})
	}
	var d host.DialConfig
	e, ferr := c.endpoint(ch)
	if ferr != nil {
		return d, []fieldError{*ferr}
	}
	d.Endpoint = e
	p, err := c.protocol(ch)
	if err != nil {
		return d, []fieldError{{"protocol", err.Error()}}
	}
	d.Protocol = p
	if p == host.ProtocolLine {
		d.Hello = ch.ID
		d.LineKeepAlive = []byte(defaultKA)
	}

	if ka := ch.KeepAlive; ka != nil && ka.Line != nil {
		switch l := *ka.Line; {
		case p != host.ProtocolLine:
			bad("keepalive", "a string is the keep-alive line of a line channel (tcp); protocol %v takes an object {\"kind\": …}", p)
		case l == "":
			bad("keepalive", "empty")
		case len(l) > maxKeepAlive:
			bad("keepalive", "%d bytes, more than %d", len(l), maxKeepAlive)
		case strings.ContainsAny(l, "\r\n"):
			bad("keepalive", "contains a line break")
		case strings.HasPrefix(l, "ack "), strings.HasPrefix(l, "hello "):
			bad("keepalive", "%q would read as a protocol line", l)
		default:
			d.LineKeepAlive = []byte(l)
		}
	} else if ka != nil {
		k, err := host.ParseKeepAliveKind(ka.Kind)
		if err != nil {
			bad("keepalive.kind", "%v", err)
		}
		d.KeepAlive.Kind = k
		switch ka.Probe {
		case "", "zero-byte":
		case "one-byte":
			d.KeepAlive.Probe = offload.ProbeOneByte
		default:
			bad("keepalive.probe", "%q: want zero-byte or one-byte", ka.Probe)
		}
		switch ka.WSMode {
		case "":
		case "ping":
			d.KeepAlive.WSMode = offload.WSPing
		case "pong":
			d.KeepAlive.WSMode = offload.WSPong
		case "responder":
			d.KeepAlive.WSMode = offload.WSResponder
		default:
			bad("keepalive.ws_mode", "%q: want ping, pong or responder", ka.WSMode)
		}
		for _, f := range []struct {
			name string
			b    *bytesConfig
			to   *[]byte
		}{{"request", ka.Request, &d.KeepAlive.Request}, {"reply", ka.Reply, &d.KeepAlive.Reply}, {"reply_mask", ka.ReplyMask, &d.KeepAlive.ReplyMask}} {
			if f.b == nil {
				continue
			}
			v, err := f.b.bytes()
			if err != nil {
				bad("keepalive."+f.name, "%v", err)
				continue
			}
			if len(v) > offload.MaxPayload {
				bad("keepalive."+f.name, "%d bytes, more than %d", len(v), offload.MaxPayload)
				continue
			}
			*f.to = v
		}
	}

	if ch.RawKeepAlive != nil {
		v, err := ch.RawKeepAlive.bytes()
		switch {
		case p != host.ProtocolRaw:
			bad("raw_keepalive", "only for protocol raw, not %v", p)
		case err != nil:
			bad("raw_keepalive", "%v", err)
		case len(v) > host.MaxAppKeepAlive:
			bad("raw_keepalive", "%d bytes, more than %d", len(v), host.MaxAppKeepAlive)
		default:
			d.RawKeepAlive = v
		}
	} else if p == host.ProtocolRaw && d.KeepAlive.Kind == host.KeepAlivePayload && len(d.KeepAlive.Request) > 0 {
		d.RawKeepAlive = d.KeepAlive.Request
	}

	if t := ch.TLS; t != nil {
		if !e.TLS() {
			bad("tls", "only for wss:// and mqtts:// endpoints, not %s://", e.Scheme)
		}
		d.TLS = &host.TLSConfig{CAFile: t.CAFile, ServerName: t.ServerName}
		switch t.MinVersion {
		case "", "1.2":
		case "1.3":
			d.TLS.MinVersion = tls.VersionTLS13
		default:
			bad("tls.min_version", "%q: want 1.2 or 1.3", t.MinVersion)
		}
		if t.CAFile != "" {
			if err := checkCAFile(t.CAFile); err != nil {
				bad("tls.ca_file", "%v", err)
			}
		}
	}

	if m := ch.MQTT; m != nil && p != host.ProtocolMQTT {
		bad("mqtt", "only for protocol mqtt, not %v", p)
	} else if p == host.ProtocolMQTT {
		if m == nil {
			m = &mqttConfig{}
		}
		switch m.Version {
		case "", "3.1.1":
			d.MQTT.Version = 4
		case "5", "5.0":
			d.MQTT.Version = 5
		default:
			bad("mqtt.version", "%q: want 3.1.1 or 5", m.Version)
		}
		d.MQTT.ClientID = m.ClientID
		if d.MQTT.ClientID == "" {
			d.MQTT.ClientID = ch.ID
		}
		ka := ch.mqttKeepAlive()
		if ka < time.Second || ka > maxMQTTKeepAlive || ka%time.Second != 0 {
			bad("mqtt.keepalive", "%v: want whole seconds 1s–%v", ka, maxMQTTKeepAlive)
		}
		d.MQTT.KeepAlive = ka
		d.MQTT.CleanStart = m.CleanStart
		d.MQTT.Username, d.MQTT.Password = m.Username, m.Password
		for i, s := range m.Subscriptions {
			if s.QoS != 0 && s.QoS != 1 {
				bad(fmt.Sprintf("mqtt.subscriptions[%d].qos", i), "%d: want 0 or 1", s.QoS)
				continue
			}
			d.MQTT.Subscriptions = append(d.MQTT.Subscriptions, host.MQTTSubscription{Filter: s.Topic, QoS: byte(s.QoS)})
		}
	}
	if len(errs) > 0 {
		return d, errs
	}
	// The host's own checks: protocol against scheme, payload sizes,
	// topic filters, credentials. Its field names are the config's but
	// for a subscription's filter, which the config calls topic.
	if err := d.Validate(); err != nil {
		field, msg, ok := strings.Cut(err.Error(), ": ")
		if !ok {
			field, msg = "(channel)", err.Error()
		}
		if strings.HasPrefix(field, "mqtt.subscriptions[") && strings.HasSuffix(field, "].filter") {
			field = strings.TrimSuffix(field, "filter") + "topic"
		}
		errs = append(errs, fieldError{field, msg})
	}
	return d, errs
}

// checkCAFile checks that path holds at least one PEM certificate.
func checkCAFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return err
	}
	if len(b) > maxConfigBytes {
		return fmt.Errorf("%s: more than %d bytes", path, maxConfigBytes)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return nil
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
		ReconnectMin:      time.Duration(c.Host.ReconnectMin),
		ReconnectMax:      time.Duration(c.Host.ReconnectMax),
		Power: host.Power{
			AwakeMW: c.Host.Power.AwakeMW, StandbyMW: c.Host.Power.StandbyMW,
			ResumeMJ: c.Host.Power.ResumeMJ, SoftwareWake: time.Duration(c.Host.Power.SoftwareWake),
		},
	}
}
