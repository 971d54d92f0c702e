package agent

// The agent's side of continuous batching. A continuous model's capacity is
// in sequences (batching.max_num_seqs), not batches: the agent fetches a
// batch whenever a sequence slot is free, runs many batches at once in the
// one runner, and tells the batchers how many slots are free so that they
// close a batch at that size.
//
// Per-job completion over a per-batch acknowledgement: a batch message holds
// several jobs and JetStream acks whole messages. When a job's sequence ends
// before its batch does, the agent publishes that job's terminal event at
// once (after its tokens are stored), then writes a done mark
// <batch>.<job> in the SeqsBucket, and frees its slot. The batch message is
// acked when its last job has ended. If the worker or runner dies first,
// JetStream redelivers the batch; the agent then drops the jobs that have a
// done mark and runs only the others, so every job ends exactly once. A
// crash between a job's event and its mark reruns that job; its terminal
// event then has the same Nats-Msg-Id and JetStream drops it.

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// seqSlots counts a continuous model's sequence slots in use.
type seqSlots struct {
	mu    sync.Mutex
	used  int
	max   int
	freed chan struct{} // signalled when slots free up
	// onFree is called after slots free up (it tells the batchers).
	onFree func(free int)
	// gauge, if set, is called with the slots used and free on a change.
	gauge func(used, free int)
}

func newSeqSlots(max int, onFree func(int)) *seqSlots {
	return &seqSlots{max: max, freed: make(chan struct{}, 1), onFree: onFree}
}

func (s *seqSlots) take(n int) {
	s.mu.Lock()
	s.used += n
	used, free := s.used, max(s.max-s.used, 0)
	s.mu.Unlock()
	if s.gauge != nil {
		s.gauge(used, free)
	}
}

func (s *seqSlots) release(n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.used = max(0, s.used-n)
	used, free := s.used, s.max-s.used
	s.mu.Unlock()
	if s.gauge != nil {
		s.gauge(used, max(free, 0))
	}
	select {
	case s.freed <- struct{}{}:
	default:
	}
	if s.onFree != nil {
		s.onFree(max(free, 0))
	}
}

// free is how many more sequences the runner takes now.
func (s *seqSlots) free() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.max-s.used, 0)
}

// running is how many sequences are in hand.
func (s *seqSlots) running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// wait blocks until a slot is free; false when ctx ended.
func (s *seqSlots) wait(ctx context.Context) bool {
	for s.free() == 0 {
		select {
		case <-ctx.Done():
			return false
		case <-s.freed:
		}
	}
	return ctx.Err() == nil
}

// pullSeqs is pull for a continuous model: it fetches a batch whenever a
// sequence slot is free and runs the batches side by side.
func (a *Agent) pullSeqs(ctx context.Context, m *config.Model, r Runner, cons natsjs.Consumer, slots *seqSlots, log *slog.Logger) {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots.take(0) // sets the gauges
	for slots.wait(ctx) {
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
		a.notifySlots(m, "", slots.free())
		for msg := range msgs.Messages() {
			n := 1
			if b, err := lifecycle.DecodeBatch(msg.Data()); err == nil {
				n = max(len(b.Jobs), 1)
			}
			slots.take(n)
			wg.Go(func() { a.handle(ctx, m, r, msg, log, slots, n) })
		}
		cancel()
	}
}

// notifySlots is notifyBatchers for a continuous worker: it counts as idle
// (a partial batch may come: it joins the running decode loop at the next
// step) while a slot is free, and says how many are.
func (a *Agent) notifySlots(m *config.Model, batchID string, free int) {
	msg := &nats.Msg{Subject: a.opt.Topology.TakenSubject(m.Name), Data: []byte(batchID),
		Header: nats.Header{jetstream.HeaderWorker: []string{a.opt.Name}}}
	msg.Header.Set(jetstream.HeaderFreeSlots, strconv.Itoa(free))
	if free > 0 {
		msg.Header.Set(jetstream.HeaderIdle, "1")
	}
	_ = a.opt.JS.Conn().PublishMsg(msg)
}

// contBatch is one continuously batched batch in hand: the jobs that ended
// before it did.
type contBatch struct {
	a       *Agent
	ctx     context.Context
	m       *config.Model
	b       *inferqpb.Batch
	pub     *lifecycle.Publisher
	running func()
	slots   *seqSlots
	log     *slog.Logger

	mu    sync.Mutex
	jobs  map[string]*inferqpb.BatchJob
	ended map[string]bool
}

