package e2e

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inferq/inferq/internal/batcher"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/stack"
)

// TestBatcherCrashBeforeAck: the batcher publishes a batch and "crashes"
// before acking its jobs; a new batcher re-batches them after AckWait with
// the same batch id, JetStream drops the copy, and every job ends exactly
// once, succeeded, with its own output.
func TestBatcherCrashBeforeAck(t *testing.T) {
	s := startComponents(t, false, stack.Components{Ingress: true, Worker: true, ResultSvc: true}, func(c *config.Config) {
		c.NATS.AckWait = config.D(time.Second)
		m, _ := c.Model("simgpu")
		m.Runner.Params = map[string]any{"a": "5ms", "b": "1ms"}
		m.Batching.MaxBatchSize = 8
		m.Batching.MaxQueueDelay = config.D(100 * time.Millisecond)
	})
	const jobs = 6
	ids := make(map[int]string, jobs)
	for k := range jobs {
		ids[k] = s.submit(t, "simgpu", pairBody(k)).ID
	}
	m, _ := s.Cfg.Model("simgpu")
	opt := batcher.Options{Models: []config.Model{*m}, Topology: stack.Topology(s.Cfg), JS: s.NATS.JS,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: obs.NewMetrics(prometheus.NewRegistry())}
	var mu sync.Mutex
	var crashed []string
	opt.BeforeAck = func(id string) bool { mu.Lock(); crashed = append(crashed, id); mu.Unlock(); return false }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := batcher.New(opt).Run(ctx); !errors.Is(err, batcher.ErrStopped) {
		t.Fatalf("first batcher: %v", err)
	}
	opt.BeforeAck = nil
	done := make(chan error, 1)
	go func() { done <- batcher.New(opt).Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitPairs(t, s, ids)
	// The batch was stored once: the re-batch had the same id.
	st, err := s.NATS.JS.Stream(t.Context(), stack.Topology(s.Cfg).BatchesStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 1 {
		t.Errorf("batches stream got %d batches, want 1 (crashed batch %v deduplicated)", info.State.LastSeq, crashed)
	}
	settle(t, s, "simgpu") // any late copy of a result has been applied (or refused)
	for _, id := range ids {
		var rec jobRecord
		do(t, "GET", s.URL+"/v1/jobs/"+id, nil, &rec)
		if rec.Status != "succeeded" {
			t.Errorf("job %s changed to %s", id, rec.Status)
		}
	}
}
