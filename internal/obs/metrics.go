package obs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inferq/inferq/internal/version"
)

// LatencyBuckets are the buckets of every latency histogram, 0.5 ms to about
// 65 s, so that one dashboard query reads any of them.
func LatencyBuckets() []float64 { return prometheus.ExponentialBuckets(0.0005, 2, 18) }

// Metrics are the facts that more than one component records, so that a
// process running several (inferq dev) registers each once. Every other
// metric belongs to its component, which registers it on the registry it is
// given (batcher.NewMetrics, ingress.New, resultsvc.New, worker.New). Labels
// are bounded: model, reason, never job ids.
type Metrics struct {
	// JobsDropped: model, reason. The batcher counts expired, cancelled
	// and invalid jobs; resultsvc those the max-deliveries advisory reports.
	JobsDropped *prometheus.CounterVec
	// DeadLetters: model, reason. A worker writes permanent failures and
	// exhausted deliveries; resultsvc writes those from the advisory.
	DeadLetters *prometheus.CounterVec
	// BuildInfo is always 1; its labels say which build runs, so a dashboard
	// can show a rollout and an alert can join on the version.
	BuildInfo *prometheus.GaugeVec // version, goversion
}

// Reasons of the shared counters, each created at zero for every model by
// ForModels.
var (
	DropReasons       = []string{"expired", "cancelled", "invalid", "max_deliver"}
	DeadLetterReasons = []string{"max_deliver", "permanent"}
)

// ForModels creates every model's series of the shared counters at zero, so
// that a rate over them is defined from the process's start and the first
// dead letter of a new process is an increase an alert can see.
func (m *Metrics) ForModels(models []string) {
	for _, model := range models {
		for _, r := range DropReasons {
			m.JobsDropped.WithLabelValues(model, r)
		}
		for _, r := range DeadLetterReasons {
			m.DeadLetters.WithLabelValues(model, r)
		}
	}
}

// NewMetrics registers the shared metrics on reg; call it once per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		JobsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_jobs_dropped_total",
			Help: "Jobs that never ran to the end, by reason (expired, cancelled, invalid, max_deliver)."}, []string{"model", "reason"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_dead_letters_total",
			Help: "Jobs written to the dead-letter stream, by reason (max_deliver, permanent)."}, []string{"model", "reason"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inferq_build_info",
			Help: "Always 1; the labels name the running build (version) and its Go toolchain (goversion)."}, []string{"version", "goversion"}),
	}
	m.BuildInfo.WithLabelValues(version.String(), version.GoVersion()).Set(1)
	reg.MustRegister(m.BuildInfo, m.DeadLetters, m.JobsDropped)
	return m
}
