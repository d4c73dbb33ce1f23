package host

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/standbynic/standbynic/offload"
)

// Endpoint is a channel's server: tcp://host:port, ws://host[:port]/path,
// wss://…, mqtt://host[:port], mqtts://host[:port]. Host is a name, an
// IPv4 address or an IPv6 address (written [::1] in the URL, stored
// without brackets).
type Endpoint struct {
	Scheme string
	Host   string
	Port   uint16
	Path   string // ws, wss: the request path and query ("/" when empty)
}

// Default ports of the schemes without one in the URL (tcp has none).
var defaultPorts = map[string]uint16{"ws": 80, "wss": 443, "mqtt": 1883, "mqtts": 8883}

// ParseEndpoint parses a channel endpoint URL.
func ParseEndpoint(s string) (Endpoint, error) {
	if s == "" {
		return Endpoint{}, errors.New("empty; want tcp://host:port, ws://host[:port]/path, wss://…, mqtt://host[:port] or mqtts://host[:port]")
	}
	u, err := url.Parse(s)
	if err != nil {
		return Endpoint{}, fmt.Errorf("%q is not a URL: %v", s, err)
	}
	e := Endpoint{Scheme: u.Scheme}
	switch u.Scheme {
	case "tcp", "ws", "wss", "mqtt", "mqtts":
	case "":
		return Endpoint{}, fmt.Errorf("%q has no scheme: want tcp, ws, wss, mqtt or mqtts", s)
	default:
		return Endpoint{}, fmt.Errorf("scheme %q: want tcp, ws, wss, mqtt or mqtts", u.Scheme)
	}
	if u.Opaque != "" {
		return Endpoint{}, fmt.Errorf("%q: want %s://host:port", s, u.Scheme)
	}
	if u.User != nil {
		return Endpoint{}, fmt.Errorf("%q: user info in the URL is not supported (mqtt: use username and password)", s)
	}
	if u.Fragment != "" {
		return Endpoint{}, fmt.Errorf("%q: a fragment is not allowed", s)
	}
	e.Host = u.Hostname()
	if e.Host == "" {
		return Endpoint{}, fmt.Errorf("%q has no host", s)
	}
	if strings.Contains(u.Host, "[") || strings.Contains(e.Host, ":") {
		a, err := netip.ParseAddr(e.Host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return Endpoint{}, fmt.Errorf("host %q is not an IPv6 address (no zones)", e.Host)
		}
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return Endpoint{}, fmt.Errorf("port %q: want 1..65535", p)
		}
		e.Port = uint16(n)
	} else if strings.HasSuffix(u.Host, ":") {
		return Endpoint{}, fmt.Errorf("%q: empty port", s)
	} else if d, ok := defaultPorts[u.Scheme]; ok {
		e.Port = d
	} else {
		return Endpoint{}, fmt.Errorf("%q: tcp needs a port (tcp://host:port)", s)
	}
	path := u.EscapedPath()
	if u.RawQuery != "" || u.ForceQuery {
		path += "?" + u.RawQuery
	}
	switch u.Scheme {
	case "ws", "wss":
		if path == "" {
			path = "/"
		}
		if !strings.HasPrefix(path, "/") {
			return Endpoint{}, fmt.Errorf("path %q: want it to start with /", path)
		}
		e.Path = path
	default:
		if path != "" && path != "/" {
			return Endpoint{}, fmt.Errorf("%q: %s takes no path", s, u.Scheme)
		}
	}
	return e, nil
}

// TLS reports whether the endpoint runs over TLS (wss, mqtts).
func (e Endpoint) TLS() bool { return e.Scheme == "wss" || e.Scheme == "mqtts" }

// Addr returns host:port for net.Dial.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port))) }

// String returns the endpoint as a URL (the port always written).
func (e Endpoint) String() string {
	if e.Scheme == "" {
		return ""
	}
	return e.Scheme + "://" + e.Addr() + e.Path
}

// Protocol is the application protocol a channel speaks on its
// connection. The zero value is invalid (DialConfig: from the scheme).
type Protocol uint8

