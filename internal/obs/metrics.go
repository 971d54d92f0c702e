package obs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inferq/inferq/internal/version"
)

// Metrics are the broker's own metrics. Labels are bounded: model, status,
// reason, never job ids. One Metrics serves every component in a process.
type Metrics struct {
	JobsSubmitted   *prometheus.CounterVec   // model
	JobsRejected    *prometheus.CounterVec   // model, reason
	HTTPDuration    *prometheus.HistogramVec // route, code
	BatchSize       *prometheus.HistogramVec // model
	QueueWait       *prometheus.HistogramVec // model
	BatchesFlushed  *prometheus.CounterVec   // model, reason
	JobsDropped     *prometheus.CounterVec   // model, reason (expired, invalid)
	BatchDuration   *prometheus.HistogramVec // model
	BatchesFailed   *prometheus.CounterVec   // model
	TokensPublished *prometheus.CounterVec   // model
	EventsApplied   *prometheus.CounterVec   // status, outcome (applied, duplicate, unknown)
	JobsFinished    *prometheus.CounterVec   // model, status
	JobDuration     *prometheus.HistogramVec // model, status: created → terminal
	DeadLetters     *prometheus.CounterVec   // model, reason (max_deliver, permanent)
	// BuildInfo is always 1; its labels say which build runs, so a dashboard
	// can show a rollout and an alert can join on the version.
	BuildInfo *prometheus.GaugeVec // version, goversion
}

// NewMetrics registers the broker's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	lat := prometheus.ExponentialBuckets(0.0005, 2, 18) // 0.5ms .. ~65s
	m := &Metrics{
		JobsSubmitted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_jobs_submitted_total",
			Help: "Jobs accepted by ingress (answered 202)."}, []string{"model"}),
		JobsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_jobs_rejected_total",
			Help: "Job submissions refused by ingress, by reason."}, []string{"model", "reason"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_http_request_duration_seconds",
			Help: "Ingress HTTP request latency.", Buckets: lat}, []string{"route", "code"}),
		BatchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_batch_size",
			Help: "Jobs per published batch.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}}, []string{"model"}),
		QueueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_queue_wait_seconds",
			Help: "Time from job creation to its batch being published.", Buckets: lat}, []string{"model"}),
		BatchesFlushed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_batches_flushed_total",
			Help: "Batches published, by closing reason (full, preferred, delay, idle)."}, []string{"model", "reason"}),
		JobsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_jobs_dropped_total",
			Help: "Jobs that never ran to the end, by reason (expired, cancelled, invalid, max_deliver)."}, []string{"model", "reason"}),
		BatchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_worker_batch_duration_seconds",
			Help: "Time a worker spends running one batch.", Buckets: lat}, []string{"model"}),
		BatchesFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_worker_batches_failed_total",
			Help: "Batches whose run failed."}, []string{"model"}),
		TokensPublished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_tokens_published_total",
			Help: "Token chunks published by workers."}, []string{"model"}),
		EventsApplied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_events_applied_total",
			Help: "Job events handled by resultsvc, by outcome."}, []string{"status", "outcome"}),
		JobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_jobs_finished_total",
			Help: "Jobs that reached a terminal status."}, []string{"model", "status"}),
		JobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_job_duration_seconds",
			Help: "Time from job creation to its terminal status.", Buckets: lat}, []string{"model", "status"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_dead_letters_total",
			Help: "Jobs written to the dead-letter stream, by reason (max_deliver, permanent)."}, []string{"model", "reason"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inferq_build_info",
			Help: "Always 1; the labels name the running build (version) and its Go toolchain (goversion)."}, []string{"version", "goversion"}),
	}
	m.BuildInfo.WithLabelValues(version.String(), version.GoVersion()).Set(1)
	reg.MustRegister(m.BuildInfo, m.DeadLetters, m.JobsSubmitted, m.JobsRejected, m.HTTPDuration, m.BatchSize, m.QueueWait, m.BatchesFlushed,
		m.JobsDropped, m.BatchDuration, m.BatchesFailed, m.TokensPublished, m.EventsApplied, m.JobsFinished, m.JobDuration)
	return m
}
