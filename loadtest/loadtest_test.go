package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestVerifyOutputs(t *testing.T) {
	a := []int32{1, -2, 3, 1 << 23, -1 << 23, 0, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	b := []int32{5, 5, -5, 1 << 23, 1 << 23, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	want := simpleOutputs(a, b)
	if string(want[0].Data) != "[6,3,-2,16777216,0,0,8,9,10,11,12,13,14,15,16,17]" {
		t.Fatalf("sum %s", want[0].Data)
	}
	nested := want[0]
	nested.Data = json.RawMessage(`[[6,3,-2,16777216,0,0,8,9,10,11,12,13,14,15,16,17]]`)
	tweak := func(f func(*tensorJSON)) []tensorJSON {
		got := []tensorJSON{want[0], want[1]}
		f(&got[1])
		return got
	}
	cases := []struct {
		name string
		got  []tensorJSON
		ok   bool
	}{
		{"exact", want, true},
		{"other order", []tensorJSON{want[1], want[0]}, true},
		{"nested data", []tensorJSON{nested, want[1]}, true},
		{"one value off", tweak(func(t *tensorJSON) { t.Data = json.RawMessage(strings.Replace(string(t.Data), "-4", "-5", 1)) }), false},
		{"sum twice", tweak(func(t *tensorJSON) { t.Data = want[0].Data }), false},
		{"missing output", want[:1], false},
		{"renamed", tweak(func(t *tensorJSON) { t.Name = "OUTPUT2" }), false},
		{"wrong shape", tweak(func(t *tensorJSON) { t.Shape = []int64{16} }), false},
		{"wrong datatype", tweak(func(t *tensorJSON) { t.Datatype = "INT64" }), false},
		{"short data", tweak(func(t *tensorJSON) { t.Data = json.RawMessage(`[1,2]`) }), false},
		{"not json", tweak(func(t *tensorJSON) { t.Data = json.RawMessage(`[1,`) }), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := verifyOutputs(c.got, want)
			if (err == nil) != c.ok {
				t.Fatalf("verifyOutputs: %v, want ok=%v", err, c.ok)
			}
			if err != nil && !errors.Is(err, errWrong) {
				t.Errorf("error %v is not errWrong", err)
			}
		})
	}
}

func TestIdentityJobsVerifyThemselves(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		j := identityJob(r, "identity")
		var req struct{ Inputs []tensorJSON }
		if err := json.Unmarshal(j.body, &req); err != nil {
			t.Fatal(err)
		}
		echo := req.Inputs[0]
		echo.Name = "OUTPUT0"
		if err := verifyAnswer(j, []tensorJSON{echo}); err != nil {
			t.Fatalf("%s: %v", j.body, err)
		}
		if echo.Datatype != "BYTES" {
			echo.Data = json.RawMessage(strings.Replace(string(echo.Data), "[", "[1,", 1))
			if verifyAnswer(j, []tensorJSON{echo}) == nil {
				t.Fatalf("an extra value passed: %s", echo.Data)
			}
		}
	}
}

func TestVerifyTokens(t *testing.T) {
	w := &workload{models: []string{"repeat"}, stream: true, tokens: 5}
	j := w.generateJob(rand.New(rand.NewPCG(3, 4)), "repeat")
	if len([]rune(j.want.text)) != 5 || !j.want.exact {
		t.Fatalf("want %+v", j.want)
	}
	toks := func(seqs ...uint64) []streamToken {
		var out []streamToken
		for _, s := range seqs {
			out = append(out, streamToken{Seq: s, Text: string([]rune(j.want.text)[(s-1)%5])})
		}
		return out
	}
	cases := []struct {
		name   string
		tokens []streamToken
		final  string
		err    string
	}{
		{"all in order", toks(1, 2, 3, 4, 5), j.want.text, ""},
		{"gap", toks(1, 2, 4, 5), j.want.text, "has seq"},
		{"repeat", toks(1, 2, 2, 3, 4, 5), j.want.text, "has seq"},
		{"too few", toks(1, 2, 3), j.want.text, "3 tokens"},
		{"too many", toks(1, 2, 3, 4, 5, 6), j.want.text, "6 tokens"},
		{"none", nil, j.want.text, "no tokens"},
		{"final text differs", toks(1, 2, 3, 4, 5), "xxxxx", "wrong result"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := verifyTokens(j, c.tokens, c.final)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("verifyTokens: %v, want %q", err, c.err)
			}
		})
	}
	// A sampled model: any text of at most max_tokens tokens.
	jg := w.generateJob(rand.New(rand.NewPCG(3, 4)), "tiny-gpt")
	if err := verifyTokens(jg, []streamToken{{Seq: 1, Text: "Hi"}, {Seq: 2, Text: "!"}}, "Hi!"); err != nil {
		t.Errorf("tiny-gpt: %v", err)
	}
}

