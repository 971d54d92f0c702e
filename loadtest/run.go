package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// A target is one system under test: inferq over HTTP, or a peer pipeline.
type target interface {
	Name() string
	// Do runs one job to its verified answer, or to an error kind. start is
	// when the job was meant to be sent; ctx bounds the job.
	Do(ctx context.Context, j job, start time.Time) outcome
	Close() error
}

// runTarget drives t with the workload until the duration or the job count
// is reached, waits for the jobs in flight, and summarizes.
func runTarget(ctx context.Context, t target, w *workload, o options, log io.Writer) Summary {
	begin := time.Now()
	rec := newRecorder(begin)
	stop := startProgress(rec, t.Name(), log)
	if o.mode == "open" {
		openLoop(ctx, t, w, o, rec)
	} else {
		closedLoop(ctx, t, w, o, rec)
	}
	stop()
	s := rec.summary()
	s.System, s.Mode, s.Scenario, s.Models, s.Clients = t.Name(), o.mode, o.scenario, o.models, o.clients
	if o.mode == "open" {
		s.Clients, s.Rate = 0, o.rate
	}
	return s
}

// budget hands out at most n jobs (unbounded when n is 0).
type budget struct {
	n     int64
	taken atomic.Int64
}

func (b *budget) take() bool { return b.n == 0 || b.taken.Add(1) <= b.n }

// closedLoop runs o.clients clients; each sends a job, waits for its answer
// and sends the next. The scenario's shape decides how many are active.
func closedLoop(ctx context.Context, t target, w *workload, o options, rec *recorder) {
	jobs := &budget{n: int64(o.maxJobs)}
	until := rec.begin.Add(o.duration)
	var wg sync.WaitGroup
	for i := range o.clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(o.seed, uint64(i)))
			for ctx.Err() == nil {
				now := time.Now()
				if !now.Before(until) {
					return
				}
				if i >= w.activeClients(o.clients, now.Sub(rec.begin)) {
					sleep(ctx, 5*time.Millisecond) // resting while the load is below peak
					continue
				}
				if !jobs.take() {
					return
				}
				rec.sent.Add(1)
				rec.record(now, runJob(ctx, t, w.next(r), now, o.jobTimeout))
			}
		})
	}
	wg.Wait()
}

// openLoop sends jobs at the scenario's rate whatever the answers do. Each
// job's latency counts from its intended send time, so a stalled system
// shows its stall in every job that should have been sent meanwhile rather
// than hiding it (coordinated omission). At most o.maxInFlight jobs are
// outstanding; a send beyond that waits for a slot, late.
func openLoop(ctx context.Context, t target, w *workload, o options, rec *recorder) {
	jobs := &budget{n: int64(o.maxJobs)}
	r := rand.New(rand.NewPCG(o.seed, 0))
	slots := make(chan struct{}, o.maxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	next := rec.begin
	for next.Sub(rec.begin) < o.duration && jobs.take() {
		if !sleep(ctx, time.Until(next)) {
			return
		}
		intended, j := next, w.next(r)
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		rec.sent.Add(1)
		wg.Go(func() {
			defer func() { <-slots }()
			rec.record(intended, runJob(ctx, t, j, intended, o.jobTimeout))
		})
		rate := o.rate * w.shape(intended.Sub(rec.begin))
		next = next.Add(time.Duration(float64(time.Second) / rate))
	}
}

// runJob runs one job under its timeout and names how a cut-short job ended:
// lost when the job timed out, interrupted when the run was stopped.
func runJob(ctx context.Context, t target, j job, start time.Time, timeout time.Duration) outcome {
	jctx, cancel := context.WithDeadline(ctx, start.Add(timeout))
	defer cancel()
	out := t.Do(jctx, j, start)
	if out.kind != "" && jctx.Err() != nil {
		out.detail = fmt.Sprintf("%s (%s)", out.kind, out.detail)
		if ctx.Err() != nil {
			out.kind = errInterrupted
		} else if errors.Is(jctx.Err(), context.DeadlineExceeded) {
			out.kind = errLost
		}
	}
	return out
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// startProgress prints a line on log each second until the returned stop
// is called; stop waits for the printer to end.
func startProgress(rec *recorder, name string, log io.Writer) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				p := rec.progress(now)
				fmt.Fprintf(log, "%-9s %4.0fs  sent %7d  done %7d  in flight %5d  last second %6d jobs, p99 %8.2f ms  errors %d\n",
					name, p.elapsed.Seconds(), p.sent, p.done, p.sent-p.done, p.lastJobs, p.lastP99, p.errors)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
