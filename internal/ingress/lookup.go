package ingress

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// A job has no record until the first event about it: the ingress writes
// none when it accepts a job, because the job stored in INFERQ_JOBS already
// proves that (one stored write per job fewer). Until then the job reads as
// queued, from this ingress's memory of what it accepted, or else from the
// stream, where the job's subject ends in its id.

// record returns job id's record, or the queued record of a job accepted but
// not yet reported; results.ErrNotFound if there is no such job.
func (i *Ingress) record(ctx context.Context, id string) (*results.Record, error) {
	rec, err := i.opt.Store.Get(ctx, id)
	if errors.Is(err, results.ErrNotFound) {
		return i.queued(ctx, id)
	}
	return rec, err
}

// wait waits on job id until done, from what this ingress knows of it: a
// job it accepted is waited on from its queued record, which a store that
// hears of every change (results.FromWaiter) takes without a first read
// while no change of the job has come; any other job through Store.Wait.
func (i *Ingress) wait(ctx context.Context, id string, done func(*results.Record) bool) (*results.Record, error) {
	if fw, ok := i.opt.Store.(results.FromWaiter); ok {
		if start, ok := i.accepts.get(id); ok {
			return fw.WaitFrom(ctx, id, done, start)
		}
	}
	return i.opt.Store.Wait(ctx, id, done, i.orQueued(id))
}

// orQueued is the fallback of a Store.Wait on job id.
func (i *Ingress) orQueued(id string) results.Fallback {
	return func(ctx context.Context) (*results.Record, error) { return i.queued(ctx, id) }
}

// queued is the record of accepted job id before its first event.
func (i *Ingress) queued(ctx context.Context, id string) (*results.Record, error) {
	if rec, ok := i.accepts.get(id); ok {
		return rec, nil
	}
	return i.stored(ctx, id)
}

// stored is the queued record of job id as INFERQ_JOBS holds it (its latest
// attempt); results.ErrNotFound if the stream has no such job.
func (i *Ingress) stored(ctx context.Context, id string) (*results.Record, error) {
	stream, err := i.jobsStream(ctx)
	if err != nil {
		return nil, err
	}
	msg, err := stream.GetLastMsgForSubject(ctx, i.opt.Topology.JobLookupSubject(id))
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return nil, fmt.Errorf("job %s: %w", id, results.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("job %s: read %s: %w", id, i.opt.Topology.JobsStream(), err)
	}
	job := &inferqpb.Job{}
	if err := proto.Unmarshal(msg.Data, job); err != nil || job.Id != id {
		return nil, fmt.Errorf("job %s: stored copy does not decode as it: %w", id, results.ErrNotFound)
	}
	return queuedRecord(job, msg.Sequence), nil
}

// queuedRecord is job as accepted, with jobsSeq its place in INFERQ_JOBS (0
// if not known yet).
func queuedRecord(job *inferqpb.Job, jobsSeq uint64) *results.Record {
	rec := &results.Record{ID: job.Id, Tenant: job.Tenant, Model: job.Model, Version: job.Version,
		Status: results.Queued, CreatedAt: time.Unix(0, job.CreatedUnixNano).UTC(), Attempts: job.Attempt, JobsSeq: jobsSeq}
	if job.CallbackUrl != "" {
		rec.Webhook = &results.Webhook{URL: job.CallbackUrl}
	}
	return rec
}

// jobsStream is INFERQ_JOBS's handle, read once (its info call is a round
// trip) and kept.
func (i *Ingress) jobsStream(ctx context.Context) (natsjs.Stream, error) {
	i.jobsMu.Lock()
	defer i.jobsMu.Unlock()
	if i.jobs != nil {
		return i.jobs, nil
	}
	s, err := i.opt.JS.Stream(ctx, i.opt.Topology.JobsStream())
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", i.opt.Topology.JobsStream(), err)
	}
	i.jobs = s
	return s, nil
}

// acceptedJobs remembers the queued records of the jobs this ingress
// accepted lately, so that the usual poll right after a 202 costs no read of
// the stream. Two generations of at most perGen each: memory is bounded,
// and a job is remembered for at least perGen acceptances.
type acceptedJobs struct {
	mu        sync.Mutex
	perGen    int
	cur, prev map[string]*results.Record
}

func (a *acceptedJobs) add(rec *results.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil || len(a.cur) >= a.perGen {
		a.prev, a.cur = a.cur, make(map[string]*results.Record, a.perGen)
	}
	a.cur[rec.ID] = rec
}

func (a *acceptedJobs) get(id string) (*results.Record, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec, ok := a.cur[id]
	if !ok {
		rec, ok = a.prev[id]
	}
	if !ok {
		return nil, false
	}
	cp := *rec // callers may not change what the next caller reads
	return &cp, true
}

// settleFor bounds how long the ingress tries to learn whether a job whose
// publish failed was stored after all.
var settleFor = 5 * time.Second

// publishTry bounds one publish attempt. An acknowledgement normally comes
// in milliseconds; one still missing after a second was most likely sent
// to a server that froze before it was dropped, and waiting out nats.go's
// 5 s default only delays the re-publish that settles it on another node.
var publishTry = time.Second

// publishJob stores job on subject and returns its sequence in INFERQ_JOBS.
// A publish can fail without saying whether the server stored the job (a
// timeout, a dropped connection, a frozen node). Answering 503 then would
// make a client that retries run the job twice, so an unknown outcome is
// settled: the job is published again under the same Nats-Msg-Id, which
// JetStream stores at most once within its duplicate window, until one
// publish is acknowledged or settleFor has passed, and then the job is
// looked up by its subject. Only a job found nowhere is refused.
func (i *Ingress) publishJob(ctx context.Context, subject string, job *inferqpb.Job) (uint64, error) {
	tctx, tcancel := context.WithTimeout(ctx, publishTry)
	ack, err := jetstream.Publish(tctx, i.opt.JS, subject, job, job.Id)
	tcancel()
	if err == nil {
		return ack.Sequence, nil
	}
	if refused(err) {
		return 0, err
	}
	log := i.opt.Log.With("job", job.Id, "model", job.Model)
	log.Warn("job publish outcome unknown; publishing it again under the same id", "err", err)
	// The client may be gone; the job may still be stored, so finish.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleFor)
	defer cancel()
	for wait := 50 * time.Millisecond; sctx.Err() == nil; wait = min(2*wait, time.Second) {
		select {
		case <-sctx.Done():
		case <-time.After(wait):
		}
		actx, acancel := context.WithTimeout(sctx, time.Second)
		ack, err = jetstream.Publish(actx, i.opt.JS, subject, job, job.Id)
		acancel()
		if err == nil {
			log.Info("job publish settled: stored", "duplicate", ack.Duplicate)
			return ack.Sequence, nil
		}
		if refused(err) {
			break // refused now; an earlier try may still have stored it
		}
	}
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer lcancel()
	if rec, lerr := i.stored(lctx, job.Id); lerr == nil && rec.Attempts == job.Attempt {
		log.Info("job publish settled: found in the stream")
		return rec.JobsSeq, nil
	}
	return 0, fmt.Errorf("job %s: not stored as far as can be told: %w", job.Id, err)
}

// refused reports whether a publish error means the job was not stored:
// the server answered no, or the message never left this process.
func refused(err error) bool {
	var api *natsjs.APIError
	return errors.As(err, &api) || errors.Is(err, natsjs.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) || errors.Is(err, nats.ErrInvalidMsg)
}
