package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// harness is a real embedded JetStream provisioned for some models, with a
// recorder of every message published on it, so tests see the agent's
// events, tokens and acks in the order it sent them.
type harness struct {
	t      *testing.T
	nats   *testutil.NATS
	topo   jetstream.Topology
	models []config.Model

	mu      sync.Mutex
	seen    []*nats.Msg
	markers int // settled's marker messages so far
}

func newHarness(t *testing.T, models ...config.Model) *harness {
	t.Helper()
	cfg := config.Default()
	cfg.Models = models
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, nats: testutil.StartNATS(t), models: cfg.Models}
	h.topo = jetstream.DefaultTopology()
	h.topo.MemoryStorage = true
	h.topo.WorkerTTL = time.Second
	var policies []provision.ModelPolicy
	for _, m := range cfg.Models {
		policies = append(policies, provision.ModelPolicy{Name: m.Name, MaxBatchSize: m.Batching.MaxBatchSize, MaxDeliver: m.Queue.MaxDeliver})
	}
	if err := provision.All(t.Context(), h.nats.JS, h.topo, policies); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(h.nats.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe(">", func(m *nats.Msg) {
		h.mu.Lock()
		h.seen = append(h.seen, m)
		h.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return h
}

// agent starts an agent on its own connection; stop (also run at cleanup)
// cancels it and waits for Run to return.
func (h *harness) agent(name string, edit func(*Options)) (a *Agent, nc *nats.Conn, stop func()) {
	h.t.Helper()
	nc, err := nats.Connect(h.nats.URL)
	if err != nil {
		h.t.Fatal(err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		h.t.Fatal(err)
	}
	opt := Options{Models: h.models, Topology: h.topo, JS: js, Name: name, Log: testLogger(h.t),
		Metrics: obs.NewMetrics(obs.NewRegistry())}
	if edit != nil {
		edit(&opt)
	}
	a = New(opt)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					h.t.Errorf("agent %s: %v", name, err)
				}
			case <-time.After(20 * time.Second):
				h.t.Errorf("agent %s did not stop within 20s", name)
			}
			nc.Close()
		})
	}
	h.t.Cleanup(stop)
	return a, nc, stop
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// rowsBatch is a batch of one INT32 [1,2] row per job; params[k], if set,
// is job k's parameters.
func rowsBatch(id, model string, rows [][2]int32, params map[int]string) *inferqpb.Batch {
	b := &inferqpb.Batch{Id: id, Model: model, Version: "1"}
	var data []byte
	for k, r := range rows {
		data = binary.LittleEndian.AppendUint32(data, uint32(r[0]))
		data = binary.LittleEndian.AppendUint32(data, uint32(r[1]))
		b.Jobs = append(b.Jobs, &inferqpb.BatchJob{Id: fmt.Sprintf("%s-j%d", id, k), Tenant: "t1", RowStart: int64(k), RowEnd: int64(k + 1),
			Attempt: 1, JobsSeq: uint64(k + 1), ParametersJson: []byte(params[k])})
	}
	b.Inputs = []*inferqpb.Tensor{{Name: "INPUT0", Datatype: "INT32", Shape: []int64{int64(len(rows)), 2}, Data: data}}
	return b
}

func (h *harness) publish(b *inferqpb.Batch) {
	h.t.Helper()
	if _, err := jetstream.Publish(h.t.Context(), h.nats.JS, h.topo.BatchSubject(b.Model), b, b.Id); err != nil {
		h.t.Fatal(err)
	}
}

// settled waits until every batch left the work-queue stream: acked or
// terminated, never merely held.
func (h *harness) settled() {
	h.t.Helper()
	testutil.Eventually(h.t, 20*time.Second, func() bool {
		s, err := h.nats.JS.Stream(h.t.Context(), h.topo.BatchesStream())
		return err == nil && s.CachedInfo().State.Msgs == 0
	}, "batches still in %s", h.topo.BatchesStream())
	// Everything published before the last ack was routed to the recording
	// before this marker; once the marker is recorded, so are they.
	h.markers++
	marker := fmt.Sprintf("settled-%d", h.markers)
	if err := h.nats.Conn.Publish("harness.settled", []byte(marker)); err != nil {
		h.t.Fatal(err)
	}
	testutil.Eventually(h.t, 10*time.Second, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return slices.ContainsFunc(h.seen, func(m *nats.Msg) bool { return m.Subject == "harness.settled" && string(m.Data) == marker })
	}, "the recording did not catch up")
}

