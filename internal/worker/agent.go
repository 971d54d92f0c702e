// Package worker is the GPU worker agent: it pulls batches from a model's
// shared durable consumer (one batch at a time, so adding a worker adds
// throughput), runs them, publishes progress, tokens and results, and acks a
// batch only after its results are stored in JetStream.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
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
	Metrics  *obs.Metrics
	// NewRunner builds a model's runner; default NewRunner.
	NewRunner func(*config.Model) (Runner, error)
	// DrainTimeout bounds how long a batch in hand may finish after
	// shutdown starts; default 30s. Past it the batch is released (Nak).
	DrainTimeout time.Duration
}

// Agent serves batches of its models.
type Agent struct {
	opt Options
	now func() time.Time
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
	return &Agent{opt: opt, now: time.Now}
}

var tracer = otel.Tracer("github.com/inferq/inferq/internal/worker")

// Run serves every model until ctx ends, then drains: it stops pulling and
// lets the batch in hand finish (or releases it after DrainTimeout).
func (a *Agent) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for i := range a.opt.Models {
		m := &a.opt.Models[i]
		r, err := a.opt.NewRunner(m)
		if err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		g.Go(func() error {
			defer r.Close()
			return a.serve(ctx, m, r)
		})
		g.Go(func() error { return a.heartbeat(ctx, m) })
	}
	return g.Wait()
}

