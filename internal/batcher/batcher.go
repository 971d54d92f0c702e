// Package batcher groups a model's queued jobs into batches: a batch closes
// when it holds max_batch_size rows or when its first job has waited
// max_queue_delay. It packs the jobs' tensors along dimension 0, publishes the
// batch, waits for the PubAck, and only then acks the jobs, so a crash in
// between yields at most a duplicate batch, never a lost job.
package batcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/wire"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/pkg/tensor"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// Options configure a Batcher; all fields are required unless noted.
type Options struct {
	Models   []config.Model
	Topology jetstream.Topology
	JS       natsjs.JetStream
	// MaxPayload bounds a batch message; batches above it are split.
	// Zero means 1 MiB, the server default.
	MaxPayload int
	Log        *slog.Logger
	Metrics    *obs.Metrics
}

// Batcher runs one batching loop per model.
type Batcher struct {
	opt Options
	now func() time.Time
}

// New returns a Batcher; Run starts it.
func New(opt Options) *Batcher {
	if opt.MaxPayload <= 0 {
		opt.MaxPayload = 1 << 20
	}
	return &Batcher{opt: opt, now: time.Now}
}

var tracer = otel.Tracer("github.com/inferq/inferq/internal/batcher")

// Run batches every model until ctx ends.
func (b *Batcher) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for i := range b.opt.Models {
		m := &b.opt.Models[i]
		g.Go(func() error { return b.runModel(ctx, m) })
	}
	return g.Wait()
}