// terminal returns every terminal event published, by job, and the index
// in the recording of the last one.
func (h *harness) terminal() (map[string][]*inferqpb.JobEvent, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][]*inferqpb.JobEvent{}
	last := -1
	for i, m := range h.seen {
		if !strings.HasPrefix(m.Subject, h.topo.Prefix+".events.") || strings.HasSuffix(m.Subject, ".running") {
			continue
		}
		var evs []*inferqpb.JobEvent
		if strings.HasSuffix(m.Subject, "."+jetstream.EventBatch) {
			batch, err := lifecycle.DecodeEvents(m.Data)
			if err != nil {
				h.t.Fatalf("events on %s: %v", m.Subject, err)
			}
			evs = batch.Events
		} else {
			ev := &inferqpb.JobEvent{}
			if err := proto.Unmarshal(m.Data, ev); err != nil {
				h.t.Fatalf("event on %s: %v", m.Subject, err)
			}
			evs = []*inferqpb.JobEvent{ev}
		}
		for _, ev := range evs {
			out[ev.JobId] = append(out[ev.JobId], ev)
		}
		last = i
	}
	return out, last
}

// acks returns the recording's indexes of acks of batch messages.
func (h *harness) acks() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []int
	for i, m := range h.seen {
		if strings.HasPrefix(m.Subject, "$JS.ACK."+h.topo.BatchesStream()+".") && string(m.Data) == "+ACK" {
			out = append(out, i)
		}
	}
	return out
}

// tokens returns the token chunks published for a job, in order.
func (h *harness) tokens(job string) []lifecycle.TokenChunk {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []lifecycle.TokenChunk
	for _, m := range h.seen {
		if m.Subject != h.topo.TokenSubject("t1", job) {
			continue
		}
		c, err := lifecycle.DecodeTokenChunk(m.Data)
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// deadLetters reads the dead-letter stream.
func (h *harness) deadLetters() []jetstream.DeadLetter {
	h.t.Helper()
	s, err := h.nats.JS.Stream(h.t.Context(), h.topo.DeadStream())
	if err != nil {
		h.t.Fatal(err)
	}
	st := s.CachedInfo().State
	var out []jetstream.DeadLetter
	for seq := st.FirstSeq; st.Msgs > 0 && seq <= st.LastSeq; seq++ {
		raw, err := s.GetMsg(h.t.Context(), seq)
		if err != nil {
			h.t.Fatal(err)
		}
		var dl jetstream.DeadLetter
		if err := json.Unmarshal(raw.Data, &dl); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, dl)
	}
	return out
}

// counting wraps a runner and records the size of every batch it runs.
type counting struct {
	Runner
	mu    sync.Mutex
	sizes []int
}

func (c *counting) Run(ctx context.Context, b *inferqpb.Batch, emit func(*inferqpb.TokenChunk) error) (*inferqpb.BatchResult, error) {
	c.mu.Lock()
	c.sizes = append(c.sizes, len(b.Jobs))
	c.mu.Unlock()
	return c.Runner.Run(ctx, b, emit)
}

func (c *counting) runs() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sizes)
}

func identityOut(t *testing.T, ev *inferqpb.JobEvent) [2]int32 {
	t.Helper()
	if len(ev.Outputs) != 1 || ev.Outputs[0].Name != "OUTPUT0" || len(ev.Outputs[0].Data) != 8 {
		t.Fatalf("job %s outputs %v", ev.JobId, ev.Outputs)
	}
	d := ev.Outputs[0].Data
	return [2]int32{int32(binary.LittleEndian.Uint32(d)), int32(binary.LittleEndian.Uint32(d[4:]))}
}

