// Package resultsvc is the sole writer of job progress after `queued`: it
// consumes the events stream and applies each event to the results store,
// forward-only. An event is acked only once applied, so while the store is
// down events wait in JetStream instead of being dropped.
package resultsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/webhook"
	"github.com/inferq/inferq/internal/wire"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// Options configure the Service; all fields are required unless noted.
type Options struct {
	Topology jetstream.Topology
	JS       natsjs.JetStream
	Store    results.Store
	Log      *slog.Logger
	Metrics  *obs.Metrics // shared: jobs dropped, dead letters; nil: unread
	Own      *Metrics     // NewMetrics; nil: registered where nobody reads them
	// Concurrency is how many events are applied at once; default 32.
	// Order across events does not matter: the store's rule is forward-only.
	Concurrency int
	// RetainedEvery is how often the store's retained entries are read
	// into Own.Retained; default 15s.
	RetainedEvery time.Duration
	// EveryJob logs every finished job at info (log.access: all); else a
	// job that succeeded logs at debug and the others at info.
	EveryJob bool
}

// Service applies job events to the results store.
type Service struct {
	opt  Options
	acks *lifecycle.AckHolder // applied events' acks, each held until the next (see AckHolder)
	// work feeds the appliers Run starts: the events of a batch are applied
	// side by side by long-lived goroutines, not one new goroutine each,
	// whose stack grew (copied) on every event: 1.4% of the broker's CPU.
	work chan applyTask
}

// applyTask is one event of a batch for an applier; done and failed are
// its message's.
type applyTask struct {
	ctx       context.Context
	subject   string
	ev        *inferqpb.JobEvent
	delivered uint64
	done      *sync.WaitGroup
	failed    *atomic.Bool
}

// New returns a Service; Run starts it.
func New(opt Options) *Service {
	if opt.Concurrency <= 0 {
		opt.Concurrency = 32
	}
	if opt.Metrics == nil {
		opt.Metrics = obs.NewMetrics(prometheus.NewRegistry())
	}
	if opt.Own == nil {
		opt.Own = NewMetrics(prometheus.NewRegistry())
	}
	if opt.RetainedEvery <= 0 {
		opt.RetainedEvery = 15 * time.Second
	}
	s := &Service{opt: opt}
	s.acks = lifecycle.NewAckHolder(0, func(msg natsjs.Msg) {
		if err := msg.Ack(); err != nil {
			s.opt.Log.Warn("event ack failed; it will be applied again (idempotent)", "subject", msg.Subject(), "err", err)
		}
	})
	return s
}

// Run consumes events until ctx ends and the events in hand are applied.
func (s *Service) Run(ctx context.Context) error {
	// A failure while starting stops what was started; one caused by the
	// shutdown itself is not an error.
	var stops []func()
	fail := func(err error) error {
		for _, f := range stops {
			f()
		}
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	cons, err := s.opt.JS.Consumer(ctx, s.opt.Topology.EventsStream(), jetstream.ResultsConsumer)
	if err != nil {
		return fail(fmt.Errorf("resultsvc: consumer: %w", err))
	}
	// The buffer bounds memory: at most this many events are held unacked.
	iter, err := cons.Messages(natsjs.PullMaxMessages(4 * s.opt.Concurrency))
	if err != nil {
		return fail(fmt.Errorf("resultsvc: pull: %w", err))
	}
	stops = append(stops, iter.Stop)
	advCons, err := s.opt.JS.Consumer(ctx, s.opt.Topology.AdvisoriesStream(), jetstream.AdvisoryConsumer)
	if err != nil {
		return fail(fmt.Errorf("resultsvc: advisory consumer: %w", err))
	}
	adv, err := advCons.Messages(natsjs.PullMaxMessages(16))
	if err != nil {
		return fail(fmt.Errorf("resultsvc: pull advisories: %w", err))
	}
	stops = append(stops, adv.Stop)
	tokenLog, keepsTokens := s.opt.Store.(results.TokenLog)
	var toks natsjs.MessagesContext
	if keepsTokens {
		if toks, err = s.pullTokens(ctx); err != nil {
			return fail(err)
		}
		stops = append(stops, toks.Stop)
	}
	s.opt.Log.Info("resultsvc started", "token_logs", keepsTokens)
	stop := context.AfterFunc(ctx, func() {
		for _, f := range stops {
			f()
		}
	})
	defer stop()
	s.work = make(chan applyTask)
	var appliers sync.WaitGroup
	for range s.opt.Concurrency {
		appliers.Go(func() {
			for t := range s.work {
				if !s.apply(t.ctx, t.subject, t.ev, t.delivered) {
					t.failed.Store(true)
				}
				t.done.Done()
			}
		})
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.watchAdvisories(ctx, adv) })
	if r, ok := s.opt.Store.(results.Retainer); ok {
		wg.Go(func() { s.watchRetained(ctx, r) })
	}
	if keepsTokens {
		wg.Go(func() { s.copyTokens(ctx, tokenLog, toks) })
	}
	for range s.opt.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, err := iter.Next()
				if err != nil {
					if errors.Is(err, natsjs.ErrMsgIteratorClosed) {
						return
					}
					s.opt.Log.Warn("pull failed", "err", err)
					continue
				}
				s.handle(context.WithoutCancel(ctx), msg)
			}
		}()
	}
	wg.Wait()
	close(s.work) // no handler is left to send
	appliers.Wait()
	s.acks.Flush()
	s.opt.Log.Info("resultsvc stopped")
	return nil
}

