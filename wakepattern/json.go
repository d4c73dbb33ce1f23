package wakepattern

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
)

// JSON form of a pattern. Decoding is strict: unknown fields, trailing
// data, a section for another kind and a missing section are errors, and
// every error names its field. Text forms:
//
//	{"id": 1, "priority": 2, "kind": "tcp-conn",
//	 "conn": {"local": "198.18.0.2:40000", "remote": "198.18.0.1:443", "vlan": 100}}
//	{"id": 2, "kind": "tcp-syn", "syn": {"local": "[::]:22", "ipv6": true}}
//	{"id": 3, "kind": "bitmap", "bitmap": {"offset": 12, "bytes": "0800", "mask": "03"}}
//	{"id": 4, "kind": "magic", "magic": {"mac": "02:00:00:00:00:02", "password": "01020304"}}
//
// Kinds are "tcp-conn", "tcp-syn", "bitmap", "magic"; addresses are
// netip.AddrPort text ("" in a SYN pattern: any address and port of the
// family "ipv6" selects; "0.0.0.0:22" any IPv4 address on port 22); MACs
// are colon-separated hex; bitmap bytes and mask and the password are hex
// strings (no separators, case-insensitive; written lowercase).

type patternJSON struct {
	ID       uint32      `json:"id"`
	Priority uint8       `json:"priority,omitempty"`
	Kind     Kind        `json:"kind"`
	Conn     *connJSON   `json:"conn,omitempty"`
	SYN      *synJSON    `json:"syn,omitempty"`
	Bitmap   *bitmapJSON `json:"bitmap,omitempty"`
	Magic    *magicJSON  `json:"magic,omitempty"`
}

type connJSON struct {
	Local  string `json:"local"`
	Remote string `json:"remote"`
	VLAN   uint16 `json:"vlan,omitempty"`
}

type synJSON struct {
	Local string `json:"local"`
	IPv6  bool   `json:"ipv6,omitempty"`
}

type bitmapJSON struct {
	Offset int    `json:"offset"`
	Bytes  string `json:"bytes"`
	Mask   string `json:"mask"`
}

type magicJSON struct {
	MAC      string `json:"mac"`
	Password string `json:"password,omitempty"`
}

// MarshalJSON implements json.Marshaler (the form described above). Only
// the sections that are set are written.
func (p Pattern) MarshalJSON() ([]byte, error) {
	j := patternJSON{ID: p.ID, Priority: p.Priority, Kind: p.Kind}
	if p.Kind == KindTCPConn || !connZero(&p.Conn) {
		j.Conn = &connJSON{Local: addrPortText(p.Conn.Local), Remote: addrPortText(p.Conn.Remote), VLAN: p.Conn.VLAN}
	}
	if p.Kind == KindTCPSYN || p.SYN != (TCPSYN{}) {
		l := p.SYN.Local
		if !l.Addr().IsValid() && l.Port() != 0 {
			// A wildcard address with a port is written unspecified.
			if p.SYN.IPv6 {
				l = netip.AddrPortFrom(netip.IPv6Unspecified(), l.Port())
			} else {
				l = netip.AddrPortFrom(netip.IPv4Unspecified(), l.Port())
			}
		}
		j.SYN = &synJSON{Local: addrPortText(l), IPv6: p.SYN.IPv6}
	}
	if p.Kind == KindBitmap || p.Bitmap.Offset != 0 || p.Bitmap.Bytes != nil || p.Bitmap.Mask != nil {
		j.Bitmap = &bitmapJSON{Offset: p.Bitmap.Offset, Bytes: hex.EncodeToString(p.Bitmap.Bytes), Mask: hex.EncodeToString(p.Bitmap.Mask)}
	}
	if p.Kind == KindMagic || p.Magic.MAC != [6]byte{} || p.Magic.Password != nil {
		j.Magic = &magicJSON{MAC: net.HardwareAddr(p.Magic.MAC[:]).String(), Password: hex.EncodeToString(p.Magic.Password)}
	}
	return json.Marshal(j)
}

func addrPortText(ap netip.AddrPort) string {
	if !ap.Addr().IsValid() {
		return ""
	}
	return ap.String()
}

