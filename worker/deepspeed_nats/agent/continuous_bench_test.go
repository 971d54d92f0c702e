package agent

import (
	"context"
	"fmt"
	"math"
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

// BenchmarkContinuousBatching compares continuous and static batching on
// the Python runner under the same load: a closed loop of 32 clients, each
// sending a job with max_tokens drawn uniformly from 8..256 (fixed seed) as
// soon as its previous one ends. Static batching runs a batch of every
// waiting job (up to 32, after a 5ms queue delay) until its longest sequence
// ends, as the batcher and agent do for a static model; continuous batching
// hands each job to the running decode loop at once, as the batcher does
// when it closes batches at the free slots, with admission grouped
// (batching.join_every_steps, the default 8) and at every step (1).
//
// Two test models run, in the same run: tiny-gpt (real compute on the CPU,
// where a step costs in proportion to its rows) and sim-gpt, whose step
// sleeps a + b·rows with a = 10ms and b = 0.1ms: a GPU's decoding step is
// bound by reading the weights (a 7B fp16 model reads 14 GB, about 5-10 ms
// at 2-3 TB/s) and each row adds about a hundredth of that at short contexts.
// It also prints the ceiling of continuous ÷ static for these draws (see
// ceiling). Each mode runs INFERQ_BENCH_SECONDS (default 20) once, whatever
// b.N is; -bench 'ContinuousBatching/sim-gpt' picks one model:
//
//	go test -run '^$' -bench ContinuousBatching -benchtime 1x ./worker/deepspeed_nats/agent/
func BenchmarkContinuousBatching(b *testing.B) {
	secs := 20
	if v, err := strconv.Atoi(os.Getenv("INFERQ_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	const clients = 32
	c := ceiling(clients, 1000, 0.010, 0.0001)
	models := []struct {
		name   string
		params map[string]any
	}{
		{"tiny-gpt", nil},
		{"sim-gpt", map[string]any{"a": "10ms", "b": "100us"}},
	}
	modes := []struct {
		name string
		cont bool
		join int
	}{
		{"static", false, 1},
		{"continuous", true, config.DefaultJoinEverySteps},
		{"continuous-join1", true, 1},
	}
	for _, m := range models {
		b.Run(m.name, func(b *testing.B) {
			var static float64
			for _, md := range modes {
				b.Run(md.name, func(b *testing.B) {
					b.ReportAllocs()
					r := runClosedLoop(b, benchModel{m.name, m.params, md.cont, md.join}, clients, time.Duration(secs)*time.Second)
					b.ReportMetric(r.tokensPerSec, "tokens/s")
					b.ReportMetric(r.ttftP50, "ttft_p50_ms")
					b.ReportMetric(r.ttftP99, "ttft_p99_ms")
					b.ReportMetric(r.itlP99, "itl_p99_ms")
					b.ReportMetric(float64(r.jobs), "jobs")
					ratio := ""
					if md.cont && static > 0 {
						ratio = fmt.Sprintf(", %.2f× static (ceiling %.2f× row-free, %.2f× sim-gpt)", r.tokensPerSec/static, c.rowFree, c.sim)
					} else if !md.cont {
						static = r.tokensPerSec
						ratio = fmt.Sprintf(" (ceiling of continuous ÷ static over %d rounds of these draws: %.1f steps for %.0f tokens a static round, "+
							"%.1f rows a step, so ≤ %.3f× when a step costs the same for any rows, ≤ %.3f× for sim-gpt's 10ms + 0.1ms·rows)",
							c.rounds, c.stepsPerRound, c.tokensPerRound, c.tokensPerRound/c.stepsPerRound, c.rowFree, c.sim)
					}
					b.Logf("%s %s (join_every_steps %d): %d jobs, %.0f tokens/s%s, TTFT p50 %.0fms p99 %.0fms, inter-token p99 %.1fms",
						m.name, md.name, md.join, r.jobs, r.tokensPerSec, ratio, r.ttftP50, r.ttftP99, r.itlP99)
				})
			}
		})
	}
}

// benchModel is one test model and batching mode of the benchmark.
type benchModel struct {
	name   string
	params map[string]any
	cont   bool
	join   int
}

// benchDraws are the clients' max_tokens draws: client c's own seeded stream.
type benchDraws struct{ rngs []*rand.Rand }

func newBenchDraws(clients int) *benchDraws {
	d := &benchDraws{}
	for c := range clients {
		d.rngs = append(d.rngs, rand.New(rand.NewPCG(uint64(c), 42)))
	}
	return d
}

func (d *benchDraws) next(c int) int { return 8 + d.rngs[c].IntN(249) }

type ceilingResult struct {
	rounds                        int
	stepsPerRound, tokensPerRound float64
	rowFree, sim                  float64
}

// ceiling is the most continuous batching can gain over static batching for
// the benchmark's draws, prefill and scheduling overheads aside. A static
// round takes one job from each client and runs max(draws) steps for
// sum(draws) tokens; continuous batching keeps every client's row busy at
// every step, clients rows a step. With a step cost independent of its rows
// the ratio is clients·Σmax/Σsum (about 1.88 for 32 clients and 8..256);
// with a step cost a + b·rows, static spends a·Σmax + b·Σsum and continuous
// (a + b·clients)/clients a token.
func ceiling(clients, rounds int, a, b float64) ceilingResult {
	d := newBenchDraws(clients)
	var steps, tokens float64
	for range rounds {
		hi := 0
		for c := range clients {
			n := d.next(c)
			hi = max(hi, n)
			tokens += float64(n)
		}
		steps += float64(hi)
	}
	staticRate := tokens / (a*steps + b*tokens)
	contRate := float64(clients) / (a + b*float64(clients))
	return ceilingResult{rounds: rounds, stepsPerRound: steps / float64(rounds), tokensPerRound: tokens / float64(rounds),
		rowFree: float64(clients) * steps / tokens, sim: contRate / staticRate}
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

func runClosedLoop(b *testing.B, bm benchModel, clients int, dur time.Duration) loopResult {
	cont := bm.cont
	pp, err := python.Extract(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	m := &config.Model{Name: bm.name, Kind: config.KindGenerate,
		Runner: config.Runner{Command: []string{"python3", "-m", "inferq_runner", "--model", "builtin:" + bm.name}, Device: "cpu",
			Params: bm.params},
		Batching: config.Batching{MaxBatchSize: clients, MaxNumSeqs: clients, MaxStepTokens: 4096, Continuous: &cont,
			JoinEverySteps: bm.join}}
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
	draws := newBenchDraws(clients) // the same draws in every mode
	for c := range clients {
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline); n++ {
				j := &benchJob{id: fmt.Sprintf("c%d-%d", c, n), prompt: fmt.Sprintf("client %d asks question %d:", c, n),
					maxTokens: draws.next(c), sent: time.Now(), done: make(chan struct{})}
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

// TestBenchCeiling checks the benchmark's ceiling against its expectation:
// E[max of 32 draws from 8..256] = 8 + Σ_{j=1..248} (1 - (j/249)^32) ≈ 248.5
// steps for 32·132 = 4,224 tokens, so continuous ÷ static ≤ about 1.88.
func TestBenchCeiling(t *testing.T) {
	emax := 8.0
	for j := 1; j <= 248; j++ {
		emax += 1 - math.Pow(float64(j)/249, 32)
	}
	want := 32 * emax / (32 * 132)
	c := ceiling(32, 1000, 0.010, 0.0001)
	if math.Abs(c.rowFree-want) > 0.03 || math.Abs(c.stepsPerRound-emax) > 1 || math.Abs(c.tokensPerRound-4224) > 60 {
		t.Errorf("ceiling %+v, want about %.3f (%.1f steps, 4,224 tokens a round)", c, want, emax)
	}
	if c.sim >= c.rowFree || c.sim < 1.5 {
		t.Errorf("sim-gpt's ceiling %.3f should be below the row-free one %.3f and well above 1", c.sim, c.rowFree)
	}
	t.Logf("E[max] %.2f, ceiling %.4f (expected %.4f), sim-gpt %.4f", emax, c.rowFree, want, c.sim)
}
