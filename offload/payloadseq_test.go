package offload

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/standbynic/standbynic/wakepattern"
)

// nlSpec is an nl80211-style data payload: "KA" + 2-byte LE sequence
// number + 2-byte token, expecting "OK".
func nlSpec(tokens []byte) Spec {
	s := Spec{Kind: KindPayload, Interval: 10 * time.Second, RetryInterval: 2 * time.Second, RetryCount: 1,
		Payload: PayloadSpec{Request: []byte("KA\x00\x00--"), Reply: []byte("OK"),
			Seq: PayloadSeq{Offset: 2, Len: 2, Start: 0x01ff}}}
	if tokens != nil {
		s.Payload.Tokens = PayloadTokens{Offset: 4, Len: 2, Stream: tokens}
	}
	return s
}

// TestPayloadSeqTokens: each keep-alive carries the next little-endian
// sequence number and the next token; with no whole token left the slot
// wakes the host with ReasonNoTokens. The books hold the bytes as sent.
func TestPayloadSeqTokens(t *testing.T) {
	e, clk := newTest(t, nil)
	rec := &recorder{t: t, clock: clk}
	snap := snap4()
	if err := e.Arm(1, snap, nlSpec([]byte("t1t2"))); err != nil {
		t.Fatal(err)
	}
	sndNxt := snap.SndNxt
	rcvNxt := snap.RcvNxt
	for i := 1; i <= 3; i++ {
		fireAt(e, clk, time.Duration(i)*10*time.Second, rec)
		if i == 3 {
			break
		}
		sndNxt += 6
		f := peerFrame(t, snap, seg{seq: rcvNxt, ack: sndNxt, flags: wakepattern.TCPFlagACK | wakepattern.TCPFlagPSH, payload: []byte("OK"), ts: true, tsval: 100, tsecr: 1})
		if v := e.Receive(1, f, rec); v != Answer {
			t.Fatalf("reply %d: verdict %v", i, v)
		}
		rcvNxt += 2
	}
	var got []string
	for _, s := range rec.sent {
		if len(s.Payload) > 0 {
			got = append(got, string(s.Payload))
		}
	}
	want := []string{"KA\xff\x01t1", "KA\x00\x02t2"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("payloads (-want +got):\n%s", d)
	}
	if len(rec.wakes) != 1 || rec.wakes[0].Reason != ReasonNoTokens {
		t.Fatalf("wakes %+v, want one no-tokens", rec.wakes)
	}
	r, _ := e.Disarm(1)
	if string(r.Books.Sent) != strings.Join(want, "") {
		t.Errorf("books sent %q, want %q", r.Books.Sent, strings.Join(want, ""))
	}
}

func TestPayloadSeqValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*PayloadSpec)
		want string
	}{
		{"seq too long", func(p *PayloadSpec) { p.Seq.Len = 5 }, "Payload.Seq.Len"},
		{"seq past the request", func(p *PayloadSpec) { p.Seq.Offset = 5 }, "Payload.Seq.Offset"},
		{"token past the request", func(p *PayloadSpec) { p.Tokens.Offset = 5 }, "Payload.Tokens.Offset"},
		{"partial token", func(p *PayloadSpec) { p.Tokens.Stream = []byte("abc") }, "Payload.Tokens.Stream"},
		{"overlap", func(p *PayloadSpec) { p.Tokens.Offset = 3 }, "overlap"},
		{"seq start without length", func(p *PayloadSpec) { p.Seq = PayloadSeq{Start: 1} }, "Payload.Seq"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := nlSpec([]byte("t1t2"))
			tc.mod(&s.Payload)
			err := s.Validate()
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: %v, want an error naming %s", err, tc.want)
			}
		})
	}
	s := probeSpec()
	s.Payload.Seq.Len = 1
	if err := s.Validate(); err == nil {
		t.Error("a sequence number on a probe spec was accepted")
	}
	// JSON round trip.
	s = nlSpec([]byte("t1t2"))
	b, err := s.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSpec(b)
	if err != nil {
		t.Fatalf("ParseSpec(%s): %v", b, err)
	}
	if d := cmp.Diff(s, back); d != "" {
		t.Errorf("round trip of %s (-want +got):\n%s", b, d)
	}
}
