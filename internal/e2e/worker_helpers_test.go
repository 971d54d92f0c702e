package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
	"github.com/inferq/inferq/worker/deepspeed_nats/agent"
)

// brokerOnly is the stack without its worker: the tests run their own
// agents, to stop, kill and count them one by one.
var brokerOnly = stack.Components{Ingress: true, Batcher: true, ResultSvc: true}

// testAgent is a worker agent on its own NATS connection, as a separate
// worker process would be.
type testAgent struct {
	*agent.Agent
	nc   *nats.Conn
	stop func() // cancel and wait for Run; idempotent, also run at cleanup
}

// kill drops the agent's connection without acking or deleting anything,
// as a crashed worker would, then stops its goroutines.
func (a *testAgent) kill() {
	a.nc.Close()
	a.stop()
}

// startAgent runs a worker agent for models against the stack's NATS.
func startAgent(t *testing.T, s *Stack, name string, models []config.Model, edit func(*agent.Options)) *testAgent {
	t.Helper()
	nc, err := nats.Connect(s.NATS.URL, nats.Name(name))
	if err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	opt := agent.Options{Models: models, Topology: stack.Topology(s.Cfg), JS: js, Name: name,
		Log:     slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Metrics: obs.NewMetrics(obs.NewRegistry())}
	if edit != nil {
		edit(&opt)
	}
	a := agent.New(opt)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("agent %s: %v", name, err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("agent %s did not stop within 30s", name)
			}
			nc.Close()
		})
	}
	t.Cleanup(stop)
	return &testAgent{Agent: a, nc: nc, stop: stop}
}

// testLog sends an agent's warnings to the test log, which only shows
// them when the test fails (or with -v).
type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// withParams is model m with its runner's params replaced.
func withParams(m config.Model, params map[string]any) config.Model {
	m.Runner.Params = params
	return m
}

// settle waits until nothing is left for a model's workers or for
// resultsvc, so every record read afterwards is final.
func settle(t *testing.T, s *Stack, model string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, c := range []struct{ stream, name string }{
			{"INFERQ_BATCHES", jetstream.WorkerConsumer(model)}, {"INFERQ_EVENTS", jetstream.ResultsConsumer}} {
			cons, err := s.NATS.JS.Consumer(t.Context(), c.stream, c.name)
			if err != nil {
				return false
			}
			info, err := cons.Info(t.Context())
			if err != nil || info.NumPending > 0 || info.NumAckPending > 0 || info.NumRedelivered > 0 {
				return false
			}
		}
		return true
	}, "work left for %s or resultsvc", model)
}

// pairBody is a simgpu/identity job whose output must be [k,-k].
func pairBody(k int) string {
	return fmt.Sprintf(`{"inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"INT32","data":[%d,%d]}]}`, k, -k)
}

// checkPair checks a finished simgpu/identity job of pairBody(k).
func checkPair(rec jobRecord, k int) error {
	if rec.Status != "succeeded" || rec.Attempts != 1 || rec.Result == nil || len(rec.Result.Outputs) != 1 {
		return fmt.Errorf("record %+v", rec)
	}
	if got, want := string(rec.Result.Outputs[0].Data), fmt.Sprintf("[%d,%d]", k, -k); got != want {
		return fmt.Errorf("output %s, want %s", got, want)
	}
	return nil
}

