package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// iperf3Result is what the forward scenario reads from an iperf3 client's
// -J report.
type iperf3Result struct {
	// ReceivedBPS is end.sum_received.bits_per_second: the rate the
	// receiving side read.
	ReceivedBPS float64
	// Retransmits is end.sum_sent.retransmits.
	Retransmits int
	// Seconds is end.sum_received.seconds.
	Seconds float64
	// Bytes is end.sum_received.bytes.
	Bytes int64
}

// maxIperf3Report bounds the JSON report parseIperf3 reads.
const maxIperf3Report = 4 << 20

// parseIperf3 decodes an iperf3 client's JSON report (iperf3 -J). A
// report with an "error" member, or without a positive received rate,
// is an error naming the field.
func parseIperf3(b []byte) (iperf3Result, error) {
	if len(b) > maxIperf3Report {
		return iperf3Result{}, fmt.Errorf("iperf3 report: %d bytes, more than %d", len(b), maxIperf3Report)
	}
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived *struct {
				Seconds       float64 `json:"seconds"`
				Bytes         int64   `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return iperf3Result{}, fmt.Errorf("iperf3 report: %w", err)
	}
	if r.Error != "" {
		return iperf3Result{}, fmt.Errorf("iperf3: %s", r.Error)
	}
	s := r.End.SumReceived
	switch {
	case s == nil:
		return iperf3Result{}, errors.New("iperf3 report: no end.sum_received")
	case !(s.BitsPerSecond > 0) || math.IsInf(s.BitsPerSecond, 0):
		return iperf3Result{}, fmt.Errorf("iperf3 report: end.sum_received.bits_per_second %v, want a positive rate", s.BitsPerSecond)
	case s.Bytes < 0 || !(s.Seconds > 0):
		return iperf3Result{}, fmt.Errorf("iperf3 report: end.sum_received: %d bytes in %v s", s.Bytes, s.Seconds)
	}
	return iperf3Result{ReceivedBPS: s.BitsPerSecond, Retransmits: r.End.SumSent.Retransmits, Seconds: s.Seconds, Bytes: s.Bytes}, nil
}
