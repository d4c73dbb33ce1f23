package demo

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/standbynic/standbynic/host"
)

// Summary is the outcome of a run: what a person reads in the final
// table, and what tests check.
type Summary struct {
	// Duration is the scenario's length (the host asleep); Slots the
	// NIC's hardware slots; Seed the script's seed.
	Duration time.Duration
	Slots    int
	Seed     uint64
	// Interrupted: the run's context ended (SIGINT, SIGTERM) before the
	// scenario and its drain were over; Elapsed is the part of the
	// scenario played (Duration when it ran to its end). The pushes not
	// delivered by then are pending, not lost.
	Interrupted bool
	Elapsed     time.Duration
	// Channels lists the sample apps' channels in priority order.
	Channels []ChannelSummary
	// HostWakes counts the host's wakes by reason (host.WakeReason
	// names: hardware-push, hardware-reset, keep-alive-timeout,
	// software-keep-alive, software-push-check, user).
	HostWakes map[string]uint64
	// NICWakes counts the device's wake events by reason (nic.WakeReason
	// names: data, fin, reset, keep-alive-timeout, host, …).
	NICWakes map[string]uint64
	// Unexplained lists NIC wakes that no push and no reset accounts
	// for: a hardware keep-alive or an answered Ping that woke the host
	// would land here. Empty in a good run.
	Unexplained []string
	// The NIC's hardware keep-alive work, summed over every slot and
	// every sleep: keep-alives sent, retries, replies absorbed, other
	// pure ACKs absorbed, server Pings answered.
	KeepAlivesSent, KeepAliveRetries, RepliesAbsorbed, ACKsAbsorbed, PingsAnswered uint64
	// SoftwareKeepAlives counts the keep-alives the host sent itself
	// while awake (host.Stats.KeepAlives).
	SoftwareKeepAlives uint64
	// EnergyMJ is the host's energy estimate over the run; SoftwareOnlyMJ
	// the same timeline on a host without hardware slots.
	EnergyMJ, SoftwareOnlyMJ float64
	// Coalesced counts frames the NIC held for software channels without
	// waking the host (d3_rx_coalesced; 0 when the device has no
	// coalescing).
	Coalesced uint64
	// WindowProbes counts the window probes the timeline recognised on
	// the wire: a socket sends one as it leaves TCP_REPAIR (at a thaw,
	// and when the host unfreezes it to let the NIC learn the peer). A
	// lower bound: one the capture cannot tell from the NIC's last probe
	// before a disarming is not counted.
	WindowProbes uint64
	// OutDir is the output folder; WirePcap and WakePcap the capture
	// files in it, WireFrames and WakePackets the frames written.
	OutDir                  string
	WirePcap, WakePcap      string
	WireFrames, WakePackets uint64
}

// ChannelSummary is one channel's line of the summary.
type ChannelSummary struct {
	Name      string
	Transport string // "tcp" or "websocket"
	Priority  int
	Interval  time.Duration
	// Slot is the slot kind at the first sleep ("hardware", "software");
	// FinalSlot the kind at the end, which differs after a promotion or
	// a reconnection.
	Slot, FinalSlot string
	// Armed counts the times the NIC guarded the channel in a hardware
	// slot (one per sleep while it held one).
	Armed int
	// Sent, Delivered and Acked count the pushes: written by the server,
	// read by the app's PushNotification task, acknowledged back to the
	// server.
	Sent, Delivered, Acked int
	// Latency of delivery, push written → task running.
	P50, Max time.Duration
	// Resets counts the channel's reset events (TransportDisconnected
	// after the server's RST).
	Resets int
}

// Lost returns the pushes the server sent that no app received; 0 in an
// interrupted run, whose undelivered pushes are Pending.
func (s *Summary) Lost() int {
	if s.Interrupted {
		return 0
	}
	return s.Pending()
}

// Pending returns the pushes the server sent that no app has received
// (yet, in an interrupted run).
func (s *Summary) Pending() int {
	n := 0
	for _, c := range s.Channels {
		n += c.Sent - c.Delivered
	}
	return n
}

