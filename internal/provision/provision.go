// Package provision creates and updates the streams, consumers and buckets
// that inferq's topology names (pkg/jetstream). It is internal: other Go
// programs that talk to inferq need the names, not the provisioning, which
// only inferq's own services run at start.
package provision

import (
	"context"
	"fmt"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/pkg/jetstream"
)

// ModelPolicy is what provisioning needs to know of a model.
type ModelPolicy struct {
	Name         string
	MaxBatchSize int
	MaxDeliver   int
}

// All creates or updates every stream, consumer and bucket of the
// topology. It is idempotent: every service runs it at start.
func All(ctx context.Context, js natsjs.JetStream, t jetstream.Topology, models []ModelPolicy) error {
	for _, cfg := range Streams(t) {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("provision stream %s: %w", cfg.Name, err)
		}
	}
	for _, m := range models {
		if err := Model(ctx, js, t, m); err != nil {
			return err
		}
	}
	if _, err := ResultsConsumer(ctx, js, t); err != nil {
		return err
	}
	if _, err := AdvisoryConsumer(ctx, js, t); err != nil {
		return err
	}
	if _, err := WebhookConsumer(ctx, js, t); err != nil {
		return err
	}
	for _, kv := range []natsjs.KeyValueConfig{
		{Bucket: t.ModelsBucket(), Description: "inferq model registry", History: 1},
		{Bucket: t.WorkersBucket(), Description: "inferq worker heartbeats", History: 1, TTL: t.WorkerTTL},
		{Bucket: t.SeqsBucket(), Description: "inferq sequences ended before their batch", History: 1, TTL: time.Hour},
	} {
		kv.Replicas = t.Replicas
		kv.Storage = storage(t)
		if _, err := js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
			return fmt.Errorf("provision bucket %s: %w", kv.Bucket, err)
		}
	}
	if _, err := js.CreateOrUpdateObjectStore(ctx, BlobsConfig(t)); err != nil {
		return fmt.Errorf("provision object store %s: %w", t.BlobsBucket(), err)
	}
	return nil
}

// BlobsConfig is the object store of large tensors: replicated like the
// streams, and expiring with the job records that refer to them.
func BlobsConfig(t jetstream.Topology) natsjs.ObjectStoreConfig {
	return natsjs.ObjectStoreConfig{
		Bucket:      t.BlobsBucket(),
		Description: "inferq: tensors too large to travel inside a message",
		TTL:         t.BlobsTTL,
		Replicas:    t.Replicas,
		Storage:     storage(t),
	}
}

