package nic

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
)

// Counter is one named device or slot counter, named the way `ethtool -S`
// names a driver's statistics.
type Counter struct {
	Name  string
	Value uint64
}

// counterID indexes the device's counter array. The names below are part
// of the API: scripts and dashboards grep for them.
type counterID int

const (
	cRxFrames counterID = iota // frames received on the wire port
	cRxBytes
	cTxFrames // frames transmitted on the wire port
	cTxBytes
	cTxErrors
	cHostRxFrames // frames received from the host port
	cHostRxBytes
	cHostTxFrames // frames delivered to the host port
	cHostTxBytes
	cHostTxErrors
	cRxErrors // read errors on either port

	cPmD0ToArming
	cPmArmingToD3
	cPmArmingToD0
	cPmD3ToWaking
	cPmWakingToD0
	cPmToClosed

	cD0Forwarded
	cLearnSegments

	cD3RxFrames
	cD3RxAbsorbed
	cD3RxDroppedNoMatch
	cD3RxDroppedMalformed
	cD3RxDroppedBadCsum
	cD3RxDroppedFragment
	cD3RxDroppedOutOfWindow
	cD3RxDroppedPAWS
	cD3RxDroppedWrongVLAN
	cD3RxDroppedSlot
	cD3RxDroppedBPF
	cD3RxDroppedKernel
	cD3XDPAttached // 1 while the XDP fast path is attached: a gauge
	cD3XDPAbsorbed // exact replies the XDP fast path absorbed (in d3_rx_absorbed)
	cD3HostTxDropped
	cD3ArpReplies
	cD3NsReplies
	cD3TxAnswers
	cD3EngineTxFrames
	cD3Wakes
	cD3WakesPattern
	cWakeEventsDropped

	cPostwakeBuffered
	cPostwakeDelivered
	cPostwakeDroppedOverflow
	cWakingHostForwarded

	cFaultLost
	cFaultDelayed
	cFaultDuplicated
	cFaultReordered
	cFaultCorrupted
	cFaultQueueFull

	cPcapWireFrames
	cPcapWakeFrames
	cPcapDropped
	cPcapErrors

	cTimerQueueDropped

	cVnetPorts            // ports that carry virtio_net_hdrs (0–2): a gauge
	cVnetRxGSO            // GSO super-frames received, either port
	cVnetRxCsumPartial    // frames received with a partial checksum
	cVnetRxGRO            // GSO frames without one (a NIC's GRO), rewritten
	cVnetSwCsum           // partial checksums completed in software
	cVnetSwGSO            // super-frames segmented in software
	cVnetSwSegments       // the segments they gave
	cVnetDroppedBad       // frames whose virtio_net_hdr does not match them
	cVnetDroppedTruncated // super-frames cut by a too-short buffer

	numCounters
)

var counterNames = [numCounters]string{
	cRxFrames:     "rx_frames",
	cRxBytes:      "rx_bytes",
	cTxFrames:     "tx_frames",
	cTxBytes:      "tx_bytes",
	cTxErrors:     "tx_errors",
	cHostRxFrames: "host_rx_frames",
	cHostRxBytes:  "host_rx_bytes",
	cHostTxFrames: "host_tx_frames",
	cHostTxBytes:  "host_tx_bytes",
	cHostTxErrors: "host_tx_errors",
	cRxErrors:     "rx_errors",

	cPmD0ToArming: "pm_d0_to_arming",
	cPmArmingToD3: "pm_arming_to_d3",
	cPmArmingToD0: "pm_arming_to_d0",
	cPmD3ToWaking: "pm_d3_to_waking",
	cPmWakingToD0: "pm_waking_to_d0",
	cPmToClosed:   "pm_to_closed",

	cD0Forwarded:   "d0_forwarded",
	cLearnSegments: "d0_learn_segments",

	cD3RxFrames:             "d3_rx_frames",
	cD3RxAbsorbed:           "d3_rx_absorbed",
	cD3RxDroppedNoMatch:     "d3_rx_dropped_no_match",
	cD3RxDroppedMalformed:   "d3_rx_dropped_malformed",
	cD3RxDroppedBadCsum:     "d3_rx_dropped_bad_csum",
	cD3RxDroppedFragment:    "d3_rx_dropped_fragment",
	cD3RxDroppedOutOfWindow: "d3_rx_dropped_out_of_window",
	cD3RxDroppedPAWS:        "d3_rx_dropped_paws",
	cD3RxDroppedWrongVLAN:   "d3_rx_dropped_wrong_vlan",
	cD3RxDroppedSlot:        "d3_rx_dropped_slot",
	cD3RxDroppedBPF:         "d3_rx_dropped_bpf",
	cD3RxDroppedKernel:      "d3_rx_dropped_kernel",
	cD3XDPAttached:          "d3_xdp_attached",
	cD3XDPAbsorbed:          "d3_xdp_absorbed",
	cD3HostTxDropped:        "d3_host_tx_dropped",
	cD3ArpReplies:           "d3_arp_replies",
	cD3NsReplies:            "d3_ns_replies",
	cD3TxAnswers:            "d3_tx_answers",
	cD3EngineTxFrames:       "d3_engine_tx_frames",
	cD3Wakes:                "d3_wakes",
	cD3WakesPattern:         "d3_wakes_pattern",
	cWakeEventsDropped:      "wake_events_dropped",

	cPostwakeBuffered:        "postwake_buffered",
	cPostwakeDelivered:       "postwake_delivered",
	cPostwakeDroppedOverflow: "postwake_dropped_overflow",
	cWakingHostForwarded:     "waking_host_forwarded",

	cFaultLost:       "fault_lost",
	cFaultDelayed:    "fault_delayed",
	cFaultDuplicated: "fault_duplicated",
	cFaultReordered:  "fault_reordered",
	cFaultCorrupted:  "fault_corrupted",
	cFaultQueueFull:  "fault_queue_full",

	cPcapWireFrames: "pcap_wire_frames",
	cPcapWakeFrames: "pcap_wake_frames",
	cPcapDropped:    "pcap_dropped",
	cPcapErrors:     "pcap_errors",

	cTimerQueueDropped: "timer_queue_dropped",

	cVnetPorts:            "vnet_ports",
	cVnetRxGSO:            "vnet_rx_gso",
	cVnetRxCsumPartial:    "vnet_rx_csum_partial",
	cVnetRxGRO:            "vnet_rx_gro",
	cVnetSwCsum:           "vnet_sw_csum",
	cVnetSwGSO:            "vnet_sw_gso",
	cVnetSwSegments:       "vnet_sw_segments",
	cVnetDroppedBad:       "vnet_dropped_bad",
	cVnetDroppedTruncated: "vnet_dropped_truncated",
}

