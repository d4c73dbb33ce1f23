package nic

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os/user"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Leases: how the NIC knows a host is still behind its slots.
//
// A host (a control client, identified by its uid) holds its slots under
// a lease it names (owner) and renews within a period, as a DHCP client
// renews its address or a service pets the systemd watchdog:
//
//	PUT /v1/lease {"owner":"host","period":"5s"}  grant (201) or renew (200)
//	GET /v1/wakes/stream?lease=host               while open, the lease is
//	                                              renewed continuously
//	POST /v1/slots {…, "lease":"host"}            the slot is the lease's
//	DELETE /v1/leases/host                        release (clean shutdown)
//
// A lease lives until one period after its last sign of life: a PUT, or
// the close of the last wake stream bound to it (so a host whose process
// dies, closing its socket, loses it one period later; one that hangs
// with the stream open holds it, and its renewals time out on its side).
// When it ends, expired or released, the NIC fails open:
//
//	lease ends ─▶ disarm each of its slots ─▶ D3/waking? wake + resume ─▶ D0, forwarding
//
// so the peers' segments reach the host's kernel again and its TCP
// recovers by itself (retransmissions, keep-alives, RST for sockets that
// are gone). Each end is logged and counted: standbynic_control_leases_expired_total,
// _leases_released_total, _lease_slots_disarmed_total, _lease_resumes_total.
//
// A host that starts lists the leases (GET /v1/leases), finds its
// owner's from a previous instance and either takes it over (PUT with the
// same owner: its slots stay armed; counted as leases_taken_over when the
// pid differs) or clears it (DELETE: its slots are disarmed and the NIC
// returns to D0). Slots armed without a lease never expire.
//
// States of a lease:
//
//	          PUT (201)            PUT / stream bound (200)
//	(none) ─────────────▶ held ◀──────────────────────────┐
//	                        │ └─────────────────────────────┘
//	                        │ period passed with no stream bound (expired)
//	                        │ or DELETE (released)
//	                        ▼
//	                      ended: slots disarmed, NIC in D0

// Lease limits and defaults.
const (
	// DefaultLeasePeriod is the period of a lease taken without one.
	DefaultLeasePeriod = 5 * time.Second
	MinLeasePeriod     = 100 * time.Millisecond
	MaxLeasePeriod     = time.Hour
	// MaxLeases bounds the leases held at once.
	MaxLeases = 64
	// MaxLeaseOwner is the longest lease owner name, in bytes.
	MaxLeaseOwner = 64
)

// lease is a lease held on the server. Guarded by ControlServer.mu.
type lease struct {
	owner    string
	uid      uint32
	pid      int32 // the last renewer's
	period   time.Duration
	granted  time.Time
	renewed  time.Time // the last sign of life
	streams  int       // wake streams bound to it, open
	renewals uint64
}

// expires is when the lease ends unless renewed; a lease with a stream
// bound does not expire (ok false).
func (l *lease) expires() (time.Time, bool) {
	if l.streams > 0 {
		return time.Time{}, false
	}
	return l.renewed.Add(l.period), true
}

// checkLeaseOwner validates a lease owner name: 1–64 bytes of letters,
// digits and ._:@- (it appears in paths and logs).
func checkLeaseOwner(field, v string) error {
	if v == "" {
		return errorf(http.StatusBadRequest, codeBadRequest, field, "", "%s: missing", field)
	}
	if len(v) > MaxLeaseOwner {
		return errorf(http.StatusUnprocessableEntity, codeLimit, field, fmt.Sprintf("%d bytes", MaxLeaseOwner),
			"%s: %d bytes above %d", field, len(v), MaxLeaseOwner)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '@' || c == '-') {
			return errorf(http.StatusBadRequest, codeBadRequest, field, "", "%s: %q: byte %d (%q) is not a letter, digit or one of ._:@-", field, v, i, c)
		}
	}
	return nil
}

// leaseOf returns the lease named owner if c may act on it (root or its
// uid). Called with s.mu held.
func (s *ControlServer) leaseOf(c *Cred, owner, field string) (*lease, error) {
	l := s.leases[owner]
	if l == nil {
		return nil, errorf(http.StatusNotFound, codeNotFound, field, "", "lease %q: none held (take it with PUT /v1/lease)", owner)
	}
	if err := s.check(c, accessOwner, int64(l.uid)); err != nil {
		return nil, err
	}
	return l, nil
}