// Model creates or updates a model's batcher and worker consumers: one
// batcher consumer per priority (jetstream.BatcherConsumers) and the
// workers' shared consumer.
func Model(ctx context.Context, js natsjs.JetStream, t jetstream.Topology, m ModelPolicy) error {
	// Per priority the batcher holds up to max_batch_size jobs in the pull
	// iterator and 2×max_batch_size in its own buffer while it fills
	// batches; MaxAckPending must be well above that or it starves itself.
	pending := 8 * m.MaxBatchSize
	if pending < 1000 {
		pending = 1000
	}
	for p := jetstream.MinPriority; p <= jetstream.MaxPriority; p++ {
		c := natsjs.ConsumerConfig{
			Durable:       jetstream.BatcherPriorityConsumer(m.Name, p),
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
		Durable:       jetstream.WorkerConsumer(m.Name),
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

// ResultsConsumer creates or updates resultsvc's consumer of events.
func ResultsConsumer(ctx context.Context, js natsjs.JetStream, t jetstream.Topology) (natsjs.Consumer, error) {
	return durable(ctx, js, t, t.EventsStream(), natsjs.ConsumerConfig{Durable: jetstream.ResultsConsumer,
		Description: "inferq resultsvc: job events into the results store", MaxAckPending: 4096})
}

// AdvisoryConsumer creates or updates resultsvc's consumer of
// max-deliveries advisories.
func AdvisoryConsumer(ctx context.Context, js natsjs.JetStream, t jetstream.Topology) (natsjs.Consumer, error) {
	return durable(ctx, js, t, t.AdvisoriesStream(), natsjs.ConsumerConfig{Durable: jetstream.AdvisoryConsumer,
		Description: "inferq resultsvc: batches that exhausted max_deliver"})
}

// WebhookConsumer creates or updates the webhook deliverers' consumer. It
// has no MaxDeliver: the deliverer counts attempts and gives up itself
// (webhooks.max_attempts), after recording the failure in the job record.
func WebhookConsumer(ctx context.Context, js natsjs.JetStream, t jetstream.Topology) (natsjs.Consumer, error) {
	return durable(ctx, js, t, t.WebhooksStream(), natsjs.ConsumerConfig{Durable: jetstream.WebhookConsumer,
		Description: "inferq resultsvc: completion webhooks to deliver", MaxAckPending: 1024})
}

// durable creates or updates the durable pull consumer cfg on stream with
// explicit acks and the topology's ack wait, replicas and storage.
func durable(ctx context.Context, js natsjs.JetStream, t jetstream.Topology, stream string, cfg natsjs.ConsumerConfig) (natsjs.Consumer, error) {
	cfg.AckPolicy, cfg.AckWait = natsjs.AckExplicitPolicy, t.AckWait
	cfg.Replicas, cfg.MemoryStorage = t.Replicas, t.MemoryStorage
	c, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("provision consumer %s: %w", cfg.Durable, err)
	}
	return c, nil
}

// storage is the stream and bucket storage the topology asks for.
func storage(t jetstream.Topology) natsjs.StorageType {
	if t.MemoryStorage {
		return natsjs.MemoryStorage
	}
	return natsjs.FileStorage
}

// Streams are the configs of the topology's streams, as All creates them.
func Streams(t jetstream.Topology) []natsjs.StreamConfig {
	dup := t.DuplicateWindow
	if dup <= 0 {
		dup = 2 * time.Minute
	}
	base := func(name, desc string, subjects ...string) natsjs.StreamConfig {
		return natsjs.StreamConfig{
			Name: name, Description: desc, Subjects: subjects,
			Storage: storage(t), Replicas: t.Replicas, Duplicates: dup,
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
	hooks := base(t.WebhooksStream(), "inferq: completion webhooks waiting for delivery", t.Prefix+".webhooks.>")
	hooks.Retention = natsjs.WorkQueuePolicy
	hooks.MaxAge = t.JobsMaxAge
	return []natsjs.StreamConfig{jobs, batches, events, tokens, dead, adv, hooks}
}

// BatchAPI creates or updates what the Batch API of the OpenAI-compatible
// face keeps: the files' object store, the batch records' bucket, the batch
// work queue with its runners' consumer, and the finished-lines stream.
// Only the ingress runs it (it alone serves the face), so the other
// services need no rights on these. ackWait is how long a runner that went
// silent keeps its batch before another takes it over.
func BatchAPI(ctx context.Context, js natsjs.JetStream, t jetstream.Topology, ackWait time.Duration) error {
	if _, err := js.CreateOrUpdateObjectStore(ctx, natsjs.ObjectStoreConfig{Bucket: t.FilesBucket(),
		Description: "inferq Batch API files (inputs, outputs, errors)", Storage: storage(t), Replicas: t.Replicas}); err != nil {
		return fmt.Errorf("provision object store %s: %w", t.FilesBucket(), err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, natsjs.KeyValueConfig{Bucket: t.BatchRecordsBucket(),
		Description: "inferq Batch API batches", History: 1, Storage: storage(t), Replicas: t.Replicas}); err != nil {
		return fmt.Errorf("provision bucket %s: %w", t.BatchRecordsBucket(), err)
	}
	dup := t.DuplicateWindow
	if dup <= 0 {
		dup = 2 * time.Minute
	}
	work := natsjs.StreamConfig{Name: t.BatchWorkStream(), Description: "inferq: Batch API batches waiting for a runner",
		Subjects: []string{t.BatchWorkSubject("*")}, Retention: natsjs.WorkQueuePolicy, Storage: storage(t),
		Replicas: t.Replicas, Duplicates: dup}
	lines := natsjs.StreamConfig{Name: t.BatchLinesStream(), Description: "inferq: finished lines of running Batch API batches",
		Subjects: []string{t.BatchLinesSubject("*")}, Retention: natsjs.LimitsPolicy, MaxAge: 7 * 24 * time.Hour,
		Storage: storage(t), Replicas: t.Replicas, Duplicates: dup}
	for _, cfg := range []natsjs.StreamConfig{work, lines} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("provision stream %s: %w", cfg.Name, err)
		}
	}
	if ackWait <= 0 {
		ackWait = t.AckWait
	}
	_, err := js.CreateOrUpdateConsumer(ctx, t.BatchWorkStream(), natsjs.ConsumerConfig{
		Durable: jetstream.BatchRunnerConsumer, Description: "inferq ingress: Batch API runners",
		AckPolicy: natsjs.AckExplicitPolicy, AckWait: ackWait, MaxAckPending: 64,
		Replicas: t.Replicas, MemoryStorage: t.MemoryStorage})
	if err != nil {
		return fmt.Errorf("provision consumer %s: %w", jetstream.BatchRunnerConsumer, err)
	}
	return nil
}
