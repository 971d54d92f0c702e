package console

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestQuantile(t *testing.T) {
	bounds := []float64{0.1, 0.5, 1}
	for _, tc := range []struct {
		name     string
		from, to []uint64
		q, want  float64
	}{
		{"none observed", []uint64{1, 2, 3, 3}, []uint64{1, 2, 3, 3}, 0.5, math.NaN()},
		{"all in the first bucket", []uint64{0, 0, 0, 0}, []uint64{10, 10, 10, 10}, 0.5, 0.05},
		{"interpolated in the second", []uint64{0, 0, 0, 0}, []uint64{0, 10, 10, 10}, 0.5, 0.3},
		{"only the window counts", []uint64{10, 10, 10, 10}, []uint64{10, 20, 20, 20}, 0.99, 0.496},
		{"past the last bound", []uint64{0, 0, 0, 0}, []uint64{0, 0, 0, 4}, 0.5, 1},
		{"counter reset", []uint64{5, 5, 5, 5}, []uint64{1, 1, 1, 1}, 0.5, math.NaN()},
		{"mismatched", []uint64{0}, []uint64{0, 1, 1, 1}, 0.5, math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := quantile(tc.q, bounds, tc.from, tc.to)
			if math.IsNaN(tc.want) != math.IsNaN(got) || !math.IsNaN(got) && math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("quantile %v = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

// TestSamplerReadsTheRegistry samples a real registry holding the metrics
// the ingress and resultsvc export, and checks the rate, the latency and
// that the ring keeps 15 minutes.
func TestSamplerReadsTheRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	submitted := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricSubmitted}, []string{"model"})
	queued := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricQueued}, []string{"model"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricDuration, Buckets: []float64{0.1, 1}}, []string{"model", "status"})
	reg.MustRegister(submitted, queued, dur)
	s := newSampler(reg, func() []string { return []string{"simple"} })
	t0 := time.Unix(1_800_000_000, 0)
	s.sampleOnce(t0)
	submitted.WithLabelValues("simple").Add(120)
	queued.WithLabelValues("simple").Set(7)
	for range 10 {
		dur.WithLabelValues("simple", "succeeded").Observe(0.05)
	}
	dur.WithLabelValues("simple", "failed").Observe(5) // not a success: not in the latency
	s.sampleOnce(t0.Add(time.Minute))
	f := s.figures("simple")
	if f.Rate != 2 || math.Abs(f.P50-0.05) > 1e-9 || math.Abs(f.P99-0.099) > 1e-9 {
		t.Errorf("figures %+v", f)
	}
	if len(f.QueuedSeries) != 2 || !math.IsNaN(f.QueuedSeries[0]) || f.QueuedSeries[1] != 7 {
		t.Errorf("queued series %v", f.QueuedSeries)
	}
	for k := range 2 * sampleKeep {
		s.sampleOnce(t0.Add(time.Minute + time.Duration(k+1)*sampleEvery))
	}
	if n := len(s.rings["simple"].s); n != sampleKeep {
		t.Errorf("ring holds %d samples, want %d", n, sampleKeep)
	}
	if f := s.figures("nope"); !math.IsNaN(f.Rate) {
		t.Errorf("unknown model: %+v", f)
	}
	svg := string(sparkline("simple jobs queued", []float64{math.NaN(), 1, 3}, ""))
	if !strings.Contains(svg, `role="img"`) || !strings.Contains(svg, "now 3, peak 3") || strings.Count(svg, "<polyline") != 1 {
		t.Errorf("sparkline %s", svg)
	}
}
