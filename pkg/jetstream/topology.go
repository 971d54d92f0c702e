// Package jetstream is inferq's public NATS JetStream contract, for any Go
// program that talks to inferq over NATS: the names of its subjects,
// streams, consumers and buckets, its headers, the public message types,
// and publishing with message ids and trace headers. Provisioning is
// inferq's own business and lives in internal/provision.
package jetstream

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Topology names and shapes everything inferq keeps in JetStream. The zero
// value is not usable; start from DefaultTopology.
type Topology struct {
	Prefix          string        // subject prefix; streams are named PREFIX_JOBS etc.
	Replicas        int           // 1, or 3 on a cluster
	JobsMaxAge      time.Duration // how long accepted jobs stay for replay
	TokensMaxAge    time.Duration
	DuplicateWindow time.Duration // Nats-Msg-Id dedupe window
	AckWait         time.Duration
	WorkerTTL       time.Duration // heartbeat lifetime in the workers bucket
	BlobsTTL        time.Duration // lifetime of large tensors in the blobs bucket: the results retention; 0 keeps them
	MemoryStorage   bool          // tests only: keep streams in memory
}

// DefaultTopology is the contract's topology with prefix "inferq".
func DefaultTopology() Topology {
	return Topology{
		Prefix: "inferq", Replicas: 1,
		JobsMaxAge: 24 * time.Hour, TokensMaxAge: 15 * time.Minute,
		DuplicateWindow: 2 * time.Minute, AckWait: 30 * time.Second,
		WorkerTTL: 15 * time.Second, BlobsTTL: 24 * time.Hour,
	}
}

func (t Topology) stream(kind string) string { return strings.ToUpper(t.Prefix) + "_" + kind }

// Stream names.
func (t Topology) JobsStream() string    { return t.stream("JOBS") }
func (t Topology) BatchesStream() string { return t.stream("BATCHES") }
func (t Topology) EventsStream() string  { return t.stream("EVENTS") }
func (t Topology) TokensStream() string  { return t.stream("TOKENS") }
func (t Topology) DeadStream() string    { return t.stream("DEAD") }

// AdvisoriesStream keeps JetStream's max-deliveries advisories for the
// batches stream, so that a batch whose every delivery crashed its worker
// still ends its jobs (resultsvc reads it, even if it was down when the
// advisory was sent).
func (t Topology) AdvisoriesStream() string { return t.stream("ADVISORIES") }

// MaxDeliveriesSubject is the server's advisory subject for a batch that
// exhausted its consumer's max_deliver, for any workers consumer.
func (t Topology) MaxDeliveriesSubject() string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + t.BatchesStream() + ".*"
}

// Key-value bucket names.
func (t Topology) ModelsBucket() string  { return t.Prefix + "_models" }
func (t Topology) WorkersBucket() string { return t.Prefix + "_workers" }
func (t Topology) ResultsBucket() string { return t.Prefix + "_results" }

// WorkerKeyModel is a served model's part of its workers' keys in the
// workers bucket (<this>.<worker>): a key cannot hold the '@' of a
// registry version's served name (<model>@<version>), so it becomes '='.
func WorkerKeyModel(served string) string { return strings.ReplaceAll(served, "@", "=") }

// BlobsBucket is the object store of tensors too large to travel inside a
// message (blobs.threshold_bytes); messages carry a reference to them.
func (t Topology) BlobsBucket() string { return t.Prefix + "_blobs" }

// SeqsBucket holds a done mark per job of a continuously batched batch whose
// sequence ended before the batch did (key <batch>.<job>): a redelivered
// batch skips those jobs, so a crash reruns only unfinished sequences.
func (t Topology) SeqsBucket() string { return t.Prefix + "_seqs" }

// Priority levels: p0 is served first.
const (
	MinPriority     = 0
	MaxPriority     = 2
	DefaultPriority = 1
)