func TestRepeatText(t *testing.T) {
	if got := repeatText("abc", 7); got != "abcabca" {
		t.Errorf("repeatText = %q", got)
	}
}

// TestRecorderSummary records known latencies and checks the percentiles,
// errors by kind, the timeline, and that a job with no outcome is lost.
func TestRecorderSummary(t *testing.T) {
	begin := time.Now().Add(-time.Hour)
	r := newRecorder(begin)
	for i := 1; i <= 1000; i++ { // 1ms ... 1000ms, finishing in second 0 and 1
		start := begin.Add(time.Duration(i) * time.Millisecond)
		r.sent.Add(1)
		r.record(start, outcome{done: start.Add(time.Duration(i) * time.Millisecond), submit: time.Millisecond})
	}
	r.sent.Add(4)
	r.record(begin, outcome{kind: errWrongResult, detail: "job 1: off by one", done: begin.Add(time.Second)})
	r.record(begin, outcome{kind: errWrongResult, detail: "job 2", done: begin.Add(time.Second)})
	r.record(begin, outcome{kind: "submit_503", done: begin.Add(time.Second)})
	// the fourth sent job never reports: lost

	s := r.summary()
	if s.Jobs != 1000 || s.Sent != 1004 || s.Errors != 4 {
		t.Fatalf("jobs %d sent %d errors %d", s.Jobs, s.Sent, s.Errors)
	}
	if s.ByKind[errWrongResult] != 2 || s.ByKind["submit_503"] != 1 || s.ByKind[errLost] != 1 {
		t.Errorf("by kind %v", s.ByKind)
	}
	if s.Details[errWrongResult] != "job 1: off by one" {
		t.Errorf("details %v", s.Details)
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if got < want*0.99 || got > want*1.01 {
			t.Errorf("%s = %v, want about %v", name, got, want)
		}
	}
	near("p50", s.LatencyMS.P50, 500)
	near("p90", s.LatencyMS.P90, 900)
	near("p99", s.LatencyMS.P99, 990)
	near("max", s.LatencyMS.Max, 1000)
	near("mean", s.LatencyMS.Mean, 500.5)
	near("submit p99", s.SubmitMS.P99, 1)
	near("seconds", s.Seconds, 2)
	near("jobs/s", s.JobsPerS, 500)
	// Job i ends at 2i ms: seconds 0 and 1 get 499 and 500 jobs, second 2 the last one.
	if len(s.Timeline) != 3 || s.Timeline[0].Jobs != 499 || s.Timeline[1].Jobs != 500 || s.Timeline[1].Errors != 3 || s.Timeline[2].Jobs != 1 {
		t.Fatalf("timeline %+v", s.Timeline)
	}
	near("p99 of second 1", s.Timeline[1].P99MS, 995)
}

