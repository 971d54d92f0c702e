package agent

import (
	"context"
	"log/slog"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// Runner executes batches of one model. The built-in test models run in
// process; real models run in a runner subprocess (the Python runner) or
// on an inference server reached over HTTP (httprunner.go).
type Runner interface {
	// Run executes a batch and returns one result per job. emit publishes a
	// token chunk as soon as it is produced (generate models only). An error
	// means the whole batch failed: the agent splits it to isolate a bad
	// job, and retries it.
	Run(ctx context.Context, b *inferqpb.Batch, emit func(*inferqpb.TokenChunk) error) (*inferqpb.BatchResult, error)
	Close() error
}

// NewRunner returns the runner for a model's config.
func NewRunner(m *config.Model) (Runner, error) {
	if m.Runner.Builtin != "" {
		return newBuiltin(m)
	}
	if m.Runner.HTTP != nil {
		return newHTTPRunner(m, slog.Default())
	}
	p, err := NewProcess(m, ProcessOptions{})
	if err != nil {
		return nil, err
	}
	p.Warm() // load the model before the first batch arrives
	return p, nil
}

// Canceller is implemented by runners that can stop one job of the batch
// they are running; the job ends with error code "cancelled".
type Canceller interface {
	Cancel(jobID string)
}

// RunnerInfo is what a runner says about itself, for heartbeats.
type RunnerInfo struct {
	Ready    bool   // the model is loaded
	Device   string // as the runner names it: cpu, cuda, cuda:1
	Capacity int    // largest batch it takes; 0 if it sets no limit
	Error    string // why the model did not load, while Ready is false; empty while it loads
}

// Describer is implemented by runners that know where they run. A runner
// without it is taken as ready, on the CPU.
type Describer interface {
	Describe() RunnerInfo
}

// Concurrency is implemented by runners that run a bounded number of
// batches at once; the agent holds no more batches of the model than that.
type Concurrency interface {
	MaxConcurrentBatches() int
}
