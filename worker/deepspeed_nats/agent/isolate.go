package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/wire"
	"github.com/inferq/inferq/pkg/tensor"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// outcome is how each job of a batch ended in one delivery.
type outcome struct {
	results map[string]*inferqpb.JobResult // by job id: outputs, or the runner's error for that job
	poison  map[string]error               // jobs that failed alone once their batch was split
}

func (o *outcome) add(res *inferqpb.BatchResult) {
	for _, jr := range res.GetJobs() {
		if jr != nil {
			o.results[jr.JobId] = jr
		}
	}
}

// execute runs a batch. When the runner fails the whole batch (an error, a
// crash), one bad job may be the cause, so the batch is split in halves and
// the parts that fail are split again, level by level, until the failing
// jobs stand alone: they end failed ("poison") and their neighbours'
// results are kept. If every part of the first split fails too, the fault
// is the model's or the runner's, not one job's: execute returns the
// batch's error and the caller retries the batch (retryOrFail). Isolation
// happens within this delivery, on this worker, so the batch message is
// still acked only after every job of it has a terminal event.
//
// The cost is at most 2·log2(n) extra runs per poison job; a fault that is
// not a job's costs two extra runs.
func (a *Agent) execute(ctx context.Context, m *config.Model, r Runner, b *inferqpb.Batch, emit func(*inferqpb.TokenChunk) error, pub *lifecycle.Publisher, cb *contBatch, log *slog.Logger) (*outcome, error) {
	out := &outcome{results: make(map[string]*inferqpb.JobResult, len(b.Jobs)), poison: map[string]error{}}
	res, err := a.run(ctx, m, r, b, emit, cb)
	if err == nil {
		out.add(res)
		return out, nil
	}
	// A job that already ended must not run again in a part: such a batch
	// is retried whole, and its redelivery skips the jobs that ended.
	if len(b.Jobs) < 2 || !isolatable(ctx, err, pub) || !contiguous(b) || cb.anyEnded() {
		return nil, err
	}
	whole := err
	log.Warn("batch failed; splitting it to isolate the failing job", "err", err)
	a.stats[m.Name].splits.Add(1)
	level := halves(span{0, len(b.Jobs)})
	succeeded := false
	for len(level) > 0 {
		var next []span
		failed := 0
		for _, p := range level {
			sub, err := subBatch(b, p.lo, p.hi)
			if err != nil {
				log.Error("cannot split batch; failing it as a whole", "err", err)
				return nil, whole
			}
			res, err := a.run(ctx, m, r, sub, emit, cb)
			if err == nil {
				out.add(res)
				succeeded = true
				continue
			}
			if !isolatable(ctx, err, pub) {
				return nil, err
			}
			failed++
			if p.hi-p.lo == 1 {
				out.poison[b.Jobs[p.lo].Id] = err
				continue
			}
			next = append(next, halves(p)...)
		}
		if !succeeded && failed == len(level) {
			log.Warn("every part of the split batch failed; retrying it as a whole", "err", whole)
			return nil, whole
		}
		level = next
	}
	return out, nil
}

// run is one runner call, counted in the metrics.
func (a *Agent) run(ctx context.Context, m *config.Model, r Runner, b *inferqpb.Batch, emit func(*inferqpb.TokenChunk) error, cb *contBatch) (*inferqpb.BatchResult, error) {
	var (
		res *inferqpb.BatchResult
		err error
	)
	if js, ok := r.(JobStreamer); ok && cb != nil {
		res, err = js.RunJobs(ctx, b, emit, cb.jobDone)
	} else {
		res, err = r.Run(ctx, b, emit)
	}
	if err != nil {
		a.opt.Own.BatchesFailed.WithLabelValues(m.Name).Inc()
		return nil, err
	}
	return res, nil
}

// isolatable is false when a failure says nothing about the batch's jobs:
// shutdown, a runner that cannot start, or a broken NATS connection.
func isolatable(ctx context.Context, err error, pub *lifecycle.Publisher) bool {
	return ctx.Err() == nil && pub.Err() == nil &&
		!errors.Is(err, ErrProcessClosed) && !errors.Is(err, ErrRunnerUnavailable)
}

// span is the jobs [lo, hi) of a batch.
type span struct{ lo, hi int }

func halves(s span) []span {
	mid := s.lo + (s.hi-s.lo)/2
	return []span{{s.lo, mid}, {mid, s.hi}}
}

// contiguous reports whether the jobs' rows follow each other from row 0,
// as the batcher packs them; only such a batch can be cut by jobs.
func contiguous(b *inferqpb.Batch) bool {
	row := int64(0)
	for _, j := range b.Jobs {
		if j.RowStart != row || j.RowEnd < j.RowStart {
			return false
		}
		row = j.RowEnd
	}
	return true
}

// subBatch is jobs [lo, hi) of b: their rows of every input and mask, and
// the jobs with rows counted from the part's start. Padded dimensions keep
// the whole batch's size; each job's input_shapes still crop its outputs.
func subBatch(b *inferqpb.Batch, lo, hi int) (*inferqpb.Batch, error) {
	r0, r1 := b.Jobs[lo].RowStart, b.Jobs[hi-1].RowEnd
	sub := &inferqpb.Batch{Id: fmt.Sprintf("%s.%d-%d", b.Id, lo, hi), Model: b.Model, Version: b.Version,
		CreatedUnixNano: b.CreatedUnixNano, Jobs: make([]*inferqpb.BatchJob, 0, hi-lo)}
	for _, j := range b.Jobs[lo:hi] {
		c := proto.CloneOf(j)
		c.RowStart -= r0
		c.RowEnd -= r0
		sub.Jobs = append(sub.Jobs, c)
	}
	rows := []tensor.Range{{Start: r0, End: r1}}
	cut := func(ts []*inferqpb.Tensor) ([]*inferqpb.Tensor, error) {
		out := make([]*inferqpb.Tensor, 0, len(ts))
		for _, t := range ts {
			parts, err := tensor.Split(wire.FromProto(t), rows)
			if err != nil {
				return nil, fmt.Errorf("batch %s: cut rows [%d,%d) of %q: %w", b.Id, r0, r1, t.Name, err)
			}
			out = append(out, wire.ToProto(parts[0]))
		}
		return out, nil
	}
	var err error
	if sub.Inputs, err = cut(b.Inputs); err != nil {
		return nil, err
	}
	if sub.Masks, err = cut(b.Masks); err != nil {
		return nil, err
	}
	return sub, nil
}
