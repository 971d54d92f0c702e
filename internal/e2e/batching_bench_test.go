package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/batcher"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
	"github.com/inferq/inferq/worker/deepspeed_nats/agent"
)

// simgpuBench is a whole in-process stack serving only simgpu (a=20ms,
// b=1ms, max_batch_size 32, max_queue_delay 2ms) with `workers` worker agents.
type simgpuBench struct {
	cfg   *config.Config
	n     *testutil.NATS
	topo  jetstream.Topology
	reg   *prometheus.Registry
	store results.Store
	seq   int
}

// gate is the batcher's MaxWaitingBatches (0: the default, negative: off).
// inflight is each worker's max_inflight.
func startSimgpuBench(b *testing.B, workers, gate, inflight int) *simgpuBench {
	b.Helper()
	n := testutil.StartNATS(b)
	cfg, err := config.Load("")
	if err != nil {
		b.Fatal(err)
	}
	cfg.NATS.URL = n.URL
	cfg.Log.Level = "error"
	m, _ := cfg.Model("simgpu")
	m.Runner.Params = map[string]any{"a": "20ms", "b": "1ms"}
	m.Batching.MaxBatchSize = 32
	m.Batching.MaxQueueDelay = config.D(2 * time.Millisecond)
	m.Queue.MaxQueued = 1 << 30
	m.Queue.DefaultTimeout = 0
	cfg.Models = []config.Model{*m}
	cfg.Worker.MaxInflight = inflight
	if err := cfg.Finish(); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- stack.Run(ctx, stack.Options{Config: &cfg, Conn: n.Conn, IngressListener: ln,
			Components: stack.Components{Ingress: true, Worker: true, ResultSvc: true},
			Log:        log, Registry: reg, Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		b.Fatalf("stack: %v", err)
	}
	topo := stack.Topology(&cfg)
	var wg sync.WaitGroup
	bt := batcher.New(batcher.Options{Models: cfg.Models, Topology: topo, JS: n.JS, MaxPayload: int(n.Conn.MaxPayload()),
		Log: log, Metrics: obs.NewMetrics(prometheus.NewRegistry()), MaxWaitingBatches: gate})
	wg.Go(func() { _ = bt.Run(ctx) })
	for w := 1; w < workers; w++ {
		a := agent.New(agent.Options{Models: cfg.Models, Topology: topo, JS: n.JS, Name: fmt.Sprintf("bench-w%d", w), MaxInflight: inflight,
			Log: log, Metrics: obs.NewMetrics(prometheus.NewRegistry())})
		wg.Go(func() { _ = a.Run(ctx) })
	}
	store, err := stack.OpenStore(ctx, &cfg, n.JS)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		<-done
		wg.Wait()
		store.Close()
	})
	return &simgpuBench{cfg: &cfg, n: n, topo: topo, reg: reg, store: store}
}

// prepare writes the queued records of n jobs, as ingress does before it
// publishes, and returns the job messages ready to publish.
func (s *simgpuBench) prepare(b *testing.B, n int) []*nats.Msg {
	b.Helper()
	msgs := make([]*nats.Msg, n)
	ctx := context.Background()
	for i := range msgs {
		s.seq++
		id := fmt.Sprintf("bench-%07d", s.seq)
		if err := s.store.Create(ctx, &results.Record{ID: id, Tenant: "default", Model: "simgpu", Version: "1",
			Status: results.Queued, CreatedAt: time.Now(), Attempts: 1}); err != nil {
			b.Fatal(err)
		}
		job := &inferqpb.Job{Id: id, Tenant: "default", Model: "simgpu", Version: "1", Priority: 1, Attempt: 1,
			Inputs: []*inferqpb.Tensor{{Name: "INPUT0", Datatype: "INT32", Shape: []int64{1, 4}, Data: make([]byte, 16)}}}
		msg, err := jetstream.NewMsg(ctx, s.topo.JobSubject("simgpu", 1, id), job, id)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = msg
	}
	return msgs
}

// stamp sets the job's creation time to now, as ingress does.
func stamp(msg *nats.Msg) {
	job := &inferqpb.Job{}
	_ = proto.Unmarshal(msg.Data, job)
	job.CreatedUnixNano = time.Now().UnixNano()
	msg.Data, _ = proto.Marshal(job)
}

