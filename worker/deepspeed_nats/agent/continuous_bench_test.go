package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/schemas/inferqpb"
	"github.com/inferq/inferq/worker/deepspeed_nats/python"
)

// BenchmarkContinuousBatching compares continuous and static batching of
// tiny-gpt on the Python runner under the same load: a closed loop of 32
// clients, each sending a job with max_tokens drawn uniformly from 8..256
// (fixed seed) as soon as its previous one ends. Static batching runs a
// batch of every waiting job (up to 32, after a 5ms queue delay) until its
// longest sequence ends, as the batcher and agent do for a static model;
// continuous batching hands each job to the running decode loop at once, as
// the batcher does when it closes batches at the free slots. Each mode runs
// INFERQ_BENCH_SECONDS (default 20) once, whatever b.N is:
//
//	go test -run '^$' -bench ContinuousBatching -benchtime 1x ./worker/deepspeed_nats/agent/
func BenchmarkContinuousBatching(b *testing.B) {
	secs := 20
	if v, err := strconv.Atoi(os.Getenv("INFERQ_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	for _, cont := range []bool{false, true} {
		name := map[bool]string{false: "static", true: "continuous"}[cont]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			r := runClosedLoop(b, cont, 32, time.Duration(secs)*time.Second)
			b.ReportMetric(r.tokensPerSec, "tokens/s")
			b.ReportMetric(r.ttftP50, "ttft_p50_ms")
			b.ReportMetric(r.ttftP99, "ttft_p99_ms")
			b.ReportMetric(r.itlP99, "itl_p99_ms")
			b.ReportMetric(float64(r.jobs), "jobs")
			b.Logf("%s: %d jobs, %.0f tokens/s, TTFT p50 %.0fms p99 %.0fms, inter-token p99 %.1fms",
				name, r.jobs, r.tokensPerSec, r.ttftP50, r.ttftP99, r.itlP99)
		})
	}
}

type loopResult struct {
	jobs                                   int
	tokensPerSec, ttftP50, ttftP99, itlP99 float64
}

// benchJob is one client request in flight.
type benchJob struct {
	id        string
	prompt    string
	maxTokens int
	sent      time.Time
	done      chan struct{}
}

func runClosedLoop(b *testing.B, cont bool, clients int, dur time.Duration) loopResult {
	pp, err := python.Extract(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	m := &config.Model{Name: "tiny-gpt", Kind: config.KindGenerate,
		Runner:   config.Runner{Command: []string{"python3", "-m", "inferq_runner", "--model", "builtin:tiny-gpt"}, Device: "cpu"},
		Batching: config.Batching{MaxBatchSize: clients, MaxNumSeqs: clients, MaxStepTokens: 4096, Continuous: &cont}}
	p, err := NewProcess(m, ProcessOptions{Python: testPython(b), PythonPath: pp, Log: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	if err := p.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	// Warm up: the first forward passes are slow.
	warm := textBatch("warm", []string{"warm up"}, []map[string]any{{"max_tokens": 16, "temperature": 0}})
	if _, err := p.RunJobs(b.Context(), warm, func(*inferqpb.TokenChunk) error { return nil }, nil); err != nil {
		b.Fatal(err)
	}
	var (
		mu     sync.Mutex
		first  = map[string]time.Time{}
		last   = map[string]time.Time{}
		ttft   []float64
		gaps   []float64
		tokens int
		jobs   int
		sent   = map[string]time.Time{}
	)
	// Only what happens within the window counts; jobs still running at
	// its end are cancelled.
	queue := make(chan *benchJob, clients)
	start := time.Now()
	deadline := start.Add(dur)
	ctx, cancel := context.WithDeadline(b.Context(), deadline)
	defer cancel()
	emit := func(c *inferqpb.TokenChunk) error {
		now := time.Now()
		if now.After(deadline) {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		tokens++
		if _, ok := first[c.JobId]; !ok {
			first[c.JobId] = now
			ttft = append(ttft, float64(now.Sub(sent[c.JobId]).Microseconds())/1e3)
		} else {
			gaps = append(gaps, float64(now.Sub(last[c.JobId]).Microseconds())/1e3)
		}
		last[c.JobId] = now
		return nil
	}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 42)) // the same draws in both modes
			for n := 0; time.Now().Before(deadline); n++ {
				j := &benchJob{id: fmt.Sprintf("c%d-%d", c, n), prompt: fmt.Sprintf("client %d asks question %d:", c, n),
					maxTokens: 8 + rng.IntN(249), sent: time.Now(), done: make(chan struct{})}
				mu.Lock()
				sent[j.id] = j.sent
				mu.Unlock()
				queue <- j
				<-j.done
			}
		})
	}
	run := func(js []*benchJob) {
		prompts := make([]string, len(js))
		params := make([]map[string]any, len(js))
		for i, j := range js {
			prompts[i], params[i] = j.prompt, map[string]any{"max_tokens": j.maxTokens, "temperature": 0}
		}
		batch := textBatch(js[0].id, prompts, params)
		for i, j := range js {
			batch.Jobs[i].Id = j.id
		}
		if _, err := p.RunJobs(ctx, batch, emit, nil); err == nil {
			mu.Lock()
			jobs += len(js)
			mu.Unlock()
		} else if ctx.Err() == nil {
			b.Error(err)
		}
		for _, j := range js {
			close(j.done)
		}
	}
	stop := make(chan struct{})
	go func() { wg.Wait(); close(stop) }()
	var runs sync.WaitGroup
loop:
	for {
		select {
		case <-stop:
			break loop
		case j := <-queue:
			if cont {
				runs.Go(func() { run([]*benchJob{j}) }) // joins the running decode loop at once
				continue
			}
			// Static: the batch takes whatever waits within max_queue_delay, then runs to its end.
			batch := []*benchJob{j}
			wait := time.After(5 * time.Millisecond)
		fill:
			for len(batch) < clients {
				select {
				case j := <-queue:
					batch = append(batch, j)
				case <-wait:
					break fill
				}
			}
			run(batch)
		}
	}
	runs.Wait()
	mu.Lock()
	defer mu.Unlock()
	return loopResult{jobs: jobs, tokensPerSec: float64(tokens) / dur.Seconds(),
		ttftP50: quantile(ttft, 0.5), ttftP99: quantile(ttft, 0.99), itlP99: quantile(gaps, 0.99)}
}

func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}