// JobSubject is where ingress publishes a job:
// <prefix>.jobs.<model>.p<prio>.<id>. The id in the subject makes every
// accepted job findable by id alone (JobLookupSubject), so the stream itself
// proves a job was accepted and no separate "queued" record is written.
func (t Topology) JobSubject(model string, prio int, id string) string {
	return t.PriorityFilter(model, prio) + "." + id
}

// PriorityFilter matches the jobs of one priority of a model; the batcher's
// consumer of that priority is filtered on it.
func (t Topology) PriorityFilter(model string, prio int) string {
	return t.Prefix + ".jobs." + model + ".p" + strconv.Itoa(prio) // per job: no fmt
}

// JobsFilter matches every job of a model, whatever its priority.
func (t Topology) JobsFilter(model string) string { return t.Prefix + ".jobs." + model + ".>" }

// JobLookupSubject matches the job with this id whatever its model and
// priority: the last message on it is the job's latest attempt.
func (t Topology) JobLookupSubject(id string) string { return t.Prefix + ".jobs.*.*." + id }

// BatchSubject is where the batcher publishes a model's batches.
func (t Topology) BatchSubject(model string) string { return t.Prefix + ".batches." + model }

// Event kinds on <prefix>.events.<model>.<kind>.
const (
	EventRunning = "running"
	EventResult  = "result"
	EventFailed  = "failed"
	// EventBatch carries the terminal events of a batch's jobs in one
	// message (protobuf JobEvents).
	EventBatch  = "batch"
	EventQueued = "queued" // a replay's new attempt
)

// EventSubject is where workers and batchers report job progress.
func (t Topology) EventSubject(model, kind string) string {
	return t.Prefix + ".events." + model + "." + kind
}

// TokenSubject carries a job's token chunks (JSON, readable by any client).
func (t Topology) TokenSubject(tenant, job string) string {
	return t.Prefix + ".tokens." + tenant + "." + job
}

// DeadSubject records a dead-lettered job.
func (t Topology) DeadSubject(model string) string { return t.Prefix + ".dead." + model }

// WebhooksStream holds completion webhooks waiting for delivery (a work
// queue: a delivered or abandoned webhook leaves it).
func (t Topology) WebhooksStream() string { return t.stream("WEBHOOKS") }

// WebhookSubject is where the webhooks of a model's jobs wait.
func (t Topology) WebhookSubject(model string) string { return t.Prefix + ".webhooks." + model }

// The Batch API's storage (the OpenAI-compatible face, docs/openai.md):
// uploaded and written files in an object store, batch records in a KV
// bucket, the batches waiting for a runner in a work queue, and each
// batch's finished lines in a stream until its output file is written.

// FilesBucket is the object store of the Batch API's files.
func (t Topology) FilesBucket() string { return t.Prefix + "_files" }

// BatchRecordsBucket is the KV bucket of the Batch API's batch records.
func (t Topology) BatchRecordsBucket() string { return t.Prefix + "_openai_batches" }

// BatchWorkStream holds one message per batch to run (a work queue whose
// one durable consumer makes one runner own a batch at a time).
func (t Topology) BatchWorkStream() string { return t.stream("BATCHWORK") }

// BatchWorkSubject is the message that asks for batch id to be run.
func (t Topology) BatchWorkSubject(id string) string { return t.Prefix + ".batchwork." + id }

// BatchLinesStream keeps the finished lines of running batches.
func (t Topology) BatchLinesStream() string { return t.stream("BATCHLINES") }

// BatchLinesSubject is where batch id's finished lines go.
func (t Topology) BatchLinesSubject(id string) string { return t.Prefix + ".batchlines." + id }

// Durable consumer names.
func BatcherConsumer(model string) string { return "batcher-" + model }
func WorkerConsumer(model string) string  { return "workers-" + model }

// BatcherPriorityConsumer is the batcher's durable consumer of one priority
// of a model's jobs: batcher-<model>-p<prio>, filtered on PriorityFilter.
func BatcherPriorityConsumer(model string, prio int) string {
	return fmt.Sprintf("batcher-%s-p%d", model, prio)
}