// finished is inferq_jobs_finished_total for simgpu, all statuses.
func (s *simgpuBench) finished(b *testing.B) (total, succeeded float64) {
	mfs, err := s.reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "inferq_jobs_finished_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" && l.GetValue() == "succeeded" {
					succeeded += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total, succeeded
}

// BenchmarkSimgpuThroughput offers simgpu more load than it can serve
// (3000 jobs published at once to INFERQ_JOBS, in the ingress's format, with
// their queued records written first) and measures from the first publish to
// the last terminal job record. ideal-ratio compares with a perfect batcher:
// workers × 32 / (20ms + 32·1ms) ≈ 615 jobs/s per worker. open-loop-50rps
// publishes 50 jobs/s and reports the median time from a job's publish to
// its batch's publish (target ≤ max_queue_delay + 1ms = 3ms).
//
//	go test -run '^$' -bench BenchmarkSimgpuThroughput -benchtime 1x ./internal/e2e/
func BenchmarkSimgpuThroughput(b *testing.B) {
	const jobs = 3000
	const ideal = 32.0 / 0.052 // jobs/s per worker
	for _, c := range []struct{ workers, inflight int }{{1, 1}, {1, 2}, {2, 2}, {4, 2}} {
		workers := c.workers
		b.Run(fmt.Sprintf("workers=%d/inflight=%d", workers, c.inflight), func(b *testing.B) {
			s := startSimgpuBench(b, workers, 0, c.inflight)
			// Warm up: the stack runs one batch end to end.
			s.run(b, s.prepare(b, 32))
			var batches atomic.Int64
			sub, err := s.n.Conn.Subscribe(s.topo.BatchedSubject("simgpu"), func(*nats.Msg) { batches.Add(1) })
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Unsubscribe()
			var rate float64
			for b.Loop() {
				b.StopTimer()
				msgs := s.prepare(b, jobs)
				batches.Store(0)
				b.StartTimer()
				el := s.run(b, msgs)
				rate = float64(jobs) / el.Seconds()
			}
			b.ReportMetric(rate, "jobs/s")
			b.ReportMetric(float64(jobs)/float64(batches.Load()), "jobs/batch")
			b.ReportMetric(rate/(ideal*float64(workers)), "ideal-ratio")
		})
	}
	for _, gate := range []int{0, -1} {
		name := "open-loop-50rps"
		switch {
		case gate < 0:
			name += "-nogate"
		case gate > 0:
			name += fmt.Sprintf("-gate%d", gate)
		}
		b.Run(name, func(b *testing.B) { openLoop(b, gate) })
	}
}

// openLoop publishes 50 simgpu jobs/s for 3s and reports the median and p90
// time from a job's publish to its batch's publish (the batcher's queue
// delay) and to a worker taking its batch (its notice on TakenSubject: the
// waiting a job does before a worker holds it).
func openLoop(b *testing.B, gate int) {
	s := startSimgpuBench(b, 1, gate, 2)
	var mu sync.Mutex
	batched, runningAt := map[string]time.Time{}, map[string]time.Time{}
	jobsOf := map[string][]string{} // batch id → its jobs
	sub, err := s.n.Conn.Subscribe(s.topo.BatchSubject("simgpu"), func(msg *nats.Msg) {
		now := time.Now()
		batch := &inferqpb.Batch{}
		if proto.Unmarshal(msg.Data, batch) != nil {
			return
		}
		mu.Lock()
		for _, j := range batch.Jobs {
			if _, ok := batched[j.Id]; !ok {
				batched[j.Id] = now
			}
			jobsOf[batch.Id] = append(jobsOf[batch.Id], j.Id)
		}
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	// A worker's notice that it took a batch: its jobs reach the GPU. It
	// can be handled before the batch itself (another subscription), so
	// jobs are matched to it later, in running.
	taken := map[string]time.Time{} // batch id → when a worker took it
	rsub, err := s.n.Conn.Subscribe(s.topo.TakenSubject("simgpu"), func(msg *nats.Msg) {
		now := time.Now()
		mu.Lock()
		if _, ok := taken[string(msg.Data)]; !ok && len(msg.Data) > 0 {
			taken[string(msg.Data)] = now
		}
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	// running fills in when each job's batch was taken; mu is held.
	running := func() {
		for bid, at := range taken {
			for _, id := range jobsOf[bid] {
				if t, ok := runningAt[id]; !ok || at.Before(t) {
					runningAt[id] = at
				}
			}
		}
	}
	defer rsub.Unsubscribe()
	var qd, rd []time.Duration
	for b.Loop() {
		b.StopTimer()
		msgs := s.prepare(b, 150) // 3s at 50 jobs/s
		b.StartTimer()
		sent := make([]time.Time, len(msgs))
		tick := time.NewTicker(20 * time.Millisecond)
		for i, msg := range msgs {
			<-tick.C
			stamp(msg)
			sent[i] = time.Now()
			if _, err := s.n.JS.PublishMsgAsync(msg); err != nil {
				b.Fatal(err)
			}
		}
		tick.Stop()
		testutil.Eventually(b, 30*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			running()
			for _, msg := range msgs {
				if _, ok := runningAt[msg.Header.Get(nats.MsgIdHdr)]; !ok {
					return false
				}
			}
			return true
		}, "open-loop jobs not all running")
		mu.Lock()
		for i, msg := range msgs {
			id := msg.Header.Get(nats.MsgIdHdr)
			qd = append(qd, batched[id].Sub(sent[i]))
			rd = append(rd, runningAt[id].Sub(sent[i]))
		}
		mu.Unlock()
	}
	ms := func(ds []time.Duration, q int) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)*q/100].Microseconds()) / 1000
	}
	b.ReportMetric(ms(qd, 50), "median-queue-delay-ms")
	b.ReportMetric(ms(qd, 90), "p90-queue-delay-ms")
	b.ReportMetric(ms(rd, 50), "median-to-gpu-ms")
	b.ReportMetric(ms(rd, 90), "p90-to-gpu-ms")
}

// run publishes msgs as fast as JetStream takes them and waits until every
// job has a terminal record; it returns the time from the first publish.
func (s *simgpuBench) run(b *testing.B, msgs []*nats.Msg) time.Duration {
	b.Helper()
	before, okBefore := s.finished(b)
	start := time.Now()
	for _, msg := range msgs {
		stamp(msg)
		if _, err := s.n.JS.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-s.n.JS.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		b.Fatal("publishes not acknowledged")
	}
	want := before + float64(len(msgs))
	deadline := time.Now().Add(5 * time.Minute)
	for {
		total, ok := s.finished(b)
		if total >= want {
			if ok-okBefore != float64(len(msgs)) {
				b.Fatalf("%v of %d jobs succeeded", ok-okBefore, len(msgs))
			}
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			b.Fatalf("%v of %d jobs finished", total-before, len(msgs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var _ natsjs.JetStream // the bench publishes through testutil's JetStream
