package nic_test

import (
	"errors"
	"net/http"
	"net/netip"
	"testing"

	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/profile"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// TestControlProfileRefusals: a request the device's firmware profile
// cannot honour is refused through the control API with the part's own
// error — the profile, the part's error name and number — and the client
// matches it with profile.ErrRefused (and ErrNoSlot for a full device).
func TestControlProfileRefusals(t *testing.T) {
	p, err := profile.Lookup(profile.AndroidAPF)
	if err != nil {
		t.Fatal(err)
	}
	p = p.Scaled(10)
	c := newCtlDev(t, func(cfg *nic.Config) { cfg.Profile = &p }, nil)
	cl := c.as(&rootCred)
	cx := ctx(t)
	spec := probeSpec()
	spec.Interval = p.MinInterval
	arm := func(sc nic.SlotConfig) *nic.ControlError {
		t.Helper()
		sc.Spec = spec
		_, err := cl.Arm(cx, sc)
		var ce *nic.ControlError
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("arm: %v (%T), want a *nic.ControlError", err, err)
		}
		return ce
	}

	// IPv6: Android offloads TCP keep-alives over IPv4 only.
	v6 := slotConfig(40000)
	v6.Snapshot.Local = netip.MustParseAddrPort("[2001:2::2]:40000")
	v6.Snapshot.Remote = netip.MustParseAddrPort("[2001:2::1]:443")
	v6.Pattern = wp.TCPConn{Local: v6.Snapshot.Local, Remote: v6.Snapshot.Remote}
	ce := arm(v6)
	if ce == nil || ce.Status != http.StatusUnprocessableEntity || ce.Code != "refused" ||
		ce.Profile != p.Name || ce.PartCode != "ERROR_INVALID_IP_ADDRESS" || ce.PartNum != -21 {
		t.Fatalf("IPv6 arm: %+v, want 422 refused by android-apf with ERROR_INVALID_IP_ADDRESS (-21)", ce)
	}
	if !errors.Is(ce, profile.ErrRefused) || errors.Is(ce, nic.ErrNoSlot) {
		t.Errorf("IPv6 refusal: Is(ErrRefused) %v, Is(ErrNoSlot) %v; want true, false", errors.Is(ce, profile.ErrRefused), errors.Is(ce, nic.ErrNoSlot))
	}

	// Fill the part's slots, then one more: ERROR_INSUFFICIENT_RESOURCES.
	slots := c.dev.Capabilities().Slots
	for i := range slots {
		if ce := arm(slotConfig(40001 + uint16(i))); ce != nil {
			t.Fatalf("arm %d of %d: %+v", i+1, slots, ce)
		}
	}
	ce = arm(slotConfig(40001 + uint16(slots)))
	if ce == nil || ce.Status != http.StatusConflict || ce.Code != "refused" || ce.Field != "slots" ||
		ce.PartCode != "ERROR_INSUFFICIENT_RESOURCES" || ce.PartNum != -32 {
		t.Fatalf("arm past %d slots: %+v, want 409 refused (slots) with ERROR_INSUFFICIENT_RESOURCES (-32)", slots, ce)
	}
	if !errors.Is(ce, nic.ErrNoSlot) || !errors.Is(ce, profile.ErrRefused) {
		t.Errorf("full device: Is(ErrNoSlot) %v, Is(ErrRefused) %v; want both", errors.Is(ce, nic.ErrNoSlot), errors.Is(ce, profile.ErrRefused))
	}
}
