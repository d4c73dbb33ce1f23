package offload

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Kind is the kind of keep-alive a slot sends. The zero value is invalid.
type Kind uint8

const (
	kindInvalid Kind = iota
	// KindTCPProbe sends the RFC 1122 keep-alive: an ACK with
	// SEQ = SND.NXT−1 and zero or one garbage byte. The reply is the
	// peer's ACK (SEQ = RCV.NXT, ACK = SND.NXT, no payload).
	KindTCPProbe
	// KindPayload sends application bytes (e.g. MQTT PINGREQ) and expects
	// a reply matching bytes under a mask (PINGRESP).
	KindPayload
	// KindWebSocket sends the RFC 6455 client keep-alive (see WSMode).
	KindWebSocket
	numKind
)

var kindNames = [numKind]string{
	kindInvalid:   "invalid",
	KindTCPProbe:  "tcp-probe",
	KindPayload:   "payload",
	KindWebSocket: "websocket",
}

func (k Kind) String() string {
	if k < numKind {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ProbeForm is the form of a TCP keep-alive probe. The zero value is the
// zero-byte form (Linux); ProbeOneByte sends one garbage byte (Windows).
// Some stacks ignore one of the forms, so both exist.
type ProbeForm uint8

const (
	ProbeZeroByte ProbeForm = iota
	ProbeOneByte
	numProbeForm
)

var probeNames = [numProbeForm]string{ProbeZeroByte: "zero-byte", ProbeOneByte: "one-byte"}

func (p ProbeForm) String() string {
	if p < numProbeForm {
		return probeNames[p]
	}
	return fmt.Sprintf("probe(%d)", uint8(p))
}

// WSMode is the role of a WebSocket keep-alive (the client side of RFC
// 6455). Every mode answers the server's Pings with a masked Pong carrying
// the same payload. The zero value is invalid.
type WSMode uint8

const (
	wsModeInvalid WSMode = iota
	// WSPing sends a masked Ping with Payload and expects a Pong with the
	// same payload.
	WSPing
	// WSPong sends an unsolicited masked Pong with Payload, which expects
	// no reply: liveness is the TCP ACK of the Pong's bytes.
	WSPong
	// WSResponder sends no WebSocket frame of its own: the server drives
	// the keep-alive with Pings, which are answered, and the slot checks
	// liveness with TCP probes of the spec's Probe form.
	WSResponder
	numWSMode
)

var wsModeNames = [numWSMode]string{
	wsModeInvalid: "invalid",
	WSPing:        "ping",
	WSPong:        "pong",
	WSResponder:   "responder",
}

func (m WSMode) String() string {
	if m < numWSMode {
		return wsModeNames[m]
	}
	return fmt.Sprintf("wsmode(%d)", uint8(m))
}

// Spec is what a slot sends and expects, and when.
type Spec struct {
	Kind Kind
	// Interval is the time between keep-alives.
	Interval time.Duration
	// FirstDue is when the first keep-alive after Arm is due, counted from
	// the arming; 0 means Interval. A host that re-arms a slot at every
	// standby entry passes the time left in the connection's keep-alive
	// schedule, so the schedule runs on across the host's wakes instead
	// of restarting at each entry.
	FirstDue time.Duration
	// RetryInterval is how long to wait for a reply before a retry, and
	// after the last retry before the peer is declared dead.
	RetryInterval time.Duration
	// RetryCount is the number of retries after the first keep-alive of
	// a cycle went unanswered.
	RetryCount int
	// Tolerance is how early a keep-alive may go out to share a batch
	// (a radio wake-up) with another slot's.
	Tolerance time.Duration

	// Probe is the probe form of KindTCPProbe and of WSResponder.
	Probe ProbeForm
	// Payload is the request and expected reply of KindPayload.
	Payload PayloadSpec
	// WebSocket is the keep-alive of KindWebSocket.
	WebSocket WebSocketSpec
}

// PayloadSpec is an application-level keep-alive: Request is sent as is;
// a reply of exactly len(Reply) bytes with got[i]&Mask[i] ==
// Reply[i]&Mask[i] for every i is absorbed (an empty Mask means all ones).
// Example (MQTT): Request c0 00 (PINGREQ), Reply d0 00 (PINGRESP).
type PayloadSpec struct {
	Request   []byte
	Reply     []byte
	ReplyMask []byte
	// Seq, when Len > 0, numbers the keep-alives: a little-endian counter
	// of Len bytes at Offset of each Request sent, Start on the first and
	// one more on each (nl80211 NL80211_WOWLAN_TCP_DATA_PAYLOAD_SEQ).
	Seq PayloadSeq
	// Tokens, when Len > 0, puts the next Len bytes of Stream at Offset
	// of each Request sent; when no whole token is left the slot wakes
	// the host with ReasonNoTokens (nl80211 ..._DATA_PAYLOAD_TOKEN,
	// NL80211_WOWLAN_TRIG_WAKEUP_TCP_NOMORETOKENS).
	Tokens PayloadTokens
}

// PayloadSeq is a sequence number written into each payload keep-alive.
type PayloadSeq struct {
	Offset, Len int // Len 0 (none) or 1–4 bytes
	Start       uint32
}

// PayloadTokens are tokens written into successive payload keep-alives.
type PayloadTokens struct {
	Offset, Len int // Len 0 (none) or 1–MaxPayload bytes
	Stream      []byte
}

// MaxTokenStream bounds PayloadTokens.Stream.
const MaxTokenStream = 4096

// WebSocketSpec is an RFC 6455 client keep-alive.
type WebSocketSpec struct {
	Mode WSMode
	// Payload is the application data of the Ping or Pong the slot sends
	// (at most MaxControlPayload bytes; may be empty).
	Payload []byte
}

// Spec limits. Intervals are in seconds so tests run quickly; real
// deployments use minutes (Windows: 15–1439 min, Android: 10–3600 s).
const (
	MinInterval       = time.Second
	MaxInterval       = 24 * time.Hour
	MinRetryInterval  = 100 * time.Millisecond
	MaxRetryCount     = 16
	MaxPayload        = 512 // bytes of a payload keep-alive request or reply
	MaxControlPayload = 125 // RFC 6455 §5.5
)

// ErrInvalidSpec is wrapped by every error of Spec.Validate and ParseSpec.
var ErrInvalidSpec = errors.New("invalid spec")

func specErr(field string, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidSpec, field, fmt.Sprintf(format, args...))
}

// Validate reports the first field of s outside its limits, naming the
// field, the value and the limit.
func (s *Spec) Validate() error {
	if s.Kind == kindInvalid || s.Kind >= numKind {
		return specErr("Kind", "%v is not a keep-alive kind", s.Kind)
	}
	if s.Interval < MinInterval || s.Interval > MaxInterval {
		return specErr("Interval", "%v outside %v..%v", s.Interval, MinInterval, MaxInterval)
	}
	if s.FirstDue < 0 || s.FirstDue > s.Interval {
		return specErr("FirstDue", "%v outside 0..Interval (%v)", s.FirstDue, s.Interval)
	}
	if s.RetryInterval < MinRetryInterval || s.RetryInterval > s.Interval {
		return specErr("RetryInterval", "%v outside %v..Interval (%v)", s.RetryInterval, MinRetryInterval, s.Interval)
	}
	if s.RetryCount < 0 || s.RetryCount > MaxRetryCount {
		return specErr("RetryCount", "%d outside 0..%d", s.RetryCount, MaxRetryCount)
	}
	if s.Tolerance < 0 || s.Tolerance > s.Interval/2 {
		return specErr("Tolerance", "%v outside 0..Interval/2 (%v)", s.Tolerance, s.Interval/2)
	}
	if s.Probe >= numProbeForm {
		return specErr("Probe", "%v is not a probe form", s.Probe)
	}
	p, ws := &s.Payload, &s.WebSocket
	if s.Kind != KindPayload && (p.Request != nil || p.Reply != nil || p.ReplyMask != nil || p.Seq != (PayloadSeq{}) || p.Tokens.Len != 0 || p.Tokens.Stream != nil) {
		return specErr("Payload", "set for kind %v", s.Kind)
	}
	if s.Kind != KindWebSocket && (ws.Mode != wsModeInvalid || ws.Payload != nil) {
		return specErr("WebSocket", "set for kind %v", s.Kind)
	}
	switch s.Kind {
	case KindPayload:
		if len(p.Request) == 0 || len(p.Request) > MaxPayload {
			return specErr("Payload.Request", "%d bytes outside 1..%d", len(p.Request), MaxPayload)
		}
		if len(p.Reply) == 0 || len(p.Reply) > MaxPayload {
			return specErr("Payload.Reply", "%d bytes outside 1..%d", len(p.Reply), MaxPayload)
		}
		if len(p.ReplyMask) != 0 && len(p.ReplyMask) != len(p.Reply) {
			return specErr("Payload.ReplyMask", "%d bytes, want 0 or len(Reply) = %d", len(p.ReplyMask), len(p.Reply))
		}
		if err := p.validateFields(); err != nil {
			return err
		}
	case KindWebSocket:
		if ws.Mode == wsModeInvalid || ws.Mode >= numWSMode {
			return specErr("WebSocket.Mode", "%v is not a WebSocket mode", ws.Mode)
		}
		if len(ws.Payload) > MaxControlPayload {
			return specErr("WebSocket.Payload", "%d bytes above %d (control frame)", len(ws.Payload), MaxControlPayload)
		}
		if ws.Mode == WSResponder && ws.Payload != nil {
			return specErr("WebSocket.Payload", "set for mode %v, which sends no frame of its own", ws.Mode)
		}
	}
	return nil
}

// sendLen returns the stream bytes one keep-alive of s puts on the wire
// (0 for probes, which repeat an acknowledged byte).
func (s *Spec) sendLen() int {
	switch s.Kind {
	case KindPayload:
		return len(s.Payload.Request)
	case KindWebSocket:
		if s.WebSocket.Mode != WSResponder {
			return wsClientHeaderLen(len(s.WebSocket.Payload)) + len(s.WebSocket.Payload)
		}
	}
	return 0
}

// specJSON is the JSON form of Spec: durations as Go duration strings,
// enums as names, bytes as hex.
type specJSON struct {
	Kind          string         `json:"kind"`
	Interval      string         `json:"interval"`
	FirstDue      string         `json:"first_due,omitempty"`
	RetryInterval string         `json:"retry_interval"`
	RetryCount    int            `json:"retry_count"`
	Tolerance     string         `json:"tolerance,omitempty"`
	Probe         string         `json:"probe,omitempty"`
	Payload       *payloadJSON   `json:"payload,omitempty"`
	WebSocket     *websocketJSON `json:"websocket,omitempty"`
}

type payloadJSON struct {
	Request   string      `json:"request"`
	Reply     string      `json:"reply"`
	ReplyMask string      `json:"reply_mask,omitempty"`
	Seq       *seqJSON    `json:"seq,omitempty"`
	Tokens    *tokensJSON `json:"tokens,omitempty"`
}

type seqJSON struct {
	Offset int    `json:"offset"`
	Len    int    `json:"len"`
	Start  uint32 `json:"start,omitempty"`
}

type tokensJSON struct {
	Offset int    `json:"offset"`
	Len    int    `json:"len"`
	Stream string `json:"stream"`
}

type websocketJSON struct {
	Mode    string `json:"mode"`
	Payload string `json:"payload,omitempty"`
}

// ParseSpec decodes and validates the JSON form of a Spec, e.g.
//
//	{"kind":"payload","interval":"30s","retry_interval":"3s","retry_count":3,
//	 "tolerance":"1s","payload":{"request":"c000","reply":"d000"}}
//
// first_due (a duration, default: the interval) and tolerance may be left
// out.
//
// Decoding is strict: unknown fields, duplicate documents, and values that
// do not parse are errors naming the field.
func ParseSpec(b []byte) (Spec, error) {
	var j specJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return Spec{}, fmt.Errorf("%w: %v", ErrInvalidSpec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Spec{}, fmt.Errorf("%w: data after the JSON object", ErrInvalidSpec)
	}
	var s Spec
	var err error
	if s.Kind, err = parseName("kind", j.Kind, kindNames[1:], KindTCPProbe); err != nil {
		return Spec{}, err
	}
	if s.Interval, err = parseDuration("interval", j.Interval, true); err != nil {
		return Spec{}, err
	}
	if s.FirstDue, err = parseDuration("first_due", j.FirstDue, false); err != nil {
		return Spec{}, err
	}
	if s.RetryInterval, err = parseDuration("retry_interval", j.RetryInterval, true); err != nil {
		return Spec{}, err
	}
	if s.Tolerance, err = parseDuration("tolerance", j.Tolerance, false); err != nil {
		return Spec{}, err
	}
	s.RetryCount = j.RetryCount
	if j.Probe != "" {
		if s.Probe, err = parseName("probe", j.Probe, probeNames[:], ProbeZeroByte); err != nil {
			return Spec{}, err
		}
	}
	if j.Payload != nil {
		if s.Payload.Request, err = parseHex("payload.request", j.Payload.Request); err != nil {
			return Spec{}, err
		}
		if s.Payload.Reply, err = parseHex("payload.reply", j.Payload.Reply); err != nil {
			return Spec{}, err
		}
		if j.Payload.ReplyMask != "" {
			if s.Payload.ReplyMask, err = parseHex("payload.reply_mask", j.Payload.ReplyMask); err != nil {
				return Spec{}, err
			}
		}
		if q := j.Payload.Seq; q != nil {
			s.Payload.Seq = PayloadSeq{Offset: q.Offset, Len: q.Len, Start: q.Start}
		}
		if tk := j.Payload.Tokens; tk != nil {
			s.Payload.Tokens = PayloadTokens{Offset: tk.Offset, Len: tk.Len}
			if s.Payload.Tokens.Stream, err = parseHex("payload.tokens.stream", tk.Stream); err != nil {
				return Spec{}, err
			}
		}
	}
	if j.WebSocket != nil {
		if s.WebSocket.Mode, err = parseName("websocket.mode", j.WebSocket.Mode, wsModeNames[1:], WSPing); err != nil {
			return Spec{}, err
		}
		if j.WebSocket.Payload != "" {
			if s.WebSocket.Payload, err = parseHex("websocket.payload", j.WebSocket.Payload); err != nil {
				return Spec{}, err
			}
		}
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// MarshalJSON encodes s in the form ParseSpec reads.
func (s Spec) MarshalJSON() ([]byte, error) {
	j := specJSON{
		Kind:          s.Kind.String(),
		Interval:      s.Interval.String(),
		RetryInterval: s.RetryInterval.String(),
		RetryCount:    s.RetryCount,
	}
	if s.FirstDue != 0 {
		j.FirstDue = s.FirstDue.String()
	}
	if s.Tolerance != 0 {
		j.Tolerance = s.Tolerance.String()
	}
	if s.Probe != ProbeZeroByte {
		j.Probe = s.Probe.String()
	}
	if s.Kind == KindPayload {
		j.Payload = &payloadJSON{
			Request:   hex.EncodeToString(s.Payload.Request),
			Reply:     hex.EncodeToString(s.Payload.Reply),
			ReplyMask: hex.EncodeToString(s.Payload.ReplyMask),
		}
		if q := s.Payload.Seq; q != (PayloadSeq{}) {
			j.Payload.Seq = &seqJSON{Offset: q.Offset, Len: q.Len, Start: q.Start}
		}
		if tk := s.Payload.Tokens; tk.Len != 0 || tk.Offset != 0 || tk.Stream != nil {
			j.Payload.Tokens = &tokensJSON{Offset: tk.Offset, Len: tk.Len, Stream: hex.EncodeToString(tk.Stream)}
		}
	}
	if s.Kind == KindWebSocket {
		j.WebSocket = &websocketJSON{Mode: s.WebSocket.Mode.String(), Payload: hex.EncodeToString(s.WebSocket.Payload)}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes s with ParseSpec.
func (s *Spec) UnmarshalJSON(b []byte) error {
	v, err := ParseSpec(b)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

func parseName[T ~uint8](field, v string, names []string, base T) (T, error) {
	for i, n := range names {
		if v == n {
			return base + T(i), nil
		}
	}
	return 0, specErr(field, "%q is not one of %q", v, names)
}

func parseDuration(field, v string, required bool) (time.Duration, error) {
	if v == "" {
		if required {
			return 0, specErr(field, "missing")
		}
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, specErr(field, "%q is not a duration", v)
	}
	return d, nil
}

func parseHex(field, v string) ([]byte, error) {
	b, err := hex.DecodeString(v)
	if err != nil {
		return nil, specErr(field, "%q is not hex", v)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// validateFields checks the sequence number and token fields of p.
func (p *PayloadSpec) validateFields() error {
	q, tk := &p.Seq, &p.Tokens
	if q.Len < 0 || q.Len > 4 {
		return specErr("Payload.Seq.Len", "%d outside 0..4", q.Len)
	}
	if q.Len == 0 && (q.Offset != 0 || q.Start != 0) {
		return specErr("Payload.Seq", "offset or start set with length 0")
	}
	if q.Len > 0 && (q.Offset < 0 || q.Offset+q.Len > len(p.Request)) {
		return specErr("Payload.Seq.Offset", "%d+%d outside the %d-byte request", q.Offset, q.Len, len(p.Request))
	}
	if tk.Len < 0 || tk.Len > MaxPayload {
		return specErr("Payload.Tokens.Len", "%d outside 0..%d", tk.Len, MaxPayload)
	}
	if tk.Len == 0 {
		if tk.Offset != 0 || tk.Stream != nil {
			return specErr("Payload.Tokens", "offset or stream set with length 0")
		}
		return nil
	}
	if tk.Offset < 0 || tk.Offset+tk.Len > len(p.Request) {
		return specErr("Payload.Tokens.Offset", "%d+%d outside the %d-byte request", tk.Offset, tk.Len, len(p.Request))
	}
	if n := len(tk.Stream); n < tk.Len || n > MaxTokenStream || n%tk.Len != 0 {
		return specErr("Payload.Tokens.Stream", "%d bytes: want whole %d-byte tokens, at most %d bytes", n, tk.Len, MaxTokenStream)
	}
	if q.Len > 0 && q.Offset < tk.Offset+tk.Len && tk.Offset < q.Offset+q.Len {
		return specErr("Payload.Tokens.Offset", "token bytes %d..%d overlap the sequence number's %d..%d", tk.Offset, tk.Offset+tk.Len, q.Offset, q.Offset+q.Len)
	}
	return nil
}
