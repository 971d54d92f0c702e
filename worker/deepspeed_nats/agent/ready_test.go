package agent

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// loadingRunner is a runner whose model loads until loaded is set.
type loadingRunner struct{ loaded atomic.Bool }

func (r *loadingRunner) Run(context.Context, *inferqpb.Batch, func(*inferqpb.TokenChunk) error) (*inferqpb.BatchResult, error) {
	return &inferqpb.BatchResult{}, nil
}
func (r *loadingRunner) Close() error { return nil }
func (r *loadingRunner) Describe() RunnerInfo {
	return RunnerInfo{Ready: r.loaded.Load(), Device: "cuda"}
}

// TestAgentReadyWhenModelLoaded: a worker is not ready (its /readyz gate)
// while its model loads, though connected to NATS, and ready once loaded.
func TestAgentReadyWhenModelLoaded(t *testing.T) {
	h := newHarness(t, fakeModel(), config.Model{Name: "identity", Runner: config.Runner{Builtin: "identity"},
		Batching: config.Batching{MaxBatchSize: 4}})
	slow := &loadingRunner{}
	a := New(Options{Models: h.models})
	if err := a.Ready(t.Context()); err == nil {
		t.Error("an agent that has not started its runners is ready")
	}
	a, _, stop := h.agent("w1", func(o *Options) {
		o.NewRunner = func(m *config.Model) (Runner, error) {
			if m.Name == "fake" {
				return slow, nil
			}
			return NewRunner(m)
		}
	})
	testutil.Eventually(t, 5*time.Second, func() bool {
		err := a.Ready(t.Context())
		return err != nil && strings.Contains(err.Error(), "fake") && !strings.Contains(err.Error(), "identity")
	}, "a worker whose model fake loads is not reported as loading it: %v", a.Ready(t.Context()))
	slow.loaded.Store(true)
	if err := a.Ready(t.Context()); err != nil {
		t.Errorf("every model loaded: %v", err)
	}
	stop()
	if err := a.Ready(t.Context()); err == nil {
		t.Error("a stopped agent is still ready")
	}
}
