package nic

import (
	"context"
	"encoding/json"
	"net"
	"net/http"

	"github.com/standbynic/standbynic/offload"
)

// Access levels and the credential check, for table tests.
type Access = access

const (
	AccessInvalid = accessInvalid
	AccessAny     = accessAny
	AccessControl = accessControl
	AccessOwner   = accessOwner
)

// Authorize is the control API's credential check.
func Authorize(c *Cred, a Access, group uint32, owner int64) error {
	return authorize(c, a, group, owner)
}

// SetPeerCred makes the server built from cfg read each accepted
// connection's credentials with f instead of SO_PEERCRED: the injected
// credentials take the listener's path.
func SetPeerCred(cfg *ControlConfig, f func(net.Conn) (*Cred, error)) { cfg.peerCred = f }

// SetGroupMember makes the server built from cfg ask f, instead of the
// group database, whether a uid is a member of the control group now.
func SetGroupMember(cfg *ControlConfig, f func(uid, gid uint32) (member, known bool)) {
	cfg.groupMember = f
}

// ReportRoundTrip encodes a report as DELETE /v1/slots/{id} does and
// decodes it as the client does.
func ReportRoundTrip(r offload.Report) (offload.Report, []byte, error) {
	b, err := json.Marshal(reportToJSON(&r))
	if err != nil {
		return offload.Report{}, nil, err
	}
	var j reportJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return offload.Report{}, b, err
	}
	got, err := j.report()
	return got, b, err
}

// SnapshotRoundTrip encodes a snapshot as the client does and parses it
// as the server does.
func SnapshotRoundTrip(s offload.Snapshot) (offload.Snapshot, error) {
	b, err := json.Marshal(snapshotToJSON(&s))
	if err != nil {
		return offload.Snapshot{}, err
	}
	return parseSnapshot(b)
}

// ParseArm decodes a POST /v1/slots body as the server does; a refusal
// is returned with its HTTP status.
func ParseArm(b []byte) (SlotConfig, string, int, error) {
	cfg, label, err := parseArm(b)
	if err != nil {
		if ae, ok := err.(*apiError); ok {
			return cfg, label, ae.Status, err
		}
		return cfg, label, 0, err
	}
	return cfg, label, 0, nil
}

// ArmBody encodes a slot as ControlClient.Arm does.
func ArmBody(s SlotConfig) ([]byte, error) {
	return json.Marshal(armRequest{Pattern: connToJSON(s.Pattern), Spec: s.Spec, Snapshot: snapshotToJSON(&s.Snapshot), Label: s.Owner})
}

// WithCred returns r carrying c as its connection's peer credentials.
func WithCred(r *http.Request, c *Cred) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), credKey{}, c))
}

// ControlConnsOpen returns the connections the server holds open.
func ControlConnsOpen(s *ControlServer) int64 { return s.conns.Load() }

// ControlCounter returns one of the API's own counters (as in /metrics,
// without the standbynic_control_ prefix).
func ControlCounter(s *ControlServer, name string) (uint64, bool) {
	for _, c := range s.apiCounters() {
		if c.Name == name {
			return c.Value, true
		}
	}
	return 0, false
}
