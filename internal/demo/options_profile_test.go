package demo

import (
	"strings"
	"testing"
	"time"

	"github.com/standbynic/standbynic/profile"
)

// TestOptionsProfile: an unknown profile is refused naming the option; a
// profile with no --slots gives the part's slot count, an explicit count
// wins.
func TestOptionsProfile(t *testing.T) {
	if err := (Options{Profile: "acme-9000"}).Validate(); err == nil || !strings.HasPrefix(err.Error(), "profile: ") {
		t.Errorf("Validate(acme-9000) = %v, want an error starting with \"profile: \"", err)
	}
	p, err := profile.Lookup(profile.InfineonTKO)
	if err != nil {
		t.Fatal(err)
	}
	if err := (Options{Profile: p.Name}).Validate(); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0)
	if got := (Options{Profile: p.Name}).withDefaults(now).Slots; got != p.Slots {
		t.Errorf("slots with profile %s = %d, want the part's %d", p.Name, got, p.Slots)
	}
	if got := (Options{Profile: p.Name, Slots: 2}).withDefaults(now).Slots; got != 2 {
		t.Errorf("slots with profile and Slots 2 = %d, want 2", got)
	}
	if got := (Options{}).withDefaults(now).Slots; got != DefaultSlots {
		t.Errorf("slots without a profile = %d, want %d", got, DefaultSlots)
	}
}
