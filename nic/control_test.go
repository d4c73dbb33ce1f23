package nic_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/gopacket/pcapgo"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/nic/porttest"
	"github.com/standbynic/standbynic/offload"
	wp "github.com/standbynic/standbynic/wakepattern"
)

var (
	rootCred  = nic.Cred{PID: 1, UID: 0, GID: 0}
	ctlGroup  = uint32(27)
	userCred  = nic.Cred{PID: 100, UID: 1000, GID: 1000}                             // not in the group
	aliceCred = nic.Cred{PID: 101, UID: 1001, GID: 1001, Groups: []uint32{ctlGroup}} // member
	bobCred   = nic.Cred{PID: 102, UID: 1002, GID: ctlGroup}                         // member (primary)
)

// ctl is a device behind a control server on a real Unix socket; the
// credentials of each accepted connection are injected (who) through the
// listener's path.
type ctl struct {
	*rig
	api  *nic.ControlServer
	path string
	who  atomic.Pointer[nic.Cred] // nil: credentials unreadable
	// db is the group database the server consults: uid → member of
	// the control group; a uid absent is unknown to it.
	db atomic.Pointer[map[uint32]bool]
}

func newCtl(t *testing.T, slots int, mod func(*nic.ControlConfig)) *ctl {
	t.Helper()
	return newCtlDev(t, func(c *nic.Config) { c.Capabilities.Slots = slots }, mod)
}

// newCtlDev is newCtl with the device's configuration set by devMod.
func newCtlDev(t *testing.T, devMod func(*nic.Config), mod func(*nic.ControlConfig)) *ctl {
	t.Helper()
	r := newRig(t, devMod)
	dir, err := os.MkdirTemp("", "nicctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &ctl{rig: r, path: filepath.Join(dir, "nic.sock")}
	root := rootCred
	c.who.Store(&root)
	cfg := &nic.ControlConfig{Group: int(ctlGroup)}
	nic.SetPeerCred(cfg, func(net.Conn) (*nic.Cred, error) {
		p := c.who.Load()
		if p == nil {
			return nil, errors.New("no credentials")
		}
		cp := *p
		return &cp, nil
	})
	nic.SetGroupMember(cfg, func(uid, gid uint32) (bool, bool) {
		m := c.db.Load()
		if m == nil || gid != ctlGroup {
			return false, false
		}
		member, known := (*m)[uid]
		return member, known
	})
	if mod != nil {
		mod(cfg)
	}
	c.api = nic.NewControlServer(r.dev, cfg)
	if err := c.api.ListenUnix(c.path, 0o660, -1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.api.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// as returns a client whose connections carry cred (nil: unreadable).
// Clients are used one identity at a time: the credentials are read when
// a connection is accepted.
func (c *ctl) as(cred *nic.Cred) *nic.ControlClient {
	c.t.Helper()
	c.who.Store(cred)
	cl, err := nic.DialControl(c.path)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// raw sends a request as root and returns the status, the decoded error
// (if any) and the body.
func (c *ctl) raw(method, path, body string) (int, *nic.ControlError, []byte, http.Header) {
	c.t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", c.path)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://nic"+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: waitFor}).Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	var e struct {
		Error *struct {
			Status                      int
			Code, Message, Field, Limit string
		} `json:"error"`
	}
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &e); err != nil || e.Error == nil {
			c.t.Fatalf("%s %s: %d with a body that is not a JSON error: %q", method, path, resp.StatusCode, b)
		}
		if e.Error.Status != resp.StatusCode {
			c.t.Errorf("%s %s: error status %d in a %d response", method, path, e.Error.Status, resp.StatusCode)
		}
		return resp.StatusCode, &nic.ControlError{Status: e.Error.Status, Code: e.Error.Code, Message: e.Error.Message, Field: e.Error.Field, Limit: e.Error.Limit}, b, resp.Header
	}
	return resp.StatusCode, nil, b, resp.Header
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return c
}

// slotConfig is a slot for the test connection with the given host port.
func slotConfig(port uint16) nic.SlotConfig {
	s := snapshot()
	s.Local = netip.AddrPortFrom(hostIP, port)
	return nic.SlotConfig{Pattern: wp.TCPConn{Local: s.Local, Remote: s.Remote}, Spec: probeSpec(), Snapshot: s, Owner: "mail"}
}

var addrCmp = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