// watchRetained reads how much the store keeps into the retained gauge
// until ctx ends. A failed read leaves the last figure and is retried at
// the next tick.
func (s *Service) watchRetained(ctx context.Context, r results.Retainer) {
	tick := time.NewTicker(s.opt.RetainedEvery)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := r.Retained(rctx)
		cancel()
		if err == nil {
			s.opt.Own.Retained.Set(float64(n))
		} else if ctx.Err() == nil {
			s.opt.Log.Debug("reading the store's retained entries failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// handle applies one message of the events stream: one job's event, or a
// batch's (JobEvents). The message is acked once every event in it is
// applied; if any could not be, it comes back later, and applying the
// others again changes nothing.
func (s *Service) handle(ctx context.Context, msg natsjs.Msg) {
	var (
		events []*inferqpb.JobEvent
		err    error
	)
	if strings.HasSuffix(msg.Subject(), "."+jetstream.EventBatch) {
		var evs *inferqpb.JobEvents
		if evs, err = lifecycle.DecodeEvents(msg.Data()); err == nil {
			events = evs.Events
		}
	} else {
		var ev *inferqpb.JobEvent
		if ev, err = lifecycle.DecodeEvent(msg.Data()); err == nil {
			events = []*inferqpb.JobEvent{ev}
		}
	}
	if err != nil {
		s.opt.Log.Error("undecodable event dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	// The message's trace context is the parent of a lone event's span; the
	// events of a batch carry their jobs' own in their bodies.
	ctx = jetstream.ExtractTrace(ctx, msg.Headers())
	delivered := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	if len(events) == 0 {
		s.acks.Ack(msg)
		return
	}
	// The first event is applied here, the others by the appliers.
	var (
		done   sync.WaitGroup
		failed atomic.Bool
	)
	done.Add(len(events) - 1)
	for _, ev := range events[1:] {
		s.work <- applyTask{ctx: ctx, subject: msg.Subject(), ev: ev, delivered: delivered, done: &done, failed: &failed}
	}
	if !s.apply(ctx, msg.Subject(), events[0], delivered) {
		failed.Store(true)
	}
	done.Wait()
	if failed.Load() {
		_ = msg.NakWithDelay(time.Second)
		return
	}
	s.acks.Ack(msg)
}

// apply applies one event to the store. It reports false when the event
// must be tried again (the store is down or slow); an event no store should
// take is logged and counts as done.
func (s *Service) apply(ctx context.Context, subject string, ev *inferqpb.JobEvent, delivered uint64) bool {
	// The event carries its job's trace context: applying it is the last
	// span of the job's trace.
	if len(ev.TraceContext) > 0 {
		ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(ev.TraceContext))
	}
	if obs.Tracing() {
		var span trace.Span
		ctx, span = otel.Tracer("github.com/inferq/inferq/internal/resultsvc").Start(ctx,
			"resultsvc apply", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", subject)))
		defer span.End()
	}
	span := trace.SpanFromContext(ctx)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("inferq.job_id", ev.JobId), attribute.String("inferq.model", ev.Model),
			attribute.String("inferq.batch_id", ev.BatchId), attribute.String("inferq.status", ev.Status.String()))
	}
	u, err := updateOf(ev)
	if err != nil {
		s.opt.Log.Error("invalid event dropped", "job", ev.JobId, "status", ev.Status.String(), "err", err)
		return true
	}
	st := u.Status
	// The job and model go on each line; a logger With them would cost an
	// allocation per event for lines most events never write.
	log := s.opt.Log
	if ev.Status == inferqpb.Status_STATUS_SUCCEEDED && st == results.Failed {
		log.Error("model output cannot be rendered", "job", ev.JobId, "model", ev.Model, "err", u.Error.Message)
	}
	rec, changed, err := s.opt.Store.Apply(ctx, u)
	switch {
	case errors.Is(err, results.ErrNotFound):
		// The record expired, and the event cannot create it.
		s.opt.Own.EventsApplied.WithLabelValues(string(st), "unknown").Inc()
		log.Warn("event for unknown job dropped", "job", ev.JobId, "model", ev.Model, "status", st)
		return true
	case err != nil && (errors.Is(err, nats.ErrMaxPayload) || delivered >= maxEventTries):
		// The change itself cannot be stored (a result larger than the
		// store takes), or has failed too often: end the job failed with a
		// small record instead, so that it still ends. With the store down
		// this fails too, and the event waits as below.
		if s.unstorable(ctx, ev, u, err, log.With("job", ev.JobId, "model", ev.Model)) {
			return true
		}
		span.SetStatus(codes.Error, "event not applied")
		return false
	case err != nil:
		// Store down or slow: leave the event in JetStream and try again.
		span.SetStatus(codes.Error, "event not applied")
		log.Warn("event not applied; will retry", "job", ev.JobId, "model", ev.Model, "status", st, "err", err, "delivery", delivered)
		return false
	}
	if !s.queueWebhook(ctx, rec, log) {
		span.SetStatus(codes.Error, "webhook not queued")
		return false
	}
	if !changed {
		s.opt.Own.EventsApplied.WithLabelValues(string(st), "duplicate").Inc()
		return true
	}
	s.opt.Own.EventsApplied.WithLabelValues(string(st), "applied").Inc()
	if rec.Status.Terminal() {
		s.opt.Own.JobsFinished.WithLabelValues(rec.Model, string(rec.Status)).Inc()
		if rec.FinishedAt != nil {
			s.opt.Own.JobDuration.WithLabelValues(rec.Model, string(rec.Status)).Observe(rec.FinishedAt.Sub(rec.CreatedAt).Seconds())
		}
		level := slog.LevelInfo
		if rec.Status == results.Succeeded && !s.opt.EveryJob {
			level = slog.LevelDebug // a line per job at info cost 2.5% of the broker's CPU
		}
		if log.Enabled(ctx, level) { // the arguments cost allocations even when not written
			log.Log(ctx, level, "job finished", "job", ev.JobId, "model", ev.Model, "status", rec.Status, "attempt", rec.Attempts)
		}
	}
	return true
}

// queueWebhook queues the completion webhook of a job whose record says it
// is pending and not yet tried, and reports false if that failed (the
// event is then tried again). It runs for a duplicate event too: a crash
// between applying the end and queueing its webhook must not lose it, and
// the message id makes a second queueing within the duplicate window a
// no-op (the deliverer skips a webhook whose record says it is settled).
func (s *Service) queueWebhook(ctx context.Context, rec *results.Record, log *slog.Logger) bool {
	w := rec.Webhook
	if !rec.Status.Terminal() || w == nil || w.Status != results.WebhookPending || w.Attempts > 0 {
		return true
	}
	if err := webhook.Enqueue(ctx, s.opt.JS, s.opt.Topology, rec.Model, webhook.JobDelivery(rec)); err != nil {
		log.Warn("webhook not queued; will retry", "job", rec.ID, "model", rec.Model, "err", err)
		return false
	}
	return true
}

// maxEventTries bounds the deliveries of an event that cannot be applied
// while the store otherwise works; see unstorable.
const maxEventTries = 5

// codeUnstorable ends a job whose change could not be stored.
const codeUnstorable = "result_unstorable"

// unstorable ends job ev failed with codeUnstorable and a dead letter,
// because its update u could not be stored (err). It reports whether the
// job's record now says so.
func (s *Service) unstorable(ctx context.Context, ev *inferqpb.JobEvent, u results.Update, err error, log *slog.Logger) bool {
	why := "the job's new state could not be stored: " + err.Error()
	// The job's end first: with the store down that fails and nothing is
	// written (no dead letter for a job that will still succeed). The event
	// is acked only once the dead letter is stored too, so a crash in
	// between brings it back, and the letter's id makes a copy a duplicate.
	fail := u
	fail.Status, fail.Result, fail.Error = results.Failed, nil, &results.Error{Code: codeUnstorable, Message: why}
	rec, changed, ferr := s.opt.Store.Apply(ctx, fail)
	if ferr != nil {
		log.Warn("event not applied and the job not failed either; will retry", "err", err, "fail_err", ferr)
		return false
	}
	if !s.queueWebhook(ctx, rec, log) {
		return false
	}
	b := &inferqpb.Batch{Id: ev.BatchId, Model: ev.Model, Version: ev.Version}
	j := &inferqpb.BatchJob{Id: ev.JobId, Tenant: ev.Tenant, Attempt: ev.Attempt, JobsSeq: ev.JobsSeq}
	msg, derr := lifecycle.DeadLetterMsg(s.opt.Topology, b, j, 0, codeUnstorable+": "+why, time.Now())
	if derr == nil {
		_, derr = s.opt.JS.PublishMsg(ctx, msg)
	}
	if derr != nil {
		log.Warn("dead letter for an unstorable change not stored; will retry", "err", derr)
		return false
	}
	s.opt.Metrics.DeadLetters.WithLabelValues(ev.Model, "permanent").Inc()
	if changed {
		s.opt.Own.EventsApplied.WithLabelValues(string(fail.Status), "applied").Inc()
		s.opt.Own.JobsFinished.WithLabelValues(rec.Model, string(rec.Status)).Inc()
	}
	log.Error("job failed: its new state could not be stored", "status", u.Status, "err", err)
	return true
}

// codeBadOutput ends a job whose model answered with outputs that cannot be
// rendered as an inference response.
const codeBadOutput = "bad_output"

// updateOf turns a decoded event into the store update it asks for, or an
// error for an event no store should take (unknown status, missing id or
// attempt). A succeeded event's outputs are rendered here; outputs that
// cannot be rendered fail the job instead.
func updateOf(ev *inferqpb.JobEvent) (results.Update, error) {
	st, ok := lifecycle.StatusOf(ev.Status)
	if !ok {
		return results.Update{}, fmt.Errorf("event status %v: %w", ev.Status, results.ErrInvalid)
	}
	u := results.Update{ID: ev.JobId, Status: st, Attempt: ev.Attempt, Time: time.Unix(0, ev.TimeUnixNano), JobsSeq: ev.JobsSeq,
		Tenant: ev.Tenant, Model: ev.Model, Version: ev.Version, CallbackURL: ev.CallbackUrl}
	if ev.CreatedUnixNano != 0 {
		u.CreatedAt = time.Unix(0, ev.CreatedUnixNano)
	}
	if err := u.Check(); err != nil {
		return results.Update{}, err
	}
	if ev.Error != nil {
		u.Error = &results.Error{Code: ev.Error.Code, Message: ev.Error.Message}
	}
	if st == results.Succeeded {
		id := ev.RequestId
		if id == "" {
			id = ev.JobId
		}
		body, err := wire.ResponseJSON(ev.Model, ev.Version, id, ev.Outputs)
		if err != nil {
			u.Status, u.Error = results.Failed, &results.Error{Code: codeBadOutput, Message: err.Error()}
		}
		u.Result, u.ResultEncoded = body, true // wire.ResponseJSON writes valid JSON (fuzzed against encoding/json)
	}
	return u, nil
}
