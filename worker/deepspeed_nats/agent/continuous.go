package agent

// Continuous batching on the Python runner: a Process whose model batches
// generate sequences at every decoding step takes several batches at once.
// One router goroutine per runner reads its frames and hands each batch's
// tokens and results to the Run that sent the batch; the runner sends a
// partial BatchResult the moment one sequence ends, so the agent ends that
// job (its terminal event, its done mark) without waiting for the batch.

import (
	"context"
	"fmt"
	"time"

	"github.com/inferq/inferq/schemas/inferqpb"
)

// JobStreamer is implemented by runners that end a batch's jobs one by one:
// done gets each job's result as soon as its sequence ends, before Run
// returns the whole batch's result. Continuous says whether it does so.
type JobStreamer interface {
	RunJobs(ctx context.Context, b *inferqpb.Batch, emit func(*inferqpb.TokenChunk) error, done func(*inferqpb.JobResult)) (*inferqpb.BatchResult, error)
	Continuous() bool
}

// route is one batch in a shared runner: frames for it, until done.
type route struct {
	pr     *proc
	jobs   map[string]bool
	frames chan *inferqpb.RunnerFrame
	dead   chan struct{} // closed when the runner's frames end
	done   chan struct{} // closed when Run returns
}

// Continuous reports whether the model runs with continuous batching.
func (p *Process) Continuous() bool { return p.cont }

// routeFrames hands pr's frames to the batches' routes until pr's frames
// end, then tells every route of pr that the runner is gone.
func (p *Process) routeFrames(pr *proc) {
	for f := range pr.frames {
		var batchID string
		switch x := f.Frame.(type) {
		case *inferqpb.RunnerFrame_Token:
			p.runMu.Lock()
			batchID = p.jobBatch[x.Token.JobId]
			p.runMu.Unlock()
		case *inferqpb.RunnerFrame_Result:
			batchID = x.Result.BatchId
		case *inferqpb.RunnerFrame_Error:
			batchID = x.Error.BatchId
		}
		p.runMu.Lock()
		rt := p.routes[batchID]
		p.runMu.Unlock()
		if rt == nil || rt.pr != pr {
			p.log.Warn("discarding runner frame for no running batch", "batch", batchID, "frame", fmt.Sprintf("%T", f.Frame))
			continue
		}
		select {
		case rt.frames <- f:
		case <-rt.done:
		}
	}
	p.runMu.Lock()
	defer p.runMu.Unlock()
	for _, rt := range p.routes {
		if rt.pr == pr {
			close(rt.dead)
		}
	}
}

// RunJobs sends a batch to the shared runner and returns its result; done
// gets each job's result that the runner sends before the batch ends. Other
// batches run beside it. When ctx ends it cancels the batch's jobs and waits
// up to CancelGrace; a runner that crashed or hung is killed, and every
// batch in it fails.
func (p *Process) RunJobs(ctx context.Context, b *inferqpb.Batch, emit func(*inferqpb.TokenChunk) error, done func(*inferqpb.JobResult)) (*inferqpb.BatchResult, error) {
	if !p.cont {
		return p.Run(ctx, b, emit)
	}
	ctx, cancel := p.bind(ctx)
	defer cancel()
	rt, err := p.admit(ctx, b)
	if err != nil {
		return nil, err
	}
	defer p.leave(b, rt)
	var (
		cause  error
		cdone  = ctx.Done()
		grace  <-chan time.Time
		ended  = map[string]*inferqpb.JobResult{}
		stopAt = func(why error) {
			cause, cdone = why, nil
			for _, j := range b.Jobs {
				_ = rt.pr.send(&inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Cancel{Cancel: &inferqpb.Cancel{BatchId: b.Id, JobId: j.Id}}}, p.opt.HealthTimeout)
			}
			grace = time.After(p.opt.CancelGrace)
		}
	)
	for {
		select {
		case f := <-rt.frames:
			switch x := f.Frame.(type) {
			case *inferqpb.RunnerFrame_Token:
				if cause == nil && rt.jobs[x.Token.JobId] {
					if err := emit(x.Token); err != nil {
						stopAt(fmt.Errorf("emit token: %w", err))
					}
				}
			case *inferqpb.RunnerFrame_Result:
				if x.Result.Partial {
					for _, jr := range x.Result.Jobs {
						if rt.jobs[jr.GetJobId()] && ended[jr.JobId] == nil {
							ended[jr.JobId] = jr
							if cause == nil && done != nil {
								done(jr)
							}
						}
					}
					continue
				}
				p.resetFailures()
				if cause != nil {
					return nil, cause
				}
				return x.Result, nil
			case *inferqpb.RunnerFrame_Error:
				p.resetFailures()
				if cause != nil {
					return nil, cause
				}
				return nil, batchError(p.model.Name, b.Id, x.Error.GetError())
			}
		case <-rt.dead:
			why := p.lost(rt.pr, "exited mid-batch")
			if cause != nil {
				return nil, cause
			}
			return nil, fmt.Errorf("runner %s %s", p.model.Name, why)
		case <-cdone:
			stopAt(context.Cause(ctx))
		case <-grace:
			p.log.Warn("runner did not wind down a cancelled batch in time; killing it", "batch", b.Id, "grace", p.opt.CancelGrace)
			p.lost(rt.pr, "killed after cancel grace")
			return nil, cause
		}
	}
}

