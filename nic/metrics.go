package nic

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prometheus metrics. The device and the control server keep their
// counters as atomics (counters.go, ControlServer.cnt); the collectors
// below read them when a scrape asks, so the per-frame path is exactly
// what it was. Names follow the Prometheus conventions: the standbynic_
// prefix, _total on counters, the unit in the name (_frames, _bytes,
// _segments), a HELP line on every family, gauges typed as gauges, and one
// family per quantity with a label where the old flat names encoded a
// dimension (slot3_keepalives_sent → slot_keepalives_sent_total{slot="3"},
// pm_d3_to_waking → power_transitions_total{from="d3",to="waking"},
// d3_rx_dropped_paws → d3_rx_dropped_frames_total{reason="paws"}).
// docs/control-api.md lists the old names with the new.
//
// Counters keep their names in Device.Counters (the ethtool -S style used
// by the JSON API and the tests); metricTable maps each of them to its
// family. A name the table does not know (a counter added without a
// metric) is exported as standbynic_nic_unmapped_total{counter="…"} rather
// than lost; TestMetricsEveryCounterMapped fails on it.

// metricFamily is one exported family.
type metricFamily struct {
	name  string // without the standbynic_nic_ / standbynic_control_ prefix
	help  string
	gauge bool
	label string // the extra label's name, "" for none
}

// metricName places one counter of Device.Counters in a family.
type metricName struct {
	fam   *metricFamily
	value string // the extra label's value
	from  string // power_transitions_total only: the from label
}

func counter(name, help string) *metricFamily { return &metricFamily{name: name, help: help} }
func gauge(name, help string) *metricFamily {
	return &metricFamily{name: name, help: help, gauge: true}
}
func labelled(name, label, help string) *metricFamily {
	return &metricFamily{name: name, help: help, label: label}
}

var (
	famPower       = &metricFamily{name: "power_transitions_total", help: "Power state transitions of the device, by the states left (from, \"any\" for a close) and entered (to).", label: "to"}
	famD3Dropped   = labelled("d3_rx_dropped_frames_total", "reason", "Wire frames dropped while the device was in D3, by reason.")
	famFault       = labelled("fault_frames_total", "fault", "Frames the fault injector lost, delayed, duplicated, reordered or corrupted, by fault.")
	famSlotDropped = labelled("slot_dropped_segments_total", "reason", "Segments of the slot's connection its offload engine dropped, by reason.")
	famUnmapped    = labelled("unmapped_total", "counter", "Device counters without a metric of their own, by their Device.Counters name (none are expected).")
)

