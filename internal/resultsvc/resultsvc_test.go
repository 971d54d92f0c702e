package resultsvc_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/resultsvc"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// env is a running resultsvc against a real embedded NATS (provisioned as
// inferq runs it) and a real results store.
type env struct {
	n       *testutil.NATS
	topo    jetstream.Topology
	store   results.Store
	metrics *resultsvc.Metrics
	log     *testutil.Buffer
}

// start provisions JetStream for model "m", opens the store (Redis when
// withRedis, else the JetStream KV bucket) and runs resultsvc until the
// test ends.
func start(t *testing.T, withRedis bool) *env {
	t.Helper()
	ctx := t.Context()
	n := testutil.StartNATS(t)
	topo := jetstream.DefaultTopology()
	if err := provision.All(ctx, n.JS, topo, []provision.ModelPolicy{{Name: "m", MaxBatchSize: 8, MaxDeliver: 3}}); err != nil {
		t.Fatalf("provision: %v", err)
	}
	var store results.Store
	var err error
	if withRedis {
		store, err = results.NewRedis(ctx, results.RedisConfig{URL: testutil.StartRedis(t).URL, Retention: time.Hour})
	} else {
		store, err = results.NewKV(ctx, n.JS, results.KVConfig{Bucket: topo.ResultsBucket(), Retention: time.Hour})
	}
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	e := &env{n: n, topo: topo, store: store, metrics: resultsvc.NewMetrics(obs.NewRegistry()), log: &testutil.Buffer{}}
	svc := resultsvc.New(resultsvc.Options{Topology: topo, JS: n.JS, Store: store, Own: e.metrics,
		Log: slog.New(slog.NewTextHandler(e.log, nil)), Concurrency: 4, RetainedEvery: 50 * time.Millisecond})
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("resultsvc: %v", err)
		}
	})
	return e
}

// queued creates job id's record as ingress does on accept.
func (e *env) queued(t *testing.T, id string) {
	t.Helper()
	rec := &results.Record{ID: id, Model: "m", Version: "1", Status: results.Queued, Attempts: 1, CreatedAt: time.Now()}
	if err := e.store.Create(t.Context(), rec); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
}

// publish sends an event on the events stream; a non-empty msgID replaces
// the lifecycle's own, to get past the stream's deduplication as a second,
// distinct copy of the same fact would.
func (e *env) publish(t *testing.T, ev lifecycle.Event, msgID string) {
	t.Helper()
	msg, err := ev.NewMsg(t.Context(), e.topo)
	if err != nil {
		t.Fatal(err)
	}
	if msgID != "" {
		msg.Header.Set(nats.MsgIdHdr, msgID)
	}
	if _, err := e.n.JS.PublishMsg(t.Context(), msg); err != nil {
		t.Fatalf("publish %s: %v", ev.MsgID, err)
	}
}

// drained waits until resultsvc has acked or terminated every event.
func (e *env) drained(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool {
		cons, err := e.n.JS.Consumer(t.Context(), e.topo.EventsStream(), jetstream.ResultsConsumer)
		if err != nil {
			return false
		}
		// The ack floor, not NumPending alone: the consumer counts a new
		// message as pending a moment after the stream stored it.
		stream, err := e.n.JS.Stream(t.Context(), e.topo.EventsStream())
		if err != nil {
			return false
		}
		sinfo, err := stream.Info(t.Context())
		if err != nil {
			return false
		}
		info, err := cons.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= sinfo.State.LastSeq
	}, "resultsvc left events unapplied")
}

// get reads job id's record.
func (e *env) get(t *testing.T, id string) *results.Record {
	t.Helper()
	rec, err := e.store.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return rec
}

// applied is resultsvc's count of events of status with outcome.
func (e *env) applied(status results.Status, outcome string) int {
	return int(promtest.ToFloat64(e.metrics.EventsApplied.WithLabelValues(string(status), outcome)))
}

var (
	batch = &inferqpb.Batch{Id: "b1", Model: "m", Version: "1"}
	out   = []*inferqpb.Tensor{{Name: "OUTPUT0", Datatype: "INT32", Shape: []int64{1, 2}, Data: int32s(7, -7)}}
)

func job(id string) *inferqpb.BatchJob { return &inferqpb.BatchJob{Id: id, Attempt: 1, JobsSeq: 1} }

func bothStores(t *testing.T, f func(t *testing.T, e *env)) {
	t.Run("kv", func(t *testing.T) { f(t, start(t, false)) })
	t.Run("redis", func(t *testing.T) { f(t, start(t, true)) })
}

