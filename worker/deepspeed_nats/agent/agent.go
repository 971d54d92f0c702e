// Package agent is the GPU worker agent: it pulls batches from a model's
// shared durable consumer (one batch at a time per pull, so adding a worker
// adds throughput), runs them, publishes progress, tokens and results, and
// acks a batch only after every job of it has a terminal event stored in
// JetStream. A batch that fails as a whole is split so that one poison job
// fails alone (isolate.go).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// Options configure an Agent; all fields are required unless noted.
type Options struct {
	Models   []config.Model
	Topology jetstream.Topology
	JS       natsjs.JetStream
	Name     string // worker name in heartbeats; default hostname-pid
	Log      *slog.Logger
	Metrics  *obs.Metrics // shared: dead letters; nil: unread
	Own      *Metrics     // NewMetrics; nil: registered where nobody reads them
	// NewRunner builds a model's runner; default NewRunner.
	NewRunner func(*config.Model) (Runner, error)
	// DrainTimeout bounds how long a batch in hand may finish after
	// shutdown starts; default 30s. Past it the batch is released (Nak)
	// so that another worker takes it at once.
	DrainTimeout time.Duration
	// MaxInflight is how many batches of one model the agent holds at
	// once; default 1. A runner that runs one batch at a time (the Python
	// runner) is held to 1 whatever this says: a second batch would wait
	// in this worker while an idle one could run it.
	MaxInflight int
	// Blobs is where inputs by reference are read and outputs over
	// BlobThreshold are written; nil is the topology's bucket on JS.
	Blobs *blob.Store
	// BlobThreshold is blobs.threshold_bytes: an output with more raw
	// bytes travels by reference. Zero means 256 KiB.
	BlobThreshold int64
	// RunningAfter is how long a batch runs before its jobs are reported
	// running (at once when one streams a token); default 10ms, negative
	// means at once. Shorter batches go straight to their end.
	RunningAfter time.Duration
}

// Metrics are the worker's own collectors (labelled by model); dead letters
// are counted on the shared obs.Metrics, which resultsvc counts too.
type Metrics struct {
	BatchDuration   *prometheus.HistogramVec
	BatchesFailed   *prometheus.CounterVec
	TokensPublished *prometheus.CounterVec
	// Generate models: time from a job's acceptance to its first token,
	// the time between a job's tokens, and (continuous batching) the
	// sequences running and the sequence slots free.
	TimeToFirstToken  *prometheus.HistogramVec
	InterTokenLatency *prometheus.HistogramVec
	RunningSequences  *prometheus.GaugeVec
	FreeSequenceSlots *prometheus.GaugeVec
}

// NewMetrics registers the worker's metrics on reg; call it once per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		BatchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_worker_batch_duration_seconds",
			Help: "Time a worker spends running one batch.", Buckets: obs.LatencyBuckets()}, []string{"model"}),
		BatchesFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_worker_batches_failed_total",
			Help: "Batches whose run failed."}, []string{"model"}),
		TokensPublished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inferq_tokens_published_total",
			Help: "Token chunks published by workers."}, []string{"model"}),
	}
	m.TimeToFirstToken = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_worker_time_to_first_token_seconds",
		Help: "Time from a generate job's acceptance to its first token.", Buckets: obs.LatencyBuckets()}, []string{"model"})
	m.InterTokenLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "inferq_worker_inter_token_latency_seconds",
		Help: "Time between consecutive token chunks of a generate job.", Buckets: obs.LatencyBuckets()}, []string{"model"})
	m.RunningSequences = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inferq_worker_running_sequences",
		Help: "Sequences a continuously batching worker holds (running or about to join)."}, []string{"model"})
	m.FreeSequenceSlots = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inferq_worker_free_sequence_slots",
		Help: "Sequence slots a continuously batching worker has free."}, []string{"model"})
	reg.MustRegister(m.BatchDuration, m.BatchesFailed, m.TokensPublished, m.TimeToFirstToken, m.InterTokenLatency,
		m.RunningSequences, m.FreeSequenceSlots)
	return m
}

