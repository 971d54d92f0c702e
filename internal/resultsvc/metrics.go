package resultsvc

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inferq/inferq/internal/obs"
)

// Metrics are resultsvc's own collectors; jobs dropped and dead letters are
// counted on the shared obs.Metrics, which the batcher and worker count too.
// Labels are bounded: model, status, outcome.
type Metrics struct {
	EventsApplied *prometheus.CounterVec   // status, outcome (applied, duplicate, unknown)
	JobsFinished  *prometheus.CounterVec   // model, status
	JobDuration   *prometheus.HistogramVec // model, status: created → terminal
	// Retained is what the results store keeps (results.Retainer): memory
	// and disk grow with it until retention expires entries.
	Retained prometheus.Gauge
}

// NewMetrics registers resultsvc's metrics on reg; call it once per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		EventsApplied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_events_applied_total",
			Help: "Job events handled by resultsvc, by outcome."}, []string{"status", "outcome"}),
		JobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_jobs_finished_total",
			Help: "Jobs that reached a terminal status."}, []string{"model", "status"}),
		JobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_job_duration_seconds",
			Help: "Time from job creation to its terminal status.", Buckets: obs.LatencyBuckets()}, []string{"model", "status"}),
		Retained: prometheus.NewGauge(prometheus.GaugeOpts{Name: "inferq_results_retained_entries",
			Help: "Entries the results store keeps (job records and idempotency keys; on Redis every key of its database), read every 15s."}),
	}
	reg.MustRegister(m.EventsApplied, m.JobsFinished, m.JobDuration, m.Retained)
	return m
}