// TestForwardOnly: running then succeeded is applied; a late running, a
// duplicate result under another message id and a later failed end change
// nothing, and are counted as duplicates, not applies.
func TestForwardOnly(t *testing.T) {
	bothStores(t, func(t *testing.T, e *env) {
		e.queued(t, "j1")
		at := time.Now()
		e.publish(t, lifecycle.RunningEvent(batch, job("j1"), "w1", at), "")
		e.publish(t, lifecycle.SucceededEvent(batch, job("j1"), "w1", at.Add(time.Millisecond), out), "")
		e.drained(t)
		done := e.get(t, "j1")
		if done.Status != results.Succeeded || done.StartedAt == nil || done.FinishedAt == nil || done.Attempts != 1 {
			t.Fatalf("record after result: %+v", done)
		}
		var body struct {
			ModelName string `json:"model_name"`
			Outputs   []struct {
				Name string          `json:"name"`
				Data json.RawMessage `json:"data"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(done.Result, &body); err != nil || body.ModelName != "m" || len(body.Outputs) != 1 || string(body.Outputs[0].Data) != "[7,-7]" {
			t.Fatalf("result %s (%v)", done.Result, err)
		}

		e.publish(t, lifecycle.RunningEvent(batch, job("j1"), "w2", at.Add(time.Second)), "j1:1:running:late")
		e.publish(t, lifecycle.SucceededEvent(batch, job("j1"), "w2", at.Add(time.Second), out), "j1:1:result:again")
		e.publish(t, lifecycle.FailedEvent(batch, job("j1"), "w2", at.Add(time.Second), &inferqpb.Error{Code: "boom"}), "")
		e.drained(t)
		after := e.get(t, "j1")
		if after.Status != results.Succeeded || !after.FinishedAt.Equal(*done.FinishedAt) || !after.StartedAt.Equal(*done.StartedAt) ||
			after.Error != nil || string(after.Result) != string(done.Result) {
			t.Fatalf("a late event changed the record:\nbefore %+v\nafter  %+v", done, after)
		}
		if got := e.applied(results.Succeeded, "applied"); got != 1 {
			t.Errorf("succeeded applied %d times, want 1", got)
		}
		if got := e.applied(results.Succeeded, "duplicate"); got != 1 {
			t.Errorf("duplicate results counted %d, want 1", got)
		}
		// Events apply concurrently, so the first running may also have
		// come after the result; the late one is a duplicate either way.
		if got := e.applied(results.Running, "duplicate"); got < 1 {
			t.Errorf("late running counted %d duplicates, want at least 1", got)
		}
		if got := e.applied(results.Failed, "duplicate"); got != 1 {
			t.Errorf("failed after succeeded counted %d duplicates, want 1", got)
		}
	})
}

// TestTerminalEnds: failed, cancelled and expired events end their jobs
// with their error; a result whose outputs cannot be rendered fails it.
func TestTerminalEnds(t *testing.T) {
	bothStores(t, func(t *testing.T, e *env) {
		at := time.Now()
		for _, id := range []string{"f", "c", "x", "bad"} {
			e.queued(t, id)
		}
		e.publish(t, lifecycle.FailedEvent(batch, job("f"), "w1", at, &inferqpb.Error{Code: "boom", Message: "it broke"}), "")
		e.publish(t, lifecycle.CancelledEvent(batch, job("c"), "w1", at, &inferqpb.Error{Code: lifecycle.CodeCancelled}), "")
		e.publish(t, lifecycle.ExpiredEvent(&inferqpb.Job{Id: "x", Model: "m", Version: "1", Attempt: 1}, 1, at), "")
		ragged := []*inferqpb.Tensor{{Name: "OUTPUT0", Datatype: "INT32", Shape: []int64{1, 3}, Data: int32s(1)}}
		e.publish(t, lifecycle.SucceededEvent(batch, job("bad"), "w1", at, ragged), "")
		e.drained(t)
		for _, want := range []struct {
			id     string
			status results.Status
			code   string
		}{{"f", results.Failed, "boom"}, {"c", results.Cancelled, lifecycle.CodeCancelled}, {"x", results.Expired, lifecycle.CodeExpired}, {"bad", results.Failed, "bad_output"}} {
			rec := e.get(t, want.id)
			if rec.Status != want.status || rec.Error == nil || rec.Error.Code != want.code || rec.FinishedAt == nil {
				t.Errorf("job %s: %+v, want %s with code %s\n%s", want.id, rec, want.status, want.code, e.log.String())
			}
		}
	})
}

// TestBatchOfEvents: one message with a batch's events, more than there
// are appliers (Concurrency 4) and one for a job with no record, is applied
// in full (the unknown job's event dropped) and acked once.
func TestBatchOfEvents(t *testing.T) {
	bothStores(t, func(t *testing.T, e *env) {
		at := time.Now()
		var events []lifecycle.Event
		ids := []string{"b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9"}
		for _, id := range ids {
			e.queued(t, id)
			events = append(events, lifecycle.SucceededEvent(batch, job(id), "w1", at, out))
		}
		events = append(events, lifecycle.SucceededEvent(batch, job("nobody"), "w1", at, out))
		msgs, err := lifecycle.EventsMsgs(t.Context(), e.topo, "m", events, 1<<20)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("events message: %d, %v; want one", len(msgs), err)
		}
		if _, err := e.n.JS.PublishMsg(t.Context(), msgs[0]); err != nil {
			t.Fatal(err)
		}
		e.drained(t)
		for _, id := range ids {
			if rec := e.get(t, id); rec.Status != results.Succeeded || len(rec.Result) == 0 {
				t.Errorf("job %s: %+v, want succeeded with its result", id, rec)
			}
		}
		if got := e.applied(results.Succeeded, "applied"); got != len(ids) {
			t.Errorf("%d events applied, want %d", got, len(ids))
		}
		if got := e.applied(results.Succeeded, "unknown"); got != 1 {
			t.Errorf("%d events for unknown jobs, want 1", got)
		}
	})
}

// TestBadEventsDoNotBlock: an undecodable event, an invalid one and one
// for a job with no record are dropped, and the next event still applies.
func TestBadEventsDoNotBlock(t *testing.T) {
	e := start(t, false)
	ctx := t.Context()
	if _, err := e.n.JS.Publish(ctx, e.topo.EventSubject("m", jetstream.EventResult), []byte{0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	noAttempt := &inferqpb.JobEvent{JobId: "j", Model: "m", Status: inferqpb.Status_STATUS_FAILED}
	data, _ := proto.Marshal(noAttempt)
	if _, err := e.n.JS.Publish(ctx, e.topo.EventSubject("m", jetstream.EventFailed), data); err != nil {
		t.Fatal(err)
	}
	e.publish(t, lifecycle.FailedEvent(batch, job("nobody"), "w1", time.Now(), &inferqpb.Error{Code: "boom"}), "")
	e.queued(t, "j")
	e.publish(t, lifecycle.SucceededEvent(batch, job("j"), "w1", time.Now(), out), "")
	e.drained(t)
	if rec := e.get(t, "j"); rec.Status != results.Succeeded {
		t.Fatalf("record %+v", rec)
	}
	if got := e.applied(results.Failed, "unknown"); got != 1 {
		t.Errorf("events for unknown jobs %d, want 1", got)
	}
	for _, want := range []string{"undecodable event dropped", "invalid event dropped"} {
		if !strings.Contains(e.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, e.log.String())
		}
	}
}

// TestTokenLogInOrder: chunks that reach the stream out of order (seq 2
// before 1) are stored in order, the early one retried after the gap.
func TestTokenLogInOrder(t *testing.T) {
	e := start(t, true)
	e.queued(t, "j")
	for _, seq := range []uint64{2, 1, 3, 4} {
		c := lifecycle.TokenChunk{Job: "j", Seq: seq, Text: string(rune('a' + seq - 1)), TokenID: int64(seq), Final: seq == 4}
		if _, err := e.n.JS.PublishMsg(t.Context(), lifecycle.TokenMsg(t.Context(), e.topo, "acme", 1, c)); err != nil {
			t.Fatal(err)
		}
	}
	log := e.store.(results.TokenLog)
	var got []results.Token
	testutil.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		more, err := log.WaitTokens(ctx, "j", 1, uint64(len(got)))
		if err != nil {
			t.Fatalf("wait tokens: %v", err)
		}
		got = append(got, more...)
		return len(got) >= 4
	}, "token log holds %d of 4 chunks", len(got))
	text := ""
	for k, tok := range got {
		if tok.Seq != uint64(k+1) {
			t.Fatalf("token %d has seq %d: %+v", k, tok.Seq, got)
		}
		text += tok.Text
	}
	if text != "abcd" || !got[3].Final {
		t.Fatalf("tokens %+v", got)
	}
}

// TestMaxDeliveriesAdvisory: when JetStream gives up on a batch, each job
// still pending fails with a dead letter, a job already finished keeps its
// end, and the batch leaves the stream.
func TestMaxDeliveriesAdvisory(t *testing.T) {
	bothStores(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		b := &inferqpb.Batch{Id: "b9", Model: "m", Version: "1", Jobs: []*inferqpb.BatchJob{job("p"), job("done")}}
		e.queued(t, "p")
		e.queued(t, "done")
		e.publish(t, lifecycle.SucceededEvent(b, job("done"), "w1", time.Now(), out), "")
		e.drained(t)
		data, err := proto.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := e.n.JS.Publish(ctx, e.topo.BatchSubject("m"), data)
		if err != nil {
			t.Fatal(err)
		}
		adv, _ := json.Marshal(jetstream.MaxDeliveriesAdvisory{Stream: e.topo.BatchesStream(), Consumer: jetstream.WorkerConsumer("m"),
			StreamSeq: ack.Sequence, Deliveries: 3})
		subject := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + e.topo.BatchesStream() + "." + jetstream.WorkerConsumer("m")
		if err := e.n.Conn.Publish(subject, adv); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() bool {
			rec, err := e.store.Get(ctx, "p")
			return err == nil && rec.Status == results.Failed
		}, "the pending job never failed")
		if rec := e.get(t, "p"); rec.Error == nil || rec.Error.Code != lifecycle.CodeMaxDeliver {
			t.Errorf("pending job %+v, want code %s", rec, lifecycle.CodeMaxDeliver)
		}
		if rec := e.get(t, "done"); rec.Status != results.Succeeded {
			t.Errorf("finished job changed: %+v", rec)
		}
		dead, err := e.n.JS.Stream(ctx, e.topo.DeadStream())
		if err != nil {
			t.Fatal(err)
		}
		info, err := dead.Info(ctx)
		if err != nil || info.State.Msgs != 1 {
			t.Fatalf("dead letters: %v (%v), want 1", info.State.Msgs, err)
		}
		raw, err := dead.GetLastMsgForSubject(ctx, e.topo.DeadSubject("m"))
		if err != nil {
			t.Fatal(err)
		}
		dl, err := lifecycle.DecodeDeadLetter(raw.Data)
		if err != nil || dl.Job != "p" {
			t.Fatalf("dead letter %+v (%v)", dl, err)
		}
		batches, err := e.n.JS.Stream(ctx, e.topo.BatchesStream())
		if err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, func() bool {
			_, err := batches.GetMsg(ctx, ack.Sequence)
			return errors.Is(err, natsjs.ErrMsgNotFound)
		}, "the exhausted batch is still in %s", e.topo.BatchesStream())
	})
}

// int32s is the little-endian raw data of an INT32 tensor.
func int32s(v ...int32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	return b
}

// TestRetainedGauge: resultsvc reads how much the store keeps into
// inferq_results_retained_entries, for both stores.
func TestRetainedGauge(t *testing.T) {
	for _, withRedis := range []bool{false, true} {
		t.Run(map[bool]string{false: "kv", true: "redis"}[withRedis], func(t *testing.T) {
			e := start(t, withRedis)
			for _, id := range []string{"g1", "g2", "g3"} {
				e.queued(t, id)
			}
			testutil.Eventually(t, 5*time.Second, func() bool { return promtest.ToFloat64(e.metrics.Retained) == 3 },
				"inferq_results_retained_entries %v, want 3", promtest.ToFloat64(e.metrics.Retained))
		})
	}
}

// TestUnstorableResultEndsJob: a result whose record is larger than the KV
// store takes (a 600 kB tensor renders as about 1.8 MB of JSON) cannot be
// stored, however often it is tried; the job ends failed with
// result_unstorable and a dead letter, instead of staying queued while
// resultsvc retries for ever.
func TestUnstorableResultEndsJob(t *testing.T) {
	e := start(t, false)
	e.queued(t, "huge")
	vals := make([]int32, 150_000)
	for i := range vals {
		vals[i] = -2_000_000_000
	}
	big := []*inferqpb.Tensor{{Name: "OUTPUT0", Datatype: "INT32", Shape: []int64{1, int64(len(vals))}, Data: int32s(vals...)}}
	e.publish(t, lifecycle.SucceededEvent(batch, job("huge"), "w1", time.Now(), big), "")
	var rec *results.Record
	testutil.Eventually(t, 15*time.Second, func() bool {
		r, err := e.store.Get(t.Context(), "huge")
		rec = r
		return err == nil && r.Status.Terminal()
	}, "the job with an unstorable result never ended")
	if rec.Status != results.Failed || rec.Error == nil || rec.Error.Code != "result_unstorable" {
		t.Fatalf("job ended %+v, want failed with result_unstorable", rec)
	}
	e.drained(t)
	dead, err := e.n.JS.Stream(t.Context(), e.topo.DeadStream())
	if err != nil {
		t.Fatal(err)
	}
	if info, err := dead.Info(t.Context()); err != nil || info.State.Msgs != 1 {
		t.Fatalf("dead letters: %d (%v), want 1", info.State.Msgs, err)
	}
}
