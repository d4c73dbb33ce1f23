package nic_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/standbynic/standbynic/internal/netlab"
	"github.com/standbynic/standbynic/nic"
	"github.com/standbynic/standbynic/offload"
	"github.com/standbynic/standbynic/profile"
	wp "github.com/standbynic/standbynic/wakepattern"
)

// profileScale divides the parts' real durations for these tests
// (Android's 10 s minimum interval becomes 1 s).
const profileScale = 10

func scaledProfile(t *testing.T, name string) *profile.Profile {
	t.Helper()
	p, err := profile.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	p = p.Scaled(profileScale)
	return &p
}

// probeSpec1s is a TCP probe each second (Android's 10 s at 1/10).
func probeSpec1s() offload.Spec {
	return offload.Spec{Kind: offload.KindTCPProbe, Interval: time.Second, RetryInterval: 300 * time.Millisecond, RetryCount: 2}
}

// keepAlivesOnWire closes the device and returns the frames it sent on
// the wire from the host's MAC to the server's, in order.
func keepAlivesOnWire(t *testing.T, r *labRig, wire *bytes.Buffer) [][]byte {
	t.Helper()
	if err := r.dev.Close(); err != nil {
		t.Fatal(err)
	}
	pr, err := pcapgo.NewReader(wire)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		data, _, err := pr.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var f wp.Frame
		if f.Decode(data, wp.DecodeOptions{}) != wp.OK || !f.IsTCP() {
			continue
		}
		if [6]byte(data[6:12]) == r.hostMAC && f.DstPort == r.conn.Remote.Port() && f.PayloadLen == 0 && f.Seq == r.tcp.SndNxt-1 {
			out = append(out, append([]byte(nil), data...))
		}
	}
	return out
}

// TestIntegrationProfileBroadcomReplay: broadcom-mkeepalive replays the
// armed packet byte for byte each period (IP ID, TSval, sequence numbers
// frozen); the generic device patches each one. Both are answered by
// the server's kernel.
func TestIntegrationProfileBroadcomReplay(t *testing.T) {
	for _, name := range []string{profile.BroadcomMKA, profile.GenericName} {
		t.Run(name, func(t *testing.T) {
			var wire bytes.Buffer
			r := newLabRig(t, func(c *nic.Config) { c.Profile = scaledProfile(t, name); c.WirePcap = &wire })
			r.connect()
			r.sleep(probeSpec1s())
			r.waitCounter("slot1_replies_absorbed", 3, 15*time.Second)
			kas := keepAlivesOnWire(t, r, &wire)
			if len(kas) < 3 {
				t.Fatalf("%d keep-alives on the wire, want ≥ 3", len(kas))
			}
			identical := true
			for _, k := range kas[1:] {
				identical = identical && bytes.Equal(k, kas[0])
			}
			if want := name == profile.BroadcomMKA; identical != want {
				t.Errorf("%d keep-alives byte-identical = %v, want %v\nfirst % x\nlast  % x", len(kas), identical, want, kas[0], kas[len(kas)-1])
			}
			t.Logf("%s: %d keep-alives on the wire, byte-identical %v", name, len(kas), identical)
		})
	}
}

