package batcher

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// The batcher's own collectors, beside the shared obs.Metrics (batch size,
// queue wait, flushes, drops). Labels are bounded: model and priority.
var (
	fillRatio = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_batch_fill_ratio",
		Help:    "Real elements / padded elements of a published batch (1 when nothing is padded).",
		Buckets: []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1}}, []string{"model"})
	prioWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_batcher_queue_wait_seconds",
		Help:    "Time from job creation to its batch being published, by priority.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}, []string{"model", "priority"})
	prioBatched = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_batcher_jobs_batched_total",
		Help: "Jobs published in a batch, by priority."}, []string{"model", "priority"})
	prioDropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_batcher_jobs_dropped_total",
		Help: "Jobs the batcher did not batch, by priority and reason (expired, cancelled, invalid)."}, []string{"model", "priority", "reason"})
	gateHeld = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_batcher_gate_waits_total",
		Help: "Times a ready batch was held because no worker was free for it (a batch already waited, or every worker slot held one)."}, []string{"model"})
)

// RegisterMetrics registers the batcher's collectors on reg. Registering on
// a registry that already has them is not an error.
func RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{fillRatio, prioWait, prioBatched, prioDropped, gateHeld} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

func prioLabel(p int) string { return "p" + strconv.Itoa(p) }
