package nic

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/profile"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// ControlClient speaks the control API over the NIC daemon's Unix socket.
// Its methods mirror the endpoints; a refusal of the server is returned
// as a *ControlError carrying the server's message. It is safe for
// concurrent use.
type ControlClient struct {
	path string
	tr   *http.Transport
	hc   *http.Client
}

// ControlError is an error response of the control API.
type ControlError struct {
	// Status is the HTTP status; Code the API's error code ("no_slot",
	// "forbidden", "too_large", …, see docs/control-api.md).
	Status  int
	Code    string
	Message string
	// Field names the request field at fault and Limit the limit it
	// broke, when the server said.
	Field, Limit string
	// Slot is the slot a conflict is with (Code "already_armed").
	Slot SlotID
	// Profile, PartCode and PartNum are a firmware profile's own refusal
	// (Code "refused"): "android-apf", "ERROR_INSUFFICIENT_RESOURCES", −32.
	Profile, PartCode string
	PartNum           int
}

func (e *ControlError) Error() string {
	return fmt.Sprintf("nic control: %d %s: %s", e.Status, e.Code, e.Message)
}

// Is lets errors.Is match the device's sentinels through the socket:
// ErrNoSlot, ErrArmed, ErrState, ErrUnknownSlot, ErrLimit,
// profile.ErrRefused (a firmware profile's refusal) and os.ErrPermission
// (refused for the caller's credentials).
func (e *ControlError) Is(target error) bool {
	switch target {
	case ErrNoSlot:
		return e.Code == codeNoSlot || e.Code == codeRefused && e.Field == "slots"
	case profile.ErrRefused:
		return e.Code == codeRefused
	case ErrArmed:
		return e.Code == codeArmed
	case ErrState:
		return e.Code == codeState
	case ErrUnknownSlot:
		return e.Code == codeUnknownSlot
	case ErrLimit:
		return e.Code == codeLimit || e.Code == codeNoSlot || e.Code == codeTooLarge
	case os.ErrPermission:
		return e.Code == codeForbidden
	}
	return false
}

// DialControl returns a client of the control socket at path. It connects
// once to report a missing or refusing socket now rather than at the
// first call.
func DialControl(path string) (*ControlClient, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial nic control: %w", err)
	}
	c.Close()
	d := net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:           4,
		IdleConnTimeout:        time.Minute,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &ControlClient{path: path, tr: tr, hc: &http.Client{Transport: tr}}, nil
}

// Close releases the client's idle connections. It is idempotent.
func (c *ControlClient) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

// maxResponse bounds a response body the client reads (metrics of 64
// slots are ~100 KiB).
const maxResponse = 16 << 20

// do sends a request with an optional JSON body and decodes a JSON reply
// into out (nil: discard). It returns the raw body for non-JSON replies.
func (c *ControlClient) do(ctx context.Context, method, path string, in, out any) ([]byte, error) {
	b, _, err := c.doH(ctx, method, path, in, out)
	return b, err
}

