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
// the Python runner under the same load, in two loops picked by the first
// sub-benchmark name (-bench 'ContinuousBatching/closed' or '/open'):
//
// closed: 32 clients, each sending a job with max_tokens drawn uniformly
// from 8..256 (fixed seed) as soon as its previous one ends, for tiny-gpt
// and sim-gpt. It prints the ceiling of continuous ÷ static for these draws
// (see ceiling).
//
// open: jobs arrive by a Poisson process (fixed seed: the same arrival times
// and max_tokens draws in every mode) at 60% and 90% of static batching's
// capacity on sim-gpt, whatever runs; each job's time to first token and
// latency count from its arrival, so time queued behind a running static
// batch counts. Arrivals stop at the end of the window, the jobs in flight
// then run to their end (at most openDrain more) and count in the latencies;
// tokens/s counts only the window.
//
// Static batching runs a batch of every waiting job (up to 32, after a 5ms
// queue delay) until its longest sequence ends, as the batcher and agent do
// for a static model; continuous batching hands each job to the running
// decode loop at once, as the batcher does when it closes batches at the
// free slots. Continuous modes: the default admission (join_every_steps 8,
// at once while fewer than half of max_num_seqs run), grouped (8, at once
// into an empty set only: the default before) and at every step (1).
//
// sim-gpt's step sleeps a + b·rows with a = 10ms and b = 0.1ms: a GPU's
// decoding step is bound by reading the weights (a 7B fp16 model reads
// 14 GB, about 5-10 ms at 2-3 TB/s) and each row adds about a hundredth of
// that at short contexts. Each mode runs INFERQ_BENCH_SECONDS (default 20)
// once, whatever b.N is:
//
//	go test -run '^$' -bench 'ContinuousBatching/closed' -benchtime 1x ./worker/deepspeed_nats/agent/
//	go test -run '^$' -bench 'ContinuousBatching/open/sim-gpt' -benchtime 1x ./worker/deepspeed_nats/agent/
func BenchmarkContinuousBatching(b *testing.B) {
	secs := 20
	if v, err := strconv.Atoi(os.Getenv("INFERQ_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	dur := time.Duration(secs) * time.Second
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
		name        string
		cont        bool
		join, below int
	}{
		{"static", false, 1, 0},
		{"continuous", true, config.DefaultJoinEverySteps, 0},
		{"continuous-grouped", true, config.DefaultJoinEverySteps, 1},
		{"continuous-join1", true, 1, 0},
	}
	report := func(b *testing.B, r loopResult) {
		b.ReportMetric(r.tokensPerSec, "tokens/s")
		b.ReportMetric(r.ttftP50, "ttft_p50_ms")
		b.ReportMetric(r.ttftP99, "ttft_p99_ms")
		b.ReportMetric(r.itlP99, "itl_p99_ms")
		b.ReportMetric(float64(r.jobs), "jobs")
	}
	b.Run("closed", func(b *testing.B) {
		for _, m := range models {
			b.Run(m.name, func(b *testing.B) {
				var static float64
				for _, md := range modes {
					b.Run(md.name, func(b *testing.B) {
						r := runClosedLoop(b, benchModel{m.name, m.params, md.cont, md.join, md.below}, clients, dur)
						report(b, r)
						ratio := ""
						if md.cont && static > 0 {
							ratio = fmt.Sprintf(", %.2f× static (ceiling %.2f× row-free, %.2f× sim-gpt)", r.tokensPerSec/static, c.rowFree, c.sim)
						} else if !md.cont {
							static = r.tokensPerSec
							ratio = fmt.Sprintf(" (ceiling of continuous ÷ static over %d rounds of these draws: %.1f steps for %.0f tokens a static round, "+
								"%.1f rows a step, so ≤ %.3f× when a step costs the same for any rows, ≤ %.3f× for sim-gpt's 10ms + 0.1ms·rows)",
								c.rounds, c.stepsPerRound, c.tokensPerRound, c.tokensPerRound/c.stepsPerRound, c.rowFree, c.sim)
						}
						b.Logf("closed %s %s (join_every_steps %d, join_at_once_below %d): %d jobs, %.0f tokens/s%s, TTFT p50 %.0fms p99 %.0fms, inter-token p99 %.1fms",
							m.name, md.name, md.join, md.below, r.jobs, r.tokensPerSec, ratio, r.ttftP50, r.ttftP99, r.itlP99)
					})
				}
			})
		}
	})
	b.Run("open", func(b *testing.B) {
		for _, m := range models {
			b.Run(m.name, func(b *testing.B) {
				for _, load := range openLoads {
					rate := load * staticSimJobsPerSec
					b.Run(fmt.Sprintf("load%.0f", load*100), func(b *testing.B) {
						arrivals := poissonArrivals(rate, dur)
						for _, md := range modes {
							b.Run(md.name, func(b *testing.B) {
								r := runOpenLoop(b, benchModel{m.name, m.params, md.cont, md.join, md.below}, clients, arrivals, dur)
								report(b, r)
								b.ReportMetric(r.latP50, "latency_p50_ms")
								b.ReportMetric(r.latP99, "latency_p99_ms")
								b.Logf("open %s at %.2f jobs/s (%.0f%% of static's %.2f on sim-gpt), %s (join_every_steps %d, join_at_once_below %d): "+
									"%d of %d arrivals done in the window (%d after it, %d unfinished), %.0f tokens/s, TTFT p50 %.0fms p99 %.0fms, "+
									"inter-token p99 %.1fms, latency p50 %.0fms p99 %.0fms",
									m.name, rate, load*100, staticSimJobsPerSec, md.name, md.join, md.below, r.jobs, len(arrivals), r.late, r.unfinished,
									r.tokensPerSec, r.ttftP50, r.ttftP99, r.itlP99, r.latP50, r.latP99)
							})
						}
					})
				}
			})
		}
	})
}

// The open loop's rates: fractions of static batching's capacity on sim-gpt
// in the closed loop of 32 clients (docs/benchmarks.md, 2026-12-01 00:26:
// 1,173 tokens/s, jobs of 132 tokens on average, so 8.89 jobs/s), the same
// rates for every model.
var (
	openLoads           = []float64{0.6, 0.9}
	staticSimJobsPerSec = 1173.0 / 132
)

// openDrain bounds how long the open loop waits, after its window, for the
// jobs that arrived in it.
const openDrain = 30 * time.Second

// poissonArrivals are the open loop's arrival times within dur, a Poisson
// process at rate jobs a second with a fixed seed.
func poissonArrivals(rate float64, dur time.Duration) []time.Duration {
	rng := rand.New(rand.NewPCG(7, 20))
	var ts []time.Duration
	for t := 0.0; ; {
		t += rng.ExpFloat64() / rate
		if t >= dur.Seconds() {
			return ts
		}
		ts = append(ts, time.Duration(t*float64(time.Second)))
	}
}

// benchModel is one test model and batching mode of the benchmark.
type benchModel struct {
	name        string
	params      map[string]any
	cont        bool
	join, below int // join_every_steps, join_at_once_below (0: the runner's default)
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
	jobs                                   int // ended within the window
	late, unfinished                       int // open loop: ended after the window, or not within openDrain
	tokensPerSec, ttftP50, ttftP99, itlP99 float64
	latP50, latP99                         float64 // open loop: arrival to last token
}

// benchJob is one client request in flight.
type benchJob struct {
	id        string
	prompt    string
	maxTokens int
	sent      time.Time
	done      chan struct{}
}

// startBenchProcess starts the runner for bm and warms it up.
func startBenchProcess(b *testing.B, bm benchModel, clients int) *Process {
	cont := bm.cont
	pp, err := python.Extract(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	m := &config.Model{Name: bm.name, Kind: config.KindGenerate,
		Runner: config.Runner{Command: []string{"python3", "-m", "inferq_runner", "--model", "builtin:" + bm.name}, Device: "cpu",
			Params: bm.params},
		Batching: config.Batching{MaxBatchSize: clients, MaxNumSeqs: clients, MaxStepTokens: 4096, Continuous: &cont,
			JoinEverySteps: bm.join, JoinAtOnceBelow: bm.below}}
	p, err := NewProcess(m, ProcessOptions{Python: testPython(b), PythonPath: pp, Log: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	if err := p.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	// Warm up: the first forward passes are slow.
	warm := textBatch("warm", []string{"warm up"}, []map[string]any{{"max_tokens": 16, "temperature": 0}})
	if _, err := p.RunJobs(b.Context(), warm, func(*inferqpb.TokenChunk) error { return nil }, nil); err != nil {
		b.Fatal(err)
	}
	return p
}

// benchRecorder gathers a loop's token times. Tokens count for tokens/s
// until the window's end; latencies count until recordUntil.
type benchRecorder struct {
	mu          sync.Mutex
	end         time.Time // the window's end
	recordUntil time.Time
	sent        map[string]time.Time
	first, last map[string]time.Time
	ttft, gaps  []float64
	tokens      int
}

func newBenchRecorder(end, recordUntil time.Time) *benchRecorder {
	return &benchRecorder{end: end, recordUntil: recordUntil, sent: map[string]time.Time{},
		first: map[string]time.Time{}, last: map[string]time.Time{}}
}

func (r *benchRecorder) send(j *benchJob) {
	r.mu.Lock()
	r.sent[j.id] = j.sent
	r.mu.Unlock()
}

func (r *benchRecorder) emit(c *inferqpb.TokenChunk) error {
	now := time.Now()
	if now.After(r.recordUntil) {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.end) {
		r.tokens++
	}
	if _, ok := r.first[c.JobId]; !ok {
		r.first[c.JobId] = now
		r.ttft = append(r.ttft, ms(now.Sub(r.sent[c.JobId])))
	} else {
		r.gaps = append(r.gaps, ms(now.Sub(r.last[c.JobId])))
	}
	r.last[c.JobId] = now
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// dispatch hands queued jobs to run until stop closes: each at once when
// continuous, else as static batches of whatever waits within the 5ms
// queue delay (up to maxBatch), each run to its end before the next.
func dispatch(cont bool, maxBatch int, queue chan *benchJob, stop chan struct{}, run func([]*benchJob)) {
	var runs sync.WaitGroup
	defer runs.Wait()
	for {
		select {
		case <-stop:
			return
		case j := <-queue:
			if cont {
				runs.Go(func() { run([]*benchJob{j}) }) // joins the running decode loop at once
				continue
			}
			batch := []*benchJob{j}
			wait := time.After(5 * time.Millisecond)
		fill:
			for len(batch) < maxBatch {
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
}

// runner returns the function that runs a batch of bench jobs on p, then
// calls ended for it (ok false when it failed) and closes the jobs' done.
func runner(b *testing.B, ctx context.Context, p *Process, rec *benchRecorder, ended func(js []*benchJob, ok bool)) func([]*benchJob) {
	return func(js []*benchJob) {
		prompts := make([]string, len(js))
		params := make([]map[string]any, len(js))
		for i, j := range js {
			prompts[i], params[i] = j.prompt, map[string]any{"max_tokens": j.maxTokens, "temperature": 0}
		}
		batch := textBatch(js[0].id, prompts, params)
		for i, j := range js {
			batch.Jobs[i].Id = j.id
		}
		_, err := p.RunJobs(ctx, batch, rec.emit, nil)
		if err != nil && ctx.Err() == nil {
			b.Error(err)
		}
		ended(js, err == nil)
		for _, j := range js {
			close(j.done)
		}
	}
}

func runClosedLoop(b *testing.B, bm benchModel, clients int, dur time.Duration) loopResult {
	p := startBenchProcess(b, bm, clients)
	// Only what happens within the window counts; jobs still running at
	// its end are cancelled.
	start := time.Now()
	deadline := start.Add(dur)
	rec := newBenchRecorder(deadline, deadline)
	ctx, cancel := context.WithDeadline(b.Context(), deadline)
	defer cancel()
	var jobs int
	run := runner(b, ctx, p, rec, func(js []*benchJob, ok bool) {
		if ok {
			rec.mu.Lock()
			jobs += len(js)
			rec.mu.Unlock()
		}
	})
	queue := make(chan *benchJob, clients)
	var wg sync.WaitGroup
	draws := newBenchDraws(clients) // the same draws in every mode
	for c := range clients {
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline); n++ {
				j := &benchJob{id: fmt.Sprintf("c%d-%d", c, n), prompt: fmt.Sprintf("client %d asks question %d:", c, n),
					maxTokens: draws.next(c), sent: time.Now(), done: make(chan struct{})}
				rec.send(j)
				queue <- j
				<-j.done
			}
		})
	}
	stop := make(chan struct{})
	go func() { wg.Wait(); close(stop) }()
	dispatch(bm.cont, clients, queue, stop, run)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return loopResult{jobs: jobs, tokensPerSec: float64(rec.tokens) / dur.Seconds(),
		ttftP50: quantile(rec.ttft, 0.5), ttftP99: quantile(rec.ttft, 0.99), itlP99: quantile(rec.gaps, 0.99)}
}

// runOpenLoop sends a job at each arrival (offsets from the start), with
// max_tokens from one seeded stream, whatever is running; see
// BenchmarkContinuousBatching.
func runOpenLoop(b *testing.B, bm benchModel, clients int, arrivals []time.Duration, dur time.Duration) loopResult {
	p := startBenchProcess(b, bm, clients)
	start := time.Now()
	end := start.Add(dur)
	rec := newBenchRecorder(end, end.Add(openDrain))
	ctx, cancel := context.WithDeadline(b.Context(), end.Add(openDrain))
	defer cancel()
	var (
		jobs, late, unfinished int
		lat                    []float64
	)
	run := runner(b, ctx, p, rec, func(js []*benchJob, ok bool) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, j := range js {
			last, seen := rec.last[j.id]
			switch {
			case !ok || (!seen && j.maxTokens > 0):
				unfinished++
				continue
			case last.Before(end):
				jobs++
			default:
				late++
			}
			lat = append(lat, ms(last.Sub(j.sent)))
		}
	})
	queue := make(chan *benchJob, len(arrivals))
	stop := make(chan struct{})
	go func() {
		draws := rand.New(rand.NewPCG(20, 42)) // the same draws in every mode
		var all sync.WaitGroup
		for n, at := range arrivals {
			time.Sleep(time.Until(start.Add(at)))
			j := &benchJob{id: fmt.Sprintf("a%d", n), prompt: fmt.Sprintf("arrival %d asks:", n),
				maxTokens: 8 + draws.IntN(249), sent: start.Add(at), done: make(chan struct{})}
			rec.send(j)
			all.Go(func() { <-j.done })
			queue <- j
		}
		all.Wait()
		close(stop)
	}()
	dispatch(bm.cont, clients, queue, stop, run)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return loopResult{jobs: jobs, late: late, unfinished: unfinished, tokensPerSec: float64(rec.tokens) / dur.Seconds(),
		ttftP50: quantile(rec.ttft, 0.5), ttftP99: quantile(rec.ttft, 0.99), itlP99: quantile(rec.gaps, 0.99),
		latP50: quantile(lat, 0.5), latP99: quantile(lat, 0.99)}
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