// Agent serves batches of its models.
type Agent struct {
	opt   Options
	now   func() time.Time
	stats map[string]*counters // by model; fixed at New
	acks  *lifecycle.AckHolder // finished batches' acks, each held until the next (see AckHolder)
	// runners are the models' runners once Run built them, for Ready.
	runners atomic.Pointer[[]Runner]
	// seqs is the done-mark bucket of continuous batching (seqs.go).
	seqsOnce sync.Once
	seqs     natsjs.KeyValue
	// slots are the continuous models' sequence slots, by model.
	slots map[string]*seqSlots
}

// Ready reports whether every model's runner is built and loaded (a
// runner that cannot say is taken as loaded): the worker's readiness gate,
// so that a pod whose model still loads is not counted as serving.
func (a *Agent) Ready(context.Context) error {
	rs := a.runners.Load()
	if rs == nil {
		return errors.New("runners not started")
	}
	var loading, failed []string
	for i, r := range *rs {
		d, ok := r.(Describer)
		if !ok {
			continue
		}
		switch info := d.Describe(); {
		case info.Ready:
		case info.Error != "":
			failed = append(failed, fmt.Sprintf("model %s did not load: %s", a.opt.Models[i].Name, info.Error))
		default:
			loading = append(loading, a.opt.Models[i].Name)
		}
	}
	if len(loading) > 0 {
		failed = append(failed, "models still loading: "+strings.Join(loading, ", "))
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// New returns an Agent; Run starts it.
func New(opt Options) *Agent {
	if opt.Name == "" {
		host, _ := os.Hostname()
		opt.Name = host + "-" + strconv.Itoa(os.Getpid())
	}
	if opt.NewRunner == nil {
		opt.NewRunner = NewRunner
	}
	if opt.DrainTimeout <= 0 {
		opt.DrainTimeout = 30 * time.Second
	}
	if opt.MaxInflight < 1 {
		opt.MaxInflight = 1
	}
	switch {
	case opt.RunningAfter == 0:
		opt.RunningAfter = 10 * time.Millisecond
	case opt.RunningAfter < 0:
		opt.RunningAfter = 0
	}
	if opt.Metrics == nil {
		opt.Metrics = obs.NewMetrics(prometheus.NewRegistry())
	}
	if opt.Blobs == nil && opt.JS != nil {
		opt.Blobs = blob.New(opt.JS, opt.Topology.BlobsBucket())
	}
	if opt.BlobThreshold <= 0 {
		opt.BlobThreshold = 256 << 10
	}
	if opt.Own == nil {
		opt.Own = NewMetrics(prometheus.NewRegistry())
	}
	a := &Agent{opt: opt, now: time.Now, stats: make(map[string]*counters, len(opt.Models)), slots: map[string]*seqSlots{}}
	for i, m := range opt.Models {
		a.stats[m.Name] = &counters{}
		if m.ContinuousBatching() {
			mm := &a.opt.Models[i]
			sl := newSeqSlots(m.Batching.MaxNumSeqs, func(free int) { a.notifySlots(mm, "", free) })
			sl.gauge = func(used, free int) {
				opt.Own.RunningSequences.WithLabelValues(mm.Name).Set(float64(used))
				opt.Own.FreeSequenceSlots.WithLabelValues(mm.Name).Set(float64(free))
			}
			a.slots[m.Name] = sl
		}
	}
	a.acks = lifecycle.NewAckHolder(0, a.ackBatch)
	return a
}

// ackBatch acknowledges a finished batch and waits for the server to
// confirm it.
func (a *Agent) ackBatch(msg natsjs.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		a.opt.Log.Warn("batch ack failed; it may run again (results are idempotent)", "subject", msg.Subject(), "err", err)
	}
}

// tracer is looked up per span, not kept from package init: spans follow
// whichever provider is installed now (a test may install its own).
func tracer() trace.Tracer {
	return otel.Tracer("github.com/inferq/inferq/worker/deepspeed_nats/agent")
}

// Run serves every model until ctx ends, then drains: it stops pulling and
// lets the batches in hand finish (or releases them after DrainTimeout). It
// returns once every batch is acked or released and every runner closed.
func (a *Agent) Run(ctx context.Context) error {
	runners := make([]Runner, 0, len(a.opt.Models))
	for i := range a.opt.Models {
		r, err := a.opt.NewRunner(&a.opt.Models[i])
		if err != nil {
			for _, r := range runners {
				_ = r.Close()
			}
			return fmt.Errorf("worker: model %q: %w", a.opt.Models[i].Name, err)
		}
		runners = append(runners, r)
	}
	a.runners.Store(&runners)
	defer a.runners.Store(nil)
	g, ctx := errgroup.WithContext(ctx)
	for i, r := range runners {
		m := &a.opt.Models[i]
		g.Go(func() error {
			defer r.Close()
			return a.serve(ctx, m, r)
		})
		g.Go(func() error { return a.heartbeat(ctx, m, r) })
	}
	err := g.Wait()
	a.acks.Flush() // the last batch's ack, held back
	return err
}

// inflight is how many batches of a model the agent may hold with runner r.
func (a *Agent) inflight(r Runner) int {
	n := a.opt.MaxInflight
	if c, ok := r.(Concurrency); ok && c.MaxConcurrentBatches() > 0 {
		n = min(n, c.MaxConcurrentBatches())
	}
	return n
}

func (a *Agent) serve(ctx context.Context, m *config.Model, r Runner) error {
	cons, err := a.opt.JS.Consumer(ctx, a.opt.Topology.BatchesStream(), jetstream.WorkerConsumer(m.Name))
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a shutdown, not a failure
		}
		return fmt.Errorf("worker %s: consumer: %w", m.Name, err)
	}
	log := a.opt.Log.With("model", m.Name, "worker", a.opt.Name)
	if c, ok := r.(Canceller); ok {
		sub, err := a.opt.JS.Conn().Subscribe(a.opt.Topology.CancelSubject(m.Name), func(msg *nats.Msg) {
			var n inferqpb.Cancel
			if proto.Unmarshal(msg.Data, &n) == nil && n.JobId != "" {
				c.Cancel(n.JobId)
			}
		})
		if err != nil {
			return fmt.Errorf("worker %s: cancel subscription: %w", m.Name, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	if js, ok := r.(JobStreamer); ok && js.Continuous() && a.slots[m.Name] != nil {
		log.Info("worker serving with continuous batching", "max_num_seqs", m.Batching.MaxNumSeqs)
		a.pullSeqs(ctx, m, r, cons, a.slots[m.Name], log)
		log.Info("worker stopped")
		return nil
	}
	n := a.inflight(r)
	log.Info("worker serving", "runner", m.Runner.Builtin, "max_inflight", n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { a.pull(ctx, m, r, cons, log) })
	}
	wg.Wait()
	log.Info("worker stopped")
	return nil
}

// pull runs one batch at a time until ctx ends: a pre-fetched batch would
// age in this client while another worker could run it.
func (a *Agent) pull(ctx context.Context, m *config.Model, r Runner, cons natsjs.Consumer, log *slog.Logger) {
	st := a.stats[m.Name]
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		st.pulls.Add(1)
		msgs, err := cons.Fetch(1, natsjs.FetchContext(fctx))
		if err != nil {
			st.pulls.Add(-1)
			cancel()
			if ctx.Err() == nil {
				log.Warn("fetch failed", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		// This slot now waits for a batch (the pull request went out first
		// on this connection): batchers holding one back may let it go, a
		// partial one only if nothing of the model is in hand here (the
		// device is free, not just a slot to prefetch into).
		a.notifyBatchers(m, "", st.inflight.Load() == 0)
		// A batch that arrives as shutdown starts is still in hand: it is
		// run (or released) by handle, never dropped.
		waiting := true
		for msg := range msgs.Messages() {
			if waiting {
				st.pulls.Add(-1) // before handle's notice counts it
				waiting = false
			}
			a.handle(ctx, m, r, msg, log, nil, 0)
		}
		if waiting {
			st.pulls.Add(-1) // the request expired or was cut short
		}
		cancel()
	}
}

// notifyBatchers tells the model's batchers, which hold batches back while
// no worker slot is free, that the workers' state changed (core NATS, best
// effort: they also re-check on their own). The body is the id of the batch
// just taken, or empty when a slot starts waiting for one; the headers name
// this worker, say whether it has nothing of the model in hand, and give its
// pull requests out and batches held, so batchers need not ask the server.
func (a *Agent) notifyBatchers(m *config.Model, batchID string, idle bool) {
	st := a.stats[m.Name]
	msg := &nats.Msg{Subject: a.opt.Topology.TakenSubject(m.Name), Data: []byte(batchID),
		Header: nats.Header{jetstream.HeaderWorker: []string{a.opt.Name},
			jetstream.HeaderWaiting: []string{strconv.FormatInt(max(st.pulls.Load(), 0), 10)},
			jetstream.HeaderHeld:    []string{strconv.FormatInt(max(st.inflight.Load(), 0), 10)}}}
	if idle {
		msg.Header.Set(jetstream.HeaderIdle, "1")
	}
	_ = a.opt.JS.Conn().PublishMsg(msg)
}

// handle runs one batch. ctx is the agent's: when it ends the batch still
// finishes within DrainTimeout, else it is released for another worker.
// slots are a continuous model's sequence slots, n of which the batch took
// (nil and 0 otherwise): its jobs may then end one by one (seqs.go).
func (a *Agent) handle(ctx context.Context, m *config.Model, r Runner, msg natsjs.Msg, log *slog.Logger, slots *seqSlots, n int) {
	st := a.stats[m.Name]
	st.enter()
	defer st.leave()
	var cb *contBatch
	defer func() {
		if slots != nil {
			left := n
			if cb != nil {
				cb.mu.Lock()
				left -= len(cb.ended)
				cb.mu.Unlock()
			}
			slots.release(left)
		}
	}()
	batch, err := lifecycle.DecodeBatch(msg.Data())
	if err == nil && len(batch.Jobs) == 0 {
		err = errors.New("batch has no jobs")
	}
	if err != nil {
		log.Error("undecodable batch dropped", "err", err)
		_ = msg.Term()
		return
	}
	md, _ := msg.Metadata()
	delivered := uint64(1)
	if md != nil {
		delivered = md.NumDelivered
	}
	log = log.With("batch", batch.Id, "size", len(batch.Jobs), "delivery", delivered)
	if slots != nil && delivered > 1 {
		// A redelivery: jobs that ended before the last delivery died do not run again.
		if batch.Jobs = a.unfinished(ctx, batch, log); len(batch.Jobs) == 0 {
			log.Info("every job of the redelivered batch had ended")
			a.acks.Ack(msg)
			st.batches.Add(1)
			return
		}
	}
	runCtx, cancel := drainContext(ctx, a.opt.DrainTimeout)
	defer cancel()
	// The batch's span continues the batcher's flush span and links to
	// every job; each job gets a span in its own trace (startJobSpans).
	// Without tracing (obs.Tracing) there is no batch span: the batch's
	// context is what a no-op one would carry.
	runCtx = jetstream.ExtractTrace(runCtx, msg.Headers())
	span := trace.SpanFromContext(runCtx)
	if obs.Tracing() {
		runCtx, span = executeSpan(runCtx, m.Name, batch, msg.Subject())
		defer span.End()
	}
	runCtx, endJobSpans := startJobSpans(runCtx, m, batch)
	defer endJobSpans()

	stopKeepalive := keepalive(msg, a.opt.Topology.AckWait/4)
	defer stopKeepalive()

	if slots != nil {
		a.notifySlots(m, batch.Id, slots.free())
	} else {
		a.notifyBatchers(m, batch.Id, false) // one fewer batch waits undelivered
	}
	// Inputs by reference become bytes before the runner sees the batch:
	// runners, the Python one included, get bytes as they always did.
	if err := a.resolveInputs(runCtx, batch); err != nil {
		span.SetStatus(codes.Error, err.Error())
		if runCtx.Err() != nil {
			a.release(runCtx, msg, 0, st)
			return
		}
		a.retryOrFail(runCtx, m, batch, msg, delivered, err, log)
		return
	}
	pub := lifecycle.NewPublisher(a.opt.JS)
	// Running events go out once the batch has run RunningAfter, or at its
	// first token. A batch that ends sooner goes straight from queued to
	// its end: two fewer writes per job where most of the throughput is.
	var runningOnce sync.Once
	markRunning := func() {
		runningOnce.Do(func() {
			now := a.now()
			for _, j := range batch.Jobs {
				pub.Event(jobContext(runCtx, j), a.opt.Topology, lifecycle.RunningEvent(batch, j, a.opt.Name, now))
			}
		})
	}
	runningTimer := time.AfterFunc(a.opt.RunningAfter, markRunning)
	if slots != nil {
		cb = &contBatch{a: a, ctx: runCtx, m: m, b: batch, pub: pub, running: markRunning, slots: slots, log: log,
			jobs: make(map[string]*inferqpb.BatchJob, len(batch.Jobs)), ended: map[string]bool{}}
		for _, j := range batch.Jobs {
			cb.jobs[j.Id] = j
		}
	}

	start := time.Now()
	out, err := a.execute(runCtx, m, r, batch, a.emitter(runCtx, m, batch, pub, markRunning), pub, cb, log)

	a.opt.Own.BatchDuration.WithLabelValues(m.Name).Observe(time.Since(start).Seconds())
	if !runningTimer.Stop() {
		runningOnce.Do(func() {}) // the timer fired: let its events be queued first
	}
	if cb != nil {
		// Jobs that ended on their own are done (nothing reads batch.Jobs
		// concurrently any more): the rest end below.
		batch.Jobs = cb.remaining(batch.Jobs)
	}
	if err == nil {
		err = pub.Wait(runCtx) // running events and tokens are stored before results
	}
	switch {
	case err == nil:
		a.finish(runCtx, m, batch, msg, delivered, out, log)
	case runCtx.Err() != nil || errors.Is(err, ErrProcessClosed):
		// Shutting down: not the batch's fault, and another worker can
		// take it now rather than after AckWait.
		log.Warn("batch released at shutdown", "err", err)
		a.release(runCtx, msg, 0, st)
	case pub.Err() != nil:
		span.SetStatus(codes.Error, "publishing failed")
		log.Warn("publishing failed; batch will be redelivered", "err", err)
		a.release(runCtx, msg, m.Queue.BackoffFor(delivered), st)
	default:
		span.SetStatus(codes.Error, err.Error())
		a.retryOrFail(runCtx, m, batch, msg, delivered, err, log)
	}
}

// emitter publishes a batch's token chunks on their jobs' subjects. A job
// run again in this delivery (its batch was split) repeats chunks already
// sent; those are dropped, so a reader sees each seq once and in order.
func (a *Agent) emitter(ctx context.Context, m *config.Model, b *inferqpb.Batch, pub *lifecycle.Publisher, running func()) func(*inferqpb.TokenChunk) error {
	jobs := make(map[string]*inferqpb.BatchJob, len(b.Jobs))
	for _, j := range b.Jobs {
		jobs[j.Id] = j
	}
	sent := make(map[string]uint64, len(b.Jobs)) // highest seq published per job
	last := make(map[string]time.Time, len(b.Jobs))
	start := time.Now()
	st := a.stats[m.Name]
	return func(c *inferqpb.TokenChunk) error {
		j := jobs[c.JobId]
		if j == nil {
			return fmt.Errorf("token for job %s, not in batch %s", c.JobId, b.Id)
		}
		if c.Seq != 0 && c.Seq <= sent[c.JobId] {
			return nil
		}
		sent[c.JobId] = c.Seq
		now := time.Now()
		if prev, ok := last[c.JobId]; ok {
			d := now.Sub(prev)
			a.opt.Own.InterTokenLatency.WithLabelValues(m.Name).Observe(d.Seconds())
			st.itl.add(d)
		} else {
			from := start
			if j.CreatedUnixNano > 0 {
				from = time.Unix(0, j.CreatedUnixNano)
			}
			d := now.Sub(from)
			a.opt.Own.TimeToFirstToken.WithLabelValues(m.Name).Observe(d.Seconds())
			st.ttft.add(d)
		}
		last[c.JobId] = now
		st.tokens.Add(1)
		running() // a job streaming tokens is running
		a.opt.Own.TokensPublished.WithLabelValues(m.Name).Inc()
		return pub.Token(jobContext(ctx, j), a.opt.Topology, j.Tenant, j.Attempt, lifecycle.TokenChunkOf(c))
	}
}

// finish publishes every job's terminal event, dead letters first, and acks
// the batch once all of them are stored.
func (a *Agent) finish(ctx context.Context, m *config.Model, b *inferqpb.Batch, msg natsjs.Msg, delivered uint64, out *outcome, log *slog.Logger) {
	st := a.stats[m.Name]
	pub := lifecycle.NewPublisher(a.opt.JS)
	done := a.now()
	events := make([]lifecycle.Event, 0, len(b.Jobs))
	var succeeded, failed, poisoned uint64
	for _, j := range b.Jobs {
		var ev lifecycle.Event
		jr := out.results[j.Id]
		switch perr := out.poison[j.Id]; {
		case perr != nil:
			ev = lifecycle.FailedEvent(b, j, a.opt.Name, done, &inferqpb.Error{Code: "poison_job",
				Message: fmt.Sprintf("failed alone after its batch of %d was split: %v", len(b.Jobs), perr)})
			poisoned++
			log.Warn("poison job failed alone", "job", j.Id, "err", perr)
		case jr == nil:
			ev = lifecycle.FailedEvent(b, j, a.opt.Name, done, &inferqpb.Error{Code: "no_result", Message: "the runner returned no result for this job"})
		case jr.Error != nil && jr.Error.Code == lifecycle.CodeCancelled:
			// Stopped because it was cancelled: it ends cancelled whichever
			// of this event and the cancel request's own is applied first.
			ev = lifecycle.CancelledEvent(b, j, a.opt.Name, done, jr.Error)
		case jr.Error != nil:
			ev = lifecycle.FailedEvent(b, j, a.opt.Name, done, jr.Error)
		default:
			// Outputs over the threshold go to the blobs bucket; the
			// event carries their references.
			if err := a.offloadOutputs(ctx, j, jr.Outputs); err != nil {
				log.Warn("outputs not stored; batch will be redelivered", "job", j.Id, "err", err)
				a.release(ctx, msg, m.Queue.BackoffFor(delivered), st)
				return
			}
			ev = lifecycle.SucceededEvent(b, j, a.opt.Name, done, jr.Outputs)
		}
		switch ev.Status() {
		case lifecycle.Succeeded:
			succeeded++
		case lifecycle.Failed:
			failed++
			a.deadLetter(pub, m, b, j, delivered, ev.Msg.Error.Code+": "+ev.Msg.Error.Message)
			trace.SpanFromContext(jobContext(ctx, j)).SetStatus(codes.Error, ev.Msg.Error.Code)
		default: // cancelled
			failed++
		}
		events = append(events, ev)
	}
	// Dead-letter records are stored before their jobs end: nothing is
	// forgotten if this worker dies in between.
	if err := pub.Wait(ctx); err != nil {
		log.Warn("dead letters not stored; batch will be redelivered", "err", err)
		a.release(ctx, msg, m.Queue.BackoffFor(delivered), st)
		return
	}
	for i, ev := range events { // each event continues its job's span in resultsvc
		c := propagation.MapCarrier{}
		otel.GetTextMapPropagator().Inject(jobContext(ctx, b.Jobs[i]), c)
		if len(c) > 0 {
			ev.Msg.TraceContext = c
		}
	}
	// One message for the batch's results (more only if they exceed the
	// server's payload limit): one stored message and one ack per batch.
	msgs, err := lifecycle.EventsMsgs(ctx, a.opt.Topology, m.Name, events, int(a.opt.JS.Conn().MaxPayload()))
	if err != nil {
		pub.Fail(err)
	}
	for _, msg := range msgs {
		pub.Send(msg)
	}
	if err := pub.Wait(ctx); err != nil {
		// Results not all stored: let the batch come back rather than lose one.
		log.Warn("results not stored; batch will be redelivered", "err", err)
		a.release(ctx, msg, m.Queue.BackoffFor(delivered), st)
		return
	}
	a.acks.Ack(msg)
	st.batches.Add(1)
	st.succeeded.Add(succeeded)
	st.failed.Add(failed)
	st.poisoned.Add(poisoned)
	log.Debug("batch done", "succeeded", succeeded, "failed", failed)
}

// executeSpan starts a batch's "worker execute" span, a child of ctx (the
// batcher's flush span) linked to every job's span.
func executeSpan(ctx context.Context, model string, batch *inferqpb.Batch, subject string) (context.Context, trace.Span) {
	links := make([]trace.Link, 0, len(batch.Jobs))
	for _, j := range batch.Jobs {
		if sc := trace.SpanContextFromContext(jobTraceContext(context.Background(), j)); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("inferq.job_id", j.Id)}})
		}
	}
	return tracer().Start(ctx, "worker execute",
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("inferq.model", model), attribute.String("inferq.batch_id", batch.Id),
			attribute.Int("inferq.batch_size", len(batch.Jobs)), attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject)))
}