// metricTable maps the device counters (counters.go, coalesce.go) to
// their families.
var metricTable = func() map[string]metricName {
	m := map[string]metricName{}
	one := func(old string, f *metricFamily) { m[old] = metricName{fam: f} }
	one("rx_frames", counter("rx_frames_total", "Frames received on the wire port."))
	one("rx_bytes", counter("rx_bytes_total", "Bytes received on the wire port."))
	one("tx_frames", counter("tx_frames_total", "Frames transmitted on the wire port."))
	one("tx_bytes", counter("tx_bytes_total", "Bytes transmitted on the wire port."))
	one("tx_errors", counter("tx_errors_total", "Frames the wire port failed to transmit."))
	one("host_rx_frames", counter("host_rx_frames_total", "Frames received from the host port."))
	one("host_rx_bytes", counter("host_rx_bytes_total", "Bytes received from the host port."))
	one("host_tx_frames", counter("host_tx_frames_total", "Frames delivered to the host port."))
	one("host_tx_bytes", counter("host_tx_bytes_total", "Bytes delivered to the host port."))
	one("host_tx_errors", counter("host_tx_errors_total", "Frames the host port failed to take."))
	one("rx_errors", counter("rx_errors_total", "Read errors on either port."))
	for _, t := range [][3]string{
		{"pm_d0_to_arming", "d0", "arming"}, {"pm_arming_to_d3", "arming", "d3"}, {"pm_arming_to_d0", "arming", "d0"},
		{"pm_d3_to_waking", "d3", "waking"}, {"pm_waking_to_d0", "waking", "d0"}, {"pm_to_closed", "any", "closed"},
	} {
		m[t[0]] = metricName{fam: famPower, from: t[1], value: t[2]}
	}
	one("d0_forwarded", counter("d0_forwarded_frames_total", "Frames forwarded between the ports in D0."))
	one("d0_learn_segments", counter("d0_learn_segments_total", "TCP segments of tracked connections learned from in D0."))
	one("d3_rx_frames", counter("d3_rx_frames_total", "Wire frames received in D3."))
	one("d3_rx_absorbed", counter("d3_rx_absorbed_frames_total", "Wire frames absorbed by an armed slot in D3 (no wake)."))
	for _, r := range []string{"no_match", "malformed", "bad_csum", "fragment", "out_of_window", "paws", "wrong_vlan", "slot", "bpf", "kernel"} {
		m["d3_rx_dropped_"+r] = metricName{fam: famD3Dropped, value: r}
	}
	one("d3_xdp_attached", gauge("d3_xdp_attached", "1 while the XDP fast path is attached to the wire port in D3, 0 when the classic-BPF socket filter filters alone."))
	one("d3_xdp_absorbed", counter("d3_xdp_absorbed_frames_total", "Exact keep-alive replies the XDP fast path absorbed in the kernel (also in d3_rx_absorbed_frames_total)."))
	m["d3_rx_coalesce_dropped"] = metricName{fam: famD3Dropped, value: "coalesce_full"}
	one("d3_rx_coalesced", counter("d3_rx_coalesced_frames_total", "Wire frames of coalesced connections held for the host without a wake."))
	one("coalesce_filters", gauge("coalesce_filters", "Coalescing filters registered now."))
	one("d3_host_tx_dropped", counter("d3_host_tx_dropped_frames_total", "Host frames dropped in D3 (the host is asleep)."))
	one("d3_arp_replies", counter("d3_arp_replies_total", "ARP replies sent on the host's behalf in D3."))
	one("d3_ns_replies", counter("d3_neighbor_advertisements_total", "NDP Neighbor Advertisements sent in answer to Neighbor Solicitations in D3."))
	one("d3_tx_answers", counter("d3_tx_answers_total", "Frames the slots' engines sent in answer to wire frames in D3."))
	one("d3_engine_tx_frames", counter("d3_engine_tx_frames_total", "Frames the slots' engines sent on their timers in D3 (keep-alives, retries)."))
	one("d3_wakes", counter("d3_wakes_total", "Wakes of the host from D3."))
	one("d3_wakes_pattern", counter("d3_pattern_wakes_total", "Wakes of the host from D3 by a wake pattern."))
	one("wake_events_dropped", counter("wake_events_dropped_total", "Wake events dropped because the wake channel was full."))
	one("postwake_buffered", counter("postwake_buffered_frames_total", "Frames held in the post-wake buffer while the host resumed."))
	one("postwake_delivered", counter("postwake_delivered_frames_total", "Post-wake frames delivered to the host."))
	one("postwake_dropped_overflow", counter("postwake_dropped_frames_total", "Frames dropped because the post-wake buffer was full."))
	one("waking_host_forwarded", counter("waking_host_forwarded_frames_total", "Host frames forwarded to the wire while waking."))
	for _, f := range []string{"lost", "delayed", "duplicated", "reordered", "corrupted"} {
		m["fault_"+f] = metricName{fam: famFault, value: f}
	}
	one("fault_queue_full", counter("fault_queue_dropped_frames_total", "Frames the fault injector dropped because its delay queue was full."))
	one("pcap_wire_frames", counter("pcap_wire_frames_total", "Frames written to the wire pcap."))
	one("pcap_wake_frames", counter("pcap_wake_frames_total", "Wake packets written to the wake pcap."))
	one("pcap_dropped", counter("pcap_dropped_frames_total", "Frames not written to a pcap because its queue was full."))
	one("pcap_errors", counter("pcap_errors_total", "Pcap write errors."))
	one("timer_queue_dropped", counter("timer_queue_dropped_frames_total", "Timer frames dropped because the transmit queue was full."))
	one("vnet_ports", gauge("vnet_ports", "Ports that carry virtio_net_hdrs (0-2)."))
	one("vnet_rx_gso", counter("vnet_rx_gso_frames_total", "GSO super-frames received on either port."))
	one("vnet_rx_csum_partial", counter("vnet_rx_csum_partial_frames_total", "Frames received with a partial checksum."))
	one("vnet_rx_gro", counter("vnet_rx_gro_frames_total", "GSO frames without a partial checksum (a NIC's GRO), rewritten."))
	one("vnet_sw_csum", counter("vnet_sw_csum_frames_total", "Partial checksums completed in software."))
	one("vnet_sw_gso", counter("vnet_sw_gso_frames_total", "Super-frames segmented in software."))
	one("vnet_sw_segments", counter("vnet_sw_segments_total", "Segments the software-segmented super-frames gave."))
	one("vnet_dropped_bad", counter("vnet_dropped_bad_frames_total", "Frames dropped because their virtio_net_hdr does not match them."))
	one("vnet_dropped_truncated", counter("vnet_dropped_truncated_frames_total", "Super-frames dropped because a too-short buffer cut them."))
	return m
}()

