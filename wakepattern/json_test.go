package wakepattern

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var fxPatternCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

func TestParsePatterns(t *testing.T) {
	in := `[
	 {"id": 1, "priority": 2, "kind": "tcp-conn",
	  "conn": {"local": "198.18.0.2:40000", "remote": "198.18.0.1:443", "vlan": 100}},
	 {"id": 2, "kind": "tcp-conn", "conn": {"local": "[2001:db8::2]:40000", "remote": "[2001:db8::1]:443"}},
	 {"id": 3, "kind": "tcp-syn", "syn": {"local": "[::]:22", "ipv6": true}},
	 {"id": 4, "kind": "tcp-syn", "syn": {"local": ""}},
	 {"id": 5, "kind": "bitmap", "bitmap": {"offset": 12, "bytes": "0806", "mask": "03"}},
	 {"id": 6, "kind": "magic", "magic": {"mac": "02:00:00:00:00:02", "password": "01020304"}},
	 {"id": 7, "kind": "magic", "magic": {"mac": "02-00-00-00-00-03"}}
	]`
	want := []Pattern{
		{ID: 1, Priority: 2, Kind: KindTCPConn, Conn: TCPConn{Local: fxHost4, Remote: fxPeer4, VLAN: 100}},
		{ID: 2, Kind: KindTCPConn, Conn: TCPConn{Local: fxHost6, Remote: fxPeer6}},
		{ID: 3, Kind: KindTCPSYN, SYN: TCPSYN{Local: netip.AddrPortFrom(netip.IPv6Unspecified(), 22), IPv6: true}},
		{ID: 4, Kind: KindTCPSYN},
		{ID: 5, Kind: KindBitmap, Bitmap: Bitmap{Offset: 12, Bytes: []byte{8, 6}, Mask: []byte{3}}},
		{ID: 6, Kind: KindMagic, Magic: Magic{MAC: [6]byte{2, 0, 0, 0, 0, 2}, Password: []byte{1, 2, 3, 4}}},
		{ID: 7, Kind: KindMagic, Magic: Magic{MAC: [6]byte{2, 0, 0, 0, 0, 3}}},
	}
	got, err := ParsePatterns([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, fxPatternCmp); diff != "" {
		t.Errorf("ParsePatterns (-want +got):\n%s", diff)
	}
	if _, err := Compile(got, DefaultCapabilities()); err != nil {
		t.Errorf("Compile(parsed) = %v", err)
	}
	// Round trip.
	out, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParsePatterns(out)
	if err != nil {
		t.Fatalf("parse of marshalled %s: %v", out, err)
	}
	if diff := cmp.Diff(got, again, fxPatternCmp); diff != "" {
		t.Errorf("parse∘marshal (-want +got):\n%s", diff)
	}
	// The text forms are as documented.
	one, err := json.Marshal(got[5])
	if err != nil {
		t.Fatal(err)
	}
	if w := `{"id":6,"kind":"magic","magic":{"mac":"02:00:00:00:00:02","password":"01020304"}}`; string(one) != w {
		t.Errorf("Marshal = %s, want %s", one, w)
	}
}

func TestParsePatternErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", ``, "parse patterns: empty input"},
		{"not an array", `{}`, "parse patterns: unexpected JSON object at the top level"},
		{"trailing data", `[] []`, "parse patterns: trailing data after the array"},
		{"unknown kind", `[{"id":1,"kind":"tcp"}]`, `parse patterns: pattern 0: kind: "tcp" is not one of tcp-conn, tcp-syn, bitmap, magic`},
		{"missing kind", `[{"id":1}]`, "parse patterns: pattern 0: kind: missing"},
		{"unknown field", `[{"id":1,"kind":"magic","magic":{"mac":"02:00:00:00:00:01"},"colour":1}]`, `parse patterns: pattern 0: unknown field "colour"`},
		{"unknown nested field", `[{"id":1,"kind":"bitmap","bitmap":{"offset":0,"bytes":"01","mask":"01","size":1}}]`, `parse patterns: pattern 0: unknown field "size"`},
		{"wrong type", `[{"id":1,"kind":"bitmap","bitmap":{"offset":"12","bytes":"01","mask":"01"}}]`, "parse patterns: pattern 0: bitmap.offset: JSON string is not a valid int"},
		{"negative id", `[{"id":-1,"kind":"tcp-syn","syn":{"local":""}}]`, "parse patterns: pattern 0: id: JSON number -1 is not a valid uint32"},
		{"bad hex", `[{"id":1,"kind":"bitmap","bitmap":{"offset":0,"bytes":"0g","mask":"01"}}]`, `parse patterns: pattern 0: bitmap.bytes: "0g" is not a hex string`},
		{"bad address", `[{"id":1,"kind":"tcp-conn","conn":{"local":"198.18.0.2","remote":"198.18.0.1:1"}}]`, `parse patterns: pattern 0: conn.local: "198.18.0.2" is not an address:port`},
		{"bad MAC", `[{"id":1,"kind":"magic","magic":{"mac":"02:00"}}]`, `parse patterns: pattern 0: magic.mac: "02:00" is not a 6-byte MAC such as 02:00:00:00:00:01`},
		{"bad password", `[{"id":1,"kind":"magic","magic":{"mac":"02:00:00:00:00:01","password":"xyz"}}]`, `parse patterns: pattern 0: magic.password: "xyz" is not a hex string`},
		{"section of another kind", `[{"id":1,"kind":"tcp-syn","syn":{"local":""},"bitmap":{"offset":0,"bytes":"","mask":""}}]`, "parse patterns: pattern 0: bitmap: not allowed on a tcp-syn pattern"},
		{"missing section", `[{"id":1,"kind":"tcp-conn"}]`, "parse patterns: pattern 0: conn: missing for a tcp-conn pattern"},
		{"second pattern", `[{"id":1,"kind":"tcp-syn","syn":{"local":""}}, {"id":2,"kind":"tcp-syn","syn":{"local":"x"}}]`, `parse patterns: pattern 1: syn.local: "x" is not an address:port`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := ParsePatterns([]byte(tc.in))
			if err == nil {
				t.Fatalf("ParsePatterns = %+v, want error %q", ps, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %q\nwant %q", err, tc.want)
			}
		})
	}
}

func TestParsePattern(t *testing.T) {
	p, err := ParsePattern([]byte(`{"id": 9, "kind": "tcp-syn", "syn": {"local": "198.18.0.2:80"}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Pattern{ID: 9, Kind: KindTCPSYN, SYN: TCPSYN{Local: netip.AddrPortFrom(fxIP4Host, 80)}}
	if diff := cmp.Diff(want, p, fxPatternCmp); diff != "" {
		t.Errorf("ParsePattern (-want +got):\n%s", diff)
	}
	if _, err := ParsePattern([]byte(`{"id": 9, "kind": "tcp-syn", "syn": {"local": ""}} {}`)); err == nil ||
		err.Error() != "parse pattern: trailing data after the pattern" {
		t.Errorf("trailing data: %v", err)
	}
}

func TestKindText(t *testing.T) {
	for k := KindTCPConn; k <= KindMagic; k++ {
		b, err := k.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Kind
		if err := back.UnmarshalText(b); err != nil || back != k {
			t.Errorf("%v: round trip gave %v, %v", k, back, err)
		}
	}
	if _, err := Kind(0).MarshalText(); err == nil {
		t.Errorf("MarshalText of the zero Kind succeeded")
	}
}