// jobSpans are the "worker job" spans of one batch, by job id.
type jobSpans map[string]trace.Span

type jobSpansKey struct{}

// startJobSpans starts a "worker job" span per job of b, each a child of its
// job's own trace context (carried in the batch by the batcher) and linked
// to the batch's span in ctx: a job's trace thus runs from ingress through
// the worker to resultsvc. The spans travel in the returned context, where
// jobContext finds them; end ends them all.
func startJobSpans(ctx context.Context, m *config.Model, b *inferqpb.Batch) (_ context.Context, end func()) {
	batchLink := trace.Link{SpanContext: trace.SpanContextFromContext(ctx)}
	spans := make(jobSpans, len(b.Jobs))
	tracing := obs.Tracing()
	for _, j := range b.Jobs {
		jctx := jobTraceContext(ctx, j)
		if !tracing { // what a no-op span would carry: the job's own context
			spans[j.Id] = trace.SpanFromContext(jctx)
			continue
		}
		_, s := tracer().Start(jctx, "worker job", trace.WithLinks(batchLink),
			trace.WithAttributes(attribute.String("inferq.job_id", j.Id), attribute.String("inferq.model", m.Name),
				attribute.String("inferq.batch_id", b.Id), attribute.Int("inferq.batch_size", len(b.Jobs))))
		spans[j.Id] = s
	}
	return context.WithValue(ctx, jobSpansKey{}, spans), func() {
		for _, s := range spans {
			s.End()
		}
	}
}