// submitPairs submits pairBody(from..from+n-1) from a few goroutines at
// once and returns the job ids by k.
func submitPairs(t *testing.T, s *Stack, model string, from, n int) map[int]string {
	t.Helper()
	var mu sync.Mutex
	ids := make(map[int]string, n)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for k := from + w; k < from+n; k += 6 {
				id := s.submit(t, model, pairBody(k)).ID
				mu.Lock()
				ids[k] = id
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ids
}

// waitPairs waits for every job and checks its output.
func waitPairs(t *testing.T, s *Stack, ids map[int]string) {
	t.Helper()
	var wg sync.WaitGroup
	for k, id := range ids {
		wg.Go(func() {
			rec, err := s.waitErr(id)
			if err == nil {
				err = checkPair(rec, k)
			}
			if err != nil {
				t.Errorf("job %d (%s): %v", k, id, err)
			}
		})
	}
	wg.Wait()
}

// terminalEvents counts every terminal event NATS carries for a model's
// jobs, duplicates included (the events stream would drop them), to check
// that a job ended exactly once.
type terminalEvents struct {
	mu sync.Mutex
	m  map[string]map[inferqpb.Status]int
}

func watchTerminal(t *testing.T, s *Stack, model string) *terminalEvents {
	t.Helper()
	e := &terminalEvents{m: map[string]map[inferqpb.Status]int{}}
	sub, err := s.NATS.Conn.Subscribe("inferq.events."+model+".*", func(msg *nats.Msg) {
		var evs []*inferqpb.JobEvent
		if strings.HasSuffix(msg.Subject, "."+jetstream.EventBatch) {
			batch, err := lifecycle.DecodeEvents(msg.Data)
			if err != nil {
				return
			}
			evs = batch.Events
		} else {
			ev := &inferqpb.JobEvent{}
			if proto.Unmarshal(msg.Data, ev) != nil {
				return
			}
			evs = []*inferqpb.JobEvent{ev}
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, ev := range evs {
			if ev.Status == inferqpb.Status_STATUS_RUNNING {
				continue
			}
			if e.m[ev.JobId] == nil {
				e.m[ev.JobId] = map[inferqpb.Status]int{}
			}
			e.m[ev.JobId][ev.Status]++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return e
}

// onlySucceeded reports whether job id's terminal events are all succeeded.
func (e *terminalEvents) onlySucceeded(id string) (map[inferqpb.Status]int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.m[id]
	return st, len(st) == 1 && st[inferqpb.Status_STATUS_SUCCEEDED] > 0
}

// appliedTerminal counts, per job, the changes of its record that made it
// terminal, as the results store saw them: a JetStream KV put with a
// terminal status, or a Redis change notice naming one. Both are written
// only when resultsvc's apply moved the record, so a job that ended twice
// (a duplicate result applied after a replay, or a store that lost its
// forward-only rule) counts 2 here even when the record ends up right.
// Counting events on NATS cannot tell this: a redelivered batch rightly
// publishes the same result twice and the stream drops the copy.
type appliedTerminal struct {
	mu sync.Mutex
	m  map[string][]string // job id -> terminal statuses applied, in order
}

func (a *appliedTerminal) add(id, status string) {
	if !results.Status(status).Terminal() {
		return
	}
	a.mu.Lock()
	a.m[id] = append(a.m[id], status)
	a.mu.Unlock()
}

// only reports the terminal statuses applied to job id and whether that is
// exactly one, equal to want.
func (a *appliedTerminal) only(id, want string) ([]string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.m[id]
	return st, len(st) == 1 && st[0] == want
}

// watchApplied starts counting terminal applies in the stack's results
// store, before any job is submitted.
func watchApplied(t *testing.T, s *Stack) *appliedTerminal {
	t.Helper()
	a := &appliedTerminal{m: map[string][]string{}}
	if s.Cfg.Redis.URL != "" {
		opt, err := redis.ParseURL(s.Cfg.Redis.URL)
		if err != nil {
			t.Fatal(err)
		}
		client := redis.NewClient(opt)
		t.Cleanup(func() { _ = client.Close() })
		prefix := s.Cfg.NATS.Prefix + ":job:"
		ps := client.PSubscribe(t.Context(), prefix+"*:notify")
		if _, err := ps.Receive(t.Context()); err != nil { // the subscription is confirmed
			t.Fatalf("subscribe to change notices: %v", err)
		}
		t.Cleanup(func() { _ = ps.Close() })
		ch := ps.Channel(redis.WithChannelSize(1 << 16))
		go func() {
			for m := range ch {
				// <prefix>:job:{<id>}:notify: the id is the hash tag.
				id := strings.Trim(strings.TrimSuffix(strings.TrimPrefix(m.Channel, prefix), ":notify"), "{}")
				a.add(id, m.Payload)
			}
		}()
		return a
	}
	kv, err := s.NATS.JS.KeyValue(t.Context(), stack.Topology(s.Cfg).ResultsBucket())
	if err != nil {
		t.Fatalf("results bucket: %v", err)
	}
	w, err := kv.WatchAll(t.Context(), natsjs.UpdatesOnly())
	if err != nil {
		t.Fatalf("watch results bucket: %v", err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	go func() {
		for e := range w.Updates() {
			if e == nil || e.Operation() != natsjs.KeyValuePut {
				continue
			}
			var rec results.Record
			if json.Unmarshal(e.Value(), &rec) == nil {
				a.add(e.Key(), string(rec.Status))
			}
		}
	}()
	return a
}

// waitSeen waits until every job's terminal change has reached the watch
// (notices trail the store's writes by a moment), so that a missing one
// afterwards is a job that never ended and an extra one is a duplicate.
func (a *appliedTerminal) waitSeen(t *testing.T, ids []string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, id := range ids {
			if len(a.m[id]) == 0 {
				return false
			}
		}
		return true
	}, "a terminal change of %d jobs never reached the watch", len(ids))
}
