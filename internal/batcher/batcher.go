// Package batcher groups a model's queued jobs into batches, as Triton's
// dynamic batcher does. Jobs are pulled from one durable consumer per
// priority into a client-side buffer; a batch closes when it is full, when
// it has reached a preferred size and waiting would not grow it, or when its
// oldest job has waited max_queue_delay (see loop). Higher priorities fill a
// batch first and aged jobs overtake them (see choose). Ragged jobs are
// bucketed by padded length (see compatKey). The batcher packs the jobs'
// tensors along dimension 0, publishes the batch, waits for the PubAck, and
// only then acks the jobs, so a crash in between yields at most a duplicate
// batch, with the same id, that JetStream drops: never a lost job.
package batcher

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/blob"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/registry"
	"github.com/inferq/inferq/internal/wire"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/pkg/tensor"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// Options configure a Batcher; all fields are required unless noted.
type Options struct {
	Models []config.Model
	// Catalog, if set, replaces Models: the batcher follows the live model
	// registry (catalog.go), and Registry, if set too, lets it finish the
	// drain of retired versions.
	Catalog  *registry.Catalog
	Registry *registry.Store
	Topology jetstream.Topology
	JS       natsjs.JetStream
	// MaxPayload bounds a batch message; batches above it are split.
	// Zero means 1 MiB, the server default.
	MaxPayload int
	Log        *slog.Logger
	// Metrics are the shared metrics (jobs dropped); nil counts them on
	// a registry nobody reads.
	Metrics *obs.Metrics
	// Own are the batcher's own metrics (NewMetrics); nil registers them
	// on a registry nobody reads.
	Own *Metrics
	// AgingAfter is how long a job may wait in the batcher before it is
	// taken ahead of higher priorities (no starvation). Zero means
	// max(100×max_queue_delay, 500ms) per model.
	AgingAfter time.Duration
	// MaxWaitingBatches holds a ready batch back while this many batches
	// already wait undelivered for the model's workers, or while workers
	// hold batches and none waits for another (see gate). Zero means 1;
	// negative disables the gate.
	MaxWaitingBatches int
	// BeforeAck, if set, is called after a batch's PubAck and before its
	// jobs are acked; returning false stops the model's loop with
	// ErrStopped and leaves the jobs unacked. It exists to test crashes.
	BeforeAck func(batchID string) bool

	// onCancel, if set, is called once a cancel notice is recorded, so a
	// test can publish the cancelled job after the batcher knows.
	onCancel func(jobID string)
}

// ErrStopped is returned by Run when Options.BeforeAck stopped a loop.
var ErrStopped = errors.New("batcher stopped before acking a published batch")

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
	if opt.MaxWaitingBatches == 0 {
		opt.MaxWaitingBatches = 1
	}
	if opt.Metrics == nil {
		opt.Metrics = obs.NewMetrics(prometheus.NewRegistry())
	}
	if opt.Own == nil {
		opt.Own = NewMetrics(prometheus.NewRegistry())
	}
	return &Batcher{opt: opt, now: time.Now}
}

// tracer is looked up per span, not kept from package init: spans follow
// whichever provider is installed now (a test may install its own).
func tracer() trace.Tracer { return otel.Tracer("github.com/inferq/inferq/internal/batcher") }

// flushSpan starts a batch's span. A batch belongs to many traces: its span
// starts a trace of its own and links to each job's span; the batch message
// carries its context.
func (b *Batcher) flushSpan(ctx context.Context, model, batchID, reason string, es []*entry) (context.Context, trace.Span) {
	links := make([]trace.Link, 0, len(es))
	for _, e := range es {
		sc := trace.SpanContextFromContext(jetstream.ExtractTrace(ctx, e.msg.Headers()))
		if sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("inferq.job_id", e.job.Id)}})
		}
	}
	return tracer().Start(ctx, "batcher flush", trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer), trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("inferq.model", model), attribute.String("inferq.batch_id", batchID),
			attribute.Int("inferq.batch_size", len(es)), attribute.String("inferq.batch_reason", reason),
			attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", b.opt.Topology.BatchSubject(model))))
}

// Run batches every model until ctx ends.
func (b *Batcher) Run(ctx context.Context) error {
	if b.opt.Catalog != nil {
		return b.runCatalog(ctx)
	}
	g, ctx := errgroup.WithContext(ctx)
	for i := range b.opt.Models {
		m := &b.opt.Models[i]
		g.Go(func() error { return b.runModel(ctx, m) })
	}
	return g.Wait()
}