// Protocols.
const (
	_ Protocol = iota
	// ProtocolLine: the reference push server's stream of lines
	// ("hello <id>", "push <id> <payload>", "ack <id>").
	ProtocolLine
	// ProtocolRaw: no greeting; every read is a push of the bytes read.
	ProtocolRaw
	// ProtocolWebSocket: RFC 6455; every text or binary message is a push.
	ProtocolWebSocket
	// ProtocolMQTT: MQTT 3.1.1 or 5.0; every PUBLISH is a push.
	ProtocolMQTT
	numProtocol
)

var protocolNames = [numProtocol]string{ProtocolLine: "line", ProtocolRaw: "raw", ProtocolWebSocket: "websocket", ProtocolMQTT: "mqtt"}

// String returns the protocol's name.
func (p Protocol) String() string {
	if p > 0 && p < numProtocol {
		return protocolNames[p]
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// ParseProtocol parses a protocol name (line, raw, websocket, mqtt).
func ParseProtocol(s string) (Protocol, error) {
	for i := Protocol(1); i < numProtocol; i++ {
		if protocolNames[i] == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("protocol %q: want line, raw, websocket or mqtt", s)
}

// KeepAliveKind is the keep-alive of a channel. The zero value means the
// protocol's default (mqtt → KeepAliveMQTT, websocket → KeepAliveWebSocket,
// raw and line → KeepAliveTCPProbe).
type KeepAliveKind uint8

// Keep-alive kinds.
const (
	KeepAliveDefault KeepAliveKind = iota
	// KeepAliveTCPProbe: the NIC sends TCP keep-alive probes; on a
	// software slot the host sends the app's keep-alive bytes (line,
	// raw) or runs the app's KeepAlive task.
	KeepAliveTCPProbe
	// KeepAliveWebSocket: Ping, Pong or responder (KeepAliveConfig.WSMode).
	KeepAliveWebSocket
	// KeepAlivePayload: application bytes (Request) and the reply
	// (Reply under ReplyMask), sent by the NIC or the host.
	KeepAlivePayload
	// KeepAliveMQTT: the MQTT preset: PINGREQ (c0 00) and PINGRESP
	// (d0 00) at most every 0.75× the negotiated keep-alive.
	KeepAliveMQTT
	numKeepAliveKind
)

var keepAliveKindNames = [numKeepAliveKind]string{
	KeepAliveDefault: "default", KeepAliveTCPProbe: "tcp-probe", KeepAliveWebSocket: "websocket",
	KeepAlivePayload: "payload", KeepAliveMQTT: "mqtt",
}

// String returns the kind's name.
func (k KeepAliveKind) String() string {
	if k < numKeepAliveKind {
		return keepAliveKindNames[k]
	}
	return "KeepAliveKind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKeepAliveKind parses tcp-probe, websocket, payload or mqtt ("" is
// the default).
func ParseKeepAliveKind(s string) (KeepAliveKind, error) {
	if s == "" {
		return KeepAliveDefault, nil
	}
	for i := KeepAliveTCPProbe; i < numKeepAliveKind; i++ {
		if keepAliveKindNames[i] == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("keep-alive kind %q: want tcp-probe, websocket, payload or mqtt", s)
}

// KeepAliveConfig is a channel's keep-alive.
type KeepAliveConfig struct {
	Kind KeepAliveKind
	// Probe is the TCP probe form (tcp-probe; also the liveness probes
	// of the WebSocket responder mode and of TLS channels).
	Probe offload.ProbeForm
	// WSMode is the WebSocket keep-alive (zero: ping).
	WSMode offload.WSMode
	// Request, Reply and ReplyMask are the payload keep-alive (see
	// offload.PayloadSpec).
	Request, Reply, ReplyMask []byte
}

// TLSConfig configures a wss or mqtts channel's TLS client.
type TLSConfig struct {
	// CAFile is a PEM file of the roots that verify the server ("":
	// the system's roots).
	CAFile string
	// ServerName is the name verified and sent in SNI ("": the
	// endpoint's host).
	ServerName string
	// MinVersion and MaxVersion bound the TLS version (zero: TLS 1.2 and
	// TLS 1.3; nothing older than 1.2 is accepted).
	MinVersion, MaxVersion uint16
}

// MQTTConfig is an MQTT channel's session.
type MQTTConfig struct {
	// Version is the protocol level: 4 (MQTT 3.1.1, the default when 0)
	// or 5 (MQTT 5.0).
	Version uint8
	// ClientID is the client identifier (1–23 characters recommended by
	// the spec; up to 256 bytes accepted here).
	ClientID string
	// KeepAlive is the CONNECT keep-alive, whole seconds, 1–65535 s. In
	// MQTT 5 a Server Keep Alive in CONNACK overrides it.
	KeepAlive time.Duration
	// CleanStart is Clean Session (3.1.1) or Clean Start (5.0).
	CleanStart bool
	// Username and Password are sent when not empty.
	Username, Password string
	// Subscriptions are subscribed after CONNACK.
	Subscriptions []MQTTSubscription
}

// MQTTSubscription is one topic filter and its maximum QoS (0 or 1).
type MQTTSubscription struct {
	Filter string
	QoS    byte
}

// DialConfig is what Dial needs to connect a channel to its server.
type DialConfig struct {
	Endpoint Endpoint
	// Protocol is the application protocol (zero: from the scheme: tcp →
	// line, ws and wss → websocket, mqtt and mqtts → mqtt).
	Protocol  Protocol
	KeepAlive KeepAliveConfig
	// TLS configures wss and mqtts (nil: system roots, the endpoint's
	// host name, TLS 1.2–1.3); it must be nil for the other schemes.
	TLS *TLSConfig
	// Hello is the line protocol's greeting: "hello <Hello>" (the channel
	// id); empty sends none.
	Hello string
	// LineKeepAlive is the line the host writes as the software
	// keep-alive of a line channel (nil: the app's KeepAlive task).
	LineKeepAlive []byte
	// RawKeepAlive are the bytes the host writes as the software
	// keep-alive of a raw channel (nil: the app's KeepAlive task).
	RawKeepAlive []byte
	MQTT         MQTTConfig
	// NetDialContext, when set, opens the TCP connection instead of a
	// net.Dialer (a test dialling from a network namespace); it must
	// return a *net.TCPConn.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Limits of a DialConfig.
const (
	MaxClientID      = 256
	MaxTopicFilter   = 1024
	MaxSubscriptions = 64
	MaxCredential    = 1024
	MaxAppKeepAlive  = 512
)

// protocol returns the effective protocol.
func (c *DialConfig) protocol() Protocol {
	if c.Protocol != 0 {
		return c.Protocol
	}
	switch c.Endpoint.Scheme {
	case "ws", "wss":
		return ProtocolWebSocket
	case "mqtt", "mqtts":
		return ProtocolMQTT
	}
	return ProtocolLine
}

// keepAliveKind returns the effective keep-alive kind.
func (c *DialConfig) keepAliveKind() KeepAliveKind {
	if c.KeepAlive.Kind != KeepAliveDefault {
		return c.KeepAlive.Kind
	}
	switch c.protocol() {
	case ProtocolMQTT:
		return KeepAliveMQTT
	case ProtocolWebSocket:
		return KeepAliveWebSocket
	}
	return KeepAliveTCPProbe
}

// mqttVersion returns the effective MQTT protocol level.
func (c *DialConfig) mqttVersion() uint8 {
	if c.MQTT.Version == 0 {
		return 4
	}
	return c.MQTT.Version
}

// Validate reports the first bad field, named relative to the channel
// ("endpoint: …", "mqtt.subscriptions[1].filter: …",
// "keepalive.reply_mask: 3 bytes, reply has 2").
func (c *DialConfig) Validate() error {
	e := c.Endpoint
	if _, err := ParseEndpoint(e.String()); err != nil || e.Scheme == "" {
		if err == nil {
			err = errors.New("missing")
		}
		return fmt.Errorf("endpoint: %w", err)
	}
	if e.Port == 0 {
		return errors.New("endpoint: port 0")
	}
	p := c.protocol()
	if p >= numProtocol {
		return fmt.Errorf("protocol: %v is not a protocol", p)
	}
	scheme := e.Scheme
	switch {
	case (scheme == "ws" || scheme == "wss") != (p == ProtocolWebSocket):
		return fmt.Errorf("protocol: %v does not run on %s:// (ws and wss carry websocket)", p, scheme)
	case (scheme == "mqtt" || scheme == "mqtts") != (p == ProtocolMQTT):
		return fmt.Errorf("protocol: %v does not run on %s:// (mqtt and mqtts carry mqtt)", p, scheme)
	}
	if c.TLS != nil {
		if !e.TLS() {
			return fmt.Errorf("tls: set for %s://, which has no TLS (use wss or mqtts)", scheme)
		}
		if err := c.TLS.validate(); err != nil {
			return fmt.Errorf("tls.%w", err)
		}
	}
	if err := c.validateKeepAlive(p); err != nil {
		return err
	}
	if c.Hello != "" && p != ProtocolLine {
		return fmt.Errorf("hello: only the line protocol has a greeting, not %v", p)
	}
	if strings.ContainsAny(c.Hello, "\r\n") {
		return errors.New("hello: has a newline")
	}
	if c.LineKeepAlive != nil {
		if p != ProtocolLine {
			return fmt.Errorf("line_keepalive: set for protocol %v", p)
		}
		if len(c.LineKeepAlive) == 0 || len(c.LineKeepAlive) > MaxAppKeepAlive {
			return fmt.Errorf("line_keepalive: %d bytes outside 1..%d", len(c.LineKeepAlive), MaxAppKeepAlive)
		}
		if strings.ContainsAny(string(c.LineKeepAlive), "\n") {
			return errors.New("line_keepalive: has a newline (the line's end is added)")
		}
	}
	if c.RawKeepAlive != nil {
		if p != ProtocolRaw {
			return fmt.Errorf("raw_keepalive: set for protocol %v", p)
		}
		if len(c.RawKeepAlive) == 0 || len(c.RawKeepAlive) > MaxAppKeepAlive {
			return fmt.Errorf("raw_keepalive: %d bytes outside 1..%d", len(c.RawKeepAlive), MaxAppKeepAlive)
		}
	}
	if p == ProtocolMQTT {
		if err := c.MQTT.validate(); err != nil {
			return fmt.Errorf("mqtt.%w", err)
		}
	} else if c.MQTT.Version != 0 || c.MQTT.ClientID != "" || c.MQTT.KeepAlive != 0 || len(c.MQTT.Subscriptions) > 0 || c.MQTT.Username != "" || c.MQTT.Password != "" {
		return fmt.Errorf("mqtt: set for protocol %v", p)
	}
	return nil
}

func (c *DialConfig) validateKeepAlive(p Protocol) error {
	k := c.KeepAlive
	kind := c.keepAliveKind()
	if kind >= numKeepAliveKind {
		return fmt.Errorf("keepalive.kind: %v is not a keep-alive kind", kind)
	}
	if k.Probe > offload.ProbeOneByte {
		return fmt.Errorf("keepalive.probe: %v is not a probe form", k.Probe)
	}
	if kind == KeepAliveWebSocket && p != ProtocolWebSocket {
		return fmt.Errorf("keepalive.kind: websocket needs protocol websocket, not %v", p)
	}
	if kind == KeepAliveMQTT && p != ProtocolMQTT {
		return fmt.Errorf("keepalive.kind: mqtt needs protocol mqtt, not %v", p)
	}
	if kind == KeepAlivePayload && p == ProtocolWebSocket {
		return errors.New("keepalive.kind: payload bytes cannot be a WebSocket keep-alive (frames are masked); use websocket")
	}
	if k.WSMode != 0 && kind != KeepAliveWebSocket {
		return fmt.Errorf("keepalive.ws_mode: set for kind %v", kind)
	}
	if k.WSMode > offload.WSResponder {
		return fmt.Errorf("keepalive.ws_mode: %v is not a WebSocket mode", k.WSMode)
	}
	if kind != KeepAlivePayload {
		if k.Request != nil || k.Reply != nil || k.ReplyMask != nil {
			return fmt.Errorf("keepalive.request: set for kind %v (only payload takes request, reply, reply_mask)", kind)
		}
		return nil
	}
	if len(k.Request) == 0 || len(k.Request) > offload.MaxPayload {
		return fmt.Errorf("keepalive.request: %d bytes outside 1..%d", len(k.Request), offload.MaxPayload)
	}
	if len(k.Reply) == 0 || len(k.Reply) > offload.MaxPayload {
		return fmt.Errorf("keepalive.reply: %d bytes outside 1..%d", len(k.Reply), offload.MaxPayload)
	}
	if len(k.ReplyMask) != 0 && len(k.ReplyMask) != len(k.Reply) {
		return fmt.Errorf("keepalive.reply_mask: %d bytes, reply has %d", len(k.ReplyMask), len(k.Reply))
	}
	if p == ProtocolLine {
		// The line reader recognises a reply as one whole line.
		for _, f := range []struct {
			name string
			b    []byte
		}{{"request", k.Request}, {"reply", k.Reply}} {
			if bytes.IndexByte(f.b, '\n') != len(f.b)-1 {
				return fmt.Errorf("keepalive.%s: a line protocol keep-alive is one line ending in \\n", f.name)
			}
		}
		if len(k.ReplyMask) > 0 && k.ReplyMask[len(k.ReplyMask)-1] != 0xff {
			return errors.New("keepalive.reply_mask: the reply's newline must be matched (last mask byte ff)")
		}
	}
	return nil
}

func (t *TLSConfig) validate() error {
	if t.CAFile != "" {
		if _, err := os.Stat(t.CAFile); err != nil {
			return fmt.Errorf("ca_file: %w", err)
		}
	}
	if t.ServerName != "" && strings.ContainsAny(t.ServerName, " /:\x00") {
		return fmt.Errorf("server_name: %q is not a host name", t.ServerName)
	}
	okVersion := func(v uint16) bool { return v == 0 || v == tls.VersionTLS12 || v == tls.VersionTLS13 }
	if !okVersion(t.MinVersion) {
		return fmt.Errorf("min_version: %#04x: want TLS 1.2 (0x0303) or 1.3 (0x0304)", t.MinVersion)
	}
	if !okVersion(t.MaxVersion) {
		return fmt.Errorf("max_version: %#04x: want TLS 1.2 (0x0303) or 1.3 (0x0304)", t.MaxVersion)
	}
	if t.MinVersion != 0 && t.MaxVersion != 0 && t.MinVersion > t.MaxVersion {
		return fmt.Errorf("min_version: %#04x above max_version %#04x", t.MinVersion, t.MaxVersion)
	}
	return nil
}

func (m *MQTTConfig) validate() error {
	if m.Version != 0 && m.Version != 4 && m.Version != 5 {
		return fmt.Errorf("version: %d: want 4 (3.1.1) or 5 (5.0)", m.Version)
	}
	if err := mqttString("client_id", m.ClientID, MaxClientID); err != nil {
		return err
	}
	if m.ClientID == "" && !m.CleanStart {
		return errors.New("client_id: empty needs clean_start (the server assigns one)")
	}
	if m.KeepAlive < time.Second || m.KeepAlive > 65535*time.Second || m.KeepAlive%time.Second != 0 {
		return fmt.Errorf("keepalive: %v: want whole seconds 1s..65535s", m.KeepAlive)
	}
	if err := mqttString("username", m.Username, MaxCredential); err != nil {
		return err
	}
	if len(m.Password) > MaxCredential {
		return fmt.Errorf("password: %d bytes above %d", len(m.Password), MaxCredential)
	}
	if m.Password != "" && m.Username == "" && m.Version != 5 {
		return errors.New("password: MQTT 3.1.1 needs a username with a password")
	}
	if len(m.Subscriptions) > MaxSubscriptions {
		return fmt.Errorf("subscriptions: %d above %d", len(m.Subscriptions), MaxSubscriptions)
	}
	for i, s := range m.Subscriptions {
		if err := validTopicFilter(s.Filter); err != nil {
			return fmt.Errorf("subscriptions[%d].filter: %w", i, err)
		}
		if s.QoS > 1 {
			return fmt.Errorf("subscriptions[%d].qos: %d: want 0 or 1", i, s.QoS)
		}
	}
	return nil
}

func mqttString(field, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%s: %d bytes above %d", field, len(s), limit)
	}
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%s: not UTF-8 without NUL", field)
	}
	return nil
}

// validTopicFilter checks an MQTT topic filter (MQTT 3.1.1 §4.7): not
// empty, UTF-8 without NUL, '#' only as the last level on its own, '+'
// only as a whole level.
func validTopicFilter(f string) error {
	if f == "" {
		return errors.New("empty")
	}
	if err := mqttString("filter", f, MaxTopicFilter); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "filter: "))
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("%q: '#' must be the whole last level", f)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("%q: '+' must be a whole level", f)
		}
	}
	return nil
}
