package jetstream

import (
	"context"
	"fmt"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// ModelPolicy is what provisioning needs to know of a model.
type ModelPolicy struct {
	Name         string
	MaxBatchSize int
	MaxDeliver   int
}

// Provision creates or updates every stream, consumer and bucket of the
// topology. It is idempotent: every service runs it at start.
func Provision(ctx context.Context, js natsjs.JetStream, t Topology, models []ModelPolicy) error {
	for _, cfg := range t.streams() {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("provision stream %s: %w", cfg.Name, err)
		}
	}
	for _, m := range models {
		if err := ProvisionModel(ctx, js, t, m); err != nil {
			return err
		}
	}
	if _, err := ProvisionResultsConsumer(ctx, js, t); err != nil {
		return err
	}
	if _, err := ProvisionAdvisoryConsumer(ctx, js, t); err != nil {
		return err
	}
	for _, kv := range []natsjs.KeyValueConfig{
		{Bucket: t.ModelsBucket(), Description: "inferq model registry", History: 1},
		{Bucket: t.WorkersBucket(), Description: "inferq worker heartbeats", History: 1, TTL: t.WorkerTTL},
	} {
		kv.Replicas = t.Replicas
		kv.Storage = t.storage()
		if _, err := js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
			return fmt.Errorf("provision bucket %s: %w", kv.Bucket, err)
		}
	}
	return nil
}

// ProvisionModel creates or updates a model's batcher and worker consumers:
// one batcher consumer per priority (BatcherConsumers) and the workers'
// shared consumer.
func ProvisionModel(ctx context.Context, js natsjs.JetStream, t Topology, m ModelPolicy) error {
	// Per priority the batcher holds up to max_batch_size jobs in the pull
	// iterator and 2×max_batch_size in its own buffer while it fills
	// batches; MaxAckPending must be well above that or it starves itself.
	pending := 8 * m.MaxBatchSize
	if pending < 1000 {
		pending = 1000
	}
	for p := MinPriority; p <= MaxPriority; p++ {
		c := natsjs.ConsumerConfig{
			Durable:       BatcherPriorityConsumer(m.Name, p),
			Description:   fmt.Sprintf("inferq batcher for model %s, priority p%d", m.Name, p),
			FilterSubject: t.PriorityFilter(m.Name, p) + ".*",
			AckPolicy:     natsjs.AckExplicitPolicy,
			AckWait:       t.AckWait,
			MaxAckPending: pending,
			DeliverPolicy: natsjs.DeliverAllPolicy,
			Replicas:      t.Replicas,
			MemoryStorage: t.MemoryStorage,
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, t.JobsStream(), c); err != nil {
			return fmt.Errorf("provision consumer %s: %w", c.Durable, err)
		}
	}
	workers := natsjs.ConsumerConfig{
		Durable:       WorkerConsumer(m.Name),
		Description:   "inferq GPU workers for model " + m.Name,
		FilterSubject: t.BatchSubject(m.Name),
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       t.AckWait,
		MaxDeliver:    m.MaxDeliver,
		MaxAckPending: 1000,
		Replicas:      t.Replicas,
		MemoryStorage: t.MemoryStorage,
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, t.BatchesStream(), workers); err != nil {
		return fmt.Errorf("provision consumer %s: %w", workers.Durable, err)
	}
	return nil
}

// ProvisionResultsConsumer creates or updates resultsvc's consumer of events.
func ProvisionResultsConsumer(ctx context.Context, js natsjs.JetStream, t Topology) (natsjs.Consumer, error) {
	c, err := js.CreateOrUpdateConsumer(ctx, t.EventsStream(), natsjs.ConsumerConfig{
		Durable:       ResultsConsumer,
		Description:   "inferq resultsvc: job events into the results store",
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       t.AckWait,
		MaxAckPending: 4096,
		Replicas:      t.Replicas,
		MemoryStorage: t.MemoryStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("provision consumer %s: %w", ResultsConsumer, err)
	}
	return c, nil
}

// ProvisionAdvisoryConsumer creates or updates resultsvc's consumer of
// max-deliveries advisories.
func ProvisionAdvisoryConsumer(ctx context.Context, js natsjs.JetStream, t Topology) (natsjs.Consumer, error) {
	c, err := js.CreateOrUpdateConsumer(ctx, t.AdvisoriesStream(), natsjs.ConsumerConfig{
		Durable:       AdvisoryConsumer,
		Description:   "inferq resultsvc: batches that exhausted max_deliver",
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       t.AckWait,
		Replicas:      t.Replicas,
		MemoryStorage: t.MemoryStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("provision consumer %s: %w", AdvisoryConsumer, err)
	}
	return c, nil
}

func (t Topology) storage() natsjs.StorageType {
	if t.MemoryStorage {
		return natsjs.MemoryStorage
	}
	return natsjs.FileStorage
}

func (t Topology) streams() []natsjs.StreamConfig {
	dup := t.DuplicateWindow
	if dup <= 0 {
		dup = 2 * time.Minute
	}
	base := func(name, desc string, subjects ...string) natsjs.StreamConfig {
		return natsjs.StreamConfig{
			Name: name, Description: desc, Subjects: subjects,
			Storage: t.storage(), Replicas: t.Replicas, Duplicates: dup,
		}
	}
	jobs := base(t.JobsStream(), "inferq: every accepted job, kept for replay", t.Prefix+".jobs.>")
	jobs.Retention = natsjs.LimitsPolicy
	jobs.MaxAge = t.JobsMaxAge
	// An overflow must refuse new jobs, never drop accepted ones.
	jobs.Discard = natsjs.DiscardNew

	batches := base(t.BatchesStream(), "inferq: batches waiting for a worker", t.Prefix+".batches.>")
	batches.Retention = natsjs.WorkQueuePolicy
	batches.Discard = natsjs.DiscardNew

	events := base(t.EventsStream(), "inferq: job progress for resultsvc", t.Prefix+".events.>")
	events.Retention = natsjs.WorkQueuePolicy
	events.Discard = natsjs.DiscardNew

	tokens := base(t.TokensStream(), "inferq: generated token chunks", t.Prefix+".tokens.>")
	tokens.Retention = natsjs.LimitsPolicy
	tokens.MaxAge = t.TokensMaxAge

	dead := base(t.DeadStream(), "inferq: dead-lettered jobs", t.Prefix+".dead.>")
	dead.Retention = natsjs.LimitsPolicy
	dead.MaxAge = t.JobsMaxAge

	adv := base(t.AdvisoriesStream(), "inferq: batches that exhausted max_deliver", t.MaxDeliveriesSubject())
	adv.Retention = natsjs.WorkQueuePolicy
	adv.MaxAge = t.JobsMaxAge
	return []natsjs.StreamConfig{jobs, batches, events, tokens, dead, adv}
}
