package nic_test

import (
	"errors"
	"os"
	"testing"

	"github.com/standbynic/standbynic/nic"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// Credentials whose uid and gid differ, crossed: the impostor's gid is
// the owner's uid (and its uid the owner's gid). Both are in the control
// group through a supplementary group. Every other test credential has
// uid == gid, so a check comparing the gid instead of the uid would pass
// them all.
var (
	ownerCred    = nic.Cred{PID: 301, UID: 3001, GID: 4001, Groups: []uint32{ctlGroup}}
	impostorCred = nic.Cred{PID: 401, UID: 4001, GID: 3001, Groups: []uint32{ctlGroup}}
)

// TestAuthorizeOwnerIsUID: the owner right goes to the uid that owns the
// resource, never to a gid equal to it.
func TestAuthorizeOwnerIsUID(t *testing.T) {
	for _, tc := range []struct {
		name string
		cred nic.Cred
		ok   bool
	}{
		{"owner uid, other gid", ownerCred, true},
		{"gid = owner uid", impostorCred, false},
		{"supplementary group = owner uid", nic.Cred{UID: 5001, GID: 5001, Groups: []uint32{3001}}, false},
		{"root", rootCred, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := nic.Authorize(&tc.cred, nic.AccessOwner, ctlGroup, int64(ownerCred.UID))
			if (err == nil) != tc.ok {
				t.Errorf("Authorize(%+v, owner uid %d) = %v, want allowed %v", tc.cred, ownerCred.UID, err, tc.ok)
			}
		})
	}
}

// TestControlOwnerIsUID: a slot, a pattern, a wake packet and a lease
// belong to the uid of the caller who made them (not its gid), and a
// caller whose gid equals that uid may not disarm, remove, read or
// release them.
func TestControlOwnerIsUID(t *testing.T) {
	c := newCtl(t, 4, nil)
	cx := ctx(t)
	owner := c.as(&ownerCred)

	if _, err := owner.RenewLease(cx, "mail", 0); err != nil {
		t.Fatal(err)
	}
	cfg := nic.SlotConfig{Pattern: conn, Spec: probeSpec(), Snapshot: snapshot(), Owner: "mail"}
	id, err := owner.ArmLeased(cx, cfg, "mail")
	if err != nil {
		t.Fatal(err)
	}
	magic := wp.Pattern{ID: 9, Kind: wp.KindMagic, Magic: wp.Magic{MAC: hostMAC}}
	if err := owner.AddPattern(cx, magic); err != nil {
		t.Fatal(err)
	}
	st, err := owner.Slot(cx, id)
	if err != nil || st.Owner != int64(ownerCred.UID) {
		t.Fatalf("slot %d owner %d, %v; want the caller's uid %d (its gid is %d)", id, st.Owner, err, ownerCred.UID, ownerCred.GID)
	}
	leases, err := owner.Leases(cx)
	if err != nil || len(leases) != 1 || leases[0].UID != ownerCred.UID {
		t.Fatalf("leases %+v, %v; want one of uid %d", leases, err, ownerCred.UID)
	}

	// A wake of the owner's slot, with its packet saved.
	stream, err := owner.StreamWakes(cx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if _, err := owner.SetPower(cx, nic.D3); err != nil {
		t.Fatal(err)
	}
	send(t, c.srv, tcpFrame(t, fromPeer(peerISN, hostISN, "push!")))
	rec, err := stream.Next()
	if err != nil {
		t.Fatal(err)
	}
	if rec.Owner != int64(ownerCred.UID) || rec.Event.Slot != id || rec.Saved == 0 {
		t.Fatalf("wake %+v, want slot %d owned by uid %d with its packet", rec, id, ownerCred.UID)
	}
	seq := rec.Seq

	imp := c.as(&impostorCred)
	forbidden := func(what string, err error) {
		t.Helper()
		if !isCode(err, 403, "forbidden") || !errors.Is(err, os.ErrPermission) {
			t.Errorf("%s as uid %d gid %d: %v, want 403", what, impostorCred.UID, impostorCred.GID, err)
		}
	}
	_, err = imp.WakePacket(cx, seq)
	forbidden("wake packet", err)
	_, err = imp.Disarm(cx, id)
	forbidden("disarm", err)
	forbidden("remove pattern", imp.RemovePattern(cx, magic.ID))
	_, err = imp.ReleaseLease(cx, "mail")
	forbidden("release lease", err)
	_, err = imp.RenewLease(cx, "mail", 0)
	forbidden("renew lease", err)

	// The owner, whose gid is the impostor's uid, may.
	owner = c.as(&ownerCred)
	if _, err := owner.WakePacket(cx, seq); err != nil {
		t.Errorf("wake packet as the owner: %v", err)
	}
	if _, err := owner.SetPower(cx, nic.D0); err != nil {
		t.Fatal(err)
	}
	if err := owner.RemovePattern(cx, magic.ID); err != nil {
		t.Errorf("remove pattern as the owner: %v", err)
	}
	if _, err := owner.Disarm(cx, id); err != nil {
		t.Errorf("disarm as the owner: %v", err)
	}
	if _, err := owner.ReleaseLease(cx, "mail"); err != nil {
		t.Errorf("release lease as the owner: %v", err)
	}
}