// UnmarshalJSON implements json.Unmarshaler, strictly (see above). It does
// not check limits: see Capabilities.Check.
func (p *Pattern) UnmarshalJSON(data []byte) error {
	var j patternJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return jsonFieldError(err)
	}
	var q Pattern
	q.ID, q.Priority, q.Kind = j.ID, j.Priority, j.Kind
	if !q.Kind.Valid() {
		return errors.New("kind: missing")
	}
	sections := []struct {
		name    string
		present bool
		kind    Kind
	}{
		{"conn", j.Conn != nil, KindTCPConn},
		{"syn", j.SYN != nil, KindTCPSYN},
		{"bitmap", j.Bitmap != nil, KindBitmap},
		{"magic", j.Magic != nil, KindMagic},
	}
	for _, s := range sections {
		switch {
		case s.present && s.kind != q.Kind:
			return fmt.Errorf("%s: not allowed on a %s pattern", s.name, q.Kind)
		case !s.present && s.kind == q.Kind:
			return fmt.Errorf("%s: missing for a %s pattern", s.name, q.Kind)
		}
	}
	var err error
	switch q.Kind {
	case KindTCPConn:
		if q.Conn.Local, err = parseAddrPort("conn.local", j.Conn.Local, false); err != nil {
			return err
		}
		if q.Conn.Remote, err = parseAddrPort("conn.remote", j.Conn.Remote, false); err != nil {
			return err
		}
		q.Conn.VLAN = j.Conn.VLAN
	case KindTCPSYN:
		if q.SYN.Local, err = parseAddrPort("syn.local", j.SYN.Local, true); err != nil {
			return err
		}
		q.SYN.IPv6 = j.SYN.IPv6
	case KindBitmap:
		q.Bitmap.Offset = j.Bitmap.Offset
		if q.Bitmap.Bytes, err = parseHex("bitmap.bytes", j.Bitmap.Bytes); err != nil {
			return err
		}
		if q.Bitmap.Mask, err = parseHex("bitmap.mask", j.Bitmap.Mask); err != nil {
			return err
		}
	case KindMagic:
		mac, err := net.ParseMAC(j.Magic.MAC)
		if err != nil || len(mac) != 6 {
			return fmt.Errorf("magic.mac: %q is not a 6-byte MAC such as 02:00:00:00:00:01", j.Magic.MAC)
		}
		q.Magic.MAC = [6]byte(mac)
		if j.Magic.Password != "" {
			if q.Magic.Password, err = parseHex("magic.password", j.Magic.Password); err != nil {
				return err
			}
		}
	}
	*p = q
	return nil
}

func parseAddrPort(field, s string, empty bool) (netip.AddrPort, error) {
	if s == "" && empty {
		return netip.AddrPort{}, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%s: %q is not an address:port", field, s)
	}
	return ap, nil
}

func parseHex(field, s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %q is not a hex string", field, s)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// jsonFieldError rewrites encoding/json's errors so they name the JSON
// field rather than Go types.
func jsonFieldError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fmt.Errorf("unexpected JSON %s at the top level", te.Value)
		}
		return fmt.Errorf("%s: JSON %s is not a valid %s", te.Field, te.Value, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("syntax error at byte %d: %v", se.Offset, err)
	}
	if errors.Is(err, io.EOF) {
		return errors.New("empty input")
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("unknown field %s", f)
	}
	return err
}

// ParsePattern parses one pattern from its JSON form, strictly. It does
// not check limits (Compile does).
func ParsePattern(data []byte) (Pattern, error) {
	var p Pattern
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&p); err != nil {
		return Pattern{}, fmt.Errorf("parse pattern: %w", jsonFieldError(err))
	}
	if dec.More() || dec.InputOffset() < int64(len(bytes.TrimRight(data, " \t\r\n"))) {
		return Pattern{}, errors.New("parse pattern: trailing data after the pattern")
	}
	return p, nil
}

// ParsePatterns parses a JSON array of patterns, strictly; an error names
// the pattern's index and the field. It does not check limits.
func ParsePatterns(data []byte) ([]Pattern, error) {
	var raws []json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raws); err != nil {
		return nil, fmt.Errorf("parse patterns: %w", jsonFieldError(err))
	}
	if dec.More() || dec.InputOffset() < int64(len(bytes.TrimRight(data, " \t\r\n"))) {
		return nil, errors.New("parse patterns: trailing data after the array")
	}
	ps := make([]Pattern, len(raws))
	for i, r := range raws {
		if err := ps[i].UnmarshalJSON(r); err != nil {
			return nil, fmt.Errorf("parse patterns: pattern %d: %w", i, err)
		}
	}
	return ps, nil
}
