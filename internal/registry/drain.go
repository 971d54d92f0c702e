package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/pkg/jetstream"
)

// Provision creates or updates a served model version's consumers.
func Provision(ctx context.Context, js natsjs.JetStream, t jetstream.Topology, m *config.Model) error {
	return provision.Model(ctx, js, t, provision.ModelPolicy{Name: m.Name, MaxBatchSize: m.Batching.MaxBatchSize, MaxDeliver: m.Queue.MaxDeliver})
}

// DrainGrace is how long a retired version waits before its queues are
// judged empty: an ingress that had not yet seen the retirement may still
// queue a job to it.
const DrainGrace = 5 * time.Second

// Drain finishes the retired versions of s whose queues are empty: no job
// waits for or is held by its batchers, and no batch for or by its workers.
// It deletes the version's key, which stops its batcher loops and workers,
// and then its consumers. The batcher runs it periodically; it is
// idempotent, so several batchers may.
func Drain(ctx context.Context, js natsjs.JetStream, t jetstream.Topology, st *Store, s *Snapshot, now time.Time, log *slog.Logger) {
	for _, r := range s.Retired() {
		if now.Sub(r.Since) < DrainGrace {
			continue
		}
		served := ServedName(r.Model, r.Version)
		n, err := queued(ctx, js, t, served)
		if err != nil {
			log.Warn("retired version's queue unreadable; drain waits", "model", r.Model, "version", r.Version, "err", err)
			continue
		}
		if n > 0 {
			continue
		}
		if err := st.removeVersion(ctx, r.Model, r.Version); err != nil {
			log.Warn("retired version not removed", "model", r.Model, "version", r.Version, "err", err)
			continue
		}
		for _, name := range jetstream.BatcherConsumers(served) {
			deleteConsumer(ctx, js, t.JobsStream(), name, log)
		}
		deleteConsumer(ctx, js, t.BatchesStream(), jetstream.WorkerConsumer(served), log)
		log.Info("retired version drained and removed", "model", r.Model, "version", r.Version)
	}
}

// queued counts a served model's jobs and batches not yet finished.
func queued(ctx context.Context, js natsjs.JetStream, t jetstream.Topology, served string) (int, error) {
	n := 0
	count := func(stream, name string) error {
		c, err := js.Consumer(ctx, stream, name)
		if errors.Is(err, natsjs.ErrConsumerNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("consumer %s: %w", name, err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer %s: %w", name, err)
		}
		n += int(info.NumPending) + info.NumAckPending
		return nil
	}
	for _, name := range jetstream.BatcherConsumers(served) {
		if err := count(t.JobsStream(), name); err != nil {
			return 0, err
		}
	}
	if err := count(t.BatchesStream(), jetstream.WorkerConsumer(served)); err != nil {
		return 0, err
	}
	return n, nil
}

func deleteConsumer(ctx context.Context, js natsjs.JetStream, stream, name string, log *slog.Logger) {
	if err := js.DeleteConsumer(ctx, stream, name); err != nil && !errors.Is(err, natsjs.ErrConsumerNotFound) {
		log.Warn("consumer of a drained version not deleted", "consumer", name, "err", err)
	}
}
