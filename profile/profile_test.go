package profile

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/offload"
)

var (
	local4  = netip.MustParseAddrPort("198.18.0.2:40000")
	remote4 = netip.MustParseAddrPort("198.18.0.1:443")
	local6  = netip.MustParseAddrPort("[2001:2::2]:40000")
	remote6 = netip.MustParseAddrPort("[2001:2::1]:443")
)

func probe(iv time.Duration) offload.Spec {
	return offload.Spec{Kind: offload.KindTCPProbe, Interval: iv, RetryInterval: time.Second, RetryCount: 2}
}

func payload(req, rep int) offload.Spec {
	return offload.Spec{Kind: offload.KindPayload, Interval: 30 * time.Second, RetryInterval: time.Second,
		Payload: offload.PayloadSpec{Request: make([]byte, req), Reply: make([]byte, rep)}}
}

func TestCheck(t *testing.T) {
	type want struct {
		Field string
		Code  Code
	}
	for _, tc := range []struct {
		name, profile string
		req           Request
		want          *want // nil: honoured
	}{
		{"generic honours IPv6", GenericName, Request{Local: local6, Remote: remote6, Spec: probe(time.Minute), Armed: 100}, nil},
		{"android IPv4 probe", AndroidAPF, Request{Local: local4, Remote: remote4, Spec: probe(time.Minute)}, nil},
		{"android IPv6", AndroidAPF, Request{Local: local6, Remote: remote6, Spec: probe(time.Minute)}, &want{"family", Code{-21, "ERROR_INVALID_IP_ADDRESS"}}},
		{"android full", AndroidAPF, Request{Local: local4, Remote: remote4, Spec: probe(time.Minute), Armed: 3}, &want{"slots", Code{-32, "ERROR_INSUFFICIENT_RESOURCES"}}},
		{"android interval 5 s", AndroidAPF, Request{Local: local4, Remote: remote4, Spec: probe(5 * time.Second)}, &want{"interval", Code{-24, "ERROR_INVALID_INTERVAL"}}},
		{"android interval 2 h", AndroidAPF, Request{Local: local4, Remote: remote4, Spec: probe(2 * time.Hour)}, &want{"interval", Code{-24, "ERROR_INVALID_INTERVAL"}}},
		{"android payload", AndroidAPF, Request{Local: local4, Remote: remote4, Spec: payload(2, 2)}, &want{"kind", Code{-30, "ERROR_UNSUPPORTED"}}},
		{"broadcom IPv6 probe fits 256", BroadcomMKA, Request{Local: local6, Remote: remote6, Spec: probe(time.Minute)}, nil},
		{"broadcom payload", BroadcomMKA, Request{Local: local4, Remote: remote4, Spec: payload(2, 2)}, &want{"kind", Code{-3, "WIFI_ERROR_NOT_SUPPORTED"}}},
		{"broadcom fourth id", BroadcomMKA, Request{Local: local4, Remote: remote4, Spec: probe(time.Minute), Armed: 3}, &want{"slots", Code{-8, "WIFI_ERROR_TOO_MANY_REQUESTS"}}},
		{"infineon fifth is admitted (MRU)", InfineonTKO, Request{Local: local4, Remote: remote4, Spec: probe(time.Minute), Armed: 4}, nil},
		{"infineon websocket", InfineonTKO, Request{Local: local4, Remote: remote4, Spec: offload.Spec{Kind: offload.KindWebSocket}}, &want{"kind", Code{Name: "WHD_UNSUPPORTED"}}},
		{"nl80211 10-byte payload", NL80211TCP, Request{Local: local4, Remote: remote4, Spec: payload(10, 74)}, nil},
		{"nl80211 11-byte payload", NL80211TCP, Request{Local: local4, Remote: remote4, Spec: payload(11, 2)}, &want{"request", Code{-22, "EINVAL"}}},
		{"nl80211 75-byte wake payload", NL80211TCP, Request{Local: local4, Remote: remote4, Spec: payload(2, 75)}, &want{"reply", Code{-22, "EINVAL"}}},
		{"nl80211 IPv6", NL80211TCP, Request{Local: local6, Remote: remote6, Spec: payload(2, 2)}, &want{"family", Code{-22, "EINVAL"}}},
		{"nl80211 second connection", NL80211TCP, Request{Local: local4, Remote: remote4, Spec: payload(2, 2), Armed: 1}, &want{"slots", Code{-16, "EBUSY"}}},
		{"realwow second server", RealWoW, Request{Local: local4, Remote: remote4, Spec: probe(time.Minute), Armed: 1}, &want{"slots", Code{Name: "REALWOW_SERVER_IN_USE"}}},
		{"ndis IPv6", NDIS, Request{Local: local6, Remote: remote6, Spec: probe(time.Minute), Armed: 7}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Lookup(tc.profile)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Check(tc.req)
			var got *want
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) || !errors.Is(err, ErrRefused) {
					t.Fatalf("error %v is not a *profile.Error matching ErrRefused", err)
				}
				got = &want{pe.Field, pe.Code}
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("refusal (-want +got):\n%s\nerror: %v", d, err)
			}
		})
	}
}