func (b *Batcher) runModel(ctx context.Context, m *config.Model) error {
	cons, err := b.opt.JS.Consumer(ctx, b.opt.Topology.JobsStream(), jetstream.BatcherConsumer(m.Name))
	if err != nil {
		return fmt.Errorf("batcher %s: consumer: %w", m.Name, err)
	}
	// The client holds at most 2×max_batch_size jobs while it fills a batch.
	iter, err := cons.Messages(natsjs.PullMaxMessages(2 * m.Batching.MaxBatchSize))
	if err != nil {
		return fmt.Errorf("batcher %s: pull: %w", m.Name, err)
	}
	defer iter.Stop()
	log := b.opt.Log.With("model", m.Name)
	cancelled := newCancelSet()
	sub, err := b.opt.JS.Conn().Subscribe(b.opt.Topology.CancelSubject(m.Name), func(msg *nats.Msg) {
		var n inferqpb.Cancel
		if proto.Unmarshal(msg.Data, &n) == nil && n.JobId != "" {
			cancelled.add(n.JobId, b.now())
		}
	})
	if err != nil {
		return fmt.Errorf("batcher %s: cancel subscription: %w", m.Name, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	log.Info("batcher started", "max_batch_size", m.Batching.MaxBatchSize, "max_queue_delay", m.Batching.MaxQueueDelay)
	maxRows := int64(m.Batching.MaxBatchSize)
	for {
		// Block without a timer until the first job: an idle queue costs nothing.
		first, err := iter.Next(natsjs.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("pull failed", "err", err)
			continue
		}
		pend := &pending{model: m, cancelled: cancelled}
		pend.add(first, b.now(), log)
		window, cancel := context.WithDeadline(ctx, b.now().Add(m.Batching.MaxQueueDelay.D()))
		reason := "delay"
		for pend.rows < maxRows {
			msg, err := iter.Next(natsjs.NextContext(window))
			if err != nil {
				break
			}
			pend.add(msg, b.now(), log)
		}
		if pend.rows >= maxRows {
			reason = "full"
		}
		cancel()
		b.flush(context.WithoutCancel(ctx), pend, reason, log)
	}
}

// entry is one job pulled from the stream.
type entry struct {
	msg natsjs.Msg
	job *inferqpb.Job
	seq uint64
}

type pending struct {
	model     *config.Model
	cancelled *cancelSet
	entries   []entry
	rows      int64
}

func (p *pending) add(msg natsjs.Msg, now time.Time, log *slog.Logger) {
	job := &inferqpb.Job{}
	if err := proto.Unmarshal(msg.Data(), job); err != nil || len(job.Inputs) == 0 || len(job.Inputs[0].Shape) == 0 {
		// Ingress never publishes this: terminate it rather than retry forever.
		log.Error("undecodable job dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	p.entries = append(p.entries, entry{msg: msg, job: job, seq: seq})
	p.rows += job.Inputs[0].Shape[0]
}

// flush publishes the pending jobs as one or more batches.
func (b *Batcher) flush(ctx context.Context, p *pending, reason string, log *slog.Logger) {
	m := p.model
	now := b.now()
	var live []entry
	for _, e := range p.entries {
		if p.cancelled.has(e.job.Id) {
			// Its record is already cancelled: drop it before packing.
			_ = e.msg.Ack()
			b.opt.Metrics.JobsDropped.WithLabelValues(m.Name, "cancelled").Inc()
			log.Info("cancelled job dropped", "job", e.job.Id)
			continue
		}
		if d := e.job.DeadlineUnixNano; d > 0 && now.UnixNano() > d {
			b.expire(ctx, e, now, log)
			continue
		}
		live = append(live, e)
	}
	for _, group := range groupCompatible(live, m.Batching.Ragged) {
		b.publish(ctx, m, group, reason, log)
	}
}

// expire ends a job whose deadline passed before it reached a GPU.
func (b *Batcher) expire(ctx context.Context, e entry, now time.Time, log *slog.Logger) {
	ev := &inferqpb.JobEvent{
		JobId: e.job.Id, Tenant: e.job.Tenant, Model: e.job.Model, Version: e.job.Version,
		Status: inferqpb.Status_STATUS_EXPIRED, Attempt: e.job.Attempt, TimeUnixNano: now.UnixNano(), JobsSeq: e.seq,
		Error: &inferqpb.Error{Code: "expired", Message: "the job's timeout passed before it was batched"},
	}
	subj := b.opt.Topology.EventSubject(e.job.Model, jetstream.EventFailed)
	if _, err := jetstream.Publish(ctx, b.opt.JS, subj, ev, eventID(e.job, "expired")); err != nil {
		log.Warn("expiry not published; job will be retried", "job", e.job.Id, "err", err)
		_ = e.msg.NakWithDelay(time.Second)
		return
	}
	_ = e.msg.Ack()
	b.opt.Metrics.JobsDropped.WithLabelValues(e.job.Model, "expired").Inc()
	log.Info("job expired", "job", e.job.Id)
}

// groupCompatible splits jobs into groups that can share a batch: same
// version and, unless ragged inputs are allowed, the same non-batch dims.
func groupCompatible(es []entry, ragged bool) [][]entry {
	var keys []string
	groups := map[string][]entry{}
	for _, e := range es {
		key := e.job.Version
		if !ragged {
			for _, in := range e.job.Inputs {
				key += "|" + in.Name + ":" + in.Datatype
				for _, d := range in.Shape[1:] {
					key += "," + strconv.FormatInt(d, 10)
				}
			}
		}
		if _, ok := groups[key]; !ok {
			keys = append(keys, key)
		}
		groups[key] = append(groups[key], e)
	}
	out := make([][]entry, 0, len(keys))
	for _, k := range keys {
		out = append(out, groups[k])
	}
	return out
}

// publish packs, publishes and then acks one group, halving it while the
// batch message is larger than the server's max payload.
func (b *Batcher) publish(ctx context.Context, m *config.Model, es []entry, reason string, log *slog.Logger) {
	batch, err := pack(m, es, b.now())
	if err != nil {
		// Jobs that validated at ingress do not fail to pack; if they do,
		// batch them alone so one cannot hold back the rest.
		if len(es) > 1 {
			for _, e := range es {
				b.publish(ctx, m, []entry{e}, reason, log)
			}
			return
		}
		log.Error("job cannot be packed", "job", es[0].job.Id, "err", err)
		b.fail(ctx, es[0], "invalid_input", err.Error(), log)
		return
	}
	if proto.Size(batch) > b.opt.MaxPayload-4096 && len(es) > 1 {
		half := len(es) / 2
		b.publish(ctx, m, es[:half], reason, log)
		b.publish(ctx, m, es[half:], reason, log)
		return
	}
	links := make([]trace.Link, 0, len(es))
	for _, e := range es {
		sc := trace.SpanContextFromContext(jetstream.ExtractTrace(ctx, e.msg.Headers()))
		if sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	sctx, span := tracer.Start(ctx, "batcher flush", trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("inferq.model", m.Name), attribute.Int("inferq.batch_size", len(es))))
	defer span.End()
	if _, err := jetstream.Publish(sctx, b.opt.JS, b.opt.Topology.BatchSubject(m.Name), batch, batch.Id); err != nil {
		// Not acked: the jobs come back after a short delay.
		log.Warn("batch not published; jobs will be redelivered", "batch", batch.Id, "jobs", len(es), "err", err)
		for _, e := range es {
			_ = e.msg.NakWithDelay(time.Second)
		}
		return
	}
	now := b.now()
	for _, e := range es {
		if err := e.msg.Ack(); err != nil {
			log.Warn("job ack failed; a duplicate batch may follow", "job", e.job.Id, "err", err)
		}
		b.opt.Metrics.QueueWait.WithLabelValues(m.Name).Observe(now.Sub(time.Unix(0, e.job.CreatedUnixNano)).Seconds())
	}
	b.opt.Metrics.BatchSize.WithLabelValues(m.Name).Observe(float64(len(es)))
	b.opt.Metrics.BatchesFlushed.WithLabelValues(m.Name, reason).Inc()
	log.Debug("batch flushed", "batch", batch.Id, "size", len(es), "reason", reason)
}

// fail ends a job that can never be batched.
func (b *Batcher) fail(ctx context.Context, e entry, code, msg string, log *slog.Logger) {
	ev := &inferqpb.JobEvent{
		JobId: e.job.Id, Tenant: e.job.Tenant, Model: e.job.Model, Version: e.job.Version,
		Status: inferqpb.Status_STATUS_FAILED, Attempt: e.job.Attempt, TimeUnixNano: b.now().UnixNano(), JobsSeq: e.seq,
		Error: &inferqpb.Error{Code: code, Message: msg},
	}
	if _, err := jetstream.Publish(ctx, b.opt.JS, b.opt.Topology.EventSubject(e.job.Model, jetstream.EventFailed), ev, eventID(e.job, "failed")); err != nil {
		log.Warn("failure not published; job will be retried", "job", e.job.Id, "err", err)
		_ = e.msg.NakWithDelay(time.Second)
		return
	}
	_ = e.msg.Ack()
	b.opt.Metrics.JobsDropped.WithLabelValues(e.job.Model, "invalid").Inc()
}

// pack concatenates the jobs' inputs along dimension 0.
func pack(m *config.Model, es []entry, now time.Time) (*inferqpb.Batch, error) {
	batch := &inferqpb.Batch{Model: m.Name, Version: es[0].job.Version, CreatedUnixNano: now.UnixNano()}
	parts := make([]*tensor.Tensor, len(es))
	for k, spec := range m.Inputs {
		for i, e := range es {
			if k >= len(e.job.Inputs) || e.job.Inputs[k].Name != spec.Name {
				return nil, fmt.Errorf("job %s: input %q missing or out of order", e.job.Id, spec.Name)
			}
			parts[i] = wire.FromProto(e.job.Inputs[k])
		}
		packed, err := tensor.Concat(spec.Name, parts, m.Batching.Ragged)
		if err != nil {
			return nil, fmt.Errorf("pack input %q: %w", spec.Name, err)
		}
		batch.Inputs = append(batch.Inputs, wire.ToProto(packed.Tensor))
		if packed.Mask != nil {
			batch.Masks = append(batch.Masks, wire.ToProto(packed.Mask))
		}
		if k == 0 {
			for i, e := range es {
				batch.Jobs = append(batch.Jobs, &inferqpb.BatchJob{
					Id: e.job.Id, Tenant: e.job.Tenant, RowStart: packed.Rows[i].Start, RowEnd: packed.Rows[i].End,
					DeadlineUnixNano: e.job.DeadlineUnixNano, ParametersJson: e.job.ParametersJson,
					Stream: e.job.Stream, Attempt: e.job.Attempt, RequestId: e.job.RequestId,
					Outputs: e.job.Outputs, JobsSeq: e.seq,
				})
			}
		}
		for i := range es {
			batch.Jobs[i].InputShapes = append(batch.Jobs[i].InputShapes, &inferqpb.Shape{Dims: packed.Shapes[i]})
		}
	}
	batch.Id = batchID(es)
	return batch, nil
}

// batchID is derived from the jobs and their attempts, so re-batching the
// same jobs after a crash publishes the same id and JetStream drops the copy.
func batchID(es []entry) string {
	h := sha256.New()
	for _, e := range es {
		h.Write([]byte(e.job.Id))
		h.Write([]byte{0, byte(e.job.Attempt), byte(e.job.Attempt >> 8)})
	}
	return hex.EncodeToString(h.Sum(nil)[:13])
}

// eventID dedupes a job's event per attempt and kind.
func eventID(job *inferqpb.Job, kind string) string {
	return job.Id + ":" + strconv.FormatUint(uint64(job.Attempt), 10) + ":" + kind
}
