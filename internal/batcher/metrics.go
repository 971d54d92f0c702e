package batcher

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inferq/inferq/internal/obs"
)

// Metrics are the batcher's own collectors; jobs dropped are counted on the
// shared obs.Metrics, which resultsvc counts too. Each Batcher has its own,
// so two batchers in one process (tests, a benchmark) never mix counts.
// Labels are bounded: model, priority, reason.
type Metrics struct {
	BatchSize      *prometheus.HistogramVec // model
	QueueWait      *prometheus.HistogramVec // model, priority
	BatchesFlushed *prometheus.CounterVec   // model, reason
	FillRatio      *prometheus.HistogramVec // model
	JobsBatched    *prometheus.CounterVec   // model, priority
	PrioDropped    *prometheus.CounterVec   // model, priority, reason
	GateWaits      *prometheus.CounterVec   // model
}

// NewMetrics registers the batcher's metrics on reg; call it once per
// registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		BatchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_batch_size",
			Help: "Jobs per published batch.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}}, []string{"model"}),
		QueueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_queue_wait_seconds",
			Help: "Time from job creation to its batch being published, by priority.", Buckets: obs.LatencyBuckets()},
			[]string{"model", "priority"}),
		BatchesFlushed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_batches_flushed_total",
			Help: "Batches published, by closing reason (full, preferred, delay, idle)."}, []string{"model", "reason"}),
		FillRatio: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_batch_fill_ratio",
			Help:    "Real elements / padded elements of a published batch (1 when nothing is padded).",
			Buckets: []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1}}, []string{"model"}),
		JobsBatched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_batcher_jobs_batched_total",
			Help: "Jobs published in a batch, by priority."}, []string{"model", "priority"}),
		PrioDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_batcher_jobs_dropped_total",
			Help: "Jobs the batcher did not batch, by priority and reason (expired, cancelled, invalid)."}, []string{"model", "priority", "reason"}),
		GateWaits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_batcher_gate_waits_total",
			Help: "Times a ready batch was held because no worker was free for it (a batch already waited, or every worker slot held one)."}, []string{"model"}),
	}
	reg.MustRegister(m.BatchSize, m.QueueWait, m.BatchesFlushed, m.FillRatio, m.JobsBatched, m.PrioDropped, m.GateWaits)
	return m
}

func prioLabel(p int) string { return "p" + strconv.Itoa(p) }