func TestControlEndpoints(t *testing.T) {
	c := newCtl(t, 4, nil)
	cl := c.as(&rootCred)
	cx := ctx(t)

	caps, err := cl.Capabilities(cx)
	if err != nil {
		t.Fatal(err)
	}
	wantCaps := nic.ControlCapabilities{Device: c.dev.Capabilities(), Patterns: c.dev.PatternCapabilities(),
		MaxBody: nic.DefaultMaxBody, MaxStreams: nic.DefaultMaxStreams, WakeHistory: nic.DefaultWakeHistory, Group: int(ctlGroup),
		MaxConns: nic.DefaultMaxConns, ReadTimeout: nic.DefaultReadTimeout, Instance: caps.Instance}
	if len(caps.Instance) != 16 {
		t.Errorf("instance %q, want 16 hex digits", caps.Instance)
	}
	if diff := cmp.Diff(wantCaps, caps); diff != "" {
		t.Errorf("Capabilities (-want +got):\n%s", diff)
	}
	if cred, known, control, err := cl.WhoAmI(cx); err != nil || !known || !control || cred.UID != 0 || cred.PID != 1 {
		t.Errorf("WhoAmI = %+v known %v control %v, %v; want root, control", cred, known, control, err)
	}
	if st, err := cl.Power(cx); err != nil || st != nic.D0 {
		t.Errorf("Power = %v, %v; want D0", st, err)
	}
	if pf, ok, err := cl.Prefilter(cx); err != nil || ok {
		t.Errorf("Prefilter in D0 = %+v, %v, %v; want none", pf, ok, err)
	}

	// Track: learn from forwarded segments, read it back.
	if err := cl.Track(cx, conn); err != nil {
		t.Fatal(err)
	}
	send(t, c.host, tcpFrame(t, fromHost(hostISN, peerISN, "")))
	c.recv(c.srv)
	send(t, c.srv, tcpFrame(t, fromPeer(peerISN, hostISN, "")))
	c.recv(c.host)
	l, ok, err := cl.Learned(cx, conn)
	if err != nil || !ok {
		t.Fatalf("Learned = %v, %v", ok, err)
	}
	want, _ := c.dev.Learned(conn)
	if diff := cmp.Diff(want, l, addrCmp); diff != "" {
		t.Errorf("Learned (-want +got):\n%s", diff)
	}

	// Arm, list, status.
	cfg := nic.SlotConfig{Pattern: conn, Spec: probeSpec(), Snapshot: snapshot(), Owner: "mail"}
	id, err := cl.Arm(cx, cfg)
	if err != nil || id != 1 {
		t.Fatalf("Arm = %d, %v; want slot 1", id, err)
	}
	slots, err := cl.Slots(cx)
	if err != nil || len(slots) != 1 {
		t.Fatalf("Slots = %+v, %v", slots, err)
	}
	st, err := cl.Slot(cx, id)
	if err != nil {
		t.Fatal(err)
	}
	wantSt := nic.SlotStatus{ID: 1, Owner: 0, Label: "mail", Conn: conn, Spec: probeSpec(), State: offload.StateArmed,
		Status: offload.StatusNormal, DeviceCounters: map[string]uint64{"rx_frames": 0, "rx_absorbed": 0, "rx_dropped": 0, "wakes": 0}}
	ignore := cmpopts.IgnoreFields(nic.SlotStatus{}, "Armed", "Counters")
	if diff := cmp.Diff(wantSt, st, addrCmp, ignore); diff != "" {
		t.Errorf("Slot (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(slots[0], st, addrCmp, ignore); diff != "" {
		t.Errorf("Slots[0] vs Slot (-want +got):\n%s", diff)
	}
	if st.Armed.IsZero() {
		t.Error("Slot.Armed is zero")
	}

	// Extra pattern.
	magic := wp.Pattern{ID: 7, Kind: wp.KindMagic, Magic: wp.Magic{MAC: hostMAC}}
	if err := cl.AddPattern(cx, magic); err != nil {
		t.Fatal(err)
	}
	ps, err := cl.Patterns(cx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]wp.Pattern{magic}, ps, addrCmp, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Patterns (-want +got):\n%s", diff)
	}

	// Coalescing filters.
	other := wp.TCPConn{Local: netip.AddrPortFrom(hostIP, 41000), Remote: peerAP}
	if err := cl.AddCoalescing(cx, other); err != nil {
		t.Fatal(err)
	}
	filters, counters, err := cl.Coalescing(cx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]wp.TCPConn{other}, filters, addrCmp); diff != "" {
		t.Errorf("Coalescing (-want +got):\n%s", diff)
	}
	if counters["coalesce_filters"] != 1 {
		t.Errorf("coalescing counters %v, want coalesce_filters 1", counters)
	}
	if err := cl.RemoveCoalescing(cx, other); err != nil {
		t.Fatal(err)
	}

	// Sleep, a push wakes the host: stream, list, packet.
	_, next, err := cl.Wakes(cx, 0)
	if err != nil || next != 1 {
		t.Fatalf("Wakes next = %d, %v; want 1", next, err)
	}
	stream, err := cl.StreamWakes(cx, next-1)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if st, err := cl.SetPower(cx, nic.D3); err != nil || st != nic.D3 {
		t.Fatalf("SetPower(D3) = %v, %v", st, err)
	}
	if pf, ok, err := cl.Prefilter(cx); err != nil || !ok || pf != mustPrefilter(t, c.dev) || pf.Level != wp.BPFExact {
		t.Errorf("Prefilter in D3 = %+v, %v, %v; want the device's, exact", pf, ok, err)
	}
	push := tcpFrame(t, fromPeer(peerISN, hostISN, "push!"))
	send(t, c.srv, push)
	rec, err := stream.Next()
	if err != nil {
		t.Fatal(err)
	}
	wantRec := nic.WakeRecord{Seq: 1, Event: nic.WakeEvent{Reason: nic.WakeData, Slot: 1, Len: len(push)}, Owner: 0, Saved: len(push)}
	ignoreTimes := cmpopts.IgnoreFields(nic.WakeEvent{}, "At", "RxTime")
	if diff := cmp.Diff(wantRec, rec, ignoreTimes); diff != "" {
		t.Errorf("stream wake (-want +got):\n%s", diff)
	}
	if rec.Event.At != c.clock.Now() || rec.Event.RxTime.IsZero() {
		t.Errorf("wake at %v rx %v, want the device clock %v and a receive time", rec.Event.At, rec.Event.RxTime, c.clock.Now())
	}
	recs, next, err := cl.Wakes(cx, 0)
	if err != nil || next != 2 || len(recs) != 1 {
		t.Fatalf("Wakes = %+v next %d, %v", recs, next, err)
	}
	if diff := cmp.Diff(rec, recs[0]); diff != "" {
		t.Errorf("listed wake vs streamed (-want +got):\n%s", diff)
	}
	pcap, err := cl.WakePacket(cx, 1)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := pcapgo.NewReader(bytes.NewReader(pcap))
	if err != nil {
		t.Fatal(err)
	}
	data, ci, err := pr.ReadPacketData()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, push) || ci.Length != len(push) || !ci.Timestamp.Equal(rec.Event.RxTime) {
		t.Errorf("pcap packet %x (len %d at %v), want %x at %v", data, ci.Length, ci.Timestamp, push, rec.Event.RxTime)
	}
	if _, _, err := pr.ReadPacketData(); err != io.EOF {
		t.Errorf("second pcap record: %v, want EOF", err)
	}
	if st, err := cl.Power(cx); err != nil || st != nic.Waking {
		t.Errorf("Power = %v, %v; want waking", st, err)
	}

	// Resume delivers the push; disarm returns the report.
	if st, err := cl.SetPower(cx, nic.D0); err != nil || st != nic.D0 {
		t.Fatalf("SetPower(D0) = %v, %v", st, err)
	}
	if got := c.recv(c.host); !bytes.Equal(got, push) {
		t.Errorf("host got %x after resume, want the push", got)
	}
	rep, err := cl.Disarm(cx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rep.State != offload.StateWoken || rep.Status != offload.StatusDataWaiting || rep.SndNxt != hostISN || rep.RcvNxt != peerISN {
		t.Errorf("Disarm report %+v, want woken/data-waiting at the snapshot's sequence", rep)
	}
	if _, err := cl.Slot(cx, id); !errors.Is(err, nic.ErrUnknownSlot) {
		t.Errorf("Slot after Disarm: %v, want ErrUnknownSlot", err)
	}

	// Host wake from D3 and resume in one PUT; a waking PUT.
	if _, err := cl.SetPower(cx, nic.D3); err != nil {
		t.Fatal(err)
	}
	if st, err := cl.SetPower(cx, nic.Waking); err != nil || st != nic.Waking {
		t.Fatalf("SetPower(waking) = %v, %v", st, err)
	}
	if rec, err := stream.Next(); err != nil || rec.Event.Reason != nic.WakeHost || rec.Seq != 2 || rec.Owner != -1 {
		t.Errorf("stream wake %+v, %v; want seq 2 reason host without owner", rec, err)
	}
	if _, err := cl.WakePacket(cx, 2); !isCode(err, 404, "not_found") {
		t.Errorf("packet of a host wake: %v, want 404", err)
	}
	if st, err := cl.SetPower(cx, nic.D0); err != nil || st != nic.D0 {
		t.Fatalf("SetPower(D0) = %v, %v", st, err)
	}

	metrics, err := cl.Metrics(cx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"standbynic_nic_d3_wakes_total{wire=\"wire0\"} 2\n", "standbynic_control_requests_total ", "standbynic_control_wakes_recorded_total 2\n", "standbynic_control_streams_open 1\n"} {
		if !bytes.Contains(metrics, []byte(s)) {
			t.Errorf("metrics lack %q:\n%s", s, metrics)
		}
	}

	if err := cl.RemovePattern(cx, 7); err != nil {
		t.Fatal(err)
	}
	if err := cl.Untrack(cx, conn); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := cl.Learned(cx, conn); ok || err != nil {
		t.Errorf("Learned after Untrack = %v, %v; want not tracked", ok, err)
	}

	// Closing the server ends the stream.
	c.api.Close()
	if _, err := stream.Next(); err == nil {
		t.Error("stream still delivers after the server closed")
	}
	if _, err := cl.Capabilities(cx); err == nil {
		t.Error("request served after Close")
	}
	if err := c.api.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func isCode(err error, status int, code string) bool {
	var ce *nic.ControlError
	return errors.As(err, &ce) && ce.Status == status && ce.Code == code
}

func TestControlSSEStream(t *testing.T) {
	c := newCtl(t, 4, nil)
	if err := c.dev.Sleep(); err != nil {
		t.Fatal(err)
	}
	if err := c.dev.Wake(); err != nil { // seq 1, held
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", c.path)
	}}
	defer tr.CloseIdleConnections()
	cx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req, _ := http.NewRequestWithContext(cx, "GET", "http://nic/v1/wakes/stream?since=0", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	buf := make([]byte, 0, 512)
	for !bytes.Contains(buf, []byte("\n\n")) {
		b := make([]byte, 256)
		n, err := resp.Body.Read(b)
		if err != nil {
			t.Fatalf("read SSE: %v (got %q)", err, buf)
		}
		buf = append(buf, b[:n]...)
	}
	if !bytes.HasPrefix(buf, []byte("id: 1\nevent: wake\ndata: {\"seq\":1,\"reason\":\"host\"")) {
		t.Errorf("SSE event %q", buf)
	}
}

func TestAuthorize(t *testing.T) {
	const group = 27
	tests := []struct {
		name  string
		cred  *nic.Cred
		a     nic.Access
		owner int64
		ok    bool
	}{
		{"unknown creds read public", nil, nic.AccessAny, -1, true},
		{"unknown creds control", nil, nic.AccessControl, -1, false},
		{"unknown creds owner", nil, nic.AccessOwner, 0, false},
		{"invalid access denies root", &rootCred, nic.AccessInvalid, -1, false},
		{"root controls", &rootCred, nic.AccessControl, -1, true},
		{"root owns all", &rootCred, nic.AccessOwner, 1000, true},
		{"root owns unowned", &rootCred, nic.AccessOwner, -1, true},
		{"user public", &userCred, nic.AccessAny, -1, true},
		{"user not in group", &userCred, nic.AccessControl, -1, false},
		{"supplementary member", &aliceCred, nic.AccessControl, -1, true},
		{"primary member", &bobCred, nic.AccessControl, -1, true},
		{"owner", &aliceCred, nic.AccessOwner, 1001, true},
		{"member not owner", &aliceCred, nic.AccessOwner, 1002, false},
		{"member unowned", &aliceCred, nic.AccessOwner, -1, false},
		{"owner outside group", &userCred, nic.AccessOwner, 1000, true},
		{"gid 0 is not a group", &nic.Cred{UID: 5, GID: 0}, nic.AccessControl, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := uint32(group)
			if tt.name == "gid 0 is not a group" {
				g = 0
			}
			err := nic.Authorize(tt.cred, tt.a, g, tt.owner)
			if (err == nil) != tt.ok {
				t.Errorf("Authorize = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "forbidden: ") {
				t.Errorf("error %q does not start with forbidden", err)
			}
		})
	}
}

func TestControlRefusesUnauthorised(t *testing.T) {
	c := newCtl(t, 4, nil)
	cx := ctx(t)

	// A slot armed locally has no owner: root alone may disarm it.
	local, err := c.dev.Arm(slotConfig(40001))
	if err != nil {
		t.Fatal(err)
	}

	for _, who := range []struct {
		name string
		cred *nic.Cred
	}{{"uid 1000 outside the group", &userCred}, {"unknown credentials", nil}} {
		t.Run(who.name, func(t *testing.T) {
			cl := c.as(who.cred)
			if _, err := cl.Capabilities(cx); err != nil {
				t.Errorf("Capabilities: %v", err)
			}
			if _, err := cl.Metrics(cx); err != nil {
				t.Errorf("Metrics: %v", err)
			}
			if _, known, control, err := cl.WhoAmI(cx); err != nil || control || known != (who.cred != nil) {
				t.Errorf("WhoAmI known %v control %v, %v", known, control, err)
			}
			calls := map[string]func() error{
				"power":     func() error { _, err := cl.Power(cx); return err },
				"set power": func() error { _, err := cl.SetPower(cx, nic.D3); return err },
				"slots":     func() error { _, err := cl.Slots(cx); return err },
				"slot":      func() error { _, err := cl.Slot(cx, local); return err },
				"arm":       func() error { _, err := cl.Arm(cx, slotConfig(40002)); return err },
				"disarm":    func() error { _, err := cl.Disarm(cx, local); return err },
				"wakes":     func() error { _, _, err := cl.Wakes(cx, 0); return err },
				"stream":    func() error { _, err := cl.StreamWakes(cx, 0); return err },
				"patterns":  func() error { _, err := cl.Patterns(cx); return err },
				"pattern": func() error {
					return cl.AddPattern(cx, wp.Pattern{ID: 1, Kind: wp.KindMagic, Magic: wp.Magic{MAC: hostMAC}})
				},
				"track":      func() error { return cl.Track(cx, conn) },
				"learned":    func() error { _, _, err := cl.Learned(cx, conn); return err },
				"coalescing": func() error { return cl.AddCoalescing(cx, conn) },
			}
			for name, call := range calls {
				if err := call(); !errors.Is(err, os.ErrPermission) || !isCode(err, 403, "forbidden") {
					t.Errorf("%s: %v, want 403 forbidden", name, err)
				}
			}
		})
	}
	if got := c.dev.Slots(); !cmp.Equal(got, []nic.SlotID{local}) || c.dev.State() != nic.D0 {
		t.Fatalf("after refused calls: slots %v state %v, want [%d] D0", got, c.dev.State(), local)
	}

	// Members control; a slot's owner alone (or root) disarms it and reads
	// its wake packets.
	alice := c.as(&aliceCred)
	id, err := alice.Arm(cx, slotConfig(40003))
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.AddPattern(cx, wp.Pattern{ID: 9, Kind: wp.KindTCPSYN, SYN: wp.TCPSYN{Local: netip.AddrPortFrom(hostIP, 22)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Disarm(cx, local); !isCode(err, 403, "forbidden") {
		t.Errorf("member disarms an unowned slot: %v, want 403", err)
	}
	stream, err := alice.StreamWakes(cx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if err := c.dev.Sleep(); err != nil {
		t.Fatal(err)
	}
	push := slotConfig(40003).Snapshot
	send(t, c.rig.srv, tcpFrame(t, seg{src: push.Remote, dst: push.Local, srcMAC: peerMAC, dstMAC: hostMAC, seq: peerISN, ack: hostISN, window: 65535, payload: []byte("x")}))
	rec, err := stream.Next()
	if err != nil {
		t.Fatal(err)
	}
	recs := []nic.WakeRecord{rec}
	if recs[0].Owner != int64(aliceCred.UID) || recs[0].Event.Slot != id {
		t.Fatalf("wake %+v, want slot %d owned by %d", recs[0], id, aliceCred.UID)
	}

	bob := c.as(&bobCred)
	if _, err := bob.Slot(cx, id); err != nil {
		t.Errorf("member reads a slot: %v", err)
	}
	if _, err := bob.WakePacket(cx, recs[0].Seq); !isCode(err, 403, "forbidden") {
		t.Errorf("member reads another's wake packet: %v, want 403", err)
	}
	if _, err := bob.Disarm(cx, id); !isCode(err, 403, "forbidden") {
		t.Errorf("member disarms another's slot: %v, want 403", err)
	}
	if err := bob.RemovePattern(cx, 9); !isCode(err, 403, "forbidden") {
		t.Errorf("member removes another's pattern: %v, want 403", err)
	}
	if got := c.dev.Slots(); len(got) != 2 {
		t.Fatalf("slots %v after refused disarms, want 2", got)
	}

	alice = c.as(&aliceCred)
	if _, err := alice.WakePacket(cx, recs[0].Seq); err != nil {
		t.Errorf("owner reads her wake packet: %v", err)
	}
	if _, err := alice.Disarm(cx, id); err != nil {
		t.Errorf("owner disarms: %v", err)
	}
	if err := alice.RemovePattern(cx, 9); err != nil {
		t.Errorf("owner removes her pattern: %v", err)
	}
	// The packet stays hers after the slot is gone.
	if _, err := alice.WakePacket(cx, recs[0].Seq); err != nil {
		t.Errorf("owner reads her wake packet after disarm: %v", err)
	}
	root := c.as(&rootCred)
	if _, err := root.Disarm(cx, local); err != nil {
		t.Errorf("root disarms the unowned slot: %v", err)
	}
	if got := c.dev.Slots(); len(got) != 0 {
		t.Errorf("slots %v, want none", got)
	}
}

func TestControlMalformedRequests(t *testing.T) {
	c := newCtl(t, 2, nil)
	root := c.as(&rootCred)
	cx := ctx(t)
	id, err := root.Arm(cx, slotConfig(40000))
	if err != nil {
		t.Fatal(err)
	}
	stateBefore, statusBefore, _, _ := c.dev.SlotState(id)
	if err := root.AddPattern(cx, wp.Pattern{ID: 5, Kind: wp.KindMagic, Magic: wp.Magic{MAC: hostMAC}}); err != nil {
		t.Fatal(err)
	}

	good := func(edit func(m map[string]any)) string {
		s := slotConfig(40010)
		m := map[string]any{
			"pattern": map[string]any{"local": s.Pattern.Local.String(), "remote": s.Pattern.Remote.String()},
			"spec":    map[string]any{"kind": "tcp-probe", "interval": "1s", "retry_interval": "200ms", "retry_count": 2},
			"snapshot": map[string]any{"local_mac": "02:00:00:00:00:02", "remote_mac": "02:00:00:00:00:01",
				"local": s.Snapshot.Local.String(), "remote": s.Snapshot.Remote.String(),
				"snd_nxt": 1000, "rcv_nxt": 5000, "snd_wnd": 65535, "rcv_wnd": 65535, "ttl": 64, "mss": 1460},
			"label": "chat",
		}
		if edit != nil {
			edit(m)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	sub := func(key string) func(m map[string]any) map[string]any {
		return func(m map[string]any) map[string]any { return m[key].(map[string]any) }
	}
	spec, snap := sub("spec"), sub("snapshot")

	tests := []struct {
		name, method, path, body string
		status                   int
		code, field, limit       string
	}{
		{"bad JSON", "POST", "/v1/slots", `{"spec":`, 400, "bad_request", "body", ""},
		{"not an object", "POST", "/v1/slots", `[1,2]`, 400, "bad_request", "body", ""},
		{"empty body", "POST", "/v1/slots", ``, 400, "bad_request", "body", ""},
		{"trailing data", "POST", "/v1/slots", good(nil) + `{}`, 400, "bad_request", "body", ""},
		{"unknown field", "POST", "/v1/slots", good(func(m map[string]any) { m["owner"] = 0 }), 400, "bad_request", "owner", ""},
		{"oversized body", "POST", "/v1/slots", `{"label":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "too_large", "body", "65536 bytes"},
		{"label too long", "POST", "/v1/slots", good(func(m map[string]any) { m["label"] = strings.Repeat("x", 65) }), 422, "limit", "label", "64 bytes"},
		{"spec missing", "POST", "/v1/slots", good(func(m map[string]any) { delete(m, "spec") }), 400, "bad_request", "spec", ""},
		{"spec interval too short", "POST", "/v1/slots", good(func(m map[string]any) { spec(m)["interval"] = "500ms" }), 422, "limit", "spec.interval", "1s..24h0m0s"},
		{"spec interval not a duration", "POST", "/v1/slots", good(func(m map[string]any) { spec(m)["interval"] = "soon" }), 400, "bad_request", "spec.interval", ""},
		{"spec retry count", "POST", "/v1/slots", good(func(m map[string]any) { spec(m)["retry_count"] = 99 }), 422, "limit", "spec.retry_count", "0..16"},
		{"spec unknown field", "POST", "/v1/slots", good(func(m map[string]any) { spec(m)["bogus"] = 1 }), 400, "bad_request", "spec.bogus", ""},
		{"spec kind", "POST", "/v1/slots", good(func(m map[string]any) { spec(m)["kind"] = "smoke" }), 400, "bad_request", "spec.kind", ""},
		{"snapshot missing", "POST", "/v1/slots", good(func(m map[string]any) { delete(m, "snapshot") }), 400, "bad_request", "snapshot", ""},
		{"snapshot bad MAC", "POST", "/v1/slots", good(func(m map[string]any) { snap(m)["local_mac"] = "zz" }), 400, "bad_request", "snapshot.local_mac", ""},
		{"snapshot bad address", "POST", "/v1/slots", good(func(m map[string]any) { snap(m)["local"] = "host:port" }), 400, "bad_request", "snapshot.local", ""},
		{"snapshot MSS", "POST", "/v1/slots", good(func(m map[string]any) { snap(m)["mss"] = 10 }), 422, "invalid", "snapshot.mss", "at least 88"},
		{"snapshot window", "POST", "/v1/slots", good(func(m map[string]any) { snap(m)["rcv_wnd"] = 1 << 20 }), 422, "invalid", "snapshot.rcv_wnd", "at most 65535"},
		{"snapshot type", "POST", "/v1/slots", good(func(m map[string]any) { snap(m)["ttl"] = "sixty" }), 400, "bad_request", "snapshot.ttl", "0–255"},
		{"snapshot ttl range", "POST", "/v1/slots", good(func(m map[string]any) { snap(m)["ttl"] = 300 }), 400, "bad_request", "snapshot.ttl", "0–255"},
		{"snapshot unknown field", "POST", "/v1/slots", good(func(m map[string]any) { snap(m)["cwnd"] = 1 }), 400, "bad_request", "snapshot.cwnd", ""},
		{"pattern mismatch", "POST", "/v1/slots", good(func(m map[string]any) { sub("pattern")(m)["local"] = "198.18.0.2:1" }), 422, "invalid", "pattern", ""},
		{"pattern vlan", "POST", "/v1/slots", good(func(m map[string]any) { sub("pattern")(m)["vlan"] = 4095 }), 422, "limit", "pattern.vlan", "4094"},
		{"bitmap offset limit", "POST", "/v1/patterns", `{"id":3,"kind":"bitmap","bitmap":{"offset":5000,"bytes":"0800","mask":"03"}}`, 422, "limit", "bitmap.offset", "1514"},
		{"pattern kind", "POST", "/v1/patterns", `{"id":3,"kind":"laser"}`, 400, "bad_request", "kind", ""},
		{"pattern unknown field", "POST", "/v1/patterns", `{"id":3,"kind":"magic","magic":{"mac":"02:00:00:00:00:02"},"x":1}`, 400, "bad_request", "x", ""},
		{"pattern connection", "POST", "/v1/patterns", `{"id":3,"kind":"tcp-conn","conn":{"local":"198.18.0.2:1","remote":"198.18.0.1:2"}}`, 422, "invalid", "", ""},
		{"pattern id range", "POST", "/v1/patterns", `{"id":2147483648,"kind":"magic","magic":{"mac":"02:00:00:00:00:02"}}`, 422, "limit", "", ""},
		{"power state", "PUT", "/v1/power", `{"state":"D5"}`, 422, "invalid", "state", "D0, D3, waking"},
		{"power unknown field", "PUT", "/v1/power", `{"state":"D3","now":true}`, 400, "bad_request", "now", ""},
		{"power wrong state", "PUT", "/v1/power", `{"state":"waking"}`, 409, "wrong_state", "", ""},
		{"method", "PATCH", "/v1/slots", `{}`, 405, "method_not_allowed", "", "GET, POST"},
		{"method on slot", "POST", "/v1/slots/1", `{}`, 405, "method_not_allowed", "", "DELETE, GET"},
		{"slot out of range", "GET", "/v1/slots/9", ``, 404, "unknown_slot", "id", "1–2"},
		{"slot not a number", "GET", "/v1/slots/abc", ``, 400, "bad_request", "id", ""},
		{"slot not armed", "DELETE", "/v1/slots/2", ``, 404, "unknown_slot", "id", ""},
		{"no endpoint", "GET", "/v1/nothing", ``, 404, "not_found", "", ""},
		{"since", "GET", "/v1/wakes?since=x", ``, 400, "bad_request", "since", ""},
		{"wake not held", "GET", "/v1/wakes/5/packet", ``, 404, "not_found", "seq", "64 wakes"},
		{"track address", "GET", "/v1/track?local=x&remote=198.18.0.1:443", ``, 400, "bad_request", "local", ""},
		{"track missing", "GET", "/v1/track", ``, 400, "bad_request", "local", ""},
		{"track not tracked", "GET", "/v1/track?local=198.18.0.2:1&remote=198.18.0.1:443", ``, 404, "not_found", "", ""},
		{"untrack not tracked", "DELETE", "/v1/track?local=198.18.0.2:1&remote=198.18.0.1:443", ``, 404, "not_found", "", ""},
		{"coalescing unknown", "DELETE", "/v1/coalescing?local=198.18.0.2:1&remote=198.18.0.1:443", ``, 404, "not_found", "", ""},
		{"pattern not found", "DELETE", "/v1/patterns/77", ``, 404, "not_found", "id", ""},
		{"pattern id in use", "POST", "/v1/patterns", `{"id":5,"kind":"magic","magic":{"mac":"02:00:00:00:00:09"}}`, 409, "conflict", "id", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, e, body, hdr := c.raw(tt.method, tt.path, tt.body)
			if status != tt.status || e == nil {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, status, body, tt.status)
			}
			got := [3]string{e.Code, e.Field, e.Limit}
			if diff := cmp.Diff([3]string{tt.code, tt.field, tt.limit}, got); diff != "" {
				t.Errorf("code, field, limit (-want +got):\n%s\nbody %s", diff, body)
			}
			if tt.body != "" && tt.field != "" && !strings.Contains(e.Message, tt.field) && !strings.Contains(e.Message, "body") {
				t.Errorf("message %q does not name the field %q", e.Message, tt.field)
			}
			if tt.status == 405 && hdr.Get("Allow") != tt.limit {
				t.Errorf("Allow %q, want %q", hdr.Get("Allow"), tt.limit)
			}
		})
	}

	// A valid arm still works, then the slots are full: 409 naming the
	// limit.
	if status, e, body, _ := c.raw("POST", "/v1/slots", good(nil)); status != 201 || e != nil {
		t.Fatalf("valid arm: %d %s", status, body)
	}
	status, e, body, _ := c.raw("POST", "/v1/slots", good(func(m map[string]any) {
		sub("pattern")(m)["local"] = "198.18.0.2:40011"
		snap(m)["local"] = "198.18.0.2:40011"
	}))
	if status != 409 || e.Code != "no_slot" || e.Limit != "2 slots" || !strings.Contains(e.Message, "2 of 2") {
		t.Errorf("arm beyond the slots: %d %s, want 409 no_slot naming 2 slots", status, body)
	}
	if _, err := root.Arm(cx, slotConfig(40012)); !errors.Is(err, nic.ErrNoSlot) || !errors.Is(err, nic.ErrLimit) {
		t.Errorf("client Arm beyond the slots: %v, want ErrNoSlot", err)
	}

	// The daemon still serves and the first slot is untouched.
	if _, err := root.Capabilities(cx); err != nil {
		t.Fatalf("server down after bad requests: %v", err)
	}
	if got := c.dev.Slots(); !cmp.Equal(got, []nic.SlotID{1, 2}) {
		t.Errorf("slots %v, want [1 2]", got)
	}
	stateAfter, statusAfter, _, ok := c.dev.SlotState(id)
	if !ok || stateAfter != stateBefore || statusAfter != statusBefore {
		t.Errorf("slot %d: %v/%v after bad requests, was %v/%v", id, stateAfter, statusAfter, stateBefore, statusBefore)
	}
	st, err := root.Slot(cx, id)
	if err != nil || st.Owner != 0 || st.Label != "mail" {
		t.Errorf("slot %d record %+v, %v: want owner 0 label mail", id, st, err)
	}
	metrics, _ := root.Metrics(cx)
	if !bytes.Contains(metrics, []byte(fmt.Sprintf("standbynic_control_requests_rejected_total %d\n", len(tests)+2))) {
		t.Errorf("metrics do not count %d rejected requests:\n%s", len(tests)+2, metrics)
	}
}

func TestControlStreamLimit(t *testing.T) {
	c := newCtl(t, 2, func(cfg *nic.ControlConfig) { cfg.MaxStreams = 1 })
	cl := c.as(&rootCred)
	cx := ctx(t)
	st, err := cl.StreamWakes(cx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.StreamWakes(cx, 0); !isCode(err, 503, "unavailable") {
		t.Errorf("second stream: %v, want 503", err)
	}
	st.Close()
	deadline := time.Now().Add(waitFor)
	for {
		st2, err := cl.StreamWakes(cx, 0)
		if err == nil {
			st2.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream slot not released after the client went: %v", err)
		}
		runtime.Gosched()
	}
}

func TestControlConfigErrors(t *testing.T) {
	r := newRig(t, nil)
	for _, tt := range []struct {
		name string
		cfg  nic.ControlConfig
		want string
	}{
		{"group", nic.ControlConfig{Group: -1}, "group = -1"},
		{"body", nic.ControlConfig{MaxBody: 2 << 20}, "max body = 2097152: must be 1–1048576 bytes"},
		{"streams", nic.ControlConfig{MaxStreams: -1}, "max streams = -1"},
		{"history", nic.ControlConfig{WakeHistory: 5000}, "wake history = 5000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := nic.NewControlServer(r.dev, &tt.cfg)
			defer s.Close()
			err := s.ListenUnix(filepath.Join(t.TempDir(), "x.sock"), 0o600, -1)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ListenUnix = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestReportJSONRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    offload.Report
	}{
		{"empty", offload.Report{State: offload.StateArmed, Status: offload.StatusNormal}},
		{"books", offload.Report{State: offload.StateWoken, Status: offload.StatusDataWaiting,
			Counters: offload.Counters{KeepalivesSent: 3, RepliesAbsorbed: 2, PingsAnswered: 1},
			Books: offload.Books{Sent: []byte{0x8a, 0x80, 1, 2, 3, 4}, Absorbed: []byte{0x89, 0, 0xff},
				Entries: []offload.Entry{{Dir: offload.DirSent, Seq: 1000, Len: 6, At: time.Hour + 1}, {Dir: offload.DirAbsorbed, Seq: 5000, Len: 3, At: 2*time.Hour + 1500*time.Millisecond}}},
			SndNxt: 1006, SndUna: 1000, RcvNxt: 5003, TSRecent: 0xfffffff0, LastKeepAlive: 3*time.Hour + 250*time.Millisecond}},
		{"dead", offload.Report{State: offload.StateDead, Status: offload.StatusNoResponse, SndNxt: 1, RcvNxt: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, b, err := nic.ReportRoundTrip(tt.r)
			if err != nil {
				t.Fatalf("%v (%s)", err, b)
			}
			if diff := cmp.Diff(tt.r, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s\n%s", diff, b)
			}
			if len(tt.r.Books.Sent) > 0 && !bytes.Contains(b, []byte(`"sent":"ioABAgME"`)) {
				t.Errorf("books not base64: %s", b)
			}
		})
	}
}

func TestSnapshotJSONRoundTrip(t *testing.T) {
	ts := snapshot()
	ts.Timestamps = offload.Timestamps{Enabled: true, Val: 123456, At: time.Hour + 123456789, Rate: 1000, Recent: 987654}
	ts.SndWScale, ts.RcvWScale, ts.SndWnd, ts.RcvWnd, ts.TOS, ts.VLAN = 7, 8, 65535<<7, 1000<<8, 0x10, 100
	v6 := snapshot()
	v6.Local = netip.MustParseAddrPort("[2001:db8::2]:40000")
	v6.Remote = netip.MustParseAddrPort("[2001:db8::1]:443")
	for _, s := range []offload.Snapshot{snapshot(), ts, v6} {
		got, err := nic.SnapshotRoundTrip(s)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(s, got, addrCmp); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

// hostNIC mirrors host.NIC (host imports nic, so nic's tests cannot import
// host): a Remote must be usable where the host takes a *Device.
type hostNIC interface {
	Capabilities() nic.Capabilities
	Track(c wp.TCPConn) error
	Untrack(c wp.TCPConn) error
	Learned(c wp.TCPConn) (nic.Learned, bool)
	Arm(s nic.SlotConfig) (nic.SlotID, error)
	Disarm(id nic.SlotID) (offload.Report, error)
	AddCoalescing(c wp.TCPConn) error
	RemoveCoalescing(c wp.TCPConn) error
	Sleep() error
	Wake() error
	Resume() error
	Wakes() <-chan nic.WakeEvent
}

var (
	_ hostNIC = (*nic.Device)(nil)
	_ hostNIC = (*nic.Remote)(nil)
)

func TestRemoteDrivesTheDevice(t *testing.T) {
	c := newCtl(t, 4, nil)
	cl := c.as(&rootCred)
	rem, err := cl.Remote(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rem.Close()
	var n hostNIC = rem
	if n.Capabilities() != c.dev.Capabilities() {
		t.Errorf("Capabilities %+v, want %+v", n.Capabilities(), c.dev.Capabilities())
	}
	if err := n.Track(conn); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.Learned(conn); !ok {
		t.Error("Learned: not tracked")
	}
	if err := n.Wake(); !errors.Is(err, nic.ErrState) {
		t.Errorf("Wake in D0: %v, want ErrState", err)
	}
	id, err := n.Arm(nic.SlotConfig{Pattern: conn, Spec: probeSpec(), Snapshot: snapshot(), Owner: "chat"})
	if err != nil {
		t.Fatal(err)
	}
	other := wp.TCPConn{Local: netip.AddrPortFrom(hostIP, 41000), Remote: peerAP}
	if err := n.AddCoalescing(other); err != nil {
		t.Fatal(err)
	}
	if err := n.Sleep(); err != nil {
		t.Fatal(err)
	}
	push := tcpFrame(t, fromPeer(peerISN, hostISN, "hi"))
	send(t, c.rig.srv, push)
	select {
	case ev := <-n.Wakes():
		if ev.Reason != nic.WakeData || ev.Slot != id || ev.Len != len(push) {
			t.Errorf("wake %+v, want data on slot %d", ev, id)
		}
	case <-time.After(waitFor):
		t.Fatal("no wake through the Remote")
	}
	rep, err := n.Disarm(id)
	if err != nil || rep.State != offload.StateWoken {
		t.Errorf("Disarm = %+v, %v", rep, err)
	}
	if err := n.RemoveCoalescing(other); err != nil {
		t.Error(err)
	}
	if err := n.Resume(); err != nil {
		t.Fatal(err)
	}
	if got := c.recv(c.host); !bytes.Equal(got, push) {
		t.Errorf("host got %x after Resume, want the push", got)
	}
	// The host's own wake: Sleep, Wake, Resume.
	if err := n.Sleep(); err != nil {
		t.Fatal(err)
	}
	if err := n.Wake(); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-n.Wakes():
		if ev.Reason != nic.WakeHost {
			t.Errorf("wake %+v, want host", ev)
		}
	case <-time.After(waitFor):
		t.Fatal("no host wake through the Remote")
	}
	if err := n.Resume(); err != nil || c.dev.State() != nic.D0 {
		t.Fatalf("Resume = %v, state %v", err, c.dev.State())
	}
	if err := n.Untrack(conn); err != nil {
		t.Error(err)
	}
	if _, err := n.Disarm(id); !errors.Is(err, nic.ErrUnknownSlot) {
		t.Errorf("Disarm twice: %v, want ErrUnknownSlot", err)
	}

	// The control server restarts on the same socket: the Remote's stream
	// reconnects and the new server's wakes (numbered from 1 again) arrive.
	c.api.Close()
	cfg := &nic.ControlConfig{}
	nic.SetPeerCred(cfg, func(net.Conn) (*nic.Cred, error) { return &nic.Cred{}, nil })
	srv := nic.NewControlServer(c.dev, cfg)
	defer srv.Close()
	if err := srv.ListenUnix(c.path, 0o600, -1); err != nil {
		t.Fatal(err)
	}
	if err := c.dev.Sleep(); err != nil {
		t.Fatal(err)
	}
	if err := c.dev.Wake(); err != nil {
		t.Fatal(err)
	}
	// The old server's end is a loss of the NIC, seen as a wake of its
	// own; the new one is another instance.
	select {
	case ev := <-n.Wakes():
		if ev.Reason != nic.WakeNICLost {
			t.Errorf("first wake after restart %+v, want nic-lost", ev)
		}
	case <-time.After(waitFor):
		t.Fatal("no nic-lost wake after the server restarted")
	}
	select {
	case <-rem.Back():
	case <-time.After(waitFor):
		t.Fatal("the Remote never saw the new server")
	}
	if h := rem.Health(); !h.Up || h.Losses != 1 || h.Restarts != 1 {
		t.Errorf("health %+v, want up after 1 loss and 1 restart", h)
	}
	select {
	case ev := <-n.Wakes():
		if ev.Reason != nic.WakeHost {
			t.Errorf("wake after restart %+v, want host", ev)
		}
	case <-time.After(waitFor):
		t.Fatal("no wake after the server restarted")
	}
	if err := rem.Close(); err != nil {
		t.Error(err)
	}
	if err := rem.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// armSeeds are valid and near-valid arm bodies.
func armSeeds(t testing.TB) [][]byte {
	var out [][]byte
	ws := slotConfig(40100)
	ws.Spec = offload.Spec{Kind: offload.KindWebSocket, Interval: 20 * time.Second, RetryInterval: 2 * time.Second, RetryCount: 1,
		WebSocket: offload.WebSocketSpec{Mode: offload.WSPing, Payload: []byte("ka")}}
	ws.Snapshot.Timestamps = offload.Timestamps{Enabled: true, Val: 7, At: time.Hour, Rate: 1000, Recent: 9}
	pl := slotConfig(40101)
	pl.Spec = offload.Spec{Kind: offload.KindPayload, Interval: 30 * time.Second, RetryInterval: 3 * time.Second, RetryCount: 3,
		Payload: offload.PayloadSpec{Request: []byte{0xc0, 0}, Reply: []byte{0xd0, 0}}}
	for _, s := range []nic.SlotConfig{slotConfig(40000), ws, pl} {
		b, err := nic.ArmBody(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, []byte(`{}`), []byte(`{"spec":{"kind":"tcp-probe"},"snapshot":null}`), []byte(`{"label":"\u0000"}`))
}

// FuzzParseArm: the arm body decoder never panics, refuses with a 4xx
// naming something, and what it accepts is valid and survives the
// client's encoding unchanged.
func FuzzParseArm(f *testing.F) {
	for _, b := range armSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, label, status, err := nic.ParseArm(b)
		if err != nil {
			if status != 400 && status != 413 && status != 422 {
				t.Fatalf("refusal %v with status %d", err, status)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := cfg.Spec.Validate(); err != nil {
			t.Fatalf("accepted an invalid spec: %v", err)
		}
		if err := cfg.Snapshot.Validate(); err != nil {
			t.Fatalf("accepted an invalid snapshot: %v", err)
		}
		sn := cfg.Snapshot
		if cfg.Pattern != (wp.TCPConn{Local: sn.Local, Remote: sn.Remote, VLAN: sn.VLAN}) || len(label) > nic.MaxLabel {
			t.Fatalf("accepted pattern %+v label %q for snapshot %+v", cfg.Pattern, label, sn)
		}
		cfg.Owner = label
		again, err := nic.ArmBody(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg2, label2, _, err := nic.ParseArm(again)
		if err != nil {
			t.Fatalf("re-encoded body refused: %v\n%s", err, again)
		}
		cfg2.Owner = label2
		if diff := cmp.Diff(cfg, cfg2, addrCmp, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzControlRequest: any request leaves the server answering, never with
// a 5xx, always with a JSON error when it refuses, and never changes the
// armed slots unless it succeeded.
func FuzzControlRequest(f *testing.F) {
	for _, b := range armSeeds(f) {
		f.Add(uint8(1), "/v1/slots", b)
	}
	f.Add(uint8(2), "/v1/power", []byte(`{"state":"D3"}`))
	f.Add(uint8(2), "/v1/power", []byte(`{"state":"D0"}`))
	f.Add(uint8(1), "/v1/patterns", []byte(`{"id":3,"kind":"bitmap","bitmap":{"offset":12,"bytes":"0800","mask":"03"}}`))
	f.Add(uint8(3), "/v1/slots/1", []byte(nil))
	f.Add(uint8(0), "/v1/wakes/1/packet", []byte(nil))
	f.Add(uint8(0), "/v1/track?local=198.18.0.2:40000&remote=198.18.0.1:443", []byte(nil))
	f.Add(uint8(1), "/v1/coalescing", []byte(`{"local":"198.18.0.2:1","remote":"198.18.0.1:2","vlan":4095}`))
	f.Add(uint8(4), "/v1/slots", []byte(`{}`))
	f.Add(uint8(2), "/v1/lease", []byte(`{"owner":"host","period":"5s"}`))
	f.Add(uint8(2), "/v1/lease", []byte(`{"owner":"h:1@x","period":"100ms"}`))
	f.Add(uint8(0), "/v1/leases", []byte(nil))
	f.Add(uint8(3), "/v1/leases/host", []byte(nil))
	f.Add(uint8(0), "/v1/slots?lease=host", []byte(nil))
	if b := armSeeds(f); len(b) > 0 {
		f.Add(uint8(1), "/v1/slots", append(bytes.TrimSuffix(bytes.TrimSpace(b[0]), []byte("}")), []byte(`,"lease":"host"}`)...))
	}

	wire, srv := porttest.Pipe()
	hp, host := porttest.Pipe()
	defer srv.Close()
	defer host.Close()
	dev, err := nic.New(&nic.Config{Wire: wire, Host: hp, MAC: hostMAC, Clock: nic.NewManualClock(time.Hour), Capabilities: nic.Capabilities{Slots: 4}})
	if err != nil {
		f.Fatal(err)
	}
	defer dev.Close()
	api := nic.NewControlServer(dev, &nic.ControlConfig{MaxBody: 4096})
	defer api.Close()
	methods := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"}
	f.Fuzz(func(t *testing.T, m uint8, path string, body []byte) {
		if !strings.HasPrefix(path, "/") || strings.Contains(path, "/stream") {
			return // not a request line the server sees; streams do not end
		}
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return
		}
		// Start from a free device in D0, whatever the last input did.
		for _, id := range dev.Slots() {
			dev.Disarm(id)
		}
		if dev.State() == nic.D3 {
			dev.Wake()
		}
		if dev.State() == nic.Waking {
			dev.Resume()
		}
		for _, who := range []*nic.Cred{&rootCred, &userCred} {
			before := dev.Slots()
			expired, _ := nic.ControlCounter(api, "leases_expired")
			req := httptest.NewRequest(methods[int(m)%len(methods)], "http://nic/", bytes.NewReader(body))
			req.URL = u
			req.RequestURI = u.RequestURI()
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, nic.WithCred(req, who))
			if rec.Code >= 500 {
				t.Fatalf("%s %s as uid %d: %d %s", req.Method, path, who.UID, rec.Code, rec.Body)
			}
			if rec.Code >= 400 && req.Method != "HEAD" && !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s %s: %d with a non-JSON body %q", req.Method, path, rec.Code, rec.Body)
			}
			// (A lease of an earlier input may expire meanwhile and
			// disarm its slots.)
			if now, _ := nic.ControlCounter(api, "leases_expired"); rec.Code >= 300 && now == expired && !cmp.Equal(before, dev.Slots()) {
				t.Fatalf("%s %s refused (%d) yet the slots changed: %v → %v", req.Method, path, rec.Code, before, dev.Slots())
			}
			if who == &userCred && rec.Code < 300 && (req.Method != "GET" && req.Method != "HEAD") {
				t.Fatalf("%s %s succeeded for uid %d", req.Method, path, who.UID)
			}
		}
	})
}

// benchCtl is a control server on a real socket for benchmarks (the rig
// takes a *testing.T).
func benchCtl(b *testing.B) (*nic.Device, *nic.ControlClient) {
	wire, srv := porttest.Pipe()
	hp, host := porttest.Pipe()
	b.Cleanup(func() { srv.Close(); host.Close() })
	dev, err := nic.New(&nic.Config{Wire: wire, Host: hp, MAC: hostMAC, Clock: nic.NewManualClock(time.Hour), Capabilities: nic.Capabilities{Slots: 4}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dev.Close() })
	dir, err := os.MkdirTemp("", "nicbench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "nic.sock")
	cfg := &nic.ControlConfig{}
	nic.SetPeerCred(cfg, func(net.Conn) (*nic.Cred, error) { return &nic.Cred{}, nil })
	api := nic.NewControlServer(dev, cfg)
	b.Cleanup(func() { api.Close() })
	if err := api.ListenUnix(path, 0o600, -1); err != nil {
		b.Fatal(err)
	}
	cl, err := nic.DialControl(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Close() })
	return dev, cl
}

// BenchmarkControlSlotStatus measures GET /v1/slots/{id} over the socket.
func BenchmarkControlSlotStatus(b *testing.B) {
	_, cl := benchCtl(b)
	cx := context.Background()
	id, err := cl.Arm(cx, slotConfig(40000))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cl.Slot(cx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/request")
}

// BenchmarkControlArmDisarm measures an arm and a disarm over the socket.
func BenchmarkControlArmDisarm(b *testing.B) {
	_, cl := benchCtl(b)
	cx := context.Background()
	cfg := slotConfig(40000)
	b.ReportAllocs()
	for b.Loop() {
		id, err := cl.Arm(cx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cl.Disarm(cx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/arm+disarm")
}

func mustPrefilter(t *testing.T, d *nic.Device) nic.PrefilterInfo {
	t.Helper()
	pf, ok := d.Prefilter()
	if !ok {
		t.Fatal("no prefilter attached")
	}
	return pf
}
