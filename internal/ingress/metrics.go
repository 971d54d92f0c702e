package ingress

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inferq/inferq/internal/obs"
)

// metrics are the ingress's own collectors, registered by New on
// Options.Registry beside the queue gauges (gauges.go). Labels are bounded:
// model, reason, route template, HTTP code.
type metrics struct {
	jobsSubmitted *prometheus.CounterVec   // model
	jobsRejected  *prometheus.CounterVec   // model, reason
	httpDuration  *prometheus.HistogramVec // route, code
}

// rejectReasons are the reasons of inferq_jobs_rejected_total.
var rejectReasons = []string{"invalid", "too_large", "queue_full", "store", "publish", "stream", "tokens", "blob"}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		jobsSubmitted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_jobs_submitted_total",
			Help: "Jobs accepted by ingress (answered 202)."}, []string{"model"}),
		jobsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_jobs_rejected_total",
			Help: "Job submissions refused by ingress, by reason."}, []string{"model", "reason"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_http_request_duration_seconds",
			Help: "Ingress HTTP request latency.", Buckets: obs.LatencyBuckets()}, []string{"route", "code"}),
	}
	reg.MustRegister(m.jobsSubmitted, m.jobsRejected, m.httpDuration)
	return m
}