// bindLocked binds a wake stream to l: the lease lives while it is open.
func (s *ControlServer) bindLocked(l *lease, c *Cred) {
	l.streams++
	l.renewed = time.Now()
	if c != nil {
		l.pid = c.PID
	}
	s.kickLeases()
}

// unbindLocked is the end of a stream bound to l: the lease's period
// starts again now.
func (s *ControlServer) unbindLocked(l *lease) {
	l.streams--
	l.renewed = time.Now()
	s.kickLeases()
}

func (s *ControlServer) kickLeases() {
	select {
	case s.leaseKick <- struct{}{}:
	default:
	}
}

// leaseLoop ends the leases whose period passed. It is owned by the
// server (s.wg) and stops at Close.
func (s *ControlServer) leaseLoop() {
	defer s.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		s.mu.Lock()
		next, ok := s.expireLocked(time.Now())
		s.mu.Unlock()
		if ok {
			t.Reset(time.Until(next))
		} else {
			t.Stop()
		}
		select {
		case <-t.C:
		case <-s.leaseKick:
		case <-s.done:
			t.Stop()
			return
		}
	}
}

// expireLocked ends the leases expired at now and returns the next
// expiry. Called with s.mu held.
func (s *ControlServer) expireLocked(now time.Time) (time.Time, bool) {
	var next time.Time
	ok := false
	for _, owner := range slices.Sorted(maps.Keys(s.leases)) {
		l := s.leases[owner]
		exp, expires := l.expires()
		if !expires {
			continue
		}
		if !exp.After(now) {
			s.cnt.leasesExpired.Add(1)
			s.endLeaseLocked(l, "expired")
			continue
		}
		if !ok || exp.Before(next) {
			next, ok = exp, true
		}
	}
	return next, ok
}

// releasedSlot is a slot disarmed because its lease ended.
type releasedSlot struct {
	ID     SlotID     `json:"id"`
	Label  string     `json:"label,omitempty"`
	Report reportJSON `json:"report"`
	Error  string     `json:"error,omitempty"`
}

// leaseEnd is what ending a lease did.
type leaseEnd struct {
	Owner    string         `json:"owner"`
	Reason   string         `json:"reason"`
	Disarmed []releasedSlot `json:"disarmed"`
	// From is the power state the NIC was in; Power the one it is in.
	From  string `json:"from"`
	Power string `json:"power"`
}