// enforceTimestamps makes the server's kernel drop every segment of the
// connection's port that carries no timestamp option (RFC 7323 §3.2
// "SHOULD silently drop"; Linux itself accepts them), as a peer or a
// middlebox that enforces timestamps.
func enforceTimestamps(t *testing.T, l *netlab.Lab, srvPort uint16) {
	t.Helper()
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Fatal("nft not found: install the Debian package nftables")
	}
	rules := fmt.Sprintf("table inet standbynic_tsenforce {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n"+
		"\t\ttcp dport %d tcp option timestamp missing counter drop\n\t}\n}\n", srvPort)
	if err := l.Do(netlab.Srv, func() error {
		cmd := exec.Command(nft, "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft -f: %w: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationProfileAndroidNoTimestamps: android-apf's keep-alive ACK
// carries no TCP option although the connection negotiated timestamps.
// A normal Linux peer still answers it (and APF drops the answer); a
// peer that enforces timestamps drops it, so no reply ever comes — and
// Android, which detects no dead peer, goes on sending without waking the
// host. The generic device's probes carry timestamps and are answered by
// the same peer.
func TestIntegrationProfileAndroidNoTimestamps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		profile string
		enforce bool
	}{
		{"android/plain peer", profile.AndroidAPF, false},
		{"android/timestamp-enforcing peer", profile.AndroidAPF, true},
		{"generic/timestamp-enforcing peer", profile.GenericName, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wire bytes.Buffer
			r := newLabRig(t, func(c *nic.Config) { c.Profile = scaledProfile(t, tc.profile); c.WirePcap = &wire })
			r.connect()
			if tc.enforce {
				enforceTimestamps(t, r.lab, r.conn.Remote.Port())
				r.exchange([]byte("still talking"), []byte("with timestamps")) // the host's own segments carry them
			}
			r.sleep(probeSpec1s())
			if !r.tcp.Timestamps {
				t.Fatal("the connection did not negotiate timestamps")
			}
			r.waitCounter("slot1_keepalives_sent", 4, 15*time.Second)
			replies := r.counter("slot1_replies_absorbed")
			select {
			case ev := <-r.dev.Wakes():
				t.Fatalf("woken by %+v", ev)
			default:
			}
			kas := keepAlivesOnWire(t, r, &wire)
			withTS := 0
			for _, k := range kas {
				var f wp.Frame
				f.Decode(k, wp.DecodeOptions{})
				if f.HasTS {
					withTS++
				}
			}
			android := tc.profile == profile.AndroidAPF
			switch {
			case android && withTS != 0:
				t.Errorf("%d of %d Android keep-alives carry the timestamp option", withTS, len(kas))
			case !android && withTS != len(kas):
				t.Errorf("%d of %d generic keep-alives carry the timestamp option, want all", withTS, len(kas))
			}
			wantReplies := !(android && tc.enforce)
			if (replies >= 3) != wantReplies || (!wantReplies && replies != 0) {
				t.Errorf("replies absorbed %d after %d keep-alives; want answered = %v", replies, len(kas), wantReplies)
			}
			t.Logf("%s: %d keep-alives (%d with TS), %d replies", tc.name, len(kas), withTS, replies)
		})
	}
}

