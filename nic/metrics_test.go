package nic_test

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/standbynic/standbynic/nic"
	wp "github.com/standbynic/standbynic/wakepattern"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of testdata/")

// metricsOfArmedDevice serves /metrics of a device with two armed slots
// and a coalescing filter, after a sleep and a wake.
func metricsOfArmedDevice(t *testing.T) ([]byte, *ctl) {
	t.Helper()
	c := newCtl(t, 4, nil)
	cl := c.as(&rootCred)
	cx := ctx(t)
	for _, port := range []uint16{40001, 40002} {
		if _, err := cl.Arm(cx, slotConfig(port)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.AddCoalescing(cx, wp.TCPConn{Local: netip.AddrPortFrom(hostIP, 41000), Remote: peerAP}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetPower(cx, nic.D3); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetPower(cx, nic.D0); err != nil {
		t.Fatal(err)
	}
	m, err := cl.Metrics(cx)
	if err != nil {
		t.Fatal(err)
	}
	return m, c
}

// TestMetricsPromlint runs client_golang's linter (the checks of
// promtool check metrics) on the real output.
func TestMetricsPromlint(t *testing.T) {
	m, _ := metricsOfArmedDevice(t)
	problems, err := promlint.New(bytes.NewReader(m)).Lint()
	if err != nil {
		t.Fatalf("lint: %v\n%s", err, m)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	// One HELP and one TYPE per family, every family together.
	seen := map[string]bool{}
	last := ""
	for _, line := range strings.Split(strings.TrimSpace(string(m)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		fam := familyOf(line)
		if fam != last && seen[fam] {
			t.Errorf("family %s split into several groups", fam)
		}
		seen[fam], last = true, fam
	}
	for _, want := range []string{
		`standbynic_nic_slot_keepalives_sent_total{slot="1",wire="wire0"} `,
		`standbynic_nic_slot_keepalives_sent_total{slot="2",wire="wire0"} `,
		`standbynic_nic_slot_dropped_segments_total{reason="paws",slot="2",wire="wire0"} `,
		`standbynic_nic_power_transitions_total{from="d3",to="waking",wire="wire0"} `,
		`standbynic_nic_d3_rx_dropped_frames_total{reason="paws",wire="wire0"} `,
		"# TYPE standbynic_nic_coalesce_filters gauge\n",
		`standbynic_nic_coalesce_filters{wire="wire0"} 1` + "\n",
		"# TYPE standbynic_control_leases_active gauge\n",
		"# TYPE standbynic_control_conns_open gauge\n",
		"# TYPE standbynic_nic_vnet_ports gauge\n",
		"# TYPE standbynic_nic_d3_neighbor_advertisements_total counter\n",
	} {
		if !bytes.Contains(m, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestMetricsEveryCounterMapped: every counter of Device.Counters has a
// family of its own; none falls back to standbynic_nic_unmapped_total.
func TestMetricsEveryCounterMapped(t *testing.T) {
	m, c := metricsOfArmedDevice(t)
	if bytes.Contains(m, []byte("\nstandbynic_nic_unmapped_total{")) {
		t.Errorf("counters without a metric:\n%s", grepMetric(m, "standbynic_nic_unmapped_total{"))
	}
	if len(c.dev.Counters()) < 80 {
		t.Errorf("only %d device counters: is the device armed?", len(c.dev.Counters()))
	}
}

// TestMetricsGolden shows the families (names, types, HELP) and their
// label sets; values are replaced by N.
func TestMetricsGolden(t *testing.T) {
	m, _ := metricsOfArmedDevice(t)
	got := normaliseMetrics(m)
	path := filepath.Join("testdata", "metrics.golden")
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./nic -run TestMetricsGolden -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("metrics differ from %s (-want +got; -update rewrites it):\n%s", path, diff)
	}
}

var sampleValue = regexp.MustCompile(`(?m)^([^#].*) \S+$`)

func normaliseMetrics(m []byte) []byte {
	return sampleValue.ReplaceAll(m, []byte("$1 N"))
}

func familyOf(sample string) string {
	if i := strings.IndexAny(sample, "{ "); i >= 0 {
		return sample[:i]
	}
	return sample
}

func grepMetric(m []byte, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(string(m), "\n") {
		if strings.HasPrefix(l, prefix) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