// TestAgentIsolatesPoisonJobs: a batch that fails as a whole is split
// until its bad jobs fail alone (code poison_job, with a dead letter), its
// other jobs succeed in the same delivery, and the batch is acked only
// after every job's terminal event. A fault that is not a job's (every
// part fails) is retried as a batch, not split without end.
func TestAgentIsolatesPoisonJobs(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fail")
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		params   map[string]any
		rows     int
		poison   []int // jobs whose INPUT0 starts with 13
		runs     []int // batch sizes the runner saw, in order
		poisoned []int // jobs that end poison_job
		global   bool  // every job ends batch_failed after max_deliver
	}{
		{name: "one poison among five", params: map[string]any{"poison": 13}, rows: 5, poison: []int{3},
			runs: []int{5, 2, 3, 1, 2, 1, 1}, poisoned: []int{3}},
		{name: "two poisons in one half", params: map[string]any{"poison": 13}, rows: 6, poison: []int{0, 1},
			runs: []int{6, 3, 3, 1, 2, 1, 1}, poisoned: []int{0, 1}},
		{name: "first job poison in a pair", params: map[string]any{"poison": 13}, rows: 2, poison: []int{0},
			runs: []int{2, 1, 1}, poisoned: []int{0}},
		{name: "fault is the model's", params: map[string]any{"fail_while_exists": flag}, rows: 4,
			runs: []int{4, 2, 2, 4, 2, 2}, global: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, config.Model{Name: "flaky", Runner: config.Runner{Builtin: "flaky", Params: tc.params},
				Queue: config.Queue{MaxDeliver: 2, Backoff: []config.Duration{config.D(10 * time.Millisecond)}}})
			var cr *counting
			a, _, _ := h.agent("w1", func(o *Options) {
				o.NewRunner = func(m *config.Model) (Runner, error) {
					r, err := NewRunner(m)
					cr = &counting{Runner: r}
					return cr, err
				}
			})
			rows := make([][2]int32, tc.rows)
			for k := range rows {
				rows[k] = [2]int32{int32(k), int32(-k)}
				if slices.Contains(tc.poison, k) {
					rows[k][0] = 13
				}
			}
			b := rowsBatch("b1", "flaky", rows, nil)
			h.publish(b)
			h.settled()

			events, last := h.terminal()
			for k, j := range b.Jobs {
				evs := events[j.Id]
				if len(evs) != 1 {
					t.Fatalf("job %d: %d terminal events, want 1", k, len(evs))
				}
				ev := evs[0]
				switch {
				case tc.global:
					if ev.Status != inferqpb.Status_STATUS_FAILED || ev.Error.GetCode() != "batch_failed" {
						t.Errorf("job %d: %v %v, want batch_failed", k, ev.Status, ev.Error)
					}
				case slices.Contains(tc.poisoned, k):
					if ev.Status != inferqpb.Status_STATUS_FAILED || ev.Error.GetCode() != "poison_job" ||
						!strings.Contains(ev.Error.GetMessage(), "poison value 13") || !strings.Contains(ev.Error.GetMessage(), "split") {
						t.Errorf("job %d: %v %v, want poison_job", k, ev.Status, ev.Error)
					}
				default:
					if ev.Status != inferqpb.Status_STATUS_SUCCEEDED || identityOut(t, ev) != rows[k] {
						t.Errorf("job %d: %v %v, want succeeded with %v", k, ev.Status, ev.Error, rows[k])
					}
				}
			}
			if got := cr.runs(); !slices.Equal(got, tc.runs) {
				t.Errorf("runner saw batches of %v, want %v", got, tc.runs)
			}
			dead := h.deadLetters()
			wantDead := len(tc.poisoned)
			if tc.global {
				wantDead = tc.rows
			}
			if len(dead) != wantDead {
				t.Fatalf("%d dead letters, want %d: %+v", len(dead), wantDead, dead)
			}
			for _, dl := range dead {
				k := slices.IndexFunc(b.Jobs, func(j *inferqpb.BatchJob) bool { return j.Id == dl.Job })
				if k < 0 || dl.Model != "flaky" || dl.Batch != "b1" || dl.JobsSeq != uint64(k+1) || dl.Error == "" ||
					dl.Deliveries != map[bool]uint64{true: 2, false: 1}[tc.global] {
					t.Errorf("dead letter %+v", dl)
				}
			}
			st := a.Stats("flaky")
			want := Stats{Batches: 1, Succeeded: uint64(tc.rows - len(tc.poisoned)), Failed: uint64(len(tc.poisoned)),
				Poisoned: uint64(len(tc.poisoned)), Splits: 1, MaxInFlight: 1}
			if tc.global {
				want = Stats{Batches: 1, Released: 1, Failed: uint64(tc.rows), Splits: 2, MaxInFlight: 1}
			}
			if st != want {
				t.Errorf("stats %+v, want %+v", st, want)
			}
			if acks := h.acks(); !tc.global && (len(acks) != 1 || acks[0] < last) {
				t.Errorf("batch acked at %v, last terminal event at %d: the ack must come after every terminal event", acks, last)
			}
		})
	}
}