// Pushes returns the pushes sent in all.
func (s *Summary) Pushes() int {
	n := 0
	for _, c := range s.Channels {
		n += c.Sent
	}
	return n
}

// hostWakeOrder is the order wake reasons are listed in.
var hostWakeOrder = []host.WakeReason{
	host.WakeHardwarePush, host.WakeHardwareReset, host.WakeKeepAliveTimeout,
	host.WakeSoftwareKeepAlive, host.WakeSoftwarePushCheck, host.WakeUser,
}

// Write prints the summary table.
func (s *Summary) Write(w io.Writer) error {
	var b strings.Builder
	asleep := s.Duration.String()
	if s.Interrupted {
		asleep = fmt.Sprintf("INTERRUPTED after %v of %v", s.Elapsed.Round(time.Millisecond), s.Duration)
	}
	fmt.Fprintf(&b, "\nsummary: %s asleep, %d hardware slots, %d channels, seed %d\n\n",
		asleep, s.Slots, len(s.Channels), s.Seed)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "channel\ttransport\tprio\tinterval\tslot\tarmed\tpushes\tdelivered\tacked\tp50\tmax\tresets")
	for _, c := range s.Channels {
		slot := c.Slot
		if c.FinalSlot != c.Slot {
			slot += "→" + c.FinalSlot
		}
		p50, mx := "-", "-"
		if c.Delivered > 0 {
			p50, mx = formatLatency(c.P50), formatLatency(c.Max)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%d\n",
			c.Name, c.Transport, c.Priority, c.Interval, slot, c.Armed, c.Sent, c.Delivered, c.Acked, p50, mx, c.Resets)
	}
	tw.Flush()

	var wakes []string
	var total uint64
	for _, r := range hostWakeOrder {
		if n := s.HostWakes[r.String()]; n > 0 {
			wakes = append(wakes, fmt.Sprintf("%s %d", r, n))
			total += n
		}
	}
	fmt.Fprintf(&b, "\nhost wakes: %d", total)
	if len(wakes) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(wakes, ", "))
	}
	b.WriteString("\n")
	var nw []string
	for _, k := range slices.Sorted(maps.Keys(s.NICWakes)) {
		nw = append(nw, fmt.Sprintf("%s %d", k, s.NICWakes[k]))
	}
	fmt.Fprintf(&b, "nic wake events: %s\n", orNone(strings.Join(nw, ", ")))
	fmt.Fprintf(&b, "nic keep-alives: %d sent, %d retried, %d replies absorbed, %d server Pings answered; host woken by them: %d\n",
		s.KeepAlivesSent, s.KeepAliveRetries, s.RepliesAbsorbed, s.PingsAnswered, s.HostWakes[host.WakeKeepAliveTimeout.String()]+uint64(len(s.Unexplained)))
	fmt.Fprintf(&b, "keep-alives sent by the host while awake: %d; frames held for software channels without a wake: %d\n", s.SoftwareKeepAlives, s.Coalesced)
	for _, u := range s.Unexplained {
		fmt.Fprintf(&b, "unexplained wake: %s\n", u)
	}
	saved := 0.0
	if s.SoftwareOnlyMJ > 0 {
		saved = 100 * (1 - s.EnergyMJ/s.SoftwareOnlyMJ)
	}
	fmt.Fprintf(&b, "energy: %.0f mJ with hardware slots vs %.0f mJ all-software (%.0f%% saved)\n", s.EnergyMJ, s.SoftwareOnlyMJ, saved)
	fmt.Fprintf(&b, "pcaps: %s (%d frames), %s (%d wake packets)\n", s.WirePcap, s.WireFrames, s.WakePcap, s.WakePackets)
	if s.Interrupted {
		fmt.Fprintf(&b, "result: interrupted: %d of %d pushes delivered so far, %d pending\n", s.Pushes()-s.Pending(), s.Pushes(), s.Pending())
	} else if lost := s.Lost(); lost > 0 {
		fmt.Fprintf(&b, "result: %d of %d pushes LOST\n", lost, s.Pushes())
	} else {
		fmt.Fprintf(&b, "result: all %d pushes delivered\n", s.Pushes())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// percentile returns the p-th percentile (0–1) of ds, nearest rank; 0
// for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