func TestBroadcomPacketLimit(t *testing.T) {
	p, _ := Lookup(BroadcomMKA)
	p.Kinds = nil // the packet bound alone
	err := p.Check(Request{Local: local6, Remote: remote6, Spec: offload.Spec{Kind: offload.KindPayload, Interval: time.Minute,
		Payload: offload.PayloadSpec{Request: make([]byte, 185), Reply: []byte{1}}}})
	var pe *Error
	if !errors.As(err, &pe) || pe.Field != "packet" {
		t.Fatalf("a 257-byte IPv6 packet: %v, want a packet refusal", err)
	}
}

func TestSpecDefaults(t *testing.T) {
	p, _ := Lookup(InfineonTKO)
	got := p.Spec(offload.Spec{Kind: offload.KindTCPProbe})
	want := offload.Spec{Kind: offload.KindTCPProbe, Interval: 20 * time.Second, RetryInterval: 3 * time.Second, RetryCount: 3}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Infineon defaults (-want +got):\n%s", d)
	}
	if err := got.Validate(); err != nil {
		t.Error(err)
	}
	s := p.Scaled(10)
	got = s.Spec(offload.Spec{Kind: offload.KindTCPProbe})
	want = offload.Spec{Kind: offload.KindTCPProbe, Interval: 2 * time.Second, RetryInterval: 300 * time.Millisecond, RetryCount: 3}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Infineon at 1/10 (-want +got):\n%s", d)
	}
	// An explicit spec is kept.
	exp := probe(time.Minute)
	if d := cmp.Diff(exp, p.Spec(exp)); d != "" {
		t.Errorf("explicit spec changed (-want +got):\n%s", d)
	}
}

func TestNames(t *testing.T) {
	want := []string{"generic", "android-apf", "broadcom-mkeepalive", "infineon-tko", "nl80211-tcp", "ndis", "realwow"}
	if d := cmp.Diff(want, Names()); d != "" {
		t.Errorf("names (-want +got):\n%s", d)
	}
	if _, err := Lookup("tg3"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Lookup(tg3) = %v, want ErrUnknown", err)
	}
	p, _ := Lookup(InfineonTKO)
	got := []string{}
	for _, s := range []offload.Status{offload.StatusNormal, offload.StatusNoResponse, offload.StatusNoACKFlag, offload.StatusUnexpectedFlags, offload.StatusBadACK, offload.StatusBadSeq, offload.StatusDataWaiting} {
		got = append(got, p.StatusName(s))
	}
	wantS := []string{"NORMAL", "NO_RESPONSE", "NO_TCP_ACK_FLAG", "UNEXPECT_TCP_FLAG", "SEQ_NUM_INVALID", "REMOTE_SEQ_NUM_INVALID", "TCP_DATA"}
	if d := cmp.Diff(wantS, got); d != "" {
		t.Errorf("Infineon statuses (-want +got):\n%s", d)
	}
	a, _ := Lookup(AndroidAPF)
	if n := a.ReasonName(offload.ReasonData); n != "DATA_RECEIVED" {
		t.Errorf("Android data reason %q", n)
	}
	if n := a.StatusName(offload.StatusNormal); n != "normal" {
		t.Errorf("Android normal status %q", n)
	}
	for _, p := range All() {
		if p.Firmware.Replay && p.Kinds == nil {
			t.Errorf("%s replays but accepts every kind: payload keep-alives cannot be replayed", p.Name)
		}
		if p.Patterns.MaxPatterns != 0 {
			if err := p.Patterns.Validate(); err != nil {
				t.Errorf("%s patterns: %v", p.Name, err)
			}
		}
	}
}

func TestErrorIs(t *testing.T) {
	p, _ := Lookup(AndroidAPF)
	fam := p.Check(Request{Local: local6, Remote: remote6, Spec: probe(time.Minute)})
	full := p.Check(Request{Local: local4, Remote: remote4, Spec: probe(time.Minute), Armed: 3})
	if !errors.Is(fam, ErrRefused) || !errors.Is(fam, offload.ErrInvalidSpec) {
		t.Errorf("family refusal %v: want ErrRefused and offload.ErrInvalidSpec", fam)
	}
	if !errors.Is(full, ErrRefused) || errors.Is(full, offload.ErrInvalidSpec) {
		t.Errorf("slots refusal %v: want ErrRefused, not offload.ErrInvalidSpec", full)
	}
	if want := "android-apf: ERROR_INVALID_IP_ADDRESS (-21): family: "; !strings.HasPrefix(fam.Error(), want) {
		t.Errorf("message %q, want prefix %q", fam, want)
	}
}