// slotMetricTable maps the per-slot counters (the part after
// "slot<id>_") to their families, all labelled slot="<id>".
var slotMetricTable = func() map[string]metricName {
	m := map[string]metricName{}
	one := func(old string, f *metricFamily) { m[old] = metricName{fam: f} }
	one("rx_frames", counter("slot_rx_frames_total", "Wire frames that matched the slot in D3."))
	one("rx_absorbed", counter("slot_rx_absorbed_frames_total", "Wire frames the slot absorbed."))
	one("rx_dropped", counter("slot_rx_dropped_frames_total", "Wire frames of the slot dropped."))
	one("wakes", counter("slot_wakes_total", "Wakes the slot raised."))
	one("keepalives_sent", counter("slot_keepalives_sent_total", "Keep-alives the slot sent (the first of each cycle)."))
	one("retries", counter("slot_keepalive_retries_total", "Keep-alives re-sent for lack of a reply."))
	one("replies_absorbed", counter("slot_replies_absorbed_total", "Exact keep-alive ACKs and expected replies absorbed."))
	one("acks_absorbed", counter("slot_acks_absorbed_total", "Other acceptable pure ACKs absorbed."))
	one("pings_answered", counter("slot_pings_answered_total", "WebSocket Pings answered with a Pong."))
	one("acks_sent", counter("slot_acks_sent_total", "ACKs of absorbed bytes and duplicate ACKs sent."))
	one("challenge_acks", counter("slot_challenge_acks_total", "RFC 5961 challenge ACKs sent."))
	one("peer_keepalives_answered", counter("slot_peer_keepalives_answered_total", "The peer's TCP keep-alive probes answered with an ACK."))
	for _, r := range []string{"out_of_window", "paws", "bad_ack", "other"} {
		m["dropped_"+r] = metricName{fam: famSlotDropped, value: r}
	}
	one("buffered", counter("slot_buffered_segments_total", "Segments held as partial WebSocket frames."))
	one("transitions", counter("slot_transitions_total", "State changes of the slot's engine."))
	return m
}()

// deviceCollector exports a Device's counters.
type deviceCollector struct {
	d     *Device
	descs map[*metricFamily]*prometheus.Desc
}

// NewCollector returns a Prometheus collector of d's counters (families
// standbynic_nic_*, labelled with the wire port's name). It reads the
// counters at each scrape; the control server's /metrics serves it.
func NewCollector(d *Device) prometheus.Collector {
	c := &deviceCollector{d: d, descs: map[*metricFamily]*prometheus.Desc{}}
	constLabels := prometheus.Labels{"wire": d.wire.Name()}
	add := func(f *metricFamily, slot bool) {
		if _, ok := c.descs[f]; ok {
			return
		}
		var labels []string
		if slot {
			labels = append(labels, "slot")
		}
		if f == famPower {
			labels = append(labels, "from")
		}
		if f.label != "" {
			labels = append(labels, f.label)
		}
		c.descs[f] = prometheus.NewDesc("standbynic_nic_"+f.name, f.help, labels, constLabels)
	}
	for _, n := range metricTable {
		add(n.fam, false)
	}
	for _, n := range slotMetricTable {
		add(n.fam, true)
	}
	add(famUnmapped, false)
	return c
}

