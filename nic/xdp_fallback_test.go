package nic_test

import (
	"testing"

	"github.com/standbynic/standbynic/nic"
)

// TestXDPFallback: with Config.XDP on a port the program cannot be
// attached to (here a pipe, as a kernel without XDP or a process without
// CAP_BPF), the device sleeps with the socket filter alone and says so;
// without Config.XDP it never tries.
func TestXDPFallback(t *testing.T) {
	t.Setenv("STANDBYNIC_XDP", "")
	tests := []struct {
		name string
		xdp  bool
		want nic.XDPInfo
	}{
		{"off", false, nic.XDPInfo{}},
		{"on, cannot attach", true, nic.XDPInfo{Enabled: true, Fallback: "xdp: wire port wire0: xdp not supported"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, func(c *nic.Config) { c.XDP = tt.xdp })
			id := r.armAndSleep()
			if id == 0 {
				t.Fatal("no slot")
			}
			got := r.dev.XDP()
			if got != tt.want {
				t.Errorf("XDP() = %+v, want %+v", got, tt.want)
			}
			if got.Path() != "socket-filter" {
				t.Errorf("Path() = %q", got.Path())
			}
			if _, ok := r.dev.Prefilter(); !ok {
				t.Error("no socket filter attached in D3")
			}
			if v := r.counter("d3_xdp_attached"); v != 0 {
				t.Errorf("d3_xdp_attached = %d", v)
			}
			// The device works on as before: a probe goes out.
			r.expectProbe(probeSpec().Interval)
		})
	}
}

// TestXDPEnvOverride: STANDBYNIC_XDP=on|off overrides Config.XDP.
func TestXDPEnvOverride(t *testing.T) {
	for _, tt := range []struct {
		env  string
		cfg  bool
		want bool
	}{{"on", false, true}, {"1", false, true}, {"off", true, false}, {"0", true, false}, {"", true, true}, {"", false, false}} {
		t.Run(tt.env+"/"+map[bool]string{false: "cfg off", true: "cfg on"}[tt.cfg], func(t *testing.T) {
			t.Setenv("STANDBYNIC_XDP", tt.env)
			r := newRig(t, func(c *nic.Config) { c.XDP = tt.cfg })
			if got := r.dev.XDP().Enabled; got != tt.want {
				t.Errorf("Enabled = %v, want %v", got, tt.want)
			}
		})
	}
}