// endLeaseLocked ends l: its slots are disarmed and the NIC returns to
// D0 (fail-open), whatever it was doing. Called with s.mu held (device
// calls under mu, as for arm and disarm).
func (s *ControlServer) endLeaseLocked(l *lease, reason string) leaseEnd {
	delete(s.leases, l.owner)
	end := leaseEnd{Owner: l.owner, Reason: reason, Disarmed: []releasedSlot{}, From: s.d.State().String()}
	ids := make([]SlotID, 0, len(s.slots))
	for id, rec := range s.slots {
		if rec.lease == l.owner {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		rec := s.slots[id]
		rep, err := s.d.Disarm(id)
		delete(s.slots, id)
		s.hub.clearSlotOwner(id)
		rs := releasedSlot{ID: id, Label: rec.label, Report: reportToJSON(&rep)}
		if err != nil && !errors.Is(err, ErrUnknownSlot) {
			rs.Error = err.Error()
			s.log.Error("lease ended: disarm failed", "owner", l.owner, "slot", id, "err", err)
		}
		if !errors.Is(err, ErrUnknownSlot) {
			s.cnt.leaseSlotsDisarmed.Add(1)
			end.Disarmed = append(end.Disarmed, rs)
		}
	}
	resumed, err := s.failOpen()
	if resumed {
		s.cnt.leaseResumes.Add(1)
	}
	end.Power = s.d.State().String()
	args := []any{"owner", l.owner, "uid", l.uid, "pid", l.pid, "reason", reason, "period", l.period,
		"last_renewed", l.renewed.Format(time.RFC3339Nano), "slots_disarmed", len(end.Disarmed), "from", end.From, "power", end.Power}
	if err != nil {
		s.log.Error("lease ended: the NIC could not return to D0", append(args, "err", err)...)
	} else {
		s.log.Warn("lease ended: its slots disarmed, the NIC forwards (fail-open)", args...)
	}
	return end
}

// failOpen brings the device to D0 from D3, waking or arming; it reports
// whether it moved it.
func (s *ControlServer) failOpen() (bool, error) {
	moved := false
	for range 3 {
		switch st := s.d.State(); st {
		case D0, Closed:
			return moved, nil
		case D3, Arming:
			// Wake waits for a Sleep in progress; a Sleep that failed
			// left D0 (ErrState here, D0 on the next turn).
			if err := s.d.Wake(); err != nil && !errors.Is(err, ErrState) {
				return moved, fmt.Errorf("wake: %w", err)
			}
		case Waking:
			if err := s.d.Resume(); err != nil && !errors.Is(err, ErrState) {
				return moved, fmt.Errorf("resume: %w", err)
			}
			moved = true
		}
	}
	if st := s.d.State(); st != D0 {
		return moved, fmt.Errorf("still in %v", st)
	}
	return moved, nil
}

// --- handlers ---

type leaseReqJSON struct {
	Owner  string `json:"owner"`
	Period string `json:"period"`
}

type leaseJSON struct {
	Owner   string    `json:"owner"`
	UID     uint32    `json:"uid"`
	PID     int32     `json:"pid"`
	Period  string    `json:"period"`
	Granted time.Time `json:"granted"`
	Renewed time.Time `json:"renewed"`
	// Expires is absent while a wake stream holds the lease.
	Expires  *time.Time `json:"expires,omitempty"`
	Streams  int        `json:"streams"`
	Renewals uint64     `json:"renewals"`
	Slots    []SlotID   `json:"slots"`
	// Created (PUT only) says the lease is new; TakenOverFrom is the pid
	// that renewed it last when another one renews it now.
	Created       bool  `json:"created,omitempty"`
	TakenOverFrom int32 `json:"taken_over_from_pid,omitempty"`
}

// leaseToJSON describes l. Called with s.mu held.
func (s *ControlServer) leaseToJSON(l *lease) leaseJSON {
	j := leaseJSON{Owner: l.owner, UID: l.uid, PID: l.pid, Period: l.period.String(), Granted: l.granted,
		Renewed: l.renewed, Streams: l.streams, Renewals: l.renewals, Slots: []SlotID{}}
	if exp, ok := l.expires(); ok {
		j.Expires = &exp
	}
	for id, rec := range s.slots {
		if rec.lease == l.owner {
			j.Slots = append(j.Slots, id)
		}
	}
	slices.Sort(j.Slots)
	return j
}

func (s *ControlServer) putLease(w http.ResponseWriter, r *http.Request, c *Cred) error {
	b, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req leaseReqJSON
	if err := decodeStrict(b, &req, ""); err != nil {
		return err
	}
	if err := checkLeaseOwner("owner", req.Owner); err != nil {
		return err
	}
	period := time.Duration(0) // none asked: the lease's own, or the default
	if req.Period != "" {
		if period, err = time.ParseDuration(req.Period); err != nil {
			return errorf(http.StatusBadRequest, codeBadRequest, "period", "", "period: %q is not a duration such as \"5s\"", req.Period)
		}
		if period < MinLeasePeriod || period > MaxLeasePeriod {
			lim := fmt.Sprintf("%v..%v", MinLeasePeriod, MaxLeasePeriod)
			return errorf(http.StatusUnprocessableEntity, codeLimit, "period", lim, "period: %v outside %s", period, lim)
		}
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases[req.Owner]
	status := http.StatusOK
	var prevPID int32
	if l == nil {
		if len(s.leases) >= MaxLeases {
			return errorf(http.StatusUnprocessableEntity, codeLimit, "owner", fmt.Sprintf("%d leases", MaxLeases),
				"lease %q: %d leases held, the limit", req.Owner, MaxLeases)
		}
		l = &lease{owner: req.Owner, uid: c.UID, pid: c.PID, granted: now, period: DefaultLeasePeriod}
		s.leases[req.Owner] = l
		status = http.StatusCreated
		s.cnt.leasesGranted.Add(1)
		s.log.Info("lease granted", "owner", l.owner, "uid", c.UID, "pid", c.PID, "period", cmp.Or(period, DefaultLeasePeriod))
	} else {
		if err := s.check(c, accessOwner, int64(l.uid)); err != nil {
			return err
		}
		if l.pid != c.PID {
			prevPID = l.pid
			s.cnt.leasesTaken.Add(1)
			s.log.Warn("lease taken over", "owner", l.owner, "uid", c.UID, "pid", c.PID, "previous_pid", l.pid)
		}
		l.pid = c.PID
		l.renewals++
		s.cnt.leasesRenewed.Add(1)
	}
	if period != 0 {
		l.period = period
	}
	l.renewed = now
	s.kickLeases()
	j := s.leaseToJSON(l)
	j.Created, j.TakenOverFrom = status == http.StatusCreated, prevPID
	if status == http.StatusCreated {
		w.Header().Set("Location", "/v1/leases/"+l.owner)
	}
	writeJSON(w, status, j)
	return nil
}

func (s *ControlServer) getLeases(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	s.mu.Lock()
	out := make([]leaseJSON, 0, len(s.leases))
	for _, owner := range slices.Sorted(maps.Keys(s.leases)) {
		out = append(out, s.leaseToJSON(s.leases[owner]))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Leases []leaseJSON `json:"leases"`
	}{out})
	return nil
}

func (s *ControlServer) getLease(w http.ResponseWriter, r *http.Request, _ *Cred) error {
	owner := r.PathValue("owner")
	if err := checkLeaseOwner("owner", owner); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases[owner]
	if l == nil {
		return errorf(http.StatusNotFound, codeNotFound, "owner", "", "lease %q: none held", owner)
	}
	writeJSON(w, http.StatusOK, s.leaseToJSON(l))
	return nil
}

func (s *ControlServer) deleteLease(w http.ResponseWriter, r *http.Request, c *Cred) error {
	owner := r.PathValue("owner")
	if err := checkLeaseOwner("owner", owner); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.leaseOf(c, owner, "owner")
	if err != nil {
		return err
	}
	s.cnt.leasesReleased.Add(1)
	writeJSON(w, http.StatusOK, s.endLeaseLocked(l, "released"))
	return nil
}

// --- instance, group database ---

// newInstanceID returns 16 random hex digits.
func newInstanceID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// groupCache answers group-membership questions from the group database
// (os/user), each answer kept for ttl so that a burst of requests does
// not read /etc/group for each.
type groupCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[[2]uint32]groupAnswer
}

