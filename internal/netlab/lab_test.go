package netlab

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOptionsMTU(t *testing.T) {
	tests := []struct {
		name    string
		opts    *Options
		want    int
		wantErr bool
	}{
		{"nil", nil, DefaultMTU, false},
		{"zero", &Options{}, DefaultMTU, false},
		{"min", &Options{MTU: 68}, 68, false},
		{"jumbo", &Options{MTU: 9000}, 9000, false},
		{"max", &Options{MTU: 65535}, 65535, false},
		{"too small", &Options{MTU: 67}, 0, true},
		{"too big", &Options{MTU: 65536}, 0, true},
		{"negative", &Options{MTU: -1}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.mtu()
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("mtu() = %d, %v; want %d, err=%t", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestAddresses(t *testing.T) {
	direct, routed := addressesFor(false), addressesFor(true)
	got := []string{direct.Srv4.String(), direct.Srv6.String(), direct.Host4.String(), direct.Host6.String(),
		routed.Srv4.String(), routed.Srv6.String(), routed.Gateway4.String(), routed.Gateway6.String()}
	want := []string{"198.18.0.1", "2001:2::1", "198.18.0.2", "2001:2::2",
		"198.18.1.2", "2001:2:0:1::2", "198.18.0.1", "2001:2::1"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("addresses (-want +got):\n%s", d)
	}
	if direct.Gateway4.IsValid() {
		t.Errorf("direct lab has a gateway %v", direct.Gateway4)
	}
	// Every address is in the benchmarking ranges.
	for _, a := range []Addresses{direct, routed} {
		for _, ip := range []string{a.Srv4.String(), a.Host4.String()} {
			if ip[:7] != "198.18." {
				t.Errorf("%s outside 198.18.0.0/15", ip)
			}
		}
	}
}

func TestNamespaceString(t *testing.T) {
	got := []string{Namespace(0).String(), Srv.String(), NIC.String(), Host.String(), Router.String(), Namespace(9).String()}
	want := []string{"Namespace(0)", "srv", "nic", "host", "rtr", "Namespace(9)"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
