package agent

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/schemas/inferqpb"
	"github.com/inferq/inferq/worker/deepspeed_nats/python"
)

// TestProcessContinuousBatchesSideBySide: with continuous batching a second
// batch runs while the first decodes, each job's result comes the moment
// its sequence ends, and greedy tokens equal those of a static run.
func TestProcessContinuousBatchesSideBySide(t *testing.T) {
	p := newTestProcess(t, "builtin:tiny-gpt", config.KindGenerate, ProcessOptions{})
	if !p.Continuous() {
		t.Fatal("a generate model is not continuous by default")
	}
	long := textBatch("long", []string{"a long story"}, []map[string]any{{"max_tokens": 120, "temperature": 0}})
	short := textBatch("short", []string{"hi", "there"}, []map[string]any{{"max_tokens": 5, "temperature": 0}, {"max_tokens": 9, "temperature": 0}})
	var k tokens
	started := make(chan struct{})
	var once sync.Once
	k.onEmit = func(c *inferqpb.TokenChunk) {
		if c.JobId == "long-j0" && c.Seq == 5 {
			once.Do(func() { close(started) })
		}
	}
	var mu sync.Mutex
	var order []string // job ends and batch ends, as they happen
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	longDone := make(chan *inferqpb.BatchResult, 1)
	go func() {
		res, err := p.RunJobs(t.Context(), long, k.emit, func(jr *inferqpb.JobResult) { note("job " + jr.JobId) })
		if err != nil {
			t.Error(err)
		}
		note("batch long")
		longDone <- res
	}()
	select {
	case <-started:
	case <-time.After(60 * time.Second):
		t.Fatal("the long batch streamed nothing")
	}
	res, err := p.RunJobs(t.Context(), short, k.emit, func(jr *inferqpb.JobResult) { note("job " + jr.JobId) })
	if err != nil {
		t.Fatal(err)
	}
	note("batch short")
	lres := <-longDone
	mu.Lock()
	got := strings.Join(order, ",")
	mu.Unlock()
	// short-j0 ends by itself before its batch; the short batch ends while the long one still decodes.
	if got != "job short-j0,batch short,batch long" {
		t.Errorf("order of ends %q", got)
	}
	if len(res.Jobs) != 2 || len(lres.Jobs) != 1 || res.Jobs[0].Error != nil || lres.Jobs[0].Error != nil {
		t.Fatalf("results %v %v", res, lres)
	}
	// The same jobs run statically, one batch after the other, give the same text.
	static := newTestProcess(t, "builtin:tiny-gpt", config.KindGenerate, ProcessOptions{})
	static.cont = false
	for _, b := range []*inferqpb.Batch{long, short} {
		want, err := static.Run(t.Context(), b, func(*inferqpb.TokenChunk) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		gotRes := res
		if b == long {
			gotRes = lres
		}
		for i := range want.Jobs {
			if w, g := string(want.Jobs[i].Outputs[0].Data), string(gotRes.Jobs[i].Outputs[0].Data); w != g {
				t.Errorf("job %s: continuous %q, static %q", want.Jobs[i].JobId, g, w)
			}
		}
	}
}

// tinyModel is tiny-gpt on the Python runner, continuously batched.
func tinyModel() config.Model {
	return config.Model{Name: "tiny", Kind: config.KindGenerate,
		Runner:   config.Runner{Command: []string{"python3", "-m", "inferq_runner", "--model", "builtin:tiny-gpt"}, Device: "cpu"},
		Inputs:   []config.Tensor{{Name: "text_input", Datatype: "BYTES", Dims: []int64{1}}},
		Outputs:  []config.Tensor{{Name: "text_output", Datatype: "BYTES", Dims: []int64{1}}},
		Batching: config.Batching{MaxBatchSize: 8},
		Queue:    config.Queue{MaxDeliver: 3, Backoff: []config.Duration{config.D(10 * time.Millisecond)}}}
}

// TestAgentContinuousCrashRedeliversOnlyUnfinished: jobs whose sequences
// ended are ended (and marked) at once; killing the runner mid-decode
// redelivers the batch, whose redelivery runs only the unfinished jobs, and
// every job ends exactly once.
func TestAgentContinuousCrashRedeliversOnlyUnfinished(t *testing.T) {
	h := newHarness(t, tinyModel())
	pp, err := python.Extract(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	procs := make(chan *Process, 1)
	a, _, _ := h.agent("w1", func(o *Options) {
		o.NewRunner = func(m *config.Model) (Runner, error) {
			p, err := NewProcess(m, ProcessOptions{Python: testPython(t), PythonPath: pp, RestartBackoff: 10 * time.Millisecond, Log: testLogger(t)})
			if err != nil {
				return nil, err
			}
			p.Warm()
			procs <- p
			return p, nil
		}
	})
	p := <-procs
	b := textBatch("c1", []string{"one", "two", "three", "four"}, []map[string]any{
		{"max_tokens": 3, "temperature": 0}, {"max_tokens": 6, "temperature": 0},
		{"max_tokens": 300, "temperature": 0}, {"max_tokens": 300, "temperature": 0}})
	b.Model, b.Version = "tiny", "1"
	for i, j := range b.Jobs {
		j.Tenant, j.Attempt, j.JobsSeq, j.Stream = "t1", 1, uint64(i+1), true
	}
	h.publish(b)
	// The short jobs end on their own while the long ones decode.
	testutil.Eventually(t, 60*time.Second, func() bool {
		ev, _ := h.terminal()
		return len(ev["c1-j0"]) == 1 && len(ev["c1-j1"]) == 1 && len(h.tokens("c1-j2")) > 3
	}, "the short jobs did not end before the batch")
	ev, _ := h.terminal()
	if len(ev["c1-j2"]) != 0 || len(ev["c1-j3"]) != 0 {
		t.Fatal("the long jobs ended already: the kill would not be mid-decode")
	}
	if a.slots["tiny"].running() != 2 {
		t.Errorf("%d sequences in hand, want the 2 long ones", a.slots["tiny"].running())
	}
	p.mu.Lock()
	pid := p.cur.pid
	p.mu.Unlock()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.settled()
	ev, _ = h.terminal()
	for _, j := range b.Jobs {
		if len(ev[j.Id]) != 1 {
			t.Fatalf("job %s: %d terminal events, want 1", j.Id, len(ev[j.Id]))
		}
		if e := ev[j.Id][0]; e.Status != inferqpb.Status_STATUS_SUCCEEDED {
			t.Errorf("job %s: %v %v", j.Id, e.Status, e.Error)
		}
	}
	// The short jobs ran once: their first token was published once.
	for _, id := range []string{"c1-j0", "c1-j1"} {
		firsts := 0
		for _, c := range h.tokens(id) {
			if c.Seq == 1 {
				firsts++
			}
		}
		if firsts != 1 {
			t.Errorf("job %s started %d times, want once", id, firsts)
		}
	}
	if st := a.Stats("tiny"); st.Succeeded != 4 || st.Released != 1 || st.Batches != 1 {
		t.Errorf("stats %+v", st)
	}
	// Metrics and the heartbeat: no sequence in hand, every slot free, and
	// a first token and gaps between tokens observed.
	if got := promtest.ToFloat64(a.opt.Own.RunningSequences.WithLabelValues("tiny")); got != 0 {
		t.Errorf("running sequences %v after the batch", got)
	}
	if got := promtest.ToFloat64(a.opt.Own.FreeSequenceSlots.WithLabelValues("tiny")); got != 8 {
		t.Errorf("free slots %v, want 8", got)
	}
	if promtest.CollectAndCount(a.opt.Own.TimeToFirstToken) != 1 || promtest.CollectAndCount(a.opt.Own.InterTokenLatency) != 1 {
		t.Error("no time-to-first-token or inter-token observations")
	}
	hb := a.describe(&a.opt.Models[0], p)
	if g := hb.Generation; g == nil || !g.Continuous || g.FreeSlots != 8 || hb.Capacity != 8 {
		t.Errorf("heartbeat %+v %+v", hb, hb.Generation)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := a.seqsKV(ctx).Get(ctx, seqsKey("c1", "c1-j0")); err != nil {
		t.Errorf("no done mark for c1-j0: %v", err)
	}
}
