package xdp

import (
	"net/netip"
	"strings"
	"testing"

	wp "github.com/standbynic/standbynic/wakepattern"
)

// TestConfigErrors: bad configuration is refused with the field and the
// limit, before anything is loaded.
func TestConfigErrors(t *testing.T) {
	many := make([]netip.Addr, MaxARPAddrs+1)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{198, 18, 0, byte(i)})
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"max slots negative", Config{MaxSlots: -1}, "max slots -1: limit 1..1048576"},
		{"max slots too many", Config{MaxSlots: MaxSlots + 1}, "max slots 1048577: limit 1..1048576"},
		{"arp for too many", Config{ARPFor: many}, "arp for: 65 addresses: limit 64"},
		{"arp for IPv6", Config{ARPFor: []netip.Addr{netip.MustParseAddr("2001:2::1")}}, "arp for[0] 2001:2::1: not an IPv4 address"},
		{"unknown kind", Config{Patterns: []wp.Pattern{{ID: 3}}}, "pattern 3: kind 0: unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.maxSlots()
			if err == nil {
				_, err = newPlan(tt.cfg.Patterns, tt.cfg.ARPFor)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestProgramShape: the program assembles for every plan, and a plan
// with raw-byte patterns has no drop path.
func TestProgramShape(t *testing.T) {
	for _, raw := range []bool{false, true} {
		p := &plan{mayDrop: !raw, syn: [2]bool{true, true}, arp: []uint32{0xc6120002}}
		ins, err := program(p)
		if err != nil {
			t.Fatal(err)
		}
		drops := 0
		for _, in := range ins {
			if strings.HasPrefix(in.Symbol(), "drop_") {
				drops++
			}
		}
		if want := int(numReasons - DroppedNotIP); !raw && drops != want || raw && drops != 0 {
			t.Errorf("raw %v: %d drop paths in %d instructions", raw, drops, len(ins))
		}
	}
}

// TestConnKey: the key is the wire 4-tuple from the remote end; mixed
// families are refused.
func TestConnKey(t *testing.T) {
	c := wp.TCPConn{Local: netip.MustParseAddrPort("198.18.0.2:40000"), Remote: netip.MustParseAddrPort("198.18.0.1:443")}
	k, err := connKey(&c)
	if err != nil {
		t.Fatal(err)
	}
	if k[0] != 198 || k[3] != 1 || k[16+3] != 2 || k[32] != 0x01 || k[33] != 0xbb || k[34] != 0x9c || k[35] != 0x40 || native.Uint32(k[36:]) != 4 {
		t.Errorf("key % x", k)
	}
	c.Remote = netip.MustParseAddrPort("[2001:2::1]:443")
	if _, err := connKey(&c); err == nil || !strings.Contains(err.Error(), "one family") {
		t.Errorf("mixed families: %v", err)
	}
}