// fakeProcess is a Process driving the test binary as a fake runner (see
// TestMain) that reports device dev.
func fakeProcess(t *testing.T, dev string) func(*config.Model) (Runner, error) {
	return func(m *config.Model) (Runner, error) {
		p, err := NewProcess(m, ProcessOptions{
			Command:    []string{os.Args[0], "-test.run=^$"},
			Env:        []string{"INFERQ_FAKE_RUNNER=1", "INFERQ_FAKE_DEVICE=" + dev},
			PythonPath: t.TempDir(), RestartBackoff: 10 * time.Millisecond, Log: testLogger(t),
		})
		if err != nil {
			return nil, err
		}
		p.Warm()
		return p, nil
	}
}

func fakeModel() config.Model {
	return config.Model{Name: "fake", Runner: config.Runner{Command: []string{"fake-runner"}},
		Inputs:   []config.Tensor{{Name: "INPUT0", Datatype: "INT32", Dims: []int64{2}}},
		Outputs:  []config.Tensor{{Name: "OUTPUT0", Datatype: "INT32", Dims: []int64{2}}},
		Batching: config.Batching{MaxBatchSize: 8},
		Queue:    config.Queue{MaxDeliver: 3, Backoff: []config.Duration{config.D(10 * time.Millisecond)}}}
}

// TestAgentIsolatesRunnerCrash: a runner subprocess that crashes on one job
// is restarted for each part of the split; the job fails alone with the
// crash as its error and its neighbours succeed.
func TestAgentIsolatesRunnerCrash(t *testing.T) {
	h := newHarness(t, fakeModel())
	a, _, _ := h.agent("w1", func(o *Options) { o.NewRunner = fakeProcess(t, "cpu") })
	rows := [][2]int32{{1, 2}, {3, 4}, {5, 6}, {7, 8}}
	b := rowsBatch("c1", "fake", rows, map[int]string{2: `{"crash":true}`})
	h.publish(b)
	h.settled()
	events, _ := h.terminal()
	for k, j := range b.Jobs {
		if len(events[j.Id]) != 1 {
			t.Fatalf("job %d: %d terminal events", k, len(events[j.Id]))
		}
		ev := events[j.Id][0]
		if k == 2 {
			if ev.Error.GetCode() != "poison_job" || !strings.Contains(ev.Error.GetMessage(), "exited mid-batch") {
				t.Errorf("crashing job: %v %v", ev.Status, ev.Error)
			}
			continue
		}
		if ev.Status != inferqpb.Status_STATUS_SUCCEEDED || identityOut(t, ev) != rows[k] {
			t.Errorf("job %d: %v %v", k, ev.Status, ev.Error)
		}
	}
	if st := a.Stats("fake"); st.Poisoned != 1 || st.Succeeded != 3 || st.Batches != 1 || st.Released != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestAgentHeartbeat: the workers bucket holds one entry per worker and
// model with the device the runner reported (torch's "cuda" is cuda:0),
// the capacity and readiness; a clean stop deletes it and a dead worker's
// entry expires with the bucket's TTL.
func TestAgentHeartbeat(t *testing.T) {
	h := newHarness(t, fakeModel(), config.Model{Name: "identity", Runner: config.Runner{Builtin: "identity"},
		Batching: config.Batching{MaxBatchSize: 16}})
	kv, err := h.nats.JS.KeyValue(t.Context(), h.topo.WorkersBucket())
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string) (Heartbeat, bool) {
		e, err := kv.Get(t.Context(), key)
		if err != nil {
			return Heartbeat{}, false
		}
		var hb Heartbeat
		if err := json.Unmarshal(e.Value(), &hb); err != nil {
			t.Fatal(err)
		}
		return hb, true
	}
	fakeRunner := fakeProcess(t, "cuda")
	runners := func(o *Options) {
		o.NewRunner = func(m *config.Model) (Runner, error) {
			if m.Name == "fake" {
				return fakeRunner(m)
			}
			return NewRunner(m)
		}
	}
	_, nc1, _ := h.agent("w1.gpu0", runners)
	var hb Heartbeat
	testutil.Eventually(t, 10*time.Second, func() bool {
		var ok bool
		hb, ok = get("fake.w1_gpu0")
		return ok && hb.Ready
	}, "no ready heartbeat for fake.w1_gpu0")
	if hb.Model != "fake" || hb.Worker != "w1.gpu0" || hb.Device != "cuda:0" || hb.Capacity != 4 || hb.MaxInflight != 1 || hb.Time.IsZero() {
		t.Errorf("heartbeat %+v: want device cuda:0, capacity 4 (the runner's, below max_batch_size 8)", hb)
	}
	if hb, ok := get("identity.w1_gpu0"); !ok || hb.Device != "cpu" || hb.Capacity != 16 || !hb.Ready {
		t.Errorf("identity heartbeat %+v %v", hb, ok)
	}

	// A graceful stop removes the entries at once.
	_, _, stop2 := h.agent("w2", runners)
	testutil.Eventually(t, 5*time.Second, func() bool { _, ok := get("identity.w2"); return ok }, "no heartbeat for w2")
	stop2()
	if _, ok := get("identity.w2"); ok {
		t.Error("heartbeat of a stopped worker still there")
	}

	// A worker that dies (its connection gone, nothing deleted) drops out
	// after the TTL.
	nc1.Close()
	t0 := time.Now()
	testutil.Eventually(t, 10*time.Second, func() bool { _, ok := get("fake.w1_gpu0"); return !ok }, "heartbeat of a dead worker did not expire")
	t.Logf("dead worker's heartbeat expired after %s (TTL %s)", time.Since(t0), h.topo.WorkerTTL)
}