// jobTraceContext is ctx with job j's trace context from the batch as the
// remote parent; ctx unchanged when the batch carries none for j.
func jobTraceContext(ctx context.Context, j *inferqpb.BatchJob) context.Context {
	if len(j.TraceContext) == 0 {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(j.TraceContext))
}

// jobContext is ctx with job j's "worker job" span as the current span, so
// that j's events and tokens carry j's trace; ctx unchanged outside a batch
// run.
func jobContext(ctx context.Context, j *inferqpb.BatchJob) context.Context {
	if s, ok := ctx.Value(jobSpansKey{}).(jobSpans)[j.Id]; ok {
		return trace.ContextWithSpan(ctx, s)
	}
	return ctx
}

// release hands the batch back to JetStream for another delivery, after
// delay, or at once when ctx (the batch's run) has ended: a worker that
// shuts down lets another take the batch without waiting.
func (a *Agent) release(ctx context.Context, msg natsjs.Msg, delay time.Duration, st *counters) {
	st.released.Add(1)
	if delay <= 0 || ctx.Err() != nil {
		_ = msg.Nak()
		return
	}
	_ = msg.NakWithDelay(delay)
}

// retryOrFail redelivers a batch that failed as a whole with the model's
// backoff, or ends its jobs as failed once max_deliver is reached.
func (a *Agent) retryOrFail(ctx context.Context, m *config.Model, b *inferqpb.Batch, msg natsjs.Msg, delivered uint64, cause error, log *slog.Logger) {
	st := a.stats[m.Name]
	if delivered < uint64(m.Queue.MaxDeliver) && !isPermanent(cause) {
		log.Warn("batch failed; will retry", "err", cause)
		a.release(ctx, msg, m.Queue.BackoffFor(delivered), st)
		return
	}
	log.Error("batch failed for good", "err", cause)
	// Dead-letter records are stored before the jobs end and before Term()
	// removes the batch: nothing is forgotten if this worker dies midway.
	pub := lifecycle.NewPublisher(a.opt.JS)
	for _, j := range b.Jobs {
		a.deadLetter(pub, m, b, j, delivered, cause.Error())
	}
	if err := pub.Wait(ctx); err != nil {
		a.release(ctx, msg, m.Queue.BackoffFor(delivered), st)
		return
	}
	now := a.now()
	code := "batch_failed"
	if pe := (*PermanentError)(nil); errors.As(cause, &pe) && pe.Code != "" {
		code = pe.Code
	}
	for _, j := range b.Jobs {
		pub.Event(jobContext(ctx, j), a.opt.Topology, lifecycle.FailedEvent(b, j, a.opt.Name, now,
			&inferqpb.Error{Code: code, Message: fmt.Sprintf("failed after %d attempts: %v", delivered, cause)}))
	}
	if err := pub.Wait(ctx); err != nil {
		a.release(ctx, msg, m.Queue.BackoffFor(delivered), st)
		return
	}
	_ = msg.Term()
	st.batches.Add(1)
	st.failed.Add(uint64(len(b.Jobs)))
}