func (a *Agent) serve(ctx context.Context, m *config.Model, r Runner) error {
	cons, err := a.opt.JS.Consumer(ctx, a.opt.Topology.BatchesStream(), jetstream.WorkerConsumer(m.Name))
	if err != nil {
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
	log.Info("worker serving", "runner", m.Runner.Builtin)
	for ctx.Err() == nil {
		// One batch at a time: a pre-fetched batch would age in this client
		// while another worker could run it.
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		msgs, err := cons.Fetch(1, natsjs.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() == nil {
				log.Warn("fetch failed", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		for msg := range msgs.Messages() {
			a.handle(ctx, m, r, msg, log)
		}
		cancel()
	}
	log.Info("worker stopped")
	return nil
}

// handle runs one batch. ctx is the agent's: when it ends the batch still
// finishes within DrainTimeout.
func (a *Agent) handle(ctx context.Context, m *config.Model, r Runner, msg natsjs.Msg, log *slog.Logger) {
	batch := &inferqpb.Batch{}
	if err := proto.Unmarshal(msg.Data(), batch); err != nil || len(batch.Jobs) == 0 {
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
	runCtx, cancel := drainContext(ctx, a.opt.DrainTimeout)
	defer cancel()
	runCtx, span := tracer.Start(jetstream.ExtractTrace(runCtx, msg.Headers()), "worker execute",
		trace.WithAttributes(attribute.String("inferq.model", m.Name), attribute.Int("inferq.batch_size", len(batch.Jobs))))
	defer span.End()

	stopKeepalive := keepalive(msg, a.opt.Topology.AckWait/4)
	defer stopKeepalive()

	pub := newPublisher(a.opt.JS)
	now := a.now().UnixNano()
	for _, j := range batch.Jobs {
		pub.event(runCtx, a.opt.Topology.EventSubject(m.Name, jetstream.EventRunning), &inferqpb.JobEvent{
			JobId: j.Id, Tenant: j.Tenant, Model: m.Name, Version: batch.Version, Status: inferqpb.Status_STATUS_RUNNING,
			Attempt: j.Attempt, TimeUnixNano: now, BatchId: batch.Id, Worker: a.opt.Name, JobsSeq: j.JobsSeq,
		}, eventID(j, "running"))
	}
	tenants := make(map[string]*inferqpb.BatchJob, len(batch.Jobs))
	for _, j := range batch.Jobs {
		tenants[j.Id] = j
	}
	emit := func(c *inferqpb.TokenChunk) error {
		j := tenants[c.JobId]
		if j == nil {
			return fmt.Errorf("token for job %s, not in batch", c.JobId)
		}
		a.opt.Metrics.TokensPublished.WithLabelValues(m.Name).Inc()
		return pub.token(runCtx, a.opt.Topology.TokenSubject(j.Tenant, j.Id), c)
	}

	start := time.Now()
	res, err := r.Run(runCtx, batch, emit)
	a.opt.Metrics.BatchDuration.WithLabelValues(m.Name).Observe(time.Since(start).Seconds())
	if err == nil {
		err = pub.wait(runCtx) // running events and tokens are stored before results
	}
	if err != nil {
		a.opt.Metrics.BatchesFailed.WithLabelValues(m.Name).Inc()
		a.retryOrFail(runCtx, m, batch, msg, delivered, err, log)
		return
	}
	byID := make(map[string]*inferqpb.JobResult, len(res.Jobs))
	for _, jr := range res.Jobs {
		byID[jr.JobId] = jr
	}
	done := a.now().UnixNano()
	for _, j := range batch.Jobs {
		ev := &inferqpb.JobEvent{JobId: j.Id, Tenant: j.Tenant, Model: m.Name, Version: batch.Version,
			Attempt: j.Attempt, TimeUnixNano: done, BatchId: batch.Id, Worker: a.opt.Name, RequestId: j.RequestId, JobsSeq: j.JobsSeq}
		jr := byID[j.Id]
		switch {
		case jr == nil:
			ev.Status, ev.Error = inferqpb.Status_STATUS_FAILED, &inferqpb.Error{Code: "no_result", Message: "the runner returned no result for this job"}
		case jr.Error != nil:
			ev.Status, ev.Error = inferqpb.Status_STATUS_FAILED, jr.Error
			if jr.Error.Code != "cancelled" {
				a.deadLetter(pub, m, batch, j, delivered, jr.Error.Code+": "+jr.Error.Message)
			}
		default:
			ev.Status, ev.Outputs = inferqpb.Status_STATUS_SUCCEEDED, jr.Outputs
		}
		kind := jetstream.EventResult
		if ev.Status == inferqpb.Status_STATUS_FAILED {
			kind = jetstream.EventFailed
		}
		pub.event(runCtx, a.opt.Topology.EventSubject(m.Name, kind), ev, eventID(j, kind))
	}
	if err := pub.wait(runCtx); err != nil {
		// Results not all stored: let the batch come back rather than lose one.
		log.Warn("results not stored; batch will be redelivered", "err", err)
		_ = msg.NakWithDelay(m.Queue.BackoffFor(delivered))
		return
	}
	if err := msg.DoubleAck(runCtx); err != nil {
		log.Warn("batch ack failed; it may run again (results are idempotent)", "err", err)
	}
	log.Debug("batch done", "seconds", time.Since(start).Seconds())
}

// retryOrFail redelivers a failed batch with the model's backoff, or ends its
// jobs as failed once max_deliver is reached.
func (a *Agent) retryOrFail(ctx context.Context, m *config.Model, b *inferqpb.Batch, msg natsjs.Msg, delivered uint64, cause error, log *slog.Logger) {
	if delivered < uint64(m.Queue.MaxDeliver) && !isPermanent(cause) {
		log.Warn("batch failed; will retry", "err", cause)
		_ = msg.NakWithDelay(m.Queue.BackoffFor(delivered))
		return
	}
	log.Error("batch failed for good", "err", cause)
	// Dead-letter records are stored before the jobs end and before Term()
	// removes the batch: nothing is forgotten if this worker dies midway.
	pub := newPublisher(a.opt.JS)
	for _, j := range b.Jobs {
		a.deadLetter(pub, m, b, j, delivered, cause.Error())
	}
	if err := pub.wait(ctx); err != nil {
		_ = msg.NakWithDelay(m.Queue.BackoffFor(delivered))
		return
	}
	now := a.now().UnixNano()
	for _, j := range b.Jobs {
		pub.event(ctx, a.opt.Topology.EventSubject(m.Name, jetstream.EventFailed), &inferqpb.JobEvent{
			JobId: j.Id, Tenant: j.Tenant, Model: m.Name, Version: b.Version, Status: inferqpb.Status_STATUS_FAILED,
			Attempt: j.Attempt, TimeUnixNano: now, BatchId: b.Id, Worker: a.opt.Name, JobsSeq: j.JobsSeq,
			Error: &inferqpb.Error{Code: "batch_failed", Message: fmt.Sprintf("failed after %d attempts: %v", delivered, cause)},
		}, eventID(j, jetstream.EventFailed))
	}
	if err := pub.wait(ctx); err != nil {
		_ = msg.NakWithDelay(m.Queue.BackoffFor(delivered))
		return
	}
	_ = msg.Term()
}

// deadLetter queues a job's dead-letter record on pub; callers wait for it
// before the job's failed event is published.
func (a *Agent) deadLetter(pub *publisher, m *config.Model, b *inferqpb.Batch, j *inferqpb.BatchJob, delivered uint64, why string) {
	rec, _ := json.Marshal(jetstream.DeadLetter{Job: j.Id, Tenant: j.Tenant, Model: m.Name, JobsSeq: j.JobsSeq,
		Attempt: j.Attempt, Deliveries: delivered, Batch: b.Id, Error: why, Time: a.now().UTC()})
	msg := &nats.Msg{Subject: a.opt.Topology.DeadSubject(m.Name), Data: rec, Header: nats.Header{}}
	msg.Header.Set(jetstream.HeaderMsgID, eventID(j, "dead"))
	pub.send(msg)
}

// isPermanent is true for errors no retry can fix. Everything else is
// retried up to max_deliver.
func isPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe)
}

// PermanentError marks a batch failure that no retry can fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// heartbeat keeps the agent's entry in the workers bucket alive.
func (a *Agent) heartbeat(ctx context.Context, m *config.Model) error {
	kv, err := a.opt.JS.KeyValue(ctx, a.opt.Topology.WorkersBucket())
	if err != nil {
		return fmt.Errorf("worker %s: workers bucket: %w", m.Name, err)
	}
	key := m.Name + "." + sanitizeKey(a.opt.Name)
	every := a.opt.Topology.WorkerTTL / 3
	if every <= 0 {
		every = 5 * time.Second
	}
	for {
		v, _ := json.Marshal(map[string]any{"model": m.Name, "worker": a.opt.Name, "device": "cpu",
			"capacity": m.Batching.MaxBatchSize, "time": a.now().UTC()})
		if _, err := kv.Put(ctx, key, v); err != nil && ctx.Err() == nil {
			a.opt.Log.Warn("heartbeat failed", "model", m.Name, "err", err)
		}
		if !sleep(ctx, every) {
			_ = kv.Delete(context.Background(), key)
			return nil
		}
	}
}

func sanitizeKey(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// keepalive tells JetStream the batch is still being worked on, so a long
// batch is not redelivered to another worker.
func keepalive(msg natsjs.Msg, every time.Duration) (stop func()) {
	if every <= 0 {
		every = 5 * time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
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
	}()
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

func eventID(j *inferqpb.BatchJob, kind string) string {
	return j.Id + ":" + strconv.FormatUint(uint64(j.Attempt), 10) + ":" + kind
}

// publisher sends a batch's messages asynchronously and waits for every
// PubAck at once, so a batch of N jobs costs one round trip, not N.
type publisher struct {
	js   natsjs.JetStream
	acks []natsjs.PubAckFuture
	err  error
}

func newPublisher(js natsjs.JetStream) *publisher { return &publisher{js: js} }

func (p *publisher) send(msg *nats.Msg) {
	if p.err != nil {
		return
	}
	f, err := p.js.PublishMsgAsync(msg)
	if err != nil {
		p.err = fmt.Errorf("publish to %s: %w", msg.Subject, err)
		return
	}
	p.acks = append(p.acks, f)
}

func (p *publisher) event(ctx context.Context, subject string, ev *inferqpb.JobEvent, id string) {
	msg, err := jetstream.NewMsg(ctx, subject, ev, id)
	if err != nil {
		p.err = err
		return
	}
	p.send(msg)
}

// tokenJSON is the public JSON form of a token chunk on inferq.tokens.*.
type tokenJSON struct {
	Job     string `json:"job"`
	Seq     uint64 `json:"seq"`
	Text    string `json:"text"`
	TokenID int64  `json:"token_id"`
	Final   bool   `json:"final"`
}

func (p *publisher) token(ctx context.Context, subject string, c *inferqpb.TokenChunk) error {
	data, err := json.Marshal(tokenJSON{Job: c.JobId, Seq: c.Seq, Text: c.Text, TokenID: c.TokenId, Final: c.Final})
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.HeaderSeq, strconv.FormatUint(c.Seq, 10))
	jetstream.InjectTrace(ctx, msg.Header)
	p.send(msg)
	return p.err
}

// wait blocks until every message sent so far is stored.
func (p *publisher) wait(ctx context.Context) error {
	for _, f := range p.acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish to %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.acks = p.acks[:0]
	return p.err
}
