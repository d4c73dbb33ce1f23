package bench

import "testing"

func TestPairedRatios(t *testing.T) {
	tests := []struct {
		name      string
		dev, base []float64
		want      string
	}{
		{"pairs", []float64{50, 90, 30}, []float64{100, 100, 60}, "ratio per run (device ÷ bridge in the same run) 0.5, 0.9, 0.5; median 0.5"},
		{"unequal lengths", []float64{50, 90}, []float64{100}, "ratio per run (device ÷ bridge in the same run) 0.5; median 0.5"},
		{"zero baseline left out", []float64{50, 90}, []float64{0, 100}, "ratio per run (device ÷ bridge in the same run) 0.9; median 0.9"},
		{"none", nil, []float64{1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pairedRatios(tt.dev, tt.base); got != tt.want {
				t.Errorf("pairedRatios = %q, want %q", got, tt.want)
			}
		})
	}
}