type groupAnswer struct {
	member, known bool
	at            time.Time
}

func newGroupCache(ttl time.Duration) *groupCache {
	return &groupCache{ttl: ttl, m: map[[2]uint32]groupAnswer{}}
}

// member reports whether the database lists uid in gid (as its primary
// group or a supplementary one); known is false when it does not know
// the uid or the group.
func (g *groupCache) member(uid, gid uint32) (member, known bool) {
	k := [2]uint32{uid, gid}
	now := time.Now()
	g.mu.Lock()
	if a, ok := g.m[k]; ok && now.Sub(a.at) < g.ttl {
		g.mu.Unlock()
		return a.member, a.known
	}
	g.mu.Unlock()
	a := groupAnswer{at: now}
	a.member, a.known = lookupMember(uid, gid)
	g.mu.Lock()
	if len(g.m) > 1024 {
		clear(g.m)
	}
	g.m[k] = a
	g.mu.Unlock()
	return a.member, a.known
}

func lookupMember(uid, gid uint32) (member, known bool) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return false, false
	}
	gs := strconv.FormatUint(uint64(gid), 10)
	if _, err := user.LookupGroupId(gs); err != nil {
		return false, false
	}
	if u.Gid == gs {
		return true, true
	}
	ids, err := u.GroupIds()
	if err != nil {
		return false, false
	}
	return slices.Contains(ids, gs), true
}