func TestDeviceName(t *testing.T) {
	for in, want := range map[string]string{"cuda": "cuda:0", "cuda:0": "cuda:0", "CUDA:3": "cuda:3", "cpu": "cpu", "": "cpu", "mps": "cpu"} {
		if got := DeviceName(in); got != want {
			t.Errorf("DeviceName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAgentMaxInflight: an agent holds at most MaxInflight batches of a
// model, and a runner that runs one batch at a time caps it at 1.
func TestAgentMaxInflight(t *testing.T) {
	h := newHarness(t, config.Model{Name: "simgpu", Runner: config.Runner{Builtin: "simgpu", Params: map[string]any{"a": "300ms", "b": "0s"}}})
	for i := range 7 {
		h.publish(rowsBatch(fmt.Sprintf("m%d", i), "simgpu", [][2]int32{{int32(i), 0}}, nil))
	}
	a, _, _ := h.agent("w1", func(o *Options) { o.MaxInflight = 3 })
	h.settled()
	if st := a.Stats("simgpu"); st.MaxInFlight != 3 || st.Batches != 7 || st.Succeeded != 7 {
		t.Errorf("stats %+v: want 7 batches, at most (and at some point) 3 in flight", st)
	}
	if n := a.inflight(&Process{}); n != 1 {
		t.Errorf("a Process runner allows %d batches in flight, want 1", n)
	}
}

// genRunner is a generate test runner: each job streams "a", "b", "c"
// (seq 1..3), and the whole batch fails after streaming when it holds job
// bad.
type genRunner struct{ bad string }

func (g genRunner) Close() error { return nil }

func (g genRunner) Run(ctx context.Context, b *inferqpb.Batch, emit func(*inferqpb.TokenChunk) error) (*inferqpb.BatchResult, error) {
	res := &inferqpb.BatchResult{BatchId: b.Id}
	failed := false
	for _, j := range b.Jobs {
		for k, s := range []string{"a", "b", "c"} {
			if err := emit(&inferqpb.TokenChunk{JobId: j.Id, Seq: uint64(k + 1), Text: s, Final: k == 2}); err != nil {
				return nil, err
			}
		}
		failed = failed || j.Id == g.bad
		res.Jobs = append(res.Jobs, &inferqpb.JobResult{JobId: j.Id, Outputs: []*inferqpb.Tensor{
			{Name: "text_output", Datatype: "BYTES", Shape: []int64{1, 1}, Data: bytesElem("abc")}}})
	}
	if failed {
		return nil, fmt.Errorf("generate test runner: batch %s holds %s", b.Id, g.bad)
	}
	return res, nil
}

// TestAgentIsolationStreamsTokensOnce: jobs run again while their batch is
// split do not repeat their tokens: each seq is published once, in order.
func TestAgentIsolationStreamsTokensOnce(t *testing.T) {
	h := newHarness(t, config.Model{Name: "gen", Kind: config.KindGenerate, Runner: config.Runner{Command: []string{"gen"}},
		Inputs: []config.Tensor{{Name: "text_input", Datatype: "BYTES", Dims: []int64{1}}}})
	b := rowsBatch("g1", "gen", make([][2]int32, 4), nil)
	h.agent("w1", func(o *Options) {
		o.NewRunner = func(*config.Model) (Runner, error) { return genRunner{bad: "g1-j1"}, nil }
	})
	h.publish(b)
	h.settled()
	for k, j := range b.Jobs {
		var seqs []uint64
		var text strings.Builder
		for _, c := range h.tokens(j.Id) {
			seqs = append(seqs, c.Seq)
			text.WriteString(c.Text)
		}
		if !slices.Equal(seqs, []uint64{1, 2, 3}) || text.String() != "abc" {
			t.Errorf("job %d: token seqs %v text %q, want 1 2 3 once", k, seqs, text.String())
		}
	}
	events, _ := h.terminal()
	if ev := events["g1-j1"]; len(ev) != 1 || ev[0].Error.GetCode() != "poison_job" {
		t.Errorf("bad job's events %v", ev)
	}
	if ev := events["g1-j3"]; len(ev) != 1 || ev[0].Status != inferqpb.Status_STATUS_SUCCEEDED {
		t.Errorf("good job's events %v", ev)
	}
}

// TestSubBatch cuts jobs out of a ragged batch: every input and mask keeps
// exactly their rows, BYTES included, and rows restart at 0.
func TestSubBatch(t *testing.T) {
	var text []byte
	for _, s := range []string{"a", "bb", "", "dddd"} {
		text = append(text, bytesElem(s)...)
	}
	fp := make([]byte, 4*3*4) // FP32 [4,3], padded
	for i := range fp {
		fp[i] = byte(i)
	}
	b := &inferqpb.Batch{Id: "r", Model: "m", Version: "2",
		Jobs: []*inferqpb.BatchJob{{Id: "j0", RowStart: 0, RowEnd: 1}, {Id: "j1", RowStart: 1, RowEnd: 3}, {Id: "j2", RowStart: 3, RowEnd: 4}},
		Inputs: []*inferqpb.Tensor{{Name: "T", Datatype: "BYTES", Shape: []int64{4}, Data: text},
			{Name: "X", Datatype: "FP32", Shape: []int64{4, 3}, Data: fp}},
		Masks: []*inferqpb.Tensor{{Name: "X_mask", Datatype: "BOOL", Shape: []int64{4, 3}, Data: []byte{1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1}}}}
	if !contiguous(b) {
		t.Fatal("batch not contiguous")
	}
	sub, err := subBatch(b, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Id != "r.1-3" || sub.Model != "m" || sub.Version != "2" || len(sub.Jobs) != 2 ||
		sub.Jobs[0].Id != "j1" || sub.Jobs[0].RowStart != 0 || sub.Jobs[0].RowEnd != 2 || sub.Jobs[1].RowStart != 2 || sub.Jobs[1].RowEnd != 3 {
		t.Fatalf("sub-batch jobs %v", sub.Jobs)
	}
	if b.Jobs[1].RowStart != 1 {
		t.Error("subBatch changed the original batch's jobs")
	}
	wantText := slices.Concat(bytesElem("bb"), bytesElem(""), bytesElem("dddd"))
	if x := sub.Inputs[0]; string(x.Data) != string(wantText) || fmt.Sprint(x.Shape) != "[3]" {
		t.Errorf("BYTES rows: %q %v", x.Data, x.Shape)
	}
	if x := sub.Inputs[1]; string(x.Data) != string(fp[12:]) || fmt.Sprint(x.Shape) != "[3 3]" {
		t.Errorf("FP32 rows: %v %v", x.Data, x.Shape)
	}
	if x := sub.Masks[0]; string(x.Data) != string([]byte{1, 1, 1, 1, 0, 0, 1, 1, 1}) || x.Name != "X_mask" {
		t.Errorf("mask rows: %v", x.Data)
	}
	b.Jobs[1].RowStart = 2 // a gap: the batch cannot be cut by jobs
	if contiguous(b) {
		t.Error("a batch with a gap in its rows counts as contiguous")
	}
}