// model is one model's batching state.
type model struct {
	m         *config.Model
	buf       *buffer
	gate      *gate
	cancelled *cancelSet
	aging     time.Duration
	log       *slog.Logger
}

func (b *Batcher) runModel(ctx context.Context, m *config.Model) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	log := b.opt.Log.With("model", m.Name)
	maxRows := int64(m.Batching.MaxBatchSize)
	st := &model{m: m, buf: newBuffer(2*maxRows, m.Batching.MaxQueueDelay.D(), b.now), cancelled: newCancelSet(), log: log, aging: b.opt.AgingAfter}
	if st.aging <= 0 {
		st.aging = max(100*m.Batching.MaxQueueDelay.D(), 500*time.Millisecond)
	}
	nc := b.opt.JS.Conn()
	sub, err := nc.Subscribe(b.opt.Topology.CancelSubject(m.Name), func(msg *nats.Msg) {
		var n inferqpb.Cancel
		if proto.Unmarshal(msg.Data, &n) == nil && n.JobId != "" {
			st.cancelled.add(n.JobId, b.now())
			if b.opt.onCancel != nil {
				b.opt.onCancel(n.JobId)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("batcher %s: cancel subscription: %w", m.Name, err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	var wg sync.WaitGroup
	// On the way out, once the readers have stopped: what was pulled but not
	// published goes back at once, for another batcher to take.
	defer b.release(st)
	defer wg.Wait()
	defer stop()
	if b.opt.MaxWaitingBatches > 0 {
		wc, err := b.opt.JS.Consumer(ctx, b.opt.Topology.BatchesStream(), jetstream.WorkerConsumer(m.Name))
		if err != nil {
			log.Warn("workers consumer not found; batches are not held back", "err", err)
		} else {
			st.gate = newGate(b.opt.MaxWaitingBatches, wc)
			running, err := nc.Subscribe(b.opt.Topology.TakenSubject(m.Name), func(msg *nats.Msg) { st.gate.notice(msg.Header, msg.Data) })
			if err != nil {
				return fmt.Errorf("batcher %s: running subscription: %w", m.Name, err)
			}
			defer func() { _ = running.Unsubscribe() }()
			wg.Go(func() { st.gate.run(ctx) })
		}
	}
	for p := jetstream.MinPriority; p <= jetstream.MaxPriority; p++ {
		cons, err := b.opt.JS.Consumer(ctx, b.opt.Topology.JobsStream(), jetstream.BatcherPriorityConsumer(m.Name, p))
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting: a shutdown, not a failure
			}
			return fmt.Errorf("batcher %s: consumer p%d: %w", m.Name, p, err)
		}
		// The iterator pre-fetches at most max_batch_size jobs per priority.
		iter, err := cons.Messages(natsjs.PullMaxMessages(max(m.Batching.MaxBatchSize, 1)))
		if err != nil {
			return fmt.Errorf("batcher %s: pull p%d: %w", m.Name, p, err)
		}
		wg.Go(func() { b.read(ctx, st, p, iter) })
	}
	log.Info("batcher started", "max_batch_size", m.Batching.MaxBatchSize, "preferred_batch_sizes", m.Batching.PreferredBatchSizes,
		"max_queue_delay", m.Batching.MaxQueueDelay, "aging_after", st.aging)
	return b.loop(ctx, st)
}

// read moves one priority's jobs from its pull iterator into the buffer
// until ctx ends; then it releases what the iterator had pre-fetched.
func (b *Batcher) read(ctx context.Context, st *model, prio int, iter natsjs.MessagesContext) {
	defer b.drainIter(st, prio, iter)
	for ctx.Err() == nil {
		for st.buf.full(prio) {
			select {
			case <-ctx.Done():
				return
			case <-st.buf.space[prio]:
			}
		}
		msg, err := iter.Next(natsjs.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, natsjs.ErrMsgIteratorClosed) {
				return
			}
			st.log.Warn("pull failed", "priority", prio, "err", err)
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		st.buf.inHand.Add(1)
		if e := b.decode(st, msg, prio); e != nil {
			st.buf.push(e)
		}
		st.buf.inHand.Add(-1)
		signal(st.buf.arrive)
	}
}

// drainIter stops iter and naks the jobs it had pulled but not handed over,
// so they are redelivered now rather than after AckWait.
func (b *Batcher) drainIter(st *model, prio int, iter natsjs.MessagesContext) {
	iter.Drain()
	defer iter.Stop()
	n := 0
	for {
		msg, err := iter.Next(natsjs.NextMaxWait(2 * time.Second))
		if err != nil {
			break
		}
		_ = msg.Nak()
		n++
	}
	if n > 0 {
		st.log.Info("pre-fetched jobs released", "priority", prio, "jobs", n)
	}
}

// release naks every buffered job at shutdown (the readers have stopped):
// another batcher takes them at once instead of after AckWait.
func (b *Batcher) release(st *model) {
	es := st.buf.drain()
	for _, e := range es {
		if err := e.msg.Nak(); err != nil {
			st.log.Warn("buffered job not released; it returns after AckWait", "job", e.job.Id, "err", err)
		}
	}
	if len(es) > 0 {
		st.log.Info("buffered jobs released", "jobs", len(es))
	}
}

func (b *Batcher) decode(st *model, msg natsjs.Msg, prio int) *entry {
	job := &inferqpb.Job{}
	if err := proto.Unmarshal(msg.Data(), job); err != nil || len(job.Inputs) == 0 || len(job.Inputs[0].Shape) == 0 {
		// Ingress never publishes this: terminate it rather than retry forever.
		st.log.Error("undecodable job dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		b.opt.Own.PrioDropped.WithLabelValues(st.m.Name, prioLabel(prio), "invalid").Inc()
		return nil
	}
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	now := b.now()
	return &entry{msg: msg, job: job, seq: seq, prio: prio, recv: now, alive: now,
		rows: max(job.Inputs[0].Shape[0], 1), key: compatKey(job, st.m.Batching.Ragged)}
}

// loop closes and publishes batches until ctx ends. A batch closes when
//   - it holds max_batch_size rows ("full");
//   - waiting would not grow it — every pulled job is in the buffer and no
//     priority is at its cap — and it has reached a preferred size: it is cut
//     to the largest preferred size it reaches ("preferred");
//   - a worker waits for a batch, nothing more is pulled but not yet
//     buffered, and waiting would not pay: the jobs expected before the
//     oldest one's max_queue_delay runs out, at the rate jobs have been
//     joining open batches, would neither double the batch nor fill it
//     ("idle"; see waitPays and arrivals). A lone job then goes at once
//     instead of waiting for company that is not coming, while under a
//     load fast enough to fill batches the batch keeps filling;
//   - the oldest buffered job has waited max_queue_delay since it was
//     pulled ("delay").
//
// With nothing buffered the loop blocks without a timer. A closed batch
// is published once the gate is open (workers are not already
// MaxWaitingBatches behind); until then it keeps growing, and its jobs are
// kept from redelivery (keepAlive).
func (b *Batcher) loop(ctx context.Context, st *model) error {
	m := st.m
	maxRows := int64(m.Batching.MaxBatchSize)
	delay := m.Batching.MaxQueueDelay.D()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	wait := func(d time.Duration, extra <-chan struct{}) bool {
		var tc <-chan time.Time
		if d >= 0 {
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			tc = timer.C
			defer timer.Stop()
		}
		select {
		case <-ctx.Done():
			return false
		case <-st.buf.arrive:
		case <-tc:
		case <-extra:
		}
		return true
	}
	for {
		qs, n := st.buf.snapshot()
		if n == 0 {
			// Idle: block until a job arrives, no timer.
			if !wait(-1, nil) {
				return nil
			}
			continue
		}
		now := b.now()
		if b.dropDead(ctx, st, qs, now) {
			continue
		}
		nextAlive := b.keepAlive(st, now)
		// A continuous worker takes as many sequences as it has slots free:
		// a batch of that size is full (see gate).
		limit := maxRows
		if m.ContinuousBatching() {
			if n, ok := st.gate.freeSlots(); ok && n > 0 {
				limit = min(limit, int64(n))
			}
		}
		sel := choose(qs, now, st.aging, limit)
		reason := ""
		switch {
		case sel.rows >= limit:
			reason = "full"
		case len(m.Batching.PreferredBatchSizes) > 0 && st.buf.drained():
			if p := preferredSize(m.Batching.PreferredBatchSizes, sel.rows); p > 0 {
				sel.trimTo(p)
				reason = "preferred"
			}
		}
		if reason == "" {
			left := sel.oldest.Add(delay).Sub(now)
			switch {
			case left <= 0:
				reason = "delay"
			case st.gate.workerWaits() && idle(st, sel.rows, maxRows, left):
				reason = "idle"
			default:
				// Re-check on a new job, when the delay runs out, or when
				// the workers' state changes (one may start waiting).
				if !wait(min(left, nextAlive), st.gate.changes()) {
					return nil
				}
				continue
			}
		}
		if !st.gate.open(reason == "full" || reason == "preferred") {
			b.opt.Own.GateWaits.WithLabelValues(m.Name).Inc()
			// Re-check on a new job, a gate refresh, or (should a worker's
			// event be missed) after 100ms.
			st.gate.poke()
			if !wait(min(100*time.Millisecond, nextAlive), st.gate.changes()) {
				return nil
			}
			continue
		}
		st.buf.remove(sel.entries)
		if err := b.flush(context.WithoutCancel(ctx), st, sel.entries, reason); err != nil {
			return err
		}
	}
}

// idle applies closeIdle once a worker is known to wait.
func idle(st *model, rows, maxRows int64, left time.Duration) bool {
	rate, known := st.buf.arrivalRate()
	return closeIdle(true, st.buf.drained(), rows, maxRows, rate, known, left)
}

// keepAlive tells the server that buffered jobs are being worked on
// (InProgress) once AckWait/4 has passed since it last heard so, so that a
// job held back by the gate, by higher priorities or by a long
// max_queue_delay is not redelivered to another batcher and batched twice.
// It returns how long until the next job is due (AckWait/4 at most).
func (b *Batcher) keepAlive(st *model, now time.Time) time.Duration {
	every := b.opt.Topology.AckWait / 4
	if every <= 0 {
		return time.Hour
	}
	due, next := st.buf.stale(now, every)
	for _, e := range due {
		if err := e.msg.InProgress(); err != nil {
			st.log.Warn("in-progress not sent; the job may be redelivered", "job", e.job.Id, "err", err)
		}
	}
	return next
}

// dropDead removes cancelled and expired jobs from the buffer before they
// can reach a batch; it reports whether it removed any.
func (b *Batcher) dropDead(ctx context.Context, st *model, qs [numPrio][]*entry, now time.Time) bool {
	var dead []*entry
	for _, q := range qs {
		for _, e := range q {
			if st.cancelled.has(e.job.Id) || (e.job.DeadlineUnixNano > 0 && now.UnixNano() > e.job.DeadlineUnixNano) {
				dead = append(dead, e)
			}
		}
	}
	if len(dead) == 0 {
		return false
	}
	st.buf.remove(dead)
	for _, e := range dead {
		if st.cancelled.has(e.job.Id) {
			// Its record is already cancelled: drop it before packing.
			_ = e.msg.Ack()
			b.opt.Metrics.JobsDropped.WithLabelValues(st.m.Name, "cancelled").Inc()
			b.opt.Own.PrioDropped.WithLabelValues(st.m.Name, prioLabel(e.prio), "cancelled").Inc()
			st.log.Info("cancelled job dropped", "job", e.job.Id)
			continue
		}
		b.expire(context.WithoutCancel(ctx), e, now, st.log)
	}
	return true
}

// flush publishes the selected jobs as one batch (or several, should the
// message exceed the max payload).
func (b *Batcher) flush(ctx context.Context, st *model, es []*entry, reason string) error {
	// A stable row order: a re-batch of the same jobs packs the same batch.
	slices.SortStableFunc(es, func(x, y *entry) int { return cmp.Compare(x.seq, y.seq) })
	return b.publish(ctx, st, es, reason)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// expire ends a job whose deadline passed before it reached a GPU.
func (b *Batcher) expire(ctx context.Context, e *entry, now time.Time, log *slog.Logger) {
	ev := lifecycle.ExpiredEvent(e.job, e.seq, now)
	jctx := jetstream.ExtractTrace(ctx, e.msg.Headers()) // the event continues the job's trace
	if _, err := ev.Publish(jctx, b.opt.JS, b.opt.Topology); err != nil {
		log.Warn("expiry not published; job will be retried", "job", e.job.Id, "err", err)
		_ = e.msg.NakWithDelay(time.Second)
		return
	}
	_ = e.msg.Ack()
	b.opt.Metrics.JobsDropped.WithLabelValues(e.job.Model, "expired").Inc()
	b.opt.Own.PrioDropped.WithLabelValues(e.job.Model, prioLabel(e.prio), "expired").Inc()
	log.Info("job expired", "job", e.job.Id)
}

// publish packs, publishes and then acks one batch, halving it while the
// batch message is larger than the server's max payload.
func (b *Batcher) publish(ctx context.Context, st *model, es []*entry, reason string) error {
	m, log := st.m, st.log
	batch, fill, err := pack(m, es, b.now())
	if err != nil {
		// Jobs that validated at ingress do not fail to pack; if they do,
		// batch them alone so one cannot hold back the rest.
		if len(es) > 1 {
			for _, e := range es {
				if err := b.publish(ctx, st, []*entry{e}, reason); err != nil {
					return err
				}
			}
			return nil
		}
		log.Error("job cannot be packed", "job", es[0].job.Id, "err", err)
		b.fail(ctx, es[0], "invalid_input", err.Error(), log)
		return nil
	}
	if proto.Size(batch) > b.opt.MaxPayload-4096 && len(es) > 1 {
		half := len(es) / 2
		if err := b.publish(ctx, st, es[:half], reason); err != nil {
			return err
		}
		return b.publish(ctx, st, es[half:], reason)
	}
	// Without tracing (obs.Tracing) there is no span: a no-op one would carry
	// ctx's context, which is what the batch then carries.
	sctx, span := ctx, trace.SpanFromContext(ctx)
	if obs.Tracing() {
		sctx, span = b.flushSpan(ctx, m.Name, batch.Id, reason, es)
		defer span.End()
	}
	st.gate.publishing()
	if err := b.send(sctx, batch); err != nil {
		st.gate.published(false)
		span.SetStatus(codes.Error, "batch not published")
		// Not acked: the jobs come back after a short delay.
		log.Warn("batch not published; jobs will be redelivered", "batch", batch.Id, "jobs", len(es), "err", err)
		for _, e := range es {
			_ = e.msg.NakWithDelay(time.Second)
		}
		return nil
	}
	st.gate.published(true)
	if b.opt.BeforeAck != nil && !b.opt.BeforeAck(batch.Id) {
		return ErrStopped
	}
	now := b.now()
	for _, e := range es {
		if err := e.msg.Ack(); err != nil {
			log.Warn("job ack failed; a duplicate batch may follow", "job", e.job.Id, "err", err)
		}
		w := now.Sub(time.Unix(0, e.job.CreatedUnixNano)).Seconds()
		b.opt.Own.QueueWait.WithLabelValues(m.Name, prioLabel(e.prio)).Observe(w)
		b.opt.Own.JobsBatched.WithLabelValues(m.Name, prioLabel(e.prio)).Inc()
	}
	b.opt.Own.BatchSize.WithLabelValues(m.Name).Observe(float64(len(es)))
	b.opt.Own.BatchesFlushed.WithLabelValues(m.Name, reason).Inc()
	b.opt.Own.FillRatio.WithLabelValues(m.Name).Observe(fill)
	b.notify(batch.Id, m.Name, len(es), reason, fill)
	log.Debug("batch flushed", "batch", batch.Id, "size", len(es), "reason", reason, "fill", fill)
	return nil
}

// send publishes a batch message and waits for its PubAck.
func (b *Batcher) send(ctx context.Context, batch *inferqpb.Batch) error {
	msg, err := lifecycle.BatchMsg(ctx, b.opt.Topology, batch)
	if err != nil {
		return err
	}
	if _, err := jetstream.PublishMsg(ctx, b.opt.JS, msg); err != nil {
		return fmt.Errorf("publish to %s: %w", msg.Subject, err)
	}
	return nil
}

// notify publishes a batch notice (core NATS, best effort).
func (b *Batcher) notify(id, model string, jobs int, reason string, fill float64) {
	data, err := json.Marshal(jetstream.BatchNotice{Batch: id, Model: model, Jobs: jobs, Reason: reason, Fill: fill})
	if err == nil {
		_ = b.opt.JS.Conn().Publish(b.opt.Topology.BatchedSubject(model), data)
	}
}

// fail ends a job that can never be batched.
func (b *Batcher) fail(ctx context.Context, e *entry, code, msg string, log *slog.Logger) {
	ev := lifecycle.RejectedEvent(e.job, e.seq, b.now(), code, msg)
	jctx := jetstream.ExtractTrace(ctx, e.msg.Headers()) // the event continues the job's trace
	if _, err := ev.Publish(jctx, b.opt.JS, b.opt.Topology); err != nil {
		log.Warn("failure not published; job will be retried", "job", e.job.Id, "err", err)
		_ = e.msg.NakWithDelay(time.Second)
		return
	}
	_ = e.msg.Ack()
	b.opt.Metrics.JobsDropped.WithLabelValues(e.job.Model, "invalid").Inc()
	b.opt.Own.PrioDropped.WithLabelValues(e.job.Model, prioLabel(e.prio), "invalid").Inc()
}

// pack concatenates the jobs' inputs along dimension 0. fill is the real
// elements over the packed (padded) elements, over all inputs.
func pack(m *config.Model, es []*entry, now time.Time) (batch *inferqpb.Batch, fill float64, err error) {
	for _, e := range es {
		if blob.HasRef(e.job.Inputs) {
			if len(es) > 1 { // compatKey keeps it apart; publish then sends each alone
				return nil, 0, fmt.Errorf("job %s: inputs by reference are batched alone", e.job.Id)
			}
			return packAlone(m, e, now)
		}
	}
	batch = &inferqpb.Batch{Model: m.Name, Version: es[0].job.Version, CreatedUnixNano: now.UnixNano()}
	parts := make([]*tensor.Tensor, len(es))
	var real, padded int64
	for k, spec := range m.Inputs {
		for i, e := range es {
			if k >= len(e.job.Inputs) || e.job.Inputs[k].Name != spec.Name {
				return nil, 0, fmt.Errorf("job %s: input %q missing or out of order", e.job.Id, spec.Name)
			}
			parts[i] = wire.FromProto(e.job.Inputs[k])
		}
		packed, err := tensor.Concat(spec.Name, parts, m.Batching.Ragged)
		if err != nil {
			return nil, 0, fmt.Errorf("pack input %q: %w", spec.Name, err)
		}
		padded += elements(packed.Tensor.Shape)
		for _, sh := range packed.Shapes {
			real += elements(sh)
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
					Outputs: e.job.Outputs, JobsSeq: e.seq, TraceContext: jobTrace(e),
					CreatedUnixNano: e.job.CreatedUnixNano, CallbackUrl: e.job.CallbackUrl,
				})
			}
		}
		for i := range es {
			batch.Jobs[i].InputShapes = append(batch.Jobs[i].InputShapes, &inferqpb.Shape{Dims: packed.Shapes[i]})
		}
	}
	batch.Id = lifecycle.BatchID(batch.Jobs)
	fill = 1
	if padded > 0 {
		fill = float64(real) / float64(padded)
	}
	return batch, fill, nil
}

// packAlone is the batch of one job whose inputs include references to the
// blobs bucket: its inputs as they are, references and all (the worker
// resolves them), with no padding.
func packAlone(m *config.Model, e *entry, now time.Time) (*inferqpb.Batch, float64, error) {
	job := e.job
	batch := &inferqpb.Batch{Model: m.Name, Version: job.Version, CreatedUnixNano: now.UnixNano()}
	bj := &inferqpb.BatchJob{
		Id: job.Id, Tenant: job.Tenant, DeadlineUnixNano: job.DeadlineUnixNano, ParametersJson: job.ParametersJson,
		Stream: job.Stream, Attempt: job.Attempt, RequestId: job.RequestId, Outputs: job.Outputs, JobsSeq: e.seq,
		TraceContext: jobTrace(e), CreatedUnixNano: job.CreatedUnixNano,
	}
	for k, spec := range m.Inputs {
		if k >= len(job.Inputs) || job.Inputs[k].Name != spec.Name {
			return nil, 0, fmt.Errorf("job %s: input %q missing or out of order", job.Id, spec.Name)
		}
		in := job.Inputs[k]
		if len(in.Shape) == 0 {
			return nil, 0, fmt.Errorf("job %s: input %q is a scalar, need rank >= 1", job.Id, spec.Name)
		}
		if k == 0 {
			bj.RowEnd = in.Shape[0]
		} else if in.Shape[0] != bj.RowEnd {
			return nil, 0, fmt.Errorf("job %s: input %q has %d rows, input %q has %d", job.Id, spec.Name, in.Shape[0], m.Inputs[0].Name, bj.RowEnd)
		}
		batch.Inputs = append(batch.Inputs, in)
		bj.InputShapes = append(bj.InputShapes, &inferqpb.Shape{Dims: in.Shape})
	}
	batch.Jobs = []*inferqpb.BatchJob{bj}
	batch.Id = lifecycle.BatchID(batch.Jobs)
	return batch, 1, nil
}

// jobTrace is the trace context of a job's message, kept per job in the
// batch: the batch message's own headers can carry only one trace, and the
// worker continues each job's.
func jobTrace(e *entry) map[string]string {
	c := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(jetstream.ExtractTrace(context.Background(), e.msg.Headers()), c)
	if len(c) == 0 {
		return nil
	}
	return c
}

func elements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}
