package bench

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const iperf3Sample = `{"start":{"connected":[],"version":"iperf 3.12","test_start":{"protocol":"TCP","num_streams":1,"duration":1}},
"intervals":[],
"end":{"streams":[],"sum_sent":{"start":0,"end":1.000217,"seconds":1.000217,"bytes":1971322880,"bits_per_second":15767161565.940193,"retransmits":15,"sender":true},
"sum_received":{"start":0,"end":1.007404,"seconds":1.007404,"bytes":1969618944,"bits_per_second":15641144517.988811,"sender":true},
"cpu_utilization_percent":{}}}`

func TestParseIperf3(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    iperf3Result
		wantErr string
	}{
		{"report", iperf3Sample, iperf3Result{ReceivedBPS: 15641144517.988811, Retransmits: 15, Seconds: 1.007404, Bytes: 1969618944}, ""},
		{"error member", `{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection timed out"}`, iperf3Result{}, "iperf3: unable to connect"},
		{"no end", `{"start":{}}`, iperf3Result{}, "no end.sum_received"},
		{"zero rate", `{"end":{"sum_received":{"seconds":1,"bytes":0,"bits_per_second":0}}}`, iperf3Result{}, "want a positive rate"},
		{"negative bytes", `{"end":{"sum_received":{"seconds":1,"bytes":-1,"bits_per_second":5}}}`, iperf3Result{}, "-1 bytes"},
		{"not json", `Server listening on 5201`, iperf3Result{}, "iperf3 report:"},
		{"wrong type", `{"end":{"sum_received":{"bits_per_second":"fast"}}}`, iperf3Result{}, "iperf3 report:"},
		{"too long", `{"x":"` + strings.Repeat("a", maxIperf3Report) + `"}`, iperf3Result{}, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseIperf3([]byte(tt.in))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("parseIperf3 error %v, want %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseIperf3 (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParseIperf3: any input yields a result with a positive finite rate
// or an error, never a panic.
func FuzzParseIperf3(f *testing.F) {
	f.Add([]byte(iperf3Sample))
	f.Add([]byte(`{"error":"x"}`))
	f.Add([]byte(`{"end":{"sum_received":null}}`))
	f.Add([]byte(`{"end":{"sum_received":{"seconds":1e308,"bytes":1,"bits_per_second":1e308}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseIperf3(b)
		if err == nil && !(r.ReceivedBPS > 0 && r.Seconds > 0 && r.Bytes >= 0) {
			t.Fatalf("accepted %+v", r)
		}
	})
}