// counters is the device's counter array. Increments are atomic and
// allocation-free; readers see a consistent value per counter, not a
// snapshot across counters.
type counters [numCounters]atomic.Uint64

func (c *counters) inc(id counterID)            { c[id].Add(1) }
func (c *counters) add(id counterID, n uint64)  { c[id].Add(n) }
func (c *counters) get(id counterID) uint64     { return c[id].Load() }
func (c *counters) frame(f, b counterID, n int) { c[f].Add(1); c[b].Add(uint64(n)) }
func (c *counters) set(id counterID, v uint64)  { c[id].Store(v) }

// unframe takes back a frame counted by frame (the write failed).
func (c *counters) unframe(f, b counterID, n int) {
	c[f].Add(^uint64(0))
	c[b].Add(^uint64(n - 1))
}

func (c *counters) appendTo(dst []Counter) []Counter {
	for i := range c {
		dst = append(dst, Counter{Name: counterNames[i], Value: c[i].Load()})
	}
	return dst
}

// slotCounterID indexes a slot's counters; the exported name is
// "slot<id>_<name>".
type slotCounterID int

const (
	sRxFrames slotCounterID = iota // wire frames that matched the slot
	sRxAbsorbed
	sRxDropped
	sWakes
	numSlotCounters
)

var slotCounterNames = [numSlotCounters]string{
	sRxFrames:   "rx_frames",
	sRxAbsorbed: "rx_absorbed",
	sRxDropped:  "rx_dropped",
	sWakes:      "wakes",
}

type slotCounters [numSlotCounters]atomic.Uint64

func (c *slotCounters) inc(id slotCounterID)           { c[id].Add(1) }
func (c *slotCounters) add(id slotCounterID, n uint64) { c[id].Add(n) }
func (c *slotCounters) get(id slotCounterID) uint64    { return c[id].Load() }

func (c *slotCounters) appendTo(dst []Counter, slot SlotID) []Counter {
	for i := range c {
		dst = append(dst, Counter{Name: fmt.Sprintf("slot%d_%s", slot, slotCounterNames[i]), Value: c[i].Load()})
	}
	return dst
}

// WritePrometheus writes counters in the Prometheus text exposition format
// (version 0.0.4): one counter family per name, prefixed with prefix
// (e.g. "standbynic_nic_") and carrying the given constant labels.
// Slot counters ("slot3_keepalives_sent") become one family per counter
// name with a slot label ("…_slot_keepalives_sent{slot="3"}").
func WritePrometheus(w io.Writer, prefix string, labels map[string]string, cs []Counter) error {
	bw := bufio.NewWriter(w)
	var base strings.Builder
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			base.WriteByte(',')
		}
		fmt.Fprintf(&base, "%s=%q", k, labels[k])
	}
	seen := map[string]bool{}
	for _, c := range cs {
		name, slot, isSlot := splitSlot(c.Name)
		family := prefix + name
		if isSlot {
			family = prefix + "slot_" + name
		}
		if !seen[family] {
			seen[family] = true
			fmt.Fprintf(bw, "# TYPE %s counter\n", family)
		}
		lbl := base.String()
		if isSlot {
			if lbl != "" {
				lbl += ","
			}
			lbl += fmt.Sprintf("slot=%q", slot)
		}
		if lbl != "" {
			fmt.Fprintf(bw, "%s{%s} %d\n", family, lbl, c.Value)
		} else {
			fmt.Fprintf(bw, "%s %d\n", family, c.Value)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write prometheus: %w", err)
	}
	return nil
}

// splitSlot splits "slot12_keepalives_sent" into ("keepalives_sent", "12").
func splitSlot(name string) (rest, slot string, ok bool) {
	if !strings.HasPrefix(name, "slot") {
		return name, "", false
	}
	s := name[len("slot"):]
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i >= len(s) || s[i] != '_' {
		return name, "", false
	}
	return s[i+1:], s[:i], true
}