// fakeSlot arms a slot for a connection with no socket behind it (a long
// interval, so it sends nothing during the test).
func fakeSlot(t *testing.T, r *labRig, port uint16) nic.SlotID {
	t.Helper()
	c := wp.TCPConn{Local: netip.AddrPortFrom(r.lab.Addr.Host4, port), Remote: netip.AddrPortFrom(r.lab.Addr.Srv4, 9)}
	snap := offload.Snapshot{LocalMAC: r.hostMAC, RemoteMAC: r.srvMAC, Local: c.Local, Remote: c.Remote,
		SndNxt: 1, RcvNxt: 1, SndWnd: 65535, RcvWnd: 65535, TTL: 64, MSS: 1460}
	id, err := r.dev.Arm(nic.SlotConfig{Pattern: c, Snapshot: snap, Owner: fmt.Sprintf("fake-%d", port),
		Spec: offload.Spec{Kind: offload.KindTCPProbe, Interval: 5 * time.Minute, RetryInterval: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestIntegrationProfileInfineonMRU: infineon-tko offloads 4 connections;
// arming a 5th evicts the one armed longest ago (the most recently used
// 4 stay offloaded), and the evicted one is reported. The 5th — a real
// connection — runs with Infineon's defaults (20 s / 3 s / 3, at 1/10)
// and reports NORMAL, then NO_RESPONSE when the server is gone.
func TestIntegrationProfileInfineonMRU(t *testing.T) {
	r := newLabRig(t, func(c *nic.Config) { c.Profile = scaledProfile(t, profile.InfineonTKO) })
	if got := r.dev.Capabilities().Slots; got != 4 {
		t.Fatalf("slots %d, want 4", got)
	}
	var fakes []nic.SlotID
	for p := uint16(50001); p <= 50004; p++ {
		fakes = append(fakes, fakeSlot(t, r, p))
	}
	r.connect()
	// Infineon's defaults fill the spec (interval 2 s, retry 300 ms × 3).
	r.sleep(offload.Spec{Kind: offload.KindTCPProbe})
	ev := r.dev.TakeEvictions()
	if len(ev) != 1 || ev[0].Slot != fakes[0] || ev[0].Conn.Local.Port() != 50001 {
		t.Fatalf("evictions %+v, want slot %d (port 50001, armed first)", ev, fakes[0])
	}
	if r.slot != fakes[0] {
		t.Errorf("the 5th connection got slot %d, want the evicted slot %d", r.slot, fakes[0])
	}
	if got := r.dev.Slots(); len(got) != 4 {
		t.Errorf("armed slots %v, want 4", got)
	}
	r.waitCounter(fmt.Sprintf("slot%d_replies_absorbed", r.slot), 1, 10*time.Second)
	p := r.dev.Profile()
	if _, st, _, _ := r.dev.SlotState(r.slot); p.StatusName(st) != "NORMAL" {
		t.Errorf("status %s, want NORMAL", p.StatusName(st))
	}
	if err := r.lab.SetLinkDown(netlab.Srv, netlab.SrvLink); err != nil {
		t.Fatal(err)
	}
	w := r.wake(10 * time.Second)
	if w.Reason != nic.WakeKeepAliveTimeout || w.Slot != r.slot {
		t.Fatalf("wake %+v, want keep-alive-timeout on slot %d", w, r.slot)
	}
	_, st, c, _ := r.dev.SlotState(r.slot)
	if p.StatusName(st) != "NO_RESPONSE" || c.Retries != 3 {
		t.Errorf("status %s retries %d, want NO_RESPONSE after 3 retries", p.StatusName(st), c.Retries)
	}
}

// TestIntegrationProfileNDISSavedPacket: ndis saves min(length, 128)
// bytes of the wake packet.
func TestIntegrationProfileNDISSavedPacket(t *testing.T) {
	r := newLabRig(t, func(c *nic.Config) { c.Profile = scaledProfile(t, profile.NDIS) })
	if got := r.dev.Capabilities().WakePacketSave; got != 128 {
		t.Fatalf("wake packet save %d, want 128", got)
	}
	r.connect()
	r.sleep(probeSpec1s())
	r.waitCounter("slot1_replies_absorbed", 1, 10*time.Second)
	push := bytes.Repeat([]byte("p"), 400)
	r.srvConn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.srvConn.Write(push); err != nil {
		t.Fatal(err)
	}
	ev := r.wake(10 * time.Second)
	if ev.Reason != nic.WakeData || ev.Len < len(push) || len(ev.Packet) != min(ev.Len, 128) {
		t.Fatalf("wake %v: saved %d of %d bytes, want min(len, 128)", ev.Reason, len(ev.Packet), ev.Len)
	}
	r.wakeUp()
	got := make([]byte, len(push))
	r.hostConn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(r.hostConn, got); err != nil || !bytes.Equal(got, push) {
		t.Fatalf("host read %d bytes, %v", len(got), err)
	}
}

// TestIntegrationProfileRefusals: requests a profile cannot honour are
// refused by Arm with the part's own error, and nothing is armed.
func TestIntegrationProfileRefusals(t *testing.T) {
	for _, tc := range []struct {
		profile string
		spec    offload.Spec
		v6      bool
		code    profile.Code
	}{
		{profile.AndroidAPF, probeSpec1s(), true, profile.Code{Num: -21, Name: "ERROR_INVALID_IP_ADDRESS"}},
		{profile.AndroidAPF, offload.Spec{Kind: offload.KindPayload, Interval: 2 * time.Second, RetryInterval: time.Second,
			Payload: offload.PayloadSpec{Request: []byte{0xc0, 0}, Reply: []byte{0xd0, 0}}}, false, profile.Code{Num: -30, Name: "ERROR_UNSUPPORTED"}},
		{profile.NL80211TCP, offload.Spec{Kind: offload.KindPayload, Interval: 2 * time.Second, RetryInterval: time.Second,
			Payload: offload.PayloadSpec{Request: []byte("eleven byte"), Reply: []byte{1}}}, false, profile.Code{Num: -22, Name: "EINVAL"}},
	} {
		t.Run(tc.profile+"/"+tc.code.Name, func(t *testing.T) {
			r := newLabRig(t, func(c *nic.Config) { c.Profile = scaledProfile(t, tc.profile) })
			local, remote := netip.AddrPortFrom(r.lab.Addr.Host4, 40000), netip.AddrPortFrom(r.lab.Addr.Srv4, 443)
			if tc.v6 {
				local, remote = netip.AddrPortFrom(r.lab.Addr.Host6, 40000), netip.AddrPortFrom(r.lab.Addr.Srv6, 443)
			}
			c := wp.TCPConn{Local: local, Remote: remote}
			snap := offload.Snapshot{LocalMAC: r.hostMAC, RemoteMAC: r.srvMAC, Local: local, Remote: remote,
				SndNxt: 1, RcvNxt: 1, SndWnd: 65535, RcvWnd: 65535, TTL: 64, MSS: 1400}
			_, err := r.dev.Arm(nic.SlotConfig{Pattern: c, Snapshot: snap, Spec: tc.spec})
			var pe *profile.Error
			if !errors.As(err, &pe) || pe.Code != tc.code || !errors.Is(err, profile.ErrRefused) {
				t.Fatalf("Arm: %v, want the profile's %v", err, tc.code)
			}
			if ids := r.dev.Slots(); len(ids) != 0 {
				t.Errorf("armed %v after a refusal", ids)
			}
		})
	}
}

// TestIntegrationProfileNL80211Tokens: nl80211-tcp's data payload carries
// a little-endian sequence number and the next token each interval; the
// server's app sees them in order and answers; with the tokens used up
// the device wakes the host (NOMORETOKENS), and the stream is whole.
func TestIntegrationProfileNL80211Tokens(t *testing.T) {
	r := newLabRig(t, func(c *nic.Config) { c.Profile = scaledProfile(t, profile.NL80211TCP) })
	r.connect()
	spec := offload.Spec{Kind: offload.KindPayload, Interval: time.Second, RetryInterval: 300 * time.Millisecond, RetryCount: 2,
		Payload: offload.PayloadSpec{Request: []byte("KA\x00\x00--"), Reply: []byte("OK"),
			Seq:    offload.PayloadSeq{Offset: 2, Len: 2, Start: 0x00ff},
			Tokens: offload.PayloadTokens{Offset: 4, Len: 2, Stream: []byte("t1t2t3")}}}
	type got struct {
		b   []byte
		err error
	}
	recv := make(chan got, 8)
	go func() {
		for range 3 {
			b := make([]byte, 6)
			r.srvConn.SetReadDeadline(time.Now().Add(15 * time.Second))
			if _, err := io.ReadFull(r.srvConn, b); err != nil {
				recv <- got{err: err}
				return
			}
			r.srvConn.Write([]byte("OK"))
			recv <- got{b: b}
		}
	}()
	r.sleep(spec)
	var payloads []string
	for range 3 {
		g := <-recv
		if g.err != nil {
			t.Fatal(g.err)
		}
		payloads = append(payloads, string(g.b))
	}
	if want := []string{"KA\xff\x00t1", "KA\x00\x01t2", "KA\x01\x01t3"}; strings.Join(payloads, "|") != strings.Join(want, "|") {
		t.Errorf("the server received %q, want %q", payloads, want)
	}
	ev := r.wake(10 * time.Second)
	if ev.Reason != nic.WakeNoTokens || ev.Slot != r.slot {
		t.Fatalf("wake %+v, want no-tokens on slot %d", ev, r.slot)
	}
	p := r.dev.Profile()
	t.Logf("wake reason %s", p.ReasonName(offload.ReasonNoTokens))
	rep := r.wakeUp()
	if len(rep.Books.Sent) != 18 || len(rep.Books.Absorbed) != 6 {
		t.Errorf("books: %d bytes sent, %d absorbed; want 18, 6", len(rep.Books.Sent), len(rep.Books.Absorbed))
	}
	// The replies the device absorbed are the app's to read.
	ok := make([]byte, 6)
	r.hostConn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(r.hostConn, ok); err != nil || string(ok) != "OKOKOK" {
		t.Fatalf("host read %q, %v; want the absorbed OKOKOK", ok, err)
	}
	r.exchange([]byte("after the tokens"), []byte("whole stream"))
}

// TestIntegrationProfileSlotsOverride: Capabilities.Slots (nic --slots)
// overrides a profile's slot count, and the refusal counts the device's
// slots.
func TestIntegrationProfileSlotsOverride(t *testing.T) {
	r := newLabRig(t, func(c *nic.Config) { c.Profile = scaledProfile(t, profile.AndroidAPF); c.Capabilities.Slots = 1 })
	fakeSlot(t, r, 50001)
	c := wp.TCPConn{Local: netip.AddrPortFrom(r.lab.Addr.Host4, 50002), Remote: netip.AddrPortFrom(r.lab.Addr.Srv4, 9)}
	snap := offload.Snapshot{LocalMAC: r.hostMAC, RemoteMAC: r.srvMAC, Local: c.Local, Remote: c.Remote,
		SndNxt: 1, RcvNxt: 1, SndWnd: 65535, RcvWnd: 65535, TTL: 64, MSS: 1460}
	_, err := r.dev.Arm(nic.SlotConfig{Pattern: c, Snapshot: snap, Spec: offload.Spec{Kind: offload.KindTCPProbe, Interval: 5 * time.Minute, RetryInterval: time.Second}})
	var pe *profile.Error
	if !errors.Is(err, nic.ErrNoSlot) || !errors.As(err, &pe) || pe.Code.Num != -32 || !strings.Contains(err.Error(), "all 1 hardware slots") {
		t.Fatalf("second Arm on 1 slot: %v, want ErrNoSlot with ERROR_INSUFFICIENT_RESOURCES for 1 slot", err)
	}
}