// anyEnded reports whether some job ended before the batch (false on nil).
func (c *contBatch) anyEnded() bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ended) > 0
}

// remaining is jobs less those that ended before the batch.
func (c *contBatch) remaining(jobs []*inferqpb.BatchJob) []*inferqpb.BatchJob {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*inferqpb.BatchJob, 0, len(jobs))
	for _, j := range jobs {
		if !c.ended[j.Id] {
			out = append(out, j)
		}
	}
	return out
}

// jobDone ends one job whose sequence ended: its terminal event, stored
// after its tokens, then its done mark and its slot. A job that failed
// otherwise than by a cancel is left to finish, which dead-letters it.
func (c *contBatch) jobDone(jr *inferqpb.JobResult) {
	a := c.a
	j := c.jobs[jr.GetJobId()]
	if j == nil || (jr.Error != nil && jr.Error.Code != lifecycle.CodeCancelled) {
		return
	}
	c.running() // its running event goes first
	now := a.now()
	var ev lifecycle.Event
	if jr.Error != nil {
		ev = lifecycle.CancelledEvent(c.b, j, a.opt.Name, now, jr.Error)
	} else {
		ev = lifecycle.SucceededEvent(c.b, j, a.opt.Name, now, jr.Outputs)
	}
	jctx := jobContext(c.ctx, j)
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(jctx, carrier)
	if len(carrier) > 0 {
		ev.Msg.TraceContext = carrier
	}
	msgs, err := lifecycle.EventsMsgs(jctx, a.opt.Topology, c.m.Name, []lifecycle.Event{ev}, int(a.opt.JS.Conn().MaxPayload()))
	if err != nil {
		c.log.Warn("job event not built; it ends with its batch", "job", j.Id, "err", err)
		return
	}
	for _, msg := range msgs {
		c.pub.Send(msg)
	}
	if err := c.pub.Wait(c.ctx); err != nil {
		c.log.Warn("job event not stored; it ends with its batch", "job", j.Id, "err", err)
		return
	}
	a.markDone(c.ctx, c.b.Id, j.Id, c.log)
	c.mu.Lock()
	c.ended[j.Id] = true
	c.mu.Unlock()
	st := a.stats[c.m.Name]
	if ev.Status() == lifecycle.Succeeded {
		st.succeeded.Add(1)
	} else {
		st.failed.Add(1)
	}
	c.slots.release(1)
}

// seqsKey is a job's done-mark key.
func seqsKey(batchID, jobID string) string { return sanitizeKey(batchID) + "." + sanitizeKey(jobID) }

// seqsKV is the done-mark bucket, looked up once; nil when it is missing
// (an older deployment): redelivered batches then run whole, and their
// ended jobs' repeated events are dropped as duplicates.
func (a *Agent) seqsKV(ctx context.Context) natsjs.KeyValue {
	a.seqsOnce.Do(func() {
		kv, err := a.opt.JS.KeyValue(ctx, a.opt.Topology.SeqsBucket())
		if err != nil {
			a.opt.Log.Warn("no sequences bucket: a redelivered batch reruns jobs that ended", "bucket", a.opt.Topology.SeqsBucket(), "err", err)
			return
		}
		a.seqs = kv
	})
	return a.seqs
}

func (a *Agent) markDone(ctx context.Context, batchID, jobID string, log *slog.Logger) {
	kv := a.seqsKV(ctx)
	if kv == nil {
		return
	}
	if _, err := kv.Put(ctx, seqsKey(batchID, jobID), []byte(a.opt.Name)); err != nil {
		log.Warn("done mark not stored; a redelivery reruns this job", "job", jobID, "err", err)
	}
}

// unfinished is b's jobs without a done mark: on a redelivery, those that
// have not ended yet.
func (a *Agent) unfinished(ctx context.Context, b *inferqpb.Batch, log *slog.Logger) []*inferqpb.BatchJob {
	kv := a.seqsKV(ctx)
	if kv == nil {
		return b.Jobs
	}
	out := make([]*inferqpb.BatchJob, 0, len(b.Jobs))
	for _, j := range b.Jobs {
		if _, err := kv.Get(ctx, seqsKey(b.Id, j.Id)); err == nil {
			log.Info("job ended in an earlier delivery; skipped", "job", j.Id)
			continue
		}
		out = append(out, j)
	}
	return out
}