func TestRecorderStreaming(t *testing.T) {
	begin := time.Now()
	r := newRecorder(begin)
	r.sent.Add(1)
	first := begin.Add(20 * time.Millisecond)
	r.record(begin, outcome{done: begin.Add(2 * time.Second), firstToken: first, lastToken: first.Add(time.Second), tokens: 101})
	s := r.summary()
	if s.Stream == nil || s.Stream.Tokens != 101 || s.Stream.JobTokensPS.P50 != 100 || s.Stream.TTFTMS.P50 < 19.9 || s.Stream.TTFTMS.P50 > 20.1 {
		t.Fatalf("stream %+v", s.Stream)
	}
}

func TestRecordValueClamps(t *testing.T) {
	r := newRecorder(time.Now())
	recordValue(r.latency, -time.Second)
	recordValue(r.latency, 3*time.Hour)
	if r.latency.TotalCount() != 2 {
		t.Fatalf("count %d: out-of-range values were dropped", r.latency.TotalCount())
	}
}

func TestPeerAnswer(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	gpu := newSimGPU(options{peerGPUs: 1})
	for _, j := range []job{simpleJob(r), identityJob(r, "identity"), identityJob(r, "identity"), simgpuJob(r)} {
		answer, err := peerRun(t.Context(), gpu, j.model, j.body)
		if err != nil {
			t.Fatalf("%s: %v", j.model, err)
		}
		if o := checkPeerAnswer(j, "x", answer, time.Now(), 0); o.kind != "" {
			t.Fatalf("%s: %s %s", j.model, o.kind, o.detail)
		}
	}
	j := simpleJob(r)
	other := simpleJob(r)
	answer, _ := peerAnswer("simple", other.body)
	if o := checkPeerAnswer(j, "x", answer, time.Now(), 0); o.kind != errWrongResult {
		t.Errorf("another job's answer passed: %+v", o)
	}
	if _, err := peerAnswer("simple", []byte(`{"inputs":[]}`)); err == nil {
		t.Error("simple without inputs answered")
	}
}

