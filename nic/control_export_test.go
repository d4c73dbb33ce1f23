package nic

import (
	"encoding/json"
	"net"

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
