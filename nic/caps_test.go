package nic

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCapabilitiesNormalize(t *testing.T) {
	got, err := Capabilities{}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	want := Capabilities{Slots: 8, WakePacketSave: 1514, PostWakeFrames: 1024, ARPOffloads: 8, NSOffloads: 2, MaxFrame: 9234}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	tests := []struct {
		name string
		caps Capabilities
		want string // "" = valid
	}{
		{"one slot", Capabilities{Slots: 1}, ""},
		{"64 slots", Capabilities{Slots: 64}, ""},
		{"65 slots", Capabilities{Slots: 65}, "capabilities slots = 65: must be 1–64"},
		{"negative slots", Capabilities{Slots: -1}, "capabilities slots = -1"},
		{"save 127", Capabilities{WakePacketSave: 127}, "capabilities wake packet save = 127: must be at least 128 bytes"},
		{"save 128", Capabilities{WakePacketSave: 128}, ""},
		{"post-wake too many", Capabilities{PostWakeFrames: 1<<16 + 1}, "capabilities post-wake frames = 65537"},
		{"9 ARP", Capabilities{ARPOffloads: 9}, "capabilities ARP offloads = 9: must be 1–8"},
		{"1 NS", Capabilities{NSOffloads: 1}, "capabilities NS offloads = 1: must be 2–8"},
		{"tiny frames", Capabilities{MaxFrame: 1000}, "capabilities max frame = 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.caps.Normalize()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Normalize() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrLimit) {
				t.Fatalf("Normalize() = %v, want an ErrLimit containing %q", err, tt.want)
			}
		})
	}
}

func TestCounterNamesUniqueAndSet(t *testing.T) {
	seen := map[string]bool{}
	for i, n := range counterNames {
		if n == "" {
			t.Errorf("counter %d has no name", i)
		}
		if seen[n] {
			t.Errorf("counter name %q used twice", n)
		}
		seen[n] = true
	}
	for i, n := range slotCounterNames {
		if n == "" {
			t.Errorf("slot counter %d has no name", i)
		}
	}
}

func TestWritePrometheus(t *testing.T) {
	var b strings.Builder
	cs := []Counter{{"rx_frames", 3}, {"slot1_keepalives_sent", 2}, {"slot2_keepalives_sent", 5}, {"slotx_odd", 1}}
	if err := WritePrometheus(&b, "standbynic_nic_", map[string]string{"dev": "nic0"}, cs); err != nil {
		t.Fatal(err)
	}
	want := `# TYPE standbynic_nic_rx_frames counter
standbynic_nic_rx_frames{dev="nic0"} 3
# TYPE standbynic_nic_slot_keepalives_sent counter
standbynic_nic_slot_keepalives_sent{dev="nic0",slot="1"} 2
standbynic_nic_slot_keepalives_sent{dev="nic0",slot="2"} 5
# TYPE standbynic_nic_slotx_odd counter
standbynic_nic_slotx_odd{dev="nic0"} 1
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("exposition (-want +got):\n%s", diff)
	}
}