// TestSimGPUOneCallAtATime: a peer's simulated GPU runs one call at a time,
// as inferq's simgpu worker does, so peers cannot beat it by running jobs
// side by side on one device.
func TestSimGPUOneCallAtATime(t *testing.T) {
	gpu := newSimGPU(options{peerGPUs: 1, simgpuA: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() { first <- gpu.call(ctx, 1) }()
	for len(gpu.devices) == 0 { // until the first call holds the device
		time.Sleep(time.Millisecond)
	}
	done, stop := context.WithCancel(t.Context())
	stop()
	if err := gpu.call(done, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("a second call on a busy device: %v, want it to wait (and give up with its context)", err)
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first call: %v", err)
	}
	if len(gpu.devices) != 0 {
		t.Fatal("the device was not freed")
	}
}

// TestSimgpuJobsShareBatches: simgpu jobs have one datatype and shape, as
// a fixed-shape model's do, so the batcher can put them together.
func TestSimgpuJobsShareBatches(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	first := simgpuJob(r)
	for range 20 {
		j := simgpuJob(r)
		var a, b struct{ Inputs []tensorJSON }
		if err := json.Unmarshal(first.body, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(j.body, &b); err != nil {
			t.Fatal(err)
		}
		if a.Inputs[0].Datatype != "FP32" || b.Inputs[0].Datatype != "FP32" || !slices.Equal(a.Inputs[0].Shape, b.Inputs[0].Shape) {
			t.Fatalf("simgpu inputs differ in kind: %v %v vs %v %v", a.Inputs[0].Datatype, a.Inputs[0].Shape, b.Inputs[0].Datatype, b.Inputs[0].Shape)
		}
	}
}

func TestWorkloadSameSeedSameJobs(t *testing.T) {
	w := newWorkload(options{models: []string{"simple", "identity"}, scenario: "mixed", tokens: 4, duration: time.Second})
	a, b := rand.New(rand.NewPCG(9, 1)), rand.New(rand.NewPCG(9, 1))
	models := map[string]int{}
	for range 100 {
		x, y := w.next(a), w.next(b)
		if string(x.body) != string(y.body) {
			t.Fatal("the same seed made different jobs")
		}
		models[x.model]++
	}
	if models["simple"] < 20 || models["identity"] < 20 {
		t.Errorf("mixed models %v", models)
	}
}

func TestShapes(t *testing.T) {
	burst := newWorkload(options{scenario: "burst", duration: 20 * time.Second})
	ramp := newWorkload(options{scenario: "ramp", duration: 10 * time.Second})
	steady := newWorkload(options{scenario: "steady", duration: 10 * time.Second})
	cases := []struct {
		name string
		w    *workload
		at   time.Duration
		want float64
	}{
		{"burst at start", burst, 0, 1},
		{"burst end", burst, 999 * time.Millisecond, 1},
		{"burst base", burst, 3 * time.Second, burstBase},
		{"burst again", burst, 5500 * time.Millisecond, 1},
		{"ramp floor", ramp, 0, rampFloor},
		{"ramp half", ramp, 5 * time.Second, 0.5},
		{"ramp top", ramp, 12 * time.Second, 1},
		{"steady", steady, 7 * time.Second, 1},
	}
	for _, c := range cases {
		if got := c.w.shape(c.at); got != c.want {
			t.Errorf("%s: shape(%v) = %v, want %v", c.name, c.at, got, c.want)
		}
	}
	if n := burst.activeClients(32, 3*time.Second); n != 7 {
		t.Errorf("burst base clients %d, want ceil(0.2*32)=7", n)
	}
	if n := ramp.activeClients(32, 0); n != 2 {
		t.Errorf("ramp start clients %d, want 2", n)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil || o.mode != "closed" || o.clients != 32 || o.models[0] != "simple" || o.url != "http://127.0.0.1:8080" {
		t.Fatalf("defaults %+v, %v", o, err)
	}
	o, err = parseFlags([]string{"-scenario", "streaming"}, io.Discard)
	if err != nil || o.models[0] != "repeat" {
		t.Fatalf("streaming default model %v, %v", o.models, err)
	}
	o, err = parseFlags([]string{"-compare"}, io.Discard)
	if err != nil || !slices.Equal(o.peers, []string{"asynq", "asynq-http", "jetstream", "jetstream-http", "jetstream-kv-http", "jetstream-stages-http"}) {
		t.Fatalf("-compare peers %v, %v", o.peers, err)
	}
	o, err = parseFlags([]string{"-peers", "jetstream-http,asynq"}, io.Discard)
	if err != nil || !o.compare || !slices.Equal(o.peers, []string{"asynq", "jetstream-http"}) {
		t.Fatalf("-peers: compare %v, peers %v, %v", o.compare, o.peers, err)
	}
	bad := []struct {
		name string
		args []string
	}{
		{"remote url", []string{"-url", "http://example.com:8080"}},
		{"remote redis", []string{"-compare", "-redis", "10.0.0.1:6379"}},
		{"no duration", []string{"-d", "0"}},
		{"too long", []string{"-d", "2h"}},
		{"no clients", []string{"-c", "0"}},
		{"bad mode", []string{"-mode", "half"}},
		{"open without rate", []string{"-mode", "open", "-rate", "0"}},
		{"bad scenario", []string{"-scenario", "chaos"}},
		{"unknown model", []string{"-model", "gpt5"}},
		{"tensor model streaming", []string{"-scenario", "streaming", "-model", "simple"}},
		{"compare streaming", []string{"-compare", "-scenario", "streaming"}},
		{"compare repeat", []string{"-compare", "-model", "repeat"}},
		{"plot format", []string{"-plot", "out.pdf"}},
		{"unknown peer", []string{"-peers", "asynq,sidekiq"}},
		{"peers streaming", []string{"-peers", "asynq", "-scenario", "streaming"}},
		{"stray argument", []string{"now"}},
	}
	for _, c := range bad {
		if _, err := parseFlags(c.args, io.Discard); err == nil {
			t.Errorf("%s: %v accepted", c.name, c.args)
		}
	}
}

func TestReadSSE(t *testing.T) {
	stream := "id: 0-0\nevent: status\ndata: {\"status\":\"queued\"}\n\n: keepalive\n\n" +
		"id: 1-1\nevent: token\ndata: {\"seq\":1,\"text\":\"a\"}\n\n" +
		"id: 2-1\nevent: result\ndata: {\"id\":\"j\",\ndata: \"status\":\"succeeded\"}\n\n" +
		"id: 9-9\nevent: token\ndata: {}\n\n"
	var got []sseEvent
	err := readSSE(strings.NewReader(stream), func(e sseEvent) error {
		got = append(got, e)
		if e.event == "result" {
			return errStreamEnd
		}
		return nil
	})
	if err != nil || len(got) != 3 || got[1].id != "1-1" || got[2].data != "{\"id\":\"j\",\n\"status\":\"succeeded\"}" {
		t.Fatalf("events %+v, %v", got, err)
	}
	err = readSSE(strings.NewReader("id: 1\nevent: token\ndata: {}\n\n"), func(sseEvent) error { return nil })
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a stream cut before its result: %v", err)
	}
}

// fakeTarget answers every job after gate opens, then at once.
type fakeTarget struct {
	gate  chan struct{}
	calls atomic.Int64
}

func (f *fakeTarget) Name() string { return "fake" }
func (f *fakeTarget) Close() error { return nil }
func (f *fakeTarget) Do(ctx context.Context, j job, start time.Time) outcome {
	f.calls.Add(1)
	select {
	case <-f.gate:
		return outcome{done: time.Now()}
	case <-ctx.Done():
		return outcome{kind: errGetTransport, detail: ctx.Err().Error()}
	}
}

// TestOpenLoopCountsStalls: the system stalls for the first 300ms and only
// one job may be in flight, so the sender itself is held up. Measured from
// the intended send times, the jobs that should have gone out during the
// stall carry it in their latency (no coordinated omission).
func TestOpenLoopCountsStalls(t *testing.T) {
	f := &fakeTarget{gate: make(chan struct{})}
	time.AfterFunc(300*time.Millisecond, func() { close(f.gate) })
	o := options{mode: "open", rate: 100, duration: time.Second, maxInFlight: 1, jobTimeout: 5 * time.Second,
		models: []string{"simple"}, scenario: "steady", seed: 1}
	s := runTarget(context.Background(), f, newWorkload(o), o, io.Discard)
	if s.Errors != 0 || s.Jobs < 95 || s.Jobs > 101 {
		t.Fatalf("jobs %d errors %v", s.Jobs, s.ByKind)
	}
	// Job k (intended at 10k ms) could not start before 300ms: the first
	// ~30 jobs wait 300 - 10k ms. A closed-loop view would see ~0 for all
	// but the first.
	if s.LatencyMS.Max < 250 || s.LatencyMS.P90 < 50 {
		t.Errorf("latency %+v hides the stall", s.LatencyMS)
	}
	if s.LatencyMS.P50 > 20 {
		t.Errorf("p50 %v: jobs after the stall should be quick", s.LatencyMS.P50)
	}
}

func TestClosedLoopStopsAtJobCount(t *testing.T) {
	f := &fakeTarget{gate: make(chan struct{})}
	close(f.gate)
	o := options{mode: "closed", clients: 8, duration: 10 * time.Second, maxJobs: 50, jobTimeout: time.Second,
		models: []string{"simple"}, scenario: "steady", seed: 1}
	start := time.Now()
	s := runTarget(context.Background(), f, newWorkload(o), o, io.Discard)
	if s.Jobs != 50 || s.Sent != 50 || f.calls.Load() != 50 {
		t.Fatalf("jobs %d sent %d calls %d, want 50", s.Jobs, s.Sent, f.calls.Load())
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v: -n did not end the run", time.Since(start))
	}
}

// TestLostJobs: a system that never answers makes every job lost after the
// job timeout, and the run still ends.
func TestLostJobs(t *testing.T) {
	f := &fakeTarget{gate: make(chan struct{})}
	o := options{mode: "closed", clients: 2, duration: 100 * time.Millisecond, jobTimeout: 200 * time.Millisecond,
		models: []string{"simple"}, scenario: "steady", seed: 1}
	s := runTarget(context.Background(), f, newWorkload(o), o, io.Discard)
	out := &Output{Summary: s}
	if s.Jobs != 0 || s.ByKind[errLost] != 2 || len(out.failures()) != 1 {
		t.Fatalf("summary %+v, failures %v", s, out.failures())
	}
}

func TestWaiters(t *testing.T) {
	w := newWaiters()
	ch := w.add("a")
	w.deliver("a", []byte("1"))
	w.deliver("a", []byte("dup")) // dropped, never blocks
	w.deliver("b", []byte("nobody"))
	if got := <-ch; string(got) != "1" {
		t.Fatalf("got %q", got)
	}
	w.remove("a")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { w.deliver("a", nil) })
	}
	wg.Wait()
}

func TestCompareRows(t *testing.T) {
	in := Summary{System: "inferq", JobsPerS: 100, LatencyMS: &Percentiles{P50: 10, P99: 40}}
	peer := Summary{System: "asynq", JobsPerS: 250, LatencyMS: &Percentiles{P50: 5, P99: 80}}
	viaHTTP := Summary{System: "asynq-http", JobsPerS: 50, LatencyMS: &Percentiles{P50: 20, P99: 80}}
	rows := compareRows(in, []Summary{peer, viaHTTP})
	if len(rows) != 3 || rows[0].JobsPerSX != 1 || rows[1].JobsPerSX != 2.5 || rows[1].P50X != 0.5 || rows[1].P99X != 2 || rows[1].Batching {
		t.Fatalf("rows %+v", rows)
	}
	if !rows[0].HTTP || rows[1].HTTP || !rows[2].HTTP || rows[2].ResultKept == "" {
		t.Errorf("http columns: inferq %v, asynq %v, asynq-http %v", rows[0].HTTP, rows[1].HTTP, rows[2].HTTP)
	}
}

// TestWrongAnswersFailTheRun serves the API with a broken `simple` that
// answers the sum twice: every job must count as wrong_result and the
// command must exit 1.
func TestWrongAnswersFailTheRun(t *testing.T) {
	var (
		mu   sync.Mutex
		jobs = map[string][]tensorJSON{}
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v1/models/simple/jobs", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Inputs []tensorJSON }
		_ = json.NewDecoder(r.Body).Decode(&req)
		a, _ := int32Input(req.Inputs, "INPUT0")
		b, _ := int32Input(req.Inputs, "INPUT1")
		out := simpleOutputs(a, b)
		out[1].Data = out[0].Data
		mu.Lock()
		id := fmt.Sprint(len(jobs))
		jobs[id] = out
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"id":%q,"status":"queued"}`, id)
	})
	mux.HandleFunc("GET /v1/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		out := jobs[r.PathValue("id")]
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"id": r.PathValue("id"), "status": "succeeded", "result": map[string]any{"outputs": out}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	var stdout, stderr bytes.Buffer
	code := runCLI(t.Context(), []string{"-url", srv.URL, "-c", "2", "-n", "20", "-d", "10s"}, &stdout, &stderr)
	var out Output
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("stdout: %v\n%s", err, stdout.String())
	}
	if code != 1 || out.Jobs != 0 || out.ByKind[errWrongResult] != 20 || !strings.Contains(stderr.String(), "FAILED") {
		t.Fatalf("exit %d, summary %+v\n%s", code, out.Summary, stderr.String())
	}
}

func TestMailboxes(t *testing.T) {
	m := newMailboxes()
	m.open("a")
	m.deliver("a", []byte("1")) // before anyone waits: kept
	m.deliver("a", []byte("dup"))
	m.deliver("b", []byte("no box"))
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if got, err := m.take(done, "a"); err != nil || string(got) != "1" {
		t.Fatalf("take with an ended ctx of an answer that is there: %q, %v", got, err)
	}
	if _, err := m.take(context.Background(), "a"); !errors.Is(err, errUnknownJob) {
		t.Fatalf("a box taken twice: %v", err)
	}
	m.open("c")
	if _, err := m.take(done, "c"); !errors.Is(err, context.Canceled) {
		t.Fatalf("empty box, ended ctx: %v", err)
	}
	got := make(chan []byte)
	go func() { answer, _ := m.take(context.Background(), "c"); got <- answer }()
	m.rotate() // one rotation keeps the box
	m.deliver("c", []byte("3"))
	if a := <-got; string(a) != "3" {
		t.Fatalf("waiting take got %q", a)
	}
	m.open("d")
	m.rotate()
	m.rotate()
	if _, err := m.take(done, "d"); !errors.Is(err, errUnknownJob) {
		t.Fatalf("a box two rotations old: %v", err)
	}
	m.open("e")
	stop := m.expireEvery(time.Millisecond)
	defer stop()
	for deadline := time.Now().Add(5 * time.Second); m.box("e") != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("expireEvery did not drop a box in 5s")
		}
	}
}

// fakePipeline answers each job with peerAnswer, at once or, while hold
// is set, when release is called.
type fakePipeline struct {
	boxes *mailboxes
	mu    sync.Mutex
	hold  bool
	held  map[string][]byte
}

func (f *fakePipeline) enqueue(ctx context.Context, id, model string, body []byte) error {
	answer, err := peerAnswer(model, body)
	if err != nil {
		return err
	}
	f.boxes.open(id)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hold {
		f.held[id] = answer
	} else {
		f.boxes.deliver(id, answer)
	}
	return nil
}

func (f *fakePipeline) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, answer := range f.held {
		f.boxes.deliver(id, answer)
	}
	clear(f.held)
}

func (f *fakePipeline) await(ctx context.Context, id string) ([]byte, error) {
	return f.boxes.take(ctx, id)
}

func (f *fakePipeline) Close() error { return nil }

// TestHTTPFront checks the front door's contract: 202 and an id, a GET
// that waits for the answer and is woken by it, pending when the wait ends
// first, and 400/404 for bad requests.
func TestHTTPFront(t *testing.T) {
	p := &fakePipeline{boxes: newMailboxes(), hold: true, held: map[string][]byte{}}
	srv := httptest.NewServer(newHTTPFront("front", p).routes())
	t.Cleanup(srv.Close)
	do := func(method, path, body string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}

	j := simpleJob(rand.New(rand.NewPCG(7, 8)))
	code, body := do("POST", "/jobs?model=simple", string(j.body))
	var acc struct{ ID string }
	if code != http.StatusAccepted || json.Unmarshal(body, &acc) != nil || acc.ID == "" {
		t.Fatalf("POST: %d %s", code, body)
	}
	if code, body := do("GET", "/jobs/"+acc.ID+"?wait=0s", ""); code != http.StatusAccepted || !strings.Contains(string(body), `"pending"`) {
		t.Fatalf("GET before the answer: %d %s", code, body)
	}
	time.AfterFunc(100*time.Millisecond, p.release)
	start := time.Now()
	code, body = do("GET", "/jobs/"+acc.ID+"?wait=10s", "")
	if code != http.StatusOK || time.Since(start) > 5*time.Second {
		t.Fatalf("long-poll: %d after %v: %s", code, time.Since(start), body)
	}
	if o := checkPeerAnswer(j, acc.ID, body, time.Now(), 0); o.kind != "" {
		t.Fatalf("answer: %s %s", o.kind, o.detail)
	}
	// ?wait= on the POST: the answer in its response, or 202 when the wait
	// ends first.
	time.AfterFunc(100*time.Millisecond, p.release)
	code, body = do("POST", "/jobs?model=simple&wait=10s", string(j.body))
	if code != http.StatusOK {
		t.Fatalf("POST with wait: %d %s", code, body)
	}
	if o := checkPeerAnswer(j, "", body, time.Now(), 0); o.kind != "" {
		t.Fatalf("POST with wait, answer: %s %s", o.kind, o.detail)
	}
	code, body = do("POST", "/jobs?model=simple&wait=1ms", string(j.body))
	var late struct{ ID, Status string }
	if code != http.StatusAccepted || json.Unmarshal(body, &late) != nil || late.ID == "" || late.Status != "pending" {
		t.Fatalf("POST with a wait that ends first: %d %s", code, body)
	}
	p.release()
	cases := []struct {
		name, method, path, body string
		code                     int
	}{
		{"bad POST wait", "POST", "/jobs?model=simple&wait=soon", string(j.body), http.StatusBadRequest},
		{"taken already", "GET", "/jobs/" + acc.ID, "", http.StatusNotFound},
		{"unknown id", "GET", "/jobs/nope?wait=1ms", "", http.StatusNotFound},
		{"bad wait", "GET", "/jobs/" + acc.ID + "?wait=soon", "", http.StatusBadRequest},
		{"not json", "POST", "/jobs", "{inputs", http.StatusBadRequest},
		{"unknown model", "POST", "/jobs?model=gpt5", string(j.body), http.StatusNotFound},
		{"enqueue fails", "POST", "/jobs?model=simple", `{"inputs":[]}`, http.StatusServiceUnavailable},
		{"wrong method", "DELETE", "/jobs/" + acc.ID, "", http.StatusMethodNotAllowed},
	}
	for _, c := range cases {
		if code, body := do(c.method, c.path, c.body); code != c.code {
			t.Errorf("%s: %s %s answered %d %s, want %d", c.name, c.method, c.path, code, body, c.code)
		}
	}
}

// TestHTTPPeer drives a pipeline through its front door with the HTTP
// peer's client, as -compare does.
func TestHTTPPeer(t *testing.T) {
	o := options{mode: "closed", clients: 4, duration: 300 * time.Millisecond, jobTimeout: 5 * time.Second,
		models: []string{"simple", "identity"}, scenario: "mixed", seed: 1}
	tg, err := startHTTPPeer("fake-http", o, &fakePipeline{boxes: newMailboxes()})
	if err != nil {
		t.Fatal(err)
	}
	s := runTarget(context.Background(), tg, newWorkload(o), o, io.Discard)
	if err := tg.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if s.System != "fake-http" || s.Errors != 0 || s.Jobs == 0 {
		t.Fatalf("%d jobs, errors %v %v", s.Jobs, s.ByKind, s.Details)
	}
	// With -prefer-wait the answer comes in the POST's response.
	o.preferWait = 10 * time.Second
	tg, err = startHTTPPeer("fake-http", o, &fakePipeline{boxes: newMailboxes()})
	if err != nil {
		t.Fatal(err)
	}
	s = runTarget(context.Background(), tg, newWorkload(o), o, io.Discard)
	if err := tg.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if s.Errors != 0 || s.Jobs == 0 {
		t.Fatalf("with -prefer-wait: %d jobs, errors %v %v", s.Jobs, s.ByKind, s.Details)
	}
}

// FuzzStagesEntries holds the jetstream-stages-http peer's batch encoding to
// a round trip, and its decoder to never panicking on any input.
func FuzzStagesEntries(f *testing.F) {
	f.Add("job-1", []byte(`{"inputs":[]}`), []byte{0x05})
	f.Add("", []byte{}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, id string, data, junk []byte) {
		b := appendEntry(appendEntry(nil, id, data), id+"x", nil)
		var got []string
		if err := eachEntry(b, func(id string, data []byte) error {
			got = append(got, id+"="+string(data))
			return nil
		}); err != nil || !slices.Equal(got, []string{id + "=" + string(data), id + "x="}) {
			t.Fatalf("round trip: %q, %v", got, err)
		}
		_ = eachEntry(junk, func(string, []byte) error { return nil })
	})
}