// admit starts the runner if needed, registers b's route and sends b.
func (p *Process) admit(ctx context.Context, b *inferqpb.Batch) (*route, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.life.Err() != nil {
		return nil, ErrProcessClosed
	}
	pr, err := p.ensure(ctx)
	if err != nil {
		return nil, err
	}
	rt := &route{pr: pr, jobs: make(map[string]bool, len(b.Jobs)), frames: make(chan *inferqpb.RunnerFrame, 64),
		dead: make(chan struct{}), done: make(chan struct{})}
	p.runMu.Lock()
	if p.routes == nil {
		p.routes, p.jobBatch, p.routed = map[string]*route{}, map[string]string{}, map[*proc]bool{}
	}
	if !p.routed[pr] {
		p.routed[pr] = true
		go p.routeFrames(pr)
	}
	if old := p.routes[b.Id]; old != nil {
		p.runMu.Unlock()
		return nil, fmt.Errorf("runner %s: batch %s is already running", p.model.Name, b.Id)
	}
	p.routes[b.Id] = rt
	for _, j := range b.Jobs {
		rt.jobs[j.Id] = true
		p.jobBatch[j.Id] = b.Id
	}
	p.runMu.Unlock()
	if err := pr.send(&inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Batch{Batch: b}}, p.opt.HealthTimeout); err != nil {
		p.leave(b, rt)
		p.crashed(pr, "batch not accepted")
		return nil, fmt.Errorf("runner %s: send batch: %w", p.model.Name, err)
	}
	return rt, nil
}

// leave forgets b's route.
func (p *Process) leave(b *inferqpb.Batch, rt *route) {
	close(rt.done)
	p.runMu.Lock()
	defer p.runMu.Unlock()
	if p.routes[b.Id] == rt {
		delete(p.routes, b.Id)
	}
	for _, j := range b.Jobs {
		if p.jobBatch[j.Id] == b.Id {
			delete(p.jobBatch, j.Id)
		}
	}
	select {
	case <-rt.dead:
		delete(p.routed, rt.pr) // its router has ended
	default:
	}
}

// lost kills a shared runner once, whichever of its batches notices first.
func (p *Process) lost(pr *proc, what string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != pr {
		<-pr.exited
		return fmt.Sprintf("%s (%v)", what, pr.waitErr)
	}
	return p.crashed(pr, what)
}

func (p *Process) resetFailures() {
	p.mu.Lock()
	p.failures = 0
	p.mu.Unlock()
}

// cancelShared sends a job's Cancel to the shared runner; false when the
// job is not running there.
func (p *Process) cancelShared(jobID string) bool {
	p.runMu.Lock()
	batch := p.jobBatch[jobID]
	rt := p.routes[batch]
	p.runMu.Unlock()
	if rt == nil {
		return false
	}
	_ = rt.pr.send(&inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Cancel{Cancel: &inferqpb.Cancel{BatchId: batch, JobId: jobID}}}, p.opt.HealthTimeout)
	return true
}
