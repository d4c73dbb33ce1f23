package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/standbynic/standbynic/host"
	"github.com/standbynic/standbynic/nic"
)

var _ host.NIC = (*nic.Remote)(nil)

// nicLease is the host's lease on its NIC (nil: none).
type nicLease = nic.RemoteLease

// leaseFlags are the host command's lease flags (its slots are held under
// a lease the NIC ends if the host dies or hangs: nic/lease.go).
type leaseFlags struct {
	owner    *string
	period   *time.Duration
	takeOver *bool
}

// addLeaseFlags adds --lease-owner, --lease-period and --lease-take-over.
func addLeaseFlags(fs *cmdFlags) *leaseFlags {
	return &leaseFlags{
		owner: fs.String("lease-owner", "", "`NAME` of the lease the host's slots are held under (1–64 letters, digits or ._:@-; "+
			"default: host-<config file name>-<hash of its path>, the same across restarts): a host that starts finds its predecessor's lease by it"),
		period: newDurationFlag(fs, "lease-period", nic.DefaultLeasePeriod, nic.MinLeasePeriod, nic.MaxLeasePeriod, false,
			"the lease's period: a host silent this long (dead or hung) loses its slots, and the NIC returns to D0 and forwards"),
		takeOver: fs.Bool("lease-take-over", false, "keep a predecessor's lease and its armed slots instead of clearing them "+
			"(default: a previous instance's slots are disarmed and the NIC brought to D0)"),
	}
}

// lease returns the Remote's lease for the config file cfgPath.
func (f *leaseFlags) lease(cfgPath string) (*nic.RemoteLease, error) {
	owner := *f.owner
	if owner == "" {
		owner = defaultLeaseOwner(cfgPath)
	}
	if err := checkOwnerName(owner); err != nil {
		return nil, fmt.Errorf("-lease-owner: %w", err)
	}
	return &nic.RemoteLease{Owner: owner, Period: *f.period, TakeOver: *f.takeOver}, nil
}

// checkOwnerName is the NIC's rule for lease owners, checked before any
// connection.
func checkOwnerName(s string) error {
	if s == "" || len(s) > nic.MaxLeaseOwner {
		return fmt.Errorf("%q: %d bytes, want 1–%d", s, len(s), nic.MaxLeaseOwner)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:@-", c) >= 0) {
			return fmt.Errorf("%q: byte %d (%q) is not a letter, digit or one of ._:@-", s, i, c)
		}
	}
	return nil
}

// defaultLeaseOwner derives the lease owner from the config file: its
// name (letters, digits, . _ - kept, at most 32 bytes) and 8 hex digits
// of a hash of its absolute path, so that a restarted host with the same
// config finds its predecessor's lease and two hosts with different
// configs do not share one.
func defaultLeaseOwner(cfgPath string) string {
	abs, err := filepath.Abs(cfgPath)
	if err != nil {
		abs = cfgPath
	}
	name := strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs))
	var b strings.Builder
	for i := 0; i < len(name) && b.Len() < 32; i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteByte(c)
		}
	}
	sum := sha256.Sum256([]byte(abs))
	return "host-" + b.String() + "-" + hex.EncodeToString(sum[:4])
}

// dialNIC connects to the NIC daemon's control socket and returns it as the
// host's NIC (nic.Remote: every host call is a control request; wake events
// come from the wake stream) with the function that closes it. With a
// lease, the Remote settles a previous instance's lease first (clears its
// slots and brings the NIC to D0, or takes it over) and renews its own;
// the host watches it (host.NICWatcher: a nic-lost wake when it dies,
// restarts or stops answering).
func dialNIC(path string, log *slog.Logger, lease *nic.RemoteLease) (host.NIC, func() error, error) {
	c, err := nic.DialControl(path)
	if err != nil {
		return nil, nil, err
	}
	r, err := c.Remote(&nic.RemoteConfig{Logger: log.With("component", "nic-remote"), Lease: lease})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if lease != nil {
		p := r.PreviousLease()
		switch {
		case p.TookOver:
			log.Info("nic lease: took over the previous instance's", "owner", lease.Owner, "slots", len(p.Lease.Slots), "previous_pid", p.Lease.PID)
		case p.Found:
			log.Warn("nic lease: cleared the previous instance's", "owner", lease.Owner, "previous_pid", p.Lease.PID,
				"slots_disarmed", len(p.Released.Disarmed), "resumed", p.Resumed)
		case p.Resumed:
			log.Warn("nic lease: the NIC was outside D0 without a lease; brought to D0", "owner", lease.Owner)
		}
		log.Info("nic lease held", "owner", lease.Owner, "period", lease.Period.String())
	}
	return r, func() error {
		err := r.Close()
		c.Close()
		return err
	}, nil
}