// BatcherConsumers are the durable consumers the batcher pulls a model's
// jobs from, highest priority first. A model's queue depth is the sum of
// their NumPending + NumAckPending.
func BatcherConsumers(model string) []string {
	out := make([]string, 0, MaxPriority-MinPriority+1)
	for p := MinPriority; p <= MaxPriority; p++ {
		out = append(out, BatcherPriorityConsumer(model, p))
	}
	return out
}

// ResultsConsumer is resultsvc's durable consumer on the events stream.
const ResultsConsumer = "resultsvc"

// WebhookConsumer is the webhook deliverers' durable consumer on the
// webhooks stream (they run in resultsvc).
const WebhookConsumer = "webhooks"

// BatchRunnerConsumer is the batch runners' durable consumer on the batch
// work stream (they run in the ingress).
const BatchRunnerConsumer = "batch-runners"

// AdvisoryConsumer is resultsvc's durable consumer on the advisories stream.
const AdvisoryConsumer = "resultsvc-advisories"

// MaxDeliveriesAdvisory is the part of the server's max-deliveries advisory
// that inferq reads.
type MaxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// Header names of inferq's own on its messages; NATS's (Nats-Msg-Id and the
// like) are nats.go's constants, such as nats.MsgIdHdr.
const (
	// HeaderSeq is the sequence of a token chunk.
	HeaderSeq = "Inferq-Seq"
	// HeaderAttempt is the job attempt a token chunk belongs to (sequences
	// restart at 1 when a job is replayed).
	HeaderAttempt = "Inferq-Attempt"
	// HeaderWorker names the worker agent that sent a notice on
	// TakenSubject.
	HeaderWorker = "Inferq-Worker"
	// HeaderIdle is "1" on a TakenSubject notice of a worker slot that
	// starts waiting while the worker has no batch of the model in hand:
	// its device is free, not just a slot to prefetch into.
	HeaderIdle = "Inferq-Idle"
	// HeaderFreeSlots is, on a TakenSubject notice of a continuously
	// batching worker, how many more sequences it can take now: the
	// batcher closes a batch at that size instead of max_batch_size.
	HeaderFreeSlots = "Inferq-Free-Slots"
	// HeaderWaiting and HeaderHeld are, on a TakenSubject notice, how many
	// pull requests for the model the worker has out and how many of its
	// batches it holds unacknowledged, as of the notice. With them on every
	// worker's notices a batcher knows its workers' state without asking
	// the server for the consumer's counts.
	HeaderWaiting = "Inferq-Waiting"
	HeaderHeld    = "Inferq-Held"
)

// CancelSubject carries cancellation notices (core NATS, not stored):
// batchers drop the job before packing and workers stop generating it.
func (t Topology) CancelSubject(model string) string { return t.Prefix + ".cancel." + model }

// BatchedSubject carries a notice of every batch a batcher publishes (core
// NATS, not stored, JSON BatchNotice), so that ingress can show recent batch
// sizes and anyone can watch batching live without reading the batches.
func (t Topology) BatchedSubject(model string) string { return t.Prefix + ".batched." + model }

// TakenSubject carries a notice (core NATS) each time a worker takes a
// batch of the model (the body is the batch id) and each time one of its
// slots starts waiting for the next (an empty body), so that batchers holding batches back for busy workers look
// again.
func (t Topology) TakenSubject(model string) string { return t.Prefix + ".taken." + model }

// BatchedFilter matches every model's batch notices.
func (t Topology) BatchedFilter() string { return t.Prefix + ".batched.*" }

// BatchNotice is the JSON body on BatchedSubject.
type BatchNotice struct {
	Batch  string  `json:"batch"`
	Model  string  `json:"model"`
	Jobs   int     `json:"jobs"`
	Reason string  `json:"reason"` // full, preferred, delay or idle
	Fill   float64 `json:"fill"`   // real over padded elements
}