// deadLetter queues a job's dead-letter record on pub; callers wait for it
// before the job's failed event is published.
func (a *Agent) deadLetter(pub *lifecycle.Publisher, m *config.Model, b *inferqpb.Batch, j *inferqpb.BatchJob, delivered uint64, why string) {
	msg, err := lifecycle.DeadLetterMsg(a.opt.Topology, b, j, delivered, why, a.now())
	if err != nil {
		pub.Fail(err)
		return
	}
	pub.Send(msg)
	reason := "permanent"
	if delivered >= uint64(m.Queue.MaxDeliver) {
		reason = "max_deliver"
	}
	a.opt.Metrics.DeadLetters.WithLabelValues(m.Name, reason).Inc()
}

// isPermanent is true for errors no retry can fix. Everything else is
// retried up to max_deliver.
func isPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe)
}

// PermanentError marks a batch failure that no retry can fix. Code, if
// set, is its jobs' error code (default batch_failed).
type PermanentError struct {
	Err  error
	Code string
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// keepalive tells JetStream the batch is still being worked on, so a long
// batch is not redelivered to another worker.
func keepalive(msg natsjs.Msg, every time.Duration) (stop func()) {
	if every <= 0 {
		every = 5 * time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// drainContext is ctx's values without its cancellation, cancelled
// DrainTimeout after ctx ends.
func drainContext(ctx context.Context, drain time.Duration) (context.Context, context.CancelFunc) {
	run, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(drain, cancel)
		context.AfterFunc(run, func() { t.Stop() })
	})
	return run, func() { stop(); cancel() }
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