// doH is do that also returns the reply's headers.
func (c *ControlClient) doH(ctx context.Context, method, path string, in, out any) ([]byte, http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, nil, fmt.Errorf("nic control %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://nic"+path, body)
	if err != nil {
		return nil, nil, fmt.Errorf("nic control %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("nic control %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, resp.Header, fmt.Errorf("nic control %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return nil, resp.Header, responseError(resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, resp.Header, fmt.Errorf("nic control %s %s: decode reply: %w", method, path, err)
		}
	}
	return b, resp.Header, nil
}

func responseError(status int, b []byte) error {
	var e struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error == nil {
		return &ControlError{Status: status, Code: "http", Message: strings.TrimSpace(string(b))}
	}
	ce := &ControlError{Status: status, Code: e.Error.Code, Message: e.Error.Message, Field: e.Error.Field, Limit: e.Error.Limit, Slot: e.Error.Slot}
	if r := e.Error.Refusal; r != nil {
		ce.Profile, ce.PartCode, ce.PartNum = r.Profile, r.Name, r.Num
	}
	return ce
}

// ControlCapabilities is the reply of GET /v1/capabilities.
type ControlCapabilities struct {
	Device   Capabilities
	Patterns wp.Capabilities
	// MaxBody is the largest request body in bytes, MaxStreams the wake
	// streams the server allows at once, WakeHistory the wakes it holds,
	// Group the control group (0: root only), MaxConns the connections
	// it takes at once, ReadTimeout the time it gives a request's
	// headers and body.
	MaxBody     int64
	MaxStreams  int
	WakeHistory int
	Group       int
	MaxConns    int
	ReadTimeout time.Duration
	// Instance identifies the control server: another value after a
	// reconnection means the NIC daemon restarted (slots and leases gone).
	Instance string
}

// Capabilities returns the device's and the API's limits.
func (c *ControlClient) Capabilities(ctx context.Context) (ControlCapabilities, error) {
	var j capsJSON
	if _, err := c.do(ctx, "GET", "/v1/capabilities", nil, &j); err != nil {
		return ControlCapabilities{}, err
	}
	rt, _ := time.ParseDuration(j.API.ReadTimeout) // absent from older servers: 0
	return ControlCapabilities{
		Device: Capabilities{Slots: j.Slots, WakePacketSave: j.WakePacketSave, PostWakeFrames: j.PostWakeFrames,
			ARPOffloads: j.ARPOffloads, NSOffloads: j.NSOffloads, MaxFrame: j.MaxFrame},
		Patterns: wp.Capabilities(j.Patterns),
		MaxBody:  j.API.MaxBody, MaxStreams: j.API.MaxStreams, WakeHistory: j.API.WakeHistory, Group: j.API.Group,
		MaxConns: j.API.MaxConns, ReadTimeout: rt, Instance: j.API.Instance,
	}, nil
}

// WhoAmI returns the credentials the server read for this client's
// connection (false when it could not read them) and whether they may
// control the device.
func (c *ControlClient) WhoAmI(ctx context.Context) (cred Cred, known, control bool, err error) {
	var j whoamiJSON
	if _, err := c.do(ctx, "GET", "/v1/whoami", nil, &j); err != nil {
		return Cred{}, false, false, err
	}
	return Cred{PID: j.PID, UID: j.UID, GID: j.GID, Groups: j.Groups}, j.Known, j.Control, nil
}

// Metrics returns the Prometheus text of the device and the API.
func (c *ControlClient) Metrics(ctx context.Context) ([]byte, error) {
	return c.do(ctx, "GET", "/metrics", nil, nil)
}

// Power returns the device's power state.
func (c *ControlClient) Power(ctx context.Context) (PowerState, error) {
	var j powerJSON
	if _, err := c.do(ctx, "GET", "/v1/power", nil, &j); err != nil {
		return 0, err
	}
	return parsePowerState(j.State)
}

// Prefilter returns the D3 prefilter attached to the wire port, and false
// when none is (see Device.Prefilter).
func (c *ControlClient) Prefilter(ctx context.Context) (PrefilterInfo, bool, error) {
	var j powerStatusJSON
	if _, err := c.do(ctx, "GET", "/v1/power", nil, &j); err != nil {
		return PrefilterInfo{}, false, err
	}
	if j.Prefilter == nil {
		return PrefilterInfo{}, false, nil
	}
	l, err := wp.ParseBPFLevel(j.Prefilter.Level)
	if err != nil {
		return PrefilterInfo{}, false, fmt.Errorf("prefilter: %w", err)
	}
	return PrefilterInfo{Level: l, Instructions: j.Prefilter.Instructions}, true, nil
}

// SetPower moves the device to D3 (Sleep), Waking (Wake) or D0 (Resume,
// waking it first from D3) and returns the state it is in then.
func (c *ControlClient) SetPower(ctx context.Context, s PowerState) (PowerState, error) {
	var j powerJSON
	if _, err := c.do(ctx, "PUT", "/v1/power", powerJSON{State: s.String()}, &j); err != nil {
		return 0, err
	}
	return parsePowerState(j.State)
}

func parsePowerState(v string) (PowerState, error) {
	for i, n := range stateNames {
		if n == v && i != int(stateInvalid) {
			return PowerState(i), nil
		}
	}
	return 0, fmt.Errorf("nic control: unknown power state %q", v)
}

// SlotStatus is an armed slot as GET /v1/slots reports it. Owner, Label,
// Conn, Spec and Armed are known for slots armed through the API (Owner
// is -1 otherwise).
type SlotStatus struct {
	ID             SlotID
	Owner          int64
	Lease          string // the lease it is held under ("": none)
	Label          string
	Conn           wp.TCPConn
	Spec           offload.Spec
	Armed          time.Time
	State          offload.State
	Status         offload.Status
	Counters       offload.Counters
	DeviceCounters map[string]uint64
}

func (j *slotJSON) status() (SlotStatus, error) {
	s := SlotStatus{ID: j.ID, Owner: -1, Lease: j.Lease, Label: j.Label, Counters: j.Counters, DeviceCounters: j.DeviceCounters}
	if j.Owner != nil {
		s.Owner = *j.Owner
	}
	if j.Conn != nil {
		c, err := j.Conn.conn("conn.")
		if err != nil {
			return s, err
		}
		s.Conn = c
	}
	if j.Spec != nil {
		s.Spec = *j.Spec
	}
	if j.Armed != nil {
		s.Armed = *j.Armed
	}
	var err error
	if s.State, err = parseEnum[offload.State]("state", j.State); err != nil {
		return s, err
	}
	if s.Status, err = parseEnum[offload.Status]("status", j.Status); err != nil {
		return s, err
	}
	return s, nil
}

// parseEnum finds the value of a uint8 enum whose String is v.
func parseEnum[T interface {
	~uint8
	String() string
}](field, v string) (T, error) {
	for i := 1; i < 256; i++ {
		if T(i).String() == v {
			return T(i), nil
		}
	}
	return 0, fmt.Errorf("nic control: %s %q unknown", field, v)
}

// Slots returns the armed slots.
func (c *ControlClient) Slots(ctx context.Context) ([]SlotStatus, error) {
	return c.slots(ctx, "/v1/slots")
}

// LeaseSlots returns the slots held under the lease owner.
func (c *ControlClient) LeaseSlots(ctx context.Context, owner string) ([]SlotStatus, error) {
	return c.slots(ctx, "/v1/slots?lease="+url.QueryEscape(owner))
}

func (c *ControlClient) slots(ctx context.Context, path string) ([]SlotStatus, error) {
	var j struct {
		Slots []slotJSON `json:"slots"`
	}
	if _, err := c.do(ctx, "GET", path, nil, &j); err != nil {
		return nil, err
	}
	out := make([]SlotStatus, 0, len(j.Slots))
	for i := range j.Slots {
		s, err := j.Slots[i].status()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Slot returns one armed slot.
func (c *ControlClient) Slot(ctx context.Context, id SlotID) (SlotStatus, error) {
	var j slotJSON
	if _, err := c.do(ctx, "GET", fmt.Sprintf("/v1/slots/%d", id), nil, &j); err != nil {
		return SlotStatus{}, err
	}
	return j.status()
}

// armRequest is the client's form of the POST /v1/slots body.
type armRequest struct {
	Pattern  connJSON     `json:"pattern"`
	Spec     offload.Spec `json:"spec"`
	Snapshot snapshotJSON `json:"snapshot"`
	Label    string       `json:"label,omitempty"`
	Lease    string       `json:"lease,omitempty"`
}

// Arm arms a slot; s.Owner is sent as the slot's label (at most
// MaxLabel bytes). The slot's owner is the caller's uid. A connection a
// slot already guards is refused with a *ControlError matching ErrArmed
// whose Slot names that slot.
func (c *ControlClient) Arm(ctx context.Context, s SlotConfig) (SlotID, error) {
	return c.ArmLeased(ctx, s, "")
}

// ArmLeased arms a slot held under the caller's lease owner ("": none):
// when the lease ends the NIC disarms it (see RenewLease).
func (c *ControlClient) ArmLeased(ctx context.Context, s SlotConfig, owner string) (SlotID, error) {
	req := armRequest{Pattern: connToJSON(s.Pattern), Spec: s.Spec, Snapshot: snapshotToJSON(&s.Snapshot), Label: s.Owner, Lease: owner}
	var j slotJSON
	if _, err := c.do(ctx, "POST", "/v1/slots", req, &j); err != nil {
		return 0, err
	}
	return j.ID, nil
}

// Disarm disarms a slot and returns its final report, books included.
func (c *ControlClient) Disarm(ctx context.Context, id SlotID) (offload.Report, error) {
	var j struct {
		Report reportJSON `json:"report"`
	}
	if _, err := c.do(ctx, "DELETE", fmt.Sprintf("/v1/slots/%d", id), nil, &j); err != nil {
		return offload.Report{}, err
	}
	return j.Report.report()
}

func (j *reportJSON) report() (offload.Report, error) {
	r := offload.Report{Counters: j.Counters, SndNxt: j.SndNxt, SndUna: j.SndUna, RcvNxt: j.RcvNxt, TSRecent: j.TSRecent,
		Books: offload.Books{Sent: j.Books.Sent, Absorbed: j.Books.Absorbed}}
	var err error
	if r.State, err = parseEnum[offload.State]("state", j.State); err != nil {
		return r, err
	}
	if r.Status, err = parseEnum[offload.Status]("status", j.Status); err != nil {
		return r, err
	}
	if j.LastKeepAlive != "" {
		if r.LastKeepAlive, err = time.ParseDuration(j.LastKeepAlive); err != nil {
			return r, fmt.Errorf("nic control: last_keep_alive %q: %w", j.LastKeepAlive, err)
		}
	}
	for _, e := range j.Books.Entries {
		dir, err := parseEnum[offload.Dir]("books dir", e.Dir)
		if err != nil {
			return r, err
		}
		at, err := time.ParseDuration(e.At)
		if err != nil {
			return r, fmt.Errorf("nic control: books at %q: %w", e.At, err)
		}
		r.Books.Entries = append(r.Books.Entries, offload.Entry{Dir: dir, Seq: e.Seq, Len: e.Len, At: at})
	}
	return r, nil
}

func (j *wakeJSON) record() (WakeRecord, error) {
	r := WakeRecord{Seq: j.Seq, Owner: -1, Saved: j.Saved,
		Event: WakeEvent{Slot: j.Slot, Pattern: j.Pattern, Len: j.Len}}
	var err error
	if r.Event.Reason, err = parseEnum[WakeReason]("reason", j.Reason); err != nil {
		return r, err
	}
	if r.Event.At, err = time.ParseDuration(j.At); err != nil {
		return r, fmt.Errorf("nic control: wake at %q: %w", j.At, err)
	}
	if j.RxTime != nil {
		r.Event.RxTime = *j.RxTime
	}
	if j.Owner != nil {
		r.Owner = *j.Owner
	}
	return r, nil
}

// Wakes returns the held wake events with Seq > since, oldest first, and
// the Seq the next wake will get.
func (c *ControlClient) Wakes(ctx context.Context, since uint64) ([]WakeRecord, uint64, error) {
	var j struct {
		Wakes []wakeJSON `json:"wakes"`
		Next  uint64     `json:"next"`
	}
	if _, err := c.do(ctx, "GET", "/v1/wakes?since="+strconv.FormatUint(since, 10), nil, &j); err != nil {
		return nil, 0, err
	}
	out := make([]WakeRecord, 0, len(j.Wakes))
	for i := range j.Wakes {
		r, err := j.Wakes[i].record()
		if err != nil {
			return nil, 0, err
		}
		out = append(out, r)
	}
	return out, j.Next, nil
}

// WakePacket returns the saved packet of wake seq as a pcap file.
func (c *ControlClient) WakePacket(ctx context.Context, seq uint64) ([]byte, error) {
	return c.do(ctx, "GET", fmt.Sprintf("/v1/wakes/%d/packet", seq), nil, nil)
}

// WakeStream is an open GET /v1/wakes/stream.
type WakeStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
	// Instance is the control server's instance (InstanceHeader).
	Instance string
}

// StreamWakes opens the wake stream: the server first replays the held
// wakes with Seq > since (0: all it holds), then sends each new one. To
// start at the next wake pass the next seq minus one from Wakes. It ends
// when ctx ends, the stream is closed, or the server goes.
func (c *ControlClient) StreamWakes(ctx context.Context, since uint64) (*WakeStream, error) {
	return c.StreamWakesLeased(ctx, since, "")
}

// StreamWakesLeased is StreamWakes bound to the caller's lease owner
// ("": none): while the stream is open the lease does not expire, and
// its period starts when the stream closes.
func (c *ControlClient) StreamWakesLeased(ctx context.Context, since uint64, owner string) (*WakeStream, error) {
	path := "/v1/wakes/stream?since=" + strconv.FormatUint(since, 10)
	if owner != "" {
		path += "&lease=" + url.QueryEscape(owner)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://nic"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("nic control GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("nic control GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		return nil, responseError(resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), 64<<10)
	return &WakeStream{body: resp.Body, sc: sc, Instance: resp.Header.Get(InstanceHeader)}, nil
}

// Next blocks for the next wake. It returns io.EOF when the server ended
// the stream.
func (s *WakeStream) Next() (WakeRecord, error) {
	for s.sc.Scan() {
		line := bytes.TrimSpace(s.sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var j wakeJSON
		if err := json.Unmarshal(line, &j); err != nil {
			return WakeRecord{}, fmt.Errorf("nic control: wake stream: %w", err)
		}
		return j.record()
	}
	if err := s.sc.Err(); err != nil {
		return WakeRecord{}, fmt.Errorf("nic control: wake stream: %w", err)
	}
	return WakeRecord{}, io.EOF
}

// Close ends the stream. It is idempotent.
func (s *WakeStream) Close() error {
	s.body.Close()
	return nil
}

// Lease is a lease as the control API reports it (lease.go).
type Lease struct {
	Owner string
	UID   uint32
	// PID is the process that renewed it last.
	PID     int32
	Period  time.Duration
	Granted time.Time
	Renewed time.Time
	// Expires is when it ends unless renewed; zero while a wake stream
	// holds it.
	Expires  time.Time
	Streams  int
	Renewals uint64
	Slots    []SlotID
	// Created (RenewLease) says the server granted it anew: a lease the
	// caller thought it held had ended, or the NIC restarted.
	Created bool
	// TakenOverFrom is the pid that held it before this renewal, when
	// another one did (a host's new instance taking over).
	TakenOverFrom int32
	// Instance is the control server's instance that answered.
	Instance string
}

func (j *leaseJSON) lease(instance string) (Lease, error) {
	l := Lease{Owner: j.Owner, UID: j.UID, PID: j.PID, Granted: j.Granted, Renewed: j.Renewed, Streams: j.Streams,
		Renewals: j.Renewals, Slots: j.Slots, Created: j.Created, TakenOverFrom: j.TakenOverFrom, Instance: instance}
	if j.Expires != nil {
		l.Expires = *j.Expires
	}
	var err error
	if l.Period, err = time.ParseDuration(j.Period); err != nil {
		return l, fmt.Errorf("nic control: lease period %q: %w", j.Period, err)
	}
	return l, nil
}

// RenewLease takes the lease owner for the caller's uid, or renews it,
// for period (0: DefaultLeasePeriod for a new lease, the lease's own
// for a renewal). Renew it well within the period
// (a third of it, as a DHCP client renews at half its lease): when the
// period passes with no renewal and no wake stream bound
// (StreamWakesLeased), the NIC disarms the lease's slots and returns to
// D0.
func (c *ControlClient) RenewLease(ctx context.Context, owner string, period time.Duration) (Lease, error) {
	req := leaseReqJSON{Owner: owner}
	if period != 0 {
		req.Period = period.String()
	}
	var j leaseJSON
	_, h, err := c.doH(ctx, "PUT", "/v1/lease", req, &j)
	if err != nil {
		return Lease{}, err
	}
	return j.lease(h.Get(InstanceHeader))
}

// Leases returns the leases held, by owner.
func (c *ControlClient) Leases(ctx context.Context) ([]Lease, error) {
	var j struct {
		Leases []leaseJSON `json:"leases"`
	}
	_, h, err := c.doH(ctx, "GET", "/v1/leases", nil, &j)
	if err != nil {
		return nil, err
	}
	out := make([]Lease, 0, len(j.Leases))
	for i := range j.Leases {
		l, err := j.Leases[i].lease(h.Get(InstanceHeader))
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// LeaseRelease is what releasing a lease did: the slots disarmed (with
// their final reports) and the power state before and after.
type LeaseRelease struct {
	Owner    string
	Disarmed []ReleasedSlot
	From     PowerState
	Power    PowerState
}

// ReleasedSlot is a slot disarmed because its lease ended.
type ReleasedSlot struct {
	ID     SlotID
	Label  string
	Report offload.Report
	// Err is set when the NIC failed to disarm it cleanly.
	Err string
}

// ReleaseLease ends the lease owner now: the NIC disarms its slots and
// returns to D0, as when a lease expires. A host that starts clears a
// previous instance's lease with it.
func (c *ControlClient) ReleaseLease(ctx context.Context, owner string) (LeaseRelease, error) {
	var j leaseEnd
	if _, err := c.do(ctx, "DELETE", "/v1/leases/"+url.PathEscape(owner), nil, &j); err != nil {
		return LeaseRelease{}, err
	}
	out := LeaseRelease{Owner: j.Owner}
	var err error
	if out.From, err = parsePowerState(j.From); err != nil {
		return out, err
	}
	if out.Power, err = parsePowerState(j.Power); err != nil {
		return out, err
	}
	for _, d := range j.Disarmed {
		rep, err := d.Report.report()
		if err != nil {
			return out, err
		}
		out.Disarmed = append(out.Disarmed, ReleasedSlot{ID: d.ID, Label: d.Label, Report: rep, Err: d.Error})
	}
	return out, nil
}

// AddPattern adds an extra wake pattern; the caller owns it.
func (c *ControlClient) AddPattern(ctx context.Context, p wp.Pattern) error {
	_, err := c.do(ctx, "POST", "/v1/patterns", p, nil)
	return err
}

// RemovePattern removes the extra wake pattern id.
func (c *ControlClient) RemovePattern(ctx context.Context, id uint32) error {
	_, err := c.do(ctx, "DELETE", fmt.Sprintf("/v1/patterns/%d", id), nil, nil)
	return err
}

// Patterns returns the extra wake patterns added through the API.
func (c *ControlClient) Patterns(ctx context.Context) ([]wp.Pattern, error) {
	var j struct {
		Patterns []struct {
			Pattern json.RawMessage `json:"pattern"`
		} `json:"patterns"`
	}
	if _, err := c.do(ctx, "GET", "/v1/patterns", nil, &j); err != nil {
		return nil, err
	}
	out := make([]wp.Pattern, 0, len(j.Patterns))
	for _, p := range j.Patterns {
		q, err := wp.ParsePattern(p.Pattern)
		if err != nil {
			return nil, fmt.Errorf("nic control: %w", err)
		}
		out = append(out, q)
	}
	return out, nil
}

// Track asks the device to learn a connection's TCP state in D0.
func (c *ControlClient) Track(ctx context.Context, conn wp.TCPConn) error {
	_, err := c.do(ctx, "POST", "/v1/track", connToJSON(conn), nil)
	return err
}

// Untrack stops learning a connection.
func (c *ControlClient) Untrack(ctx context.Context, conn wp.TCPConn) error {
	_, err := c.do(ctx, "DELETE", "/v1/track?"+trackValues(conn), nil, nil)
	return err
}

// Learned returns what the device learned of a tracked connection;
// false (and no error) when it is not tracked.
func (c *ControlClient) Learned(ctx context.Context, conn wp.TCPConn) (Learned, bool, error) {
	var j learnedJSON
	_, err := c.do(ctx, "GET", "/v1/track?"+trackValues(conn), nil, &j)
	var ce *ControlError
	if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
		return Learned{}, false, nil
	}
	if err != nil {
		return Learned{}, false, err
	}
	l, err := j.learned()
	return l, err == nil, err
}

func (j *learnedJSON) learned() (Learned, error) {
	conn, err := j.Conn.conn("conn.")
	if err != nil {
		return Learned{}, err
	}
	l := Learned{Conn: conn, SndNxt: j.SndNxt, SndUna: j.SndUna, RcvNxt: j.RcvNxt, HostAck: j.HostAck,
		SndWnd: j.SndWnd, RcvWnd: j.RcvWnd, SndWScale: j.SndWScale, RcvWScale: j.RcvWScale, MSS: j.MSS,
		HasTS: j.HasTS, HostTSval: j.HostTSval, TSRecent: j.TSRecent, TTL: j.TTL, TOS: j.TOS,
		SegmentsOut: j.SegmentsOut, SegmentsIn: j.SegmentsIn, SeenOut: j.SeenOut, SeenIn: j.SeenIn}
	if l.LocalMAC, err = parseMACField("local_mac", j.LocalMAC); err != nil {
		return l, err
	}
	if l.RemoteMAC, err = parseMACField("remote_mac", j.RemoteMAC); err != nil {
		return l, err
	}
	if l.HostTSAt, err = time.ParseDuration(j.HostTSAt); err != nil {
		return l, fmt.Errorf("nic control: host_ts_at %q: %w", j.HostTSAt, err)
	}
	return l, nil
}

// AddCoalescing registers a receive-coalescing filter for a connection.
func (c *ControlClient) AddCoalescing(ctx context.Context, conn wp.TCPConn) error {
	_, err := c.do(ctx, "POST", "/v1/coalescing", connToJSON(conn), nil)
	return err
}

// RemoveCoalescing removes a connection's coalescing filter.
func (c *ControlClient) RemoveCoalescing(ctx context.Context, conn wp.TCPConn) error {
	_, err := c.do(ctx, "DELETE", "/v1/coalescing?"+trackValues(conn), nil, nil)
	return err
}

// Coalescing returns the coalescing filters and their counters.
func (c *ControlClient) Coalescing(ctx context.Context) ([]wp.TCPConn, map[string]uint64, error) {
	var j struct {
		Filters  []connJSON        `json:"filters"`
		Counters map[string]uint64 `json:"counters"`
	}
	if _, err := c.do(ctx, "GET", "/v1/coalescing", nil, &j); err != nil {
		return nil, nil, err
	}
	out := make([]wp.TCPConn, 0, len(j.Filters))
	for _, f := range j.Filters {
		conn, err := f.conn("")
		if err != nil {
			return nil, nil, err
		}
		out = append(out, conn)
	}
	return out, j.Counters, nil
}

// RemoteConfig configures a Remote. Zero fields take defaults.
type RemoteConfig struct {
	// Timeout bounds each call (default 10 s).
	Timeout time.Duration
	// WakeBuffer is the capacity of the Wakes channel (default 64); when
	// it is full a wake is dropped and counted (Remote.WakesDropped).
	WakeBuffer int
	// Retry is the longest pause between reconnections of the wake
	// stream (default 2 s; the first is 50 ms, doubling).
	Retry time.Duration
	// Logger receives stream errors (default: discard).
	Logger *slog.Logger
	// Lease, when set, holds the Remote's slots under a lease that it
	// renews (see RemoteLease): if the host dies or hangs, the NIC
	// disarms them and returns to D0 by itself.
	Lease *RemoteLease
}

// RemoteLease configures the lease of a Remote.
type RemoteLease struct {
	// Owner names the lease (1–64 bytes of letters, digits, ._:@-;
	// default "host"). Keep it across restarts of the host: a new
	// instance finds its predecessor's lease by it.
	Owner string
	// Period is the lease's period (MinLeasePeriod–MaxLeasePeriod,
	// default DefaultLeasePeriod). The Remote binds its wake stream to
	// the lease and renews it every third of the period; a renewal that
	// fails or times out reports the NIC lost.
	Period time.Duration
	// TakeOver keeps a predecessor's lease and its slots (a host that
	// kept its frozen sockets across a restart). Without it (the
	// default), a predecessor's lease is released: its slots are
	// disarmed and the NIC returns to D0, and so does a NIC left in D3
	// without a lease.
	TakeOver bool
	// KeepOnClose leaves the lease to expire after Close instead of
	// releasing it (a successor will take it over).
	KeepOnClose bool
}

// PreviousLease is what a Remote found of a previous instance at start.
type PreviousLease struct {
	// Found: a lease of the Remote's owner was held. Lease is it as found.
	Found bool
	Lease Lease
	// TookOver: the Remote took it over (RemoteLease.TakeOver); its slots
	// are Lease.Slots. Otherwise Released is what releasing it did.
	TookOver bool
	Released LeaseRelease
	// Resumed: the NIC was found outside D0 and brought back to D0.
	Resumed bool
}

// NICHealth is how a Remote sees its NIC daemon.
type NICHealth struct {
	// Up: the wake stream is open (and the lease renewed).
	Up bool
	// Instance is the control server's instance last seen.
	Instance string
	// Losses counts the nic-lost wakes raised; Restarts the times the
	// NIC came back as another instance (its slots and leases gone).
	Losses, Restarts uint64
	// LostAt is when the last loss was noticed; BackAt when the NIC was
	// last reached again.
	LostAt, BackAt time.Time
}

// Remote is a NIC daemon seen through its control socket with the method
// set of *Device that a host runtime drives (host.NIC): Capabilities,
// Track, Untrack, Learned, Arm, Disarm, AddCoalescing, RemoveCoalescing,
// Sleep, Wake, Resume, Wakes. The host passes it where it passes a
// *Device. Each call is one request bounded by RemoteConfig.Timeout;
// Wakes is fed by a wake stream that reconnects (resuming after the last
// seq seen) until Close. Events from the stream carry no packet (fetch
// it with ControlClient.WakePacket).
//
// A Remote watches its NIC: when the wake stream ends (the daemon exited
// or restarted), a lease renewal fails, or the NIC turns out to have
// ended the lease (restarted, or the host was silent for a period), it
// sends a wake of reason WakeNICLost on Wakes, once per loss, and counts
// it (Health). The host then knows its slots are gone, or soon will be:
// it thaws its frozen sockets from what it knows. When the NIC is reached
// again, Back's channel closes (a new one is made at the next loss) and
// Health says whether it is another instance; the host arms again then.
type Remote struct {
	c       *ControlClient
	timeout time.Duration
	caps    Capabilities
	log     *slog.Logger
	wakes   chan WakeEvent
	retry   time.Duration
	lease   *RemoteLease // normalized copy; nil: none
	prev    PreviousLease

	mu      sync.Mutex
	dropped uint64
	lastSeq uint64
	health  NICHealth
	back    chan struct{} // closed while up

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Remote returns the client as a host-drivable device. It reads the
// capabilities, settles a previous instance's lease when cfg.Lease is
// set (see RemoteLease) and takes its own, and opens the wake stream
// before it returns; the stream starts at the next wake.
func (c *ControlClient) Remote(cfg *RemoteConfig) (*Remote, error) {
	var rc RemoteConfig
	if cfg != nil {
		rc = *cfg
	}
	if rc.Timeout == 0 {
		rc.Timeout = 10 * time.Second
	}
	if rc.WakeBuffer == 0 {
		rc.WakeBuffer = 64
	}
	if rc.Retry == 0 {
		rc.Retry = 2 * time.Second
	}
	if rc.Timeout < 0 || rc.WakeBuffer < 0 || rc.Retry < 0 {
		return nil, errors.New("nic remote: negative timeout, wake buffer or retry")
	}
	if rc.Logger == nil {
		rc.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Remote{c: c, timeout: rc.Timeout, log: rc.Logger, wakes: make(chan WakeEvent, rc.WakeBuffer), retry: rc.Retry,
		back: make(chan struct{})}
	close(r.back)
	if rc.Lease != nil {
		l := *rc.Lease
		if l.Owner == "" {
			l.Owner = "host"
		}
		if err := checkLeaseOwner("lease owner", l.Owner); err != nil {
			return nil, fmt.Errorf("nic remote: %w", err)
		}
		if l.Period == 0 {
			l.Period = DefaultLeasePeriod
		}
		if l.Period < MinLeasePeriod || l.Period > MaxLeasePeriod {
			return nil, fmt.Errorf("nic remote: lease period %v outside %v..%v", l.Period, MinLeasePeriod, MaxLeasePeriod)
		}
		r.lease = &l
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	fail := func(err error) (*Remote, error) {
		r.cancel()
		return nil, fmt.Errorf("nic remote: %w", err)
	}
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return fail(err)
	}
	r.caps = caps.Device
	r.health = NICHealth{Up: true, Instance: caps.Instance, BackAt: time.Now()}
	if r.lease != nil {
		if err := r.startLease(ctx); err != nil {
			return fail(err)
		}
	}
	_, next, err := c.Wakes(ctx, 0)
	if err != nil {
		return fail(err)
	}
	r.lastSeq = next - 1
	st, err := c.StreamWakesLeased(r.ctx, r.lastSeq, r.leaseOwner()) // a wake since Wakes above is replayed
	if err != nil {
		return fail(err)
	}
	r.wg.Add(1)
	go r.run(st)
	if r.lease != nil {
		r.wg.Add(1)
		go r.renewLoop()
	}
	return r, nil
}

func (r *Remote) leaseOwner() string {
	if r.lease == nil {
		return ""
	}
	return r.lease.Owner
}

// startLease settles a previous instance's lease and takes the Remote's.
func (r *Remote) startLease(ctx context.Context) error {
	ls, err := r.c.Leases(ctx)
	if err != nil {
		return err
	}
	for _, l := range ls {
		if l.Owner == r.lease.Owner {
			r.prev.Found, r.prev.Lease = true, l
		}
	}
	if r.prev.Found && !r.lease.TakeOver {
		rel, err := r.c.ReleaseLease(ctx, r.lease.Owner)
		if err != nil {
			return fmt.Errorf("release the previous instance's lease %q: %w", r.lease.Owner, err)
		}
		r.prev.Released = rel
		r.prev.Resumed = rel.From != D0 && rel.Power == D0
		r.log.Warn("nic: cleared the previous instance's lease", "owner", r.lease.Owner, "pid", r.prev.Lease.PID,
			"slots_disarmed", len(rel.Disarmed), "from", rel.From, "power", rel.Power)
	}
	if !r.lease.TakeOver {
		st, err := r.c.Power(ctx)
		if err != nil {
			return err
		}
		if st != D0 {
			if _, err := r.c.SetPower(ctx, D0); err != nil {
				return fmt.Errorf("bring the NIC from %v to D0: %w", st, err)
			}
			r.prev.Resumed = true
			r.log.Warn("nic: found outside D0 at start, brought back to D0", "was", st)
		}
	}
	l, err := r.c.RenewLease(ctx, r.lease.Owner, r.lease.Period)
	if err != nil {
		return err
	}
	if r.prev.Found && r.lease.TakeOver {
		r.prev.TookOver = true
		r.log.Info("nic: took over the previous instance's lease", "owner", l.Owner, "slots", l.Slots, "previous_pid", l.TakenOverFrom)
	}
	return nil
}

// PreviousLease returns what the Remote found of a previous instance's
// lease when it started.
func (r *Remote) PreviousLease() PreviousLease { return r.prev }

// Health returns how the Remote sees its NIC now.
func (r *Remote) Health() NICHealth {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.health
}

// Back returns a channel that is closed while the NIC is up: at once if
// it is, else when it is reached again after a loss.
func (r *Remote) Back() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.back
}

// lost records a loss of the NIC and sends a nic-lost wake, once per
// loss; the send waits for room in Wakes (in a goroutine of the Remote's,
// until Close) so that it is never dropped.
func (r *Remote) lost(why string, err error) {
	r.mu.Lock()
	if !r.health.Up || r.ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	r.health.Up = false
	r.health.Losses++
	r.health.LostAt = time.Now()
	r.back = make(chan struct{})
	r.mu.Unlock()
	r.log.Warn("nic lost", "why", why, "err", err)
	ev := WakeEvent{Reason: WakeNICLost}
	select {
	case r.wakes <- ev:
		return
	default:
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case r.wakes <- ev:
		case <-r.ctx.Done():
		}
	}()
}

// reached records that the NIC answered as instance; a NIC that comes
// back as another instance lost everything it held.
func (r *Remote) reached(instance string) {
	r.mu.Lock()
	restarted := instance != "" && r.health.Instance != "" && instance != r.health.Instance
	up := r.health.Up
	r.mu.Unlock()
	if restarted && up {
		// Not noticed as lost (it came back between two looks): its
		// slots are gone all the same.
		r.lost("the NIC restarted", nil)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if restarted {
		r.health.Restarts++
		r.log.Warn("nic back as a new instance: its slots and leases are gone", "was", r.health.Instance, "now", instance)
	}
	if instance != "" {
		r.health.Instance = instance
	}
	if !r.health.Up {
		r.health.Up = true
		r.health.BackAt = time.Now()
		close(r.back)
		r.log.Info("nic back", "instance", r.health.Instance)
	}
}

// run feeds Wakes from the stream, reconnecting until Close.
func (r *Remote) run(st *WakeStream) {
	defer r.wg.Done()
	pause := 50 * time.Millisecond
	for {
		if st != nil {
			for {
				rec, err := st.Next()
				if err != nil {
					if r.ctx.Err() == nil {
						r.log.Warn("nic wake stream ended", "err", err)
						r.lost("the wake stream ended", err)
					}
					break
				}
				pause = 50 * time.Millisecond
				r.deliver(rec)
			}
			st.Close()
			st = nil
		}
		t := time.NewTimer(pause)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pause = min(pause*2, r.retry)
		var err error
		if st, err = r.reconnect(); err != nil {
			st = nil
			if r.ctx.Err() == nil {
				r.log.Warn("nic wake stream reconnect failed", "err", err)
			}
			continue
		}
		r.reached(st.Instance)
	}
}

// reconnect opens the stream after the last wake seen (taking the lease
// again first: a restarted NIC has none). A server that restarted numbers
// its wakes from 1 again: when its next seq is not past the last one
// seen, or its instance changed, every wake it holds is new.
func (r *Remote) reconnect() (*WakeStream, error) {
	ctx, cancel := r.call()
	defer cancel()
	caps, err := r.c.Capabilities(ctx)
	if err != nil {
		return nil, err
	}
	if r.lease != nil {
		if _, err := r.c.RenewLease(ctx, r.lease.Owner, r.lease.Period); err != nil {
			return nil, err
		}
	}
	_, next, err := r.c.Wakes(ctx, 0)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if next <= r.lastSeq || (caps.Instance != "" && caps.Instance != r.health.Instance) {
		r.log.Warn("nic wake numbering restarted: the control server restarted", "last", r.lastSeq, "next", next)
		r.lastSeq = 0
	}
	since := r.lastSeq
	r.mu.Unlock()
	return r.c.StreamWakesLeased(r.ctx, since, r.leaseOwner())
}

// renewLoop renews the lease every third of its period. A renewal that
// fails reports the NIC lost; one that finds the lease granted anew (the
// NIC ended it: the host was silent for a period, or the NIC restarted)
// reports the loss too, for the slots under it are gone.
func (r *Remote) renewLoop() {
	defer r.wg.Done()
	every := r.lease.Period / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(r.ctx, min(r.timeout, r.lease.Period/2))
		l, err := r.c.RenewLease(ctx, r.lease.Owner, r.lease.Period)
		cancel()
		if r.ctx.Err() != nil {
			return
		}
		var ce *ControlError
		switch {
		case errors.As(err, &ce):
			r.log.Error("nic lease renewal refused", "owner", r.lease.Owner, "err", err)
		case err != nil:
			r.lost("lease renewal failed", err)
		case l.Created:
			r.lost("the NIC had ended the lease", nil)
			r.reached(l.Instance)
		default:
			r.reached(l.Instance)
		}
	}
}

func (r *Remote) deliver(rec WakeRecord) {
	r.mu.Lock()
	if rec.Seq <= r.lastSeq {
		r.mu.Unlock()
		return // replayed after a reconnection
	}
	r.lastSeq = rec.Seq
	r.mu.Unlock()
	select {
	case r.wakes <- rec.Event:
	default:
		r.mu.Lock()
		r.dropped++
		r.mu.Unlock()
	}
}

// WakesDropped returns the wakes dropped because Wakes was full.
func (r *Remote) WakesDropped() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// Close stops the wake stream and the lease renewals, releases the lease
// (unless RemoteLease.KeepOnClose: the NIC disarms what is still armed
// under it and returns to D0) and the client's connections. It does not
// close the ControlClient. It is idempotent.
func (r *Remote) Close() error {
	var err error
	r.closeOnce.Do(func() {
		r.cancel()
		r.wg.Wait()
		if r.lease != nil && !r.lease.KeepOnClose {
			ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
			defer cancel()
			if _, e := r.c.ReleaseLease(ctx, r.lease.Owner); e != nil && !isCode(e, codeNotFound) {
				err = fmt.Errorf("nic remote: release lease %q: %w", r.lease.Owner, e)
			}
		}
	})
	return err
}

func isCode(err error, code string) bool {
	var ce *ControlError
	return errors.As(err, &ce) && ce.Code == code
}

func (r *Remote) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.ctx, r.timeout)
}

// Capabilities returns the device's limits, read when the Remote was made.
func (r *Remote) Capabilities() Capabilities { return r.caps }

// Track asks the device to learn a connection's TCP state in D0.
func (r *Remote) Track(c wp.TCPConn) error {
	ctx, cancel := r.call()
	defer cancel()
	return r.c.Track(ctx, c)
}

// Untrack stops learning a connection.
func (r *Remote) Untrack(c wp.TCPConn) error {
	ctx, cancel := r.call()
	defer cancel()
	return r.c.Untrack(ctx, c)
}

// Learned returns what the device learned of a tracked connection; false
// when it is not tracked or the call failed (logged).
func (r *Remote) Learned(c wp.TCPConn) (Learned, bool) {
	ctx, cancel := r.call()
	defer cancel()
	l, ok, err := r.c.Learned(ctx, c)
	if err != nil {
		r.log.Warn("nic learned failed", "err", err)
		return Learned{}, false
	}
	return l, ok
}

// Arm arms a slot (s.Owner becomes its label), under the Remote's lease
// when it has one; a NIC that no longer holds the lease (it restarted,
// or ended it) is given it again first.
func (r *Remote) Arm(s SlotConfig) (SlotID, error) {
	ctx, cancel := r.call()
	defer cancel()
	id, err := r.c.ArmLeased(ctx, s, r.leaseOwner())
	var ce *ControlError
	if r.lease != nil && errors.As(err, &ce) && ce.Code == codeNotFound && ce.Field == "lease" {
		l, lerr := r.c.RenewLease(ctx, r.lease.Owner, r.lease.Period)
		if lerr != nil {
			return 0, err
		}
		if l.Created { // the slots armed under the old lease are gone
			r.lost("the NIC had ended the lease", nil)
		}
		r.reached(l.Instance)
		return r.c.ArmLeased(ctx, s, r.lease.Owner)
	}
	return id, err
}

// LeaseSlots returns the slots the NIC holds under the Remote's lease
// (none without a lease): after Back, a NIC of the same instance may
// still hold slots armed before the loss, which the host disarms (their
// reports carry the books) or keeps.
func (r *Remote) LeaseSlots() ([]SlotStatus, error) {
	if r.lease == nil {
		return nil, nil
	}
	ctx, cancel := r.call()
	defer cancel()
	return r.c.LeaseSlots(ctx, r.lease.Owner)
}

// Disarm disarms a slot and returns its report.
func (r *Remote) Disarm(id SlotID) (offload.Report, error) {
	ctx, cancel := r.call()
	defer cancel()
	return r.c.Disarm(ctx, id)
}

// AddCoalescing registers a receive-coalescing filter.
func (r *Remote) AddCoalescing(c wp.TCPConn) error {
	ctx, cancel := r.call()
	defer cancel()
	return r.c.AddCoalescing(ctx, c)
}

// RemoveCoalescing removes a receive-coalescing filter.
func (r *Remote) RemoveCoalescing(c wp.TCPConn) error {
	ctx, cancel := r.call()
	defer cancel()
	return r.c.RemoveCoalescing(ctx, c)
}

// Sleep puts the device in D3.
func (r *Remote) Sleep() error { return r.power(D3, D3) }

// Wake wakes the device from D3 on the host's behalf; like
// Device.Wake it fails (ErrState) unless the device is in D3.
func (r *Remote) Wake() error {
	ctx, cancel := r.call()
	defer cancel()
	st, err := r.c.Power(ctx)
	if err != nil {
		return err
	}
	if st != D3 {
		return fmt.Errorf("wake: %w: in %v, want D3", ErrState, st)
	}
	_, err = r.c.SetPower(ctx, Waking)
	return err
}

// Resume returns the device to D0 (waking it first if it is in D3).
func (r *Remote) Resume() error { return r.power(D0, D0) }

func (r *Remote) power(to, want PowerState) error {
	ctx, cancel := r.call()
	defer cancel()
	got, err := r.c.SetPower(ctx, to)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("set power %v: %w: in %v", to, ErrState, got)
	}
	return nil
}

// Wakes delivers the device's wake events (without packets).
func (r *Remote) Wakes() <-chan WakeEvent { return r.wakes }
