package nic_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/nic"
)

// apiCounter reads one of the control server's own counters.
func (c *ctl) apiCounter(name string) uint64 {
	c.t.Helper()
	v, ok := nic.ControlCounter(c.api, name)
	if !ok {
		c.t.Fatalf("no API counter %q", name)
	}
	return v
}

// apiCounters reads several of them, for cmp.Diff.
func (c *ctl) apiCounters(names ...string) map[string]uint64 {
	c.t.Helper()
	m := map[string]uint64{}
	for _, n := range names {
		m[n] = c.apiCounter(n)
	}
	return m
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestControlArmTwiceIsAConflictNamingTheSlot(t *testing.T) {
	c := newCtl(t, 4, nil)
	cl := c.as(&rootCred)
	cx := ctx(t)
	if _, err := cl.Arm(cx, slotConfig(40000)); err != nil {
		t.Fatal(err)
	}
	id, err := cl.Arm(cx, slotConfig(40001))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.Arm(cx, slotConfig(40001))
	var ce *nic.ControlError
	if !errors.As(err, &ce) || ce.Status != 409 || ce.Code != "already_armed" || ce.Slot != id || ce.Field != "pattern" ||
		!strings.Contains(ce.Message, fmt.Sprintf("armed in slot %d", id)) {
		t.Fatalf("arm twice: %#v, want 409 already_armed naming slot %d", err, id)
	}
	if !errors.Is(err, nic.ErrArmed) {
		t.Errorf("errors.Is(%v, ErrArmed) = false", err)
	}
	// On the device itself.
	_, err = c.dev.Arm(slotConfig(40000))
	var ae *nic.ArmedError
	if !errors.As(err, &ae) || ae.Slot != 1 || !errors.Is(err, nic.ErrArmed) {
		t.Errorf("Device.Arm twice = %v, want an *ArmedError for slot 1", err)
	}
	if got := c.dev.Slots(); len(got) != 2 {
		t.Errorf("slots %v after the refusals, want 2", got)
	}
	if n := c.apiCounter("failed"); n != 0 {
		t.Errorf("failed (5xx) = %d, want 0", n)
	}
}

// rawConn opens a connection to the control socket that the test drives
// byte by byte.
func (c *ctl) rawConn() net.Conn {
	c.t.Helper()
	conn, err := net.Dial("unix", c.path)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return conn
}

// readResponse reads one HTTP response from conn within d.
func readResponse(t *testing.T, conn net.Conn, d time.Duration) (*http.Response, []byte) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// closedWithin reports whether the server closes conn within d (reading
// and discarding what it sends).
func closedWithin(conn net.Conn, d time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func TestControlSlowBodyTimesOut(t *testing.T) {
	const timeout = 200 * time.Millisecond
	c := newCtl(t, 2, func(cfg *nic.ControlConfig) { cfg.ReadTimeout = timeout })
	// A body that never comes in full: 408, and the connection closes.
	conn := c.rawConn()
	start := time.Now()
	fmt.Fprintf(conn, "POST /v1/slots HTTP/1.1\r\nHost: nic\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"spec\":")
	resp, b := readResponse(t, conn, 5*time.Second)
	if resp.StatusCode != http.StatusRequestTimeout || !bytes.Contains(b, []byte(`"code": "timeout"`)) {
		t.Errorf("slow body: %d %s, want 408 timeout", resp.StatusCode, b)
	}
	if el := time.Since(start); el < timeout || el > timeout+2*time.Second {
		t.Errorf("answered after %v, want about %v", el, timeout)
	}
	if !closedWithin(conn, 2*time.Second) {
		t.Error("connection still open after the 408")
	}
	if n := c.apiCounter("read_timeouts"); n != 1 {
		t.Errorf("read_timeouts = %d, want 1", n)
	}
	// A body sent to an endpoint that reads none is bounded all the same
	// (the server drains it after the reply).
	conn2 := c.rawConn()
	fmt.Fprintf(conn2, "GET /v1/power HTTP/1.1\r\nHost: nic\r\nContent-Length: 100000\r\n\r\nxx")
	if resp, _ := readResponse(t, conn2, 5*time.Second); resp.StatusCode != 200 {
		t.Errorf("GET /v1/power: %d", resp.StatusCode)
	}
	if !closedWithin(conn2, 5*time.Second) {
		t.Error("a connection dribbling an unread body stayed open")
	}
	// Headers that never end.
	conn3 := c.rawConn()
	fmt.Fprintf(conn3, "GET /v1/power HTTP/1.1\r\nHost: nic\r\n")
	if !closedWithin(conn3, 5*time.Second) {
		t.Error("a connection with unfinished headers stayed open")
	}
	// A wake stream outlives the read timeout.
	cl := c.as(&rootCred)
	st, err := cl.StreamWakes(ctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	<-time.After(3 * timeout) // the stream must survive this long
	if err := c.dev.Sleep(); err != nil {
		t.Fatal(err)
	}
	if err := c.dev.Wake(); err != nil {
		t.Fatal(err)
	}
	if rec, err := st.Next(); err != nil || rec.Event.Reason != nic.WakeHost {
		t.Errorf("stream after 3 read timeouts: %+v, %v; want the host wake", rec, err)
	}
}

func TestControlConnectionLimit(t *testing.T) {
	const limit = 8
	c := newCtl(t, 2, func(cfg *nic.ControlConfig) { cfg.MaxConns = limit; cfg.ReadTimeout = 300 * time.Millisecond })
	// 20 slow-body clients: 8 are taken (and timed out), 12 turned away at once.
	var conns []net.Conn
	for range 20 {
		conn := c.rawConn()
		fmt.Fprintf(conn, "POST /v1/slots HTTP/1.1\r\nHost: nic\r\nContent-Length: 1000\r\n\r\n{")
		conns = append(conns, conn)
	}
	waitUntil(t, 5*time.Second, "20 connections accepted or refused", func() bool {
		return c.apiCounter("conns_accepted")+c.apiCounter("conns_refused") == 20
	})
	if got := c.apiCounters("conns_accepted", "conns_refused"); !cmp.Equal(got, map[string]uint64{"conns_accepted": limit, "conns_refused": 20 - limit}) {
		t.Errorf("counters %v, want %d accepted, %d refused", got, limit, 20-limit)
	}
	statuses := map[int]int{}
	for _, conn := range conns {
		resp, _ := readResponse(t, conn, 5*time.Second)
		statuses[resp.StatusCode]++
		if !closedWithin(conn, 5*time.Second) {
			t.Errorf("connection answered %d still open", resp.StatusCode)
		}
	}
	if diff := cmp.Diff(map[int]int{408: limit, 503: 20 - limit}, statuses); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	waitUntil(t, 5*time.Second, "connections released", func() bool { return nic.ControlConnsOpen(c.api) == 0 })
	// Room again: a normal client is served.
	if _, err := c.as(&rootCred).Slots(ctx(t)); err != nil {
		t.Errorf("after the slow clients left: %v", err)
	}
}

func TestControlGroupRecheckedPerRequest(t *testing.T) {
	c := newCtl(t, 2, nil)
	cl := c.as(&aliceCred) // a member by her credentials; unknown to the database
	cx := ctx(t)
	if _, err := cl.Slots(cx); err != nil {
		t.Fatalf("member unknown to the database: %v", err)
	}
	// Removed from the group: the same open connection loses control.
	c.db.Store(&map[uint32]bool{aliceCred.UID: false})
	_, err := cl.Slots(cx)
	if !isCode(err, 403, "forbidden") || !strings.Contains(err.Error(), "no longer a member of group 27") {
		t.Errorf("after removal: %v, want 403 naming the group", err)
	}
	if _, _, control, err := cl.WhoAmI(cx); err != nil || control {
		t.Errorf("WhoAmI after removal: control %v, %v; want false", control, err)
	}
	c.db.Store(&map[uint32]bool{aliceCred.UID: true})
	if _, err := cl.Slots(cx); err != nil {
		t.Errorf("listed again: %v", err)
	}
	// Root never depends on the database.
	c.db.Store(&map[uint32]bool{0: false})
	if _, err := c.as(&rootCred).Slots(cx); err != nil {
		t.Errorf("root: %v", err)
	}
	// TrustPeerGroups: the kernel's credentials alone.
	c2 := newCtl(t, 2, func(cfg *nic.ControlConfig) { cfg.TrustPeerGroups = true })
	c2.db.Store(&map[uint32]bool{aliceCred.UID: false})
	if _, err := c2.as(&aliceCred).Slots(cx); err != nil {
		t.Errorf("TrustPeerGroups: %v", err)
	}
}

func TestLeaseLifecycle(t *testing.T) {
	c := newCtl(t, 4, nil)
	cl := c.as(&rootCred)
	cx := ctx(t)
	l, err := cl.RenewLease(cx, "host", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Created || l.Owner != "host" || l.UID != 0 || l.PID != rootCred.PID || l.Period != time.Minute || l.Instance == "" || l.Expires.IsZero() {
		t.Errorf("granted %+v", l)
	}
	l, err = cl.RenewLease(cx, "host", time.Minute)
	if err != nil || l.Created || l.Renewals != 1 || l.TakenOverFrom != 0 {
		t.Errorf("renewed %+v, %v", l, err)
	}
	id, err := cl.ArmLeased(cx, slotConfig(40000), "host")
	if err != nil {
		t.Fatal(err)
	}
	free, err := cl.Arm(cx, slotConfig(40001)) // no lease: never expires
	if err != nil {
		t.Fatal(err)
	}
	ss, err := cl.LeaseSlots(cx, "host")
	if err != nil || len(ss) != 1 || ss[0].ID != id || ss[0].Lease != "host" {
		t.Errorf("LeaseSlots = %+v, %v; want slot %d", ss, err, id)
	}
	ls, err := cl.Leases(cx)
	if err != nil || len(ls) != 1 || !cmp.Equal(ls[0].Slots, []nic.SlotID{id}) {
		t.Errorf("Leases = %+v, %v", ls, err)
	}
	// A new instance (another pid, same uid) takes it over.
	root2 := rootCred
	root2.PID = 4242
	cl2 := c.as(&root2)
	l, err = cl2.RenewLease(cx, "host", time.Minute)
	if err != nil || l.Created || l.TakenOverFrom != rootCred.PID || l.PID != 4242 || !cmp.Equal(l.Slots, []nic.SlotID{id}) {
		t.Errorf("take over: %+v, %v", l, err)
	}
	// Released while asleep: its slot is disarmed, the NIC returns to D0;
	// the slot armed without a lease stays.
	if err := c.dev.Sleep(); err != nil {
		t.Fatal(err)
	}
	rel, err := cl2.ReleaseLease(cx, "host")
	if err != nil {
		t.Fatal(err)
	}
	if len(rel.Disarmed) != 1 || rel.Disarmed[0].ID != id || rel.Disarmed[0].Label != "mail" || rel.From != nic.D3 || rel.Power != nic.D0 {
		t.Errorf("release %+v", rel)
	}
	if got := c.dev.Slots(); !cmp.Equal(got, []nic.SlotID{free}) {
		t.Errorf("slots %v after the release, want %v", got, []nic.SlotID{free})
	}
	if st := c.dev.State(); st != nic.D0 {
		t.Errorf("state %v after the release, want D0", st)
	}
	want := map[string]uint64{"leases_granted": 1, "leases_renewed": 2, "leases_taken_over": 1, "leases_released": 1,
		"leases_expired": 0, "lease_slots_disarmed": 1, "lease_resumes": 1}
	if diff := cmp.Diff(want, c.apiCounters("leases_granted", "leases_renewed", "leases_taken_over", "leases_released",
		"leases_expired", "lease_slots_disarmed", "lease_resumes")); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	if _, err := cl.ReleaseLease(cx, "host"); !isCode(err, 404, "not_found") {
		t.Errorf("release twice: %v, want 404", err)
	}
	m, err := cl.Metrics(cx)
	if err != nil || !bytes.Contains(m, []byte("standbynic_control_lease_resumes_total 1\n")) || !bytes.Contains(m, []byte("standbynic_control_leases_active 0\n")) {
		t.Errorf("metrics lack the lease counters: %v\n%s", err, m)
	}
}

// TestLeaseExpiryFailsOpen: a host that stops renewing while the NIC
// sleeps with its slot armed: one period later the NIC disarms the slot,
// returns to D0 and forwards again, and says so in its counters.
func TestLeaseExpiryFailsOpen(t *testing.T) {
	c := newCtl(t, 2, nil)
	cl := c.as(&rootCred)
	cx := ctx(t)
	const period = 200 * time.Millisecond
	if _, err := cl.RenewLease(cx, "host", period); err != nil {
		t.Fatal(err)
	}
	id, err := cl.ArmLeased(cx, slotConfig(40000), "host")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetPower(cx, nic.D3); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitUntil(t, 5*time.Second, "NIC back in D0 with no slot", func() bool {
		return c.dev.State() == nic.D0 && len(c.dev.Slots()) == 0
	})
	if el := time.Since(start); el < period/2 || el > period+2*time.Second {
		t.Errorf("lease ended after %v, want about %v", el, period)
	}
	want := map[string]uint64{"leases_expired": 1, "lease_slots_disarmed": 1, "lease_resumes": 1}
	if diff := cmp.Diff(want, c.apiCounters("leases_expired", "lease_slots_disarmed", "lease_resumes")); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	if _, err := cl.Slot(cx, id); !isCode(err, 404, "unknown_slot") {
		t.Errorf("slot %d after expiry: %v, want 404", id, err)
	}
	// Forwarding: the peer's segment for the slot's connection reaches
	// the host.
	f := tcpFrame(t, fromPeer(peerISN, hostISN, "after the lease"))
	send(t, c.srv, f)
	if got := c.recv(c.host); !bytes.Equal(got, f) {
		t.Errorf("host got %x, want the peer's frame forwarded", got)
	}
	if ls, err := cl.Leases(cx); err != nil || len(ls) != 0 {
		t.Errorf("leases after expiry: %+v, %v", ls, err)
	}
}

// TestLeaseHeldByStream: a bound wake stream keeps the lease past its
// period; when the stream closes the period starts, then it ends.
func TestLeaseHeldByStream(t *testing.T) {
	c := newCtl(t, 2, nil)
	cl := c.as(&rootCred)
	cx := ctx(t)
	const period = 150 * time.Millisecond
	if _, err := cl.RenewLease(cx, "host", period); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ArmLeased(cx, slotConfig(40000), "host"); err != nil {
		t.Fatal(err)
	}
	st, err := cl.StreamWakesLeased(cx, 0, "host")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := cl.Leases(cx)
	if err != nil || len(ls) != 1 || ls[0].Streams != 1 || !ls[0].Expires.IsZero() {
		t.Fatalf("bound lease %+v, %v; want one stream and no expiry", ls, err)
	}
	<-time.After(4 * period) // the lease must outlive its period while the stream is open
	if got := c.dev.Slots(); len(got) != 1 {
		t.Fatalf("slots %v with the stream open, want the leased one", got)
	}
	st.Close()
	start := time.Now()
	waitUntil(t, 5*time.Second, "lease ended after the stream closed", func() bool { return len(c.dev.Slots()) == 0 })
	if el := time.Since(start); el < period/2 {
		t.Errorf("lease ended %v after the stream closed, want about %v", el, period)
	}
	if n := c.apiCounter("leases_expired"); n != 1 {
		t.Errorf("leases_expired = %d, want 1", n)
	}
}

func TestLeaseRefusals(t *testing.T) {
	c := newCtl(t, 2, nil)
	cx := ctx(t)
	bob := c.as(&bobCred)
	if _, err := bob.RenewLease(cx, "bob-host", time.Minute); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		method, path string
		body         string
		status       int
		code, field  string
	}{
		{"owner missing", "PUT", "/v1/lease", `{"period":"5s"}`, 400, "bad_request", "owner"},
		{"owner with a slash", "PUT", "/v1/lease", `{"owner":"a/b"}`, 400, "bad_request", "owner"},
		{"owner too long", "PUT", "/v1/lease", `{"owner":"` + strings.Repeat("h", 65) + `"}`, 422, "limit", "owner"},
		{"period not a duration", "PUT", "/v1/lease", `{"owner":"h","period":"soon"}`, 400, "bad_request", "period"},
		{"period too short", "PUT", "/v1/lease", `{"owner":"h","period":"1ms"}`, 422, "limit", "period"},
		{"period too long", "PUT", "/v1/lease", `{"owner":"h","period":"2h"}`, 422, "limit", "period"},
		{"unknown field", "PUT", "/v1/lease", `{"owner":"h","ttl":"5s"}`, 400, "bad_request", "ttl"},
		{"unknown lease", "GET", "/v1/leases/nobody", ``, 404, "not_found", "owner"},
		{"release unknown", "DELETE", "/v1/leases/nobody", ``, 404, "not_found", "owner"},
		{"stream unknown lease", "GET", "/v1/wakes/stream?lease=nobody", ``, 404, "not_found", "lease"},
		{"slots bad lease", "GET", "/v1/slots?lease=a%20b", ``, 400, "bad_request", "lease"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, ce, b, _ := c.raw(tt.method, tt.path, tt.body)
			if st != tt.status || ce == nil || ce.Code != tt.code || ce.Field != tt.field {
				t.Errorf("%s %s: %d %+v (%s), want %d %s field %q", tt.method, tt.path, st, ce, b, tt.status, tt.code, tt.field)
			}
		})
	}
	// Another member of the group may not renew, release or arm under
	// bob's lease; root may.
	alice := c.as(&aliceCred)
	if _, err := alice.RenewLease(cx, "bob-host", time.Minute); !isCode(err, 403, "forbidden") {
		t.Errorf("alice renews bob's lease: %v, want 403", err)
	}
	if _, err := alice.ArmLeased(cx, slotConfig(40000), "bob-host"); !isCode(err, 403, "forbidden") {
		t.Errorf("alice arms under bob's lease: %v, want 403", err)
	}
	if _, err := alice.ReleaseLease(cx, "bob-host"); !isCode(err, 403, "forbidden") {
		t.Errorf("alice releases bob's lease: %v, want 403", err)
	}
	if _, err := alice.ArmLeased(cx, slotConfig(40000), "nobody"); !isCode(err, 404, "not_found") {
		t.Errorf("arm under no lease: %v, want 404", err)
	}
	if got := c.dev.Slots(); len(got) != 0 {
		t.Errorf("slots %v after refused arms", got)
	}
	if _, err := c.as(&rootCred).ReleaseLease(cx, "bob-host"); err != nil {
		t.Errorf("root releases bob's lease: %v", err)
	}
	// A user outside the group has no lease rights at all.
	if _, err := c.as(&userCred).RenewLease(cx, "u", time.Minute); !isCode(err, 403, "forbidden") {
		t.Errorf("outsider takes a lease: %v, want 403", err)
	}
}

// TestRemoteLease: a Remote holds its slots under its lease; a new
// instance clears its predecessor's (slots disarmed, NIC in D0) or takes
// it over.
func TestRemoteLease(t *testing.T) {
	c := newCtl(t, 4, nil)
	cl := c.as(&rootCred)
	first, err := cl.Remote(&nic.RemoteConfig{Lease: &nic.RemoteLease{Owner: "host", Period: time.Minute, KeepOnClose: true}})
	if err != nil {
		t.Fatal(err)
	}
	if p := first.PreviousLease(); p.Found {
		t.Errorf("first instance found %+v", p)
	}
	id, err := first.Arm(slotConfig(40000))
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Sleep(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil { // as if it crashed: the lease is kept
		t.Fatal(err)
	}
	// The next instance takes it over: the slot stays, the NIC sleeps on.
	second, err := cl.Remote(&nic.RemoteConfig{Lease: &nic.RemoteLease{Owner: "host", Period: time.Minute, TakeOver: true, KeepOnClose: true}})
	if err != nil {
		t.Fatal(err)
	}
	p := second.PreviousLease()
	if !p.Found || !p.TookOver || !cmp.Equal(p.Lease.Slots, []nic.SlotID{id}) || c.dev.State() != nic.D3 {
		t.Errorf("take over: %+v, state %v", p, c.dev.State())
	}
	second.Close()
	// The one after clears it: slot disarmed, NIC in D0.
	third, err := cl.Remote(&nic.RemoteConfig{Lease: &nic.RemoteLease{Owner: "host", Period: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	p = third.PreviousLease()
	if !p.Found || p.TookOver || len(p.Released.Disarmed) != 1 || p.Released.Disarmed[0].ID != id || !p.Resumed {
		t.Errorf("clear: %+v", p)
	}
	if st, slots := c.dev.State(), c.dev.Slots(); st != nic.D0 || len(slots) != 0 {
		t.Errorf("after clearing: %v, slots %v; want D0, none", st, slots)
	}
	if ls, _ := cl.Leases(ctx(t)); len(ls) != 1 || ls[0].Streams != 1 {
		t.Errorf("leases %+v, want the third's, bound to its stream", ls)
	}
	if err := third.Close(); err != nil {
		t.Fatal(err)
	}
	if ls, _ := cl.Leases(ctx(t)); len(ls) != 0 {
		t.Errorf("leases after Close: %+v, want none (released)", ls)
	}
}

// TestRemoteNICLostAndBack: the NIC daemon goes; the Remote raises a
// nic-lost wake; a new daemon comes; Back closes, the lease is taken
// again on it.
func TestRemoteNICLostAndBack(t *testing.T) {
	c := newCtl(t, 4, nil)
	cl := c.as(&rootCred)
	rem, err := cl.Remote(&nic.RemoteConfig{Retry: 100 * time.Millisecond, Lease: &nic.RemoteLease{Owner: "host", Period: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer rem.Close()
	if _, err := rem.Arm(slotConfig(40000)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rem.Back():
	default:
		t.Error("Back not closed while up")
	}
	c.api.Close()
	select {
	case ev := <-rem.Wakes():
		if ev.Reason != nic.WakeNICLost || ev.Slot != 0 {
			t.Errorf("wake %+v, want nic-lost", ev)
		}
	case <-time.After(waitFor):
		t.Fatal("no nic-lost wake")
	}
	back := rem.Back()
	if h := rem.Health(); h.Up || h.Losses != 1 || h.LostAt.IsZero() {
		t.Errorf("health while lost %+v", h)
	}
	select {
	case <-back:
		t.Fatal("Back closed with no NIC")
	default:
	}
	cfg := &nic.ControlConfig{}
	nic.SetPeerCred(cfg, func(net.Conn) (*nic.Cred, error) { return &nic.Cred{PID: 7}, nil })
	srv := nic.NewControlServer(c.dev, cfg)
	defer srv.Close()
	if err := srv.ListenUnix(c.path, 0o600, -1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-back:
	case <-time.After(waitFor):
		t.Fatal("Back not closed after the NIC came back")
	}
	if h := rem.Health(); !h.Up || h.Restarts != 1 || h.Losses != 1 {
		t.Errorf("health after the restart %+v", h)
	}
	cl2, err := nic.DialControl(c.path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	waitUntil(t, waitFor, "the lease taken on the new NIC", func() bool {
		ls, err := cl2.Leases(ctx(t))
		return err == nil && len(ls) == 1 && ls[0].Owner == "host"
	})
	select {
	case ev := <-rem.Wakes():
		t.Errorf("a second wake %+v after one loss", ev)
	default:
	}
}

// TestRemoteRenewalTimeoutIsNICLost: a NIC daemon that hangs (its
// renewals go unanswered, the wake stream stays open) is lost to the
// Remote within a period; when it answers again it is back, the same
// instance.
func TestRemoteRenewalTimeoutIsNICLost(t *testing.T) {
	r := newRig(t, nil)
	api := nic.NewControlServer(r.dev, nil)
	defer api.Close()
	var hang atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if hang.Load() && req.URL.Path == "/v1/lease" {
			io.Copy(io.Discard, req.Body) // so that the server watches for the client's going
			<-req.Context().Done()        // never answered: the client gives up
			return
		}
		api.ServeHTTP(w, nic.WithCred(req, &rootCred))
	})
	path := filepath.Join(t.TempDir(), "hang.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h}
	go hs.Serve(ln)
	defer hs.Close()
	cl, err := nic.DialControl(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const period = 300 * time.Millisecond
	rem, err := cl.Remote(&nic.RemoteConfig{Lease: &nic.RemoteLease{Owner: "host", Period: period}})
	if err != nil {
		t.Fatal(err)
	}
	defer rem.Close()
	hang.Store(true)
	start := time.Now()
	select {
	case ev := <-rem.Wakes():
		if ev.Reason != nic.WakeNICLost {
			t.Fatalf("wake %+v, want nic-lost", ev)
		}
	case <-time.After(waitFor):
		t.Fatal("no nic-lost wake while the NIC did not answer")
	}
	if el := time.Since(start); el > 2*period {
		t.Errorf("lost after %v, want within about a period (%v)", el, period)
	}
	back := rem.Back()
	hang.Store(false)
	select {
	case <-back:
	case <-time.After(waitFor):
		t.Fatal("not back after the NIC answered again")
	}
	if h := rem.Health(); !h.Up || h.Losses != 1 || h.Restarts != 0 {
		t.Errorf("health %+v, want up after 1 loss, the same instance", h)
	}
}

func TestLeaseRenewalKeepsItsPeriod(t *testing.T) {
	c := newCtl(t, 2, nil)
	cl := c.as(&rootCred)
	cx := ctx(t)
	if l, err := cl.RenewLease(cx, "a", 0); err != nil || l.Period != nic.DefaultLeasePeriod {
		t.Fatalf("new lease without a period: %+v, %v; want %v", l, err, nic.DefaultLeasePeriod)
	}
	if l, err := cl.RenewLease(cx, "a", time.Minute); err != nil || l.Period != time.Minute {
		t.Fatalf("renewed with a period: %+v, %v", l, err)
	}
	if l, err := cl.RenewLease(cx, "a", 0); err != nil || l.Period != time.Minute {
		t.Errorf("renewed without one: %+v, %v; want the lease's minute kept", l, err)
	}
}

// TestRemoteArmRetakesALostLease: a NIC that ended the Remote's lease
// (here: released by root) gets it again at the next Arm.
func TestRemoteArmRetakesALostLease(t *testing.T) {
	c := newCtl(t, 4, nil)
	cl := c.as(&rootCred)
	rem, err := cl.Remote(&nic.RemoteConfig{Lease: &nic.RemoteLease{Owner: "host", Period: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	defer rem.Close()
	if _, err := cl.ReleaseLease(ctx(t), "host"); err != nil {
		t.Fatal(err)
	}
	id, err := rem.Arm(slotConfig(40000))
	if err != nil {
		t.Fatalf("Arm after the lease ended: %v", err)
	}
	ss, err := rem.LeaseSlots()
	if err != nil || len(ss) != 1 || ss[0].ID != id || ss[0].Lease != "host" {
		t.Errorf("LeaseSlots = %+v, %v; want slot %d under the lease", ss, err, id)
	}
	// Whatever was armed under the ended lease is gone: the host is told.
	select {
	case ev := <-rem.Wakes():
		if ev.Reason != nic.WakeNICLost {
			t.Errorf("wake %+v, want nic-lost", ev)
		}
	case <-time.After(waitFor):
		t.Fatal("no nic-lost wake for the ended lease")
	}
	if h := rem.Health(); !h.Up || h.Losses != 1 {
		t.Errorf("health %+v, want up after 1 loss", h)
	}
}
