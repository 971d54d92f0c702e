package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the deliverer's collectors. The result label is bounded:
// delivered, retry, failed, skipped.
type Metrics struct {
	Deliveries *prometheus.CounterVec // result
	Duration   prometheus.Histogram   // one POST, answered or not
}

// NewMetrics registers the deliverer's metrics on reg; call it once per
// registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_webhook_deliveries_total",
			Help: "Webhook delivery attempts, by result: delivered, retry (failed, tried again later), failed (given up), skipped (nothing to send)."},
			[]string{"result"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "inferq_webhook_delivery_seconds",
			Help:    "Time of one webhook POST, until the answer or the failure.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
	}
	for _, r := range []string{resultDelivered, resultRetry, resultFailed, resultSkipped} {
		m.Deliveries.WithLabelValues(r)
	}
	reg.MustRegister(m.Deliveries, m.Duration)
	return m
}