// Describe implements prometheus.Collector.Describe.
func (c *deviceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.Collect.
func (c *deviceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, k := range c.d.Counters() {
		n, labels := lookupMetric(k.Name)
		if n.fam == famUnmapped {
			labels = []string{k.Name}
		}
		t := prometheus.CounterValue
		if n.fam.gauge {
			t = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[n.fam], t, float64(k.Value), labels...)
	}
}

// lookupMetric finds the family of a Device.Counters name and the values
// of its variable labels.
func lookupMetric(name string) (metricName, []string) {
	if rest, slot, ok := splitSlot(name); ok {
		if n, ok := slotMetricTable[rest]; ok {
			if n.fam.label != "" {
				return n, []string{slot, n.value}
			}
			return n, []string{slot}
		}
	}
	n, ok := metricTable[name]
	switch {
	case !ok:
		return metricName{fam: famUnmapped}, nil
	case n.fam == famPower:
		return n, []string{n.from, n.value}
	case n.fam.label != "":
		return n, []string{n.value}
	}
	return n, nil
}

// controlCollector exports the control server's own counters and gauges
// (families standbynic_control_*).
type controlCollector struct {
	s     *ControlServer
	descs []*prometheus.Desc // in controlMetrics order
}

// controlMetrics are the control server's families, in the order of
// controlValues.
var controlMetrics = []metricFamily{
	{name: "requests_total", help: "Control requests received."},
	{name: "requests_denied_total", help: "Control requests refused with 403 (no right)."},
	{name: "requests_rejected_total", help: "Control requests refused with another 4xx status (bad input, state, limits)."},
	{name: "requests_failed_total", help: "Control requests that failed with a 5xx status."},
	{name: "streams_opened_total", help: "Wake streams opened."},
	{name: "wakes_recorded_total", help: "Wake events recorded by the wake hub."},
	{name: "conns_accepted_total", help: "Control connections accepted."},
	{name: "conns_refused_total", help: "Control connections refused with 503 (MaxConns reached)."},
	{name: "read_timeouts_total", help: "Requests whose body did not arrive within the read timeout (408)."},
	{name: "leases_granted_total", help: "Leases granted."},
	{name: "leases_renewed_total", help: "Leases renewed by their holder."},
	{name: "leases_taken_over_total", help: "Leases taken over by another holder instance."},
	{name: "leases_expired_total", help: "Leases that expired without a renewal."},
	{name: "leases_released_total", help: "Leases released by DELETE."},
	{name: "lease_slots_disarmed_total", help: "Slots disarmed because their lease ended."},
	{name: "lease_resumes_total", help: "Resumes of the device to D0 because a lease ended."},
	{name: "streams_open", help: "Wake streams open now.", gauge: true},
	{name: "conns_open", help: "Control connections open now.", gauge: true},
	{name: "leases_active", help: "Leases held now.", gauge: true},
}

func (s *ControlServer) controlValues() []uint64 {
	s.mu.Lock()
	open, leases := s.streams, len(s.leases)
	s.mu.Unlock()
	return []uint64{
		s.cnt.requests.Load(), s.cnt.denied.Load(), s.cnt.rejected.Load(), s.cnt.failed.Load(),
		s.cnt.streams.Load(), s.hub.nextSeq() - 1,
		s.cnt.connsAccepted.Load(), s.cnt.connsRefused.Load(), s.cnt.readTimeouts.Load(),
		s.cnt.leasesGranted.Load(), s.cnt.leasesRenewed.Load(), s.cnt.leasesTaken.Load(),
		s.cnt.leasesExpired.Load(), s.cnt.leasesReleased.Load(), s.cnt.leaseSlotsDisarmed.Load(),
		s.cnt.leaseResumes.Load(),
		uint64(open), uint64(s.conns.Load()), uint64(leases),
	}
}

func newControlCollector(s *ControlServer) *controlCollector {
	c := &controlCollector{s: s}
	for _, f := range controlMetrics {
		c.descs = append(c.descs, prometheus.NewDesc("standbynic_control_"+f.name, f.help, nil, nil))
	}
	return c
}

// Describe implements prometheus.Collector.Describe.
func (c *controlCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.Collect.
func (c *controlCollector) Collect(ch chan<- prometheus.Metric) {
	for i, v := range c.s.controlValues() {
		t := prometheus.CounterValue
		if controlMetrics[i].gauge {
			t = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[i], t, float64(v), nil...)
	}
}

// newMetricsHandler returns the handler of GET /metrics: the device's and
// the server's collectors in a registry of their own.
func (s *ControlServer) newMetricsHandler() (http.Handler, error) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewCollector(s.d)); err != nil {
		return nil, fmt.Errorf("register device metrics: %w", err)
	}
	if err := reg.Register(newControlCollector(s)); err != nil {
		return nil, fmt.Errorf("register control metrics: %w", err)
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      promErrorLog{s},
		ErrorHandling: promhttp.ContinueOnError,
	}), nil
}

// promErrorLog passes promhttp's errors to the server's logger.
type promErrorLog struct{ s *ControlServer }

func (l promErrorLog) Println(v ...any) {
	l.s.log.Error("metrics", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}
