package batcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// harness is an embedded NATS with the topology provisioned for one model,
// a running batcher, and a core subscription that sees every batch.
type harness struct {
	t       *testing.T
	n       *testutil.NATS
	topo    jetstream.Topology
	m       config.Model
	opt     Options
	mu      sync.Mutex
	batches []*inferqpb.Batch
	at      []time.Time
	ids     []string // Nats-Msg-Id of every batch publish seen
	got     chan struct{}
}

func testModel(name string, max int, delay time.Duration, ragged bool) config.Model {
	return config.Model{Name: name, Version: "1", Kind: config.KindTensor,
		Inputs:   []config.Tensor{{Name: "INPUT0", Datatype: "INT32", Dims: []int64{-1}}},
		Outputs:  []config.Tensor{{Name: "OUTPUT0", Datatype: "INT32", Dims: []int64{-1}}},
		Batching: config.Batching{MaxBatchSize: max, MaxQueueDelay: config.D(delay), Ragged: ragged},
		Queue:    config.Queue{MaxDeliver: 3}}
}

func newHarness(t *testing.T, m config.Model, ackWait time.Duration, edit func(*Options)) *harness {
	t.Helper()
	n := testutil.StartNATS(t)
	topo := jetstream.DefaultTopology()
	topo.AckWait = ackWait
	if err := provision.All(t.Context(), n.JS, topo, []provision.ModelPolicy{{Name: m.Name, MaxBatchSize: m.Batching.MaxBatchSize, MaxDeliver: 3}}); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, n: n, topo: topo, m: m, got: make(chan struct{}, 1)}
	sub, err := n.Conn.Subscribe(topo.BatchSubject(m.Name), func(msg *nats.Msg) {
		b := &inferqpb.Batch{}
		if err := proto.Unmarshal(msg.Data, b); err != nil {
			t.Errorf("batch: %v", err)
			return
		}
		h.mu.Lock()
		h.batches = append(h.batches, b)
		h.at = append(h.at, time.Now())
		h.ids = append(h.ids, msg.Header.Get(nats.MsgIdHdr))
		h.mu.Unlock()
		signal(h.got)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := n.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	h.opt = Options{Models: []config.Model{m}, Topology: topo, JS: n.JS,
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: obs.NewMetrics(prometheus.NewRegistry()), MaxWaitingBatches: -1}
	if edit != nil {
		edit(&h.opt)
	}
	return h
}

// start runs a batcher until the test ends; its error comes on the channel.
func (h *harness) start() <-chan error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stopped := make(chan struct{})
	go func() { done <- New(h.opt).Run(ctx); close(stopped) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			h.t.Error("batcher did not stop")
		}
	})
	return done
}

// job publishes a job of `length` INT32 elements at priority prio.
func (h *harness) job(prio int, id string, length int, deadline time.Time) {
	h.t.Helper()
	data := make([]byte, 4*length)
	for i := range length {
		data[4*i] = byte(i)
	}
	j := &inferqpb.Job{Id: id, Tenant: "default", Model: h.m.Name, Version: "1", Priority: int32(prio),
		CreatedUnixNano: time.Now().UnixNano(), Attempt: 1,
		Inputs: []*inferqpb.Tensor{{Name: "INPUT0", Datatype: "INT32", Shape: []int64{1, int64(length)}, Data: data}}}
	if !deadline.IsZero() {
		j.DeadlineUnixNano = deadline.UnixNano()
	}
	if _, err := jetstream.Publish(context.Background(), h.n.JS, h.topo.JobSubject(h.m.Name, prio, id), j, id); err != nil {
		h.t.Fatal(err)
	}
}

// waitBatches waits until at least n batches were seen.
func (h *harness) waitBatches(n int, within time.Duration) []*inferqpb.Batch {
	h.t.Helper()
	deadline := time.After(within)
	for {
		h.mu.Lock()
		if len(h.batches) >= n {
			out := append([]*inferqpb.Batch(nil), h.batches...)
			h.mu.Unlock()
			return out
		}
		h.mu.Unlock()
		select {
		case <-h.got:
		case <-deadline:
			h.t.Fatalf("saw %d batches, want %d within %v", len(h.batches), n, within)
		}
	}
}

func jobIDs(b *inferqpb.Batch) []string {
	var ids []string
	for _, j := range b.Jobs {
		ids = append(ids, j.Id)
	}
	return ids
}

func TestCloseFull(t *testing.T) {
	h := newHarness(t, testModel("m", 4, time.Minute, false), 30*time.Second, nil)
	h.start()
	t0 := time.Now()
	for i := range 4 {
		h.job(1, fmt.Sprintf("j%d", i), 2, time.Time{})
	}
	bs := h.waitBatches(1, 10*time.Second)
	// The delay is a minute: only the size rule can have closed it.
	if len(bs[0].Jobs) != 4 {
		t.Fatalf("batch of %d jobs, want 4", len(bs[0].Jobs))
	}
	t.Logf("full batch after %v", time.Since(t0))
}

func TestClosePreferred(t *testing.T) {
	m := testModel("m", 32, 1500*time.Millisecond, false)
	m.Batching.PreferredBatchSizes = []int{2}
	h := newHarness(t, m, 30*time.Second, nil)
	h.start()
	t0 := time.Now()
	for i := range 3 {
		h.job(1, fmt.Sprintf("j%d", i), 2, time.Time{})
	}
	bs := h.waitBatches(1, 10*time.Second)
	first := time.Since(t0)
	if len(bs[0].Jobs) != 2 {
		t.Fatalf("first batch %v, want 2 jobs (the preferred size)", jobIDs(bs[0]))
	}
	if first > time.Second {
		t.Errorf("preferred batch after %v: it should not wait out the 1.5s delay", first)
	}
	// The third job is not a preferred size: it waits out the delay.
	bs = h.waitBatches(2, 10*time.Second)
	if len(bs[1].Jobs) != 1 || bs[1].Jobs[0].Id != "j2" {
		t.Fatalf("second batch %v, want [j2]", jobIDs(bs[1]))
	}
	h.mu.Lock()
	second := h.at[1].Sub(t0)
	h.mu.Unlock()
	if second < 1200*time.Millisecond {
		t.Errorf("second batch after %v, before the 1.5s delay", second)
	}
	t.Logf("preferred batch after %v, delayed batch after %v", first, second)
}

func TestCloseDelay(t *testing.T) {
	h := newHarness(t, testModel("m", 32, 400*time.Millisecond, false), 30*time.Second, nil)
	h.start()
	// An idle batcher publishes nothing. This sleep is the observation
	// window itself: there is no event to wait for when nothing happens.
	time.Sleep(300 * time.Millisecond)
	h.mu.Lock()
	idle := len(h.batches)
	h.mu.Unlock()
	if idle != 0 {
		t.Fatalf("idle batcher published %d batches", idle)
	}
	t0 := time.Now()
	h.job(1, "j0", 2, time.Time{})
	h.job(1, "j1", 2, time.Time{})
	bs := h.waitBatches(1, 10*time.Second)
	el := time.Since(t0)
	if len(bs[0].Jobs) != 2 {
		t.Fatalf("batch %v, want both jobs", jobIDs(bs[0]))
	}
	if el < 350*time.Millisecond || el > 5*time.Second {
		t.Errorf("delay batch after %v, want about 400ms", el)
	}
	t.Logf("delay batch after %v", el)
}

// fakeWorker runs batches from the workers consumer one at a time, taking
// `cost` each, and reports running events as the real agent does.
func (h *harness) fakeWorker(ctx context.Context, cost time.Duration, ran func(*inferqpb.Batch)) {
	cons, err := h.n.JS.Consumer(ctx, h.topo.BatchesStream(), jetstream.WorkerConsumer(h.m.Name))
	if err != nil {
		h.t.Error(err)
		return
	}
	for ctx.Err() == nil {
		msgs, err := cons.Fetch(1, natsjs.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		for msg := range msgs.Messages() {
			b := &inferqpb.Batch{}
			_ = proto.Unmarshal(msg.Data(), b)
			_ = h.n.Conn.Publish(h.topo.EventSubject(h.m.Name, jetstream.EventRunning), []byte("x"))
			ran(b)
			select {
			case <-ctx.Done():
			case <-time.After(cost):
			}
			_ = msg.Ack()
		}
	}
}

// TestPriorities: with workers busy, p0 jobs published after a backlog of
// p2 jobs run before most of that backlog.
func TestPriorities(t *testing.T) {
	h := newHarness(t, testModel("m", 8, 5*time.Millisecond, false), 30*time.Second, func(o *Options) {
		o.MaxWaitingBatches = 1
		o.AgingAfter = time.Minute // this test is about order, not aging
	})
	var mu sync.Mutex
	var order []*inferqpb.Batch
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.fakeWorker(ctx, 40*time.Millisecond, func(b *inferqpb.Batch) { mu.Lock(); order = append(order, b); mu.Unlock() })
	h.start()
	for i := range 160 {
		h.job(2, fmt.Sprintf("low%03d", i), 2, time.Time{})
	}
	// The p0 jobs come once the worker is busy with the p2 backlog.
	testutil.Eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(order) > 0 }, "the worker ran no batch")
	for i := range 8 {
		h.job(0, fmt.Sprintf("high%d", i), 2, time.Time{})
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, b := range order {
			n += len(b.Jobs)
		}
		return n == 168
	}, "all jobs ran")
	lastHigh, lastLow := -1, -1
	for i, b := range order {
		for _, j := range b.Jobs {
			if j.Id[0] == 'h' {
				lastHigh = i
			} else {
				lastLow = i
			}
		}
	}
	// 20 batches of p2; the p0 ones arrived while one or a few had run. They
	// must overtake most of the backlog (generous: the machine is shared).
	if lastHigh > lastLow*2/3 {
		t.Errorf("last p0 job ran in batch %d of %d (last p2 in %d)", lastHigh, len(order), lastLow)
	}
	t.Logf("p0 jobs done by batch %d of %d", lastHigh, len(order))
}

// TestNoStarvation: under a sustained p0 load above the workers' capacity,
// p2 jobs still run (aging).
func TestNoStarvation(t *testing.T) {
	h := newHarness(t, testModel("m", 4, 2*time.Millisecond, false), 30*time.Second, func(o *Options) {
		o.MaxWaitingBatches = 1
		o.AgingAfter = 300 * time.Millisecond
	})
	var mu sync.Mutex
	ranLow := map[string]bool{}
	ranBatches := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.fakeWorker(ctx, 30*time.Millisecond, func(b *inferqpb.Batch) {
		mu.Lock()
		defer mu.Unlock()
		ranBatches++
		for _, j := range b.Jobs {
			if j.Id[0] == 'l' {
				ranLow[j.Id] = true
			}
		}
	})
	h.start()
	// p0 at ~400 jobs/s against a capacity of ~130 jobs/s, stopped (and
	// waited for) before the test's NATS connection closes.
	var load sync.WaitGroup
	defer load.Wait()
	defer cancel()
	load.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			h.job(0, fmt.Sprintf("high%05d", i), 2, time.Time{})
			time.Sleep(2500 * time.Microsecond) // the load's pace, not a settle
		}
	})
	// The p2 jobs come once the p0 load keeps the worker busy: it has run
	// a few full batches (4 jobs each, so the backlog is already there).
	testutil.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return ranBatches >= 3
	}, "the worker ran no p0 batches")
	for i := range 6 {
		h.job(2, fmt.Sprintf("low%d", i), 2, time.Time{})
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ranLow) == 6
	}, "p2 jobs ran under sustained p0 load")
}

// TestExpiredAndCancelled: a job whose deadline passed never reaches a batch
// and gets an expired event; a cancelled job never reaches a batch.
func TestExpiredAndCancelled(t *testing.T) {
	cancelSeen := make(chan string, 1)
	h := newHarness(t, testModel("m", 32, 50*time.Millisecond, false), 30*time.Second, func(o *Options) {
		o.onCancel = func(id string) { cancelSeen <- id }
	})
	events := make(chan *inferqpb.JobEvent, 16)
	sub, err := h.n.Conn.Subscribe(h.topo.EventSubject("m", jetstream.EventFailed), func(msg *nats.Msg) {
		ev := &inferqpb.JobEvent{}
		if proto.Unmarshal(msg.Data, ev) == nil {
			events <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	h.start()
	h.job(1, "warm", 2, time.Time{}) // the batcher is up once this is batched
	h.waitBatches(1, 10*time.Second)

	notice, _ := proto.Marshal(&inferqpb.Cancel{JobId: "gone"})
	if err := h.n.Conn.Publish(h.topo.CancelSubject("m"), notice); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cancelSeen: // the batcher knows before the job comes
	case <-time.After(5 * time.Second):
		t.Fatal("the batcher did not record the cancel notice")
	}
	h.job(1, "old", 2, time.Now().Add(-time.Second))
	h.job(2, "gone", 2, time.Time{})
	h.job(1, "live", 2, time.Now().Add(time.Minute))
	// Each job is either batched or dropped, once: when live is batched and
	// both others are counted as dropped, no later batch can hold them.
	dropped := func(reason string) float64 {
		return promtest.ToFloat64(h.opt.Metrics.JobsDropped.WithLabelValues("m", reason))
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		live := slices.ContainsFunc(h.batches, func(b *inferqpb.Batch) bool { return slices.Contains(jobIDs(b), "live") })
		return live && dropped("expired") == 1 && dropped("cancelled") == 1
	}, "live not batched, or old and gone not counted as dropped")
	h.mu.Lock()
	bs := append([]*inferqpb.Batch(nil), h.batches...)
	h.mu.Unlock()
	for _, b := range bs {
		for _, j := range b.Jobs {
			if j.Id == "old" || j.Id == "gone" {
				t.Errorf("job %s reached batch %v", j.Id, jobIDs(b))
			}
		}
	}
	if got := jobIDs(bs[len(bs)-1]); len(got) != 1 || got[0] != "live" {
		t.Errorf("last batch %v, want [live]", got)
	}
	select {
	case ev := <-events:
		if ev.JobId != "old" || ev.Status != inferqpb.Status_STATUS_EXPIRED {
			t.Errorf("event %v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no expired event")
	}
	// Both dropped jobs are acked: nothing is pending on any consumer.
	testutil.Eventually(t, 5*time.Second, func() bool {
		for _, name := range jetstream.BatcherConsumers("m") {
			c, err := h.n.JS.Consumer(t.Context(), h.topo.JobsStream(), name)
			if err != nil {
				return false
			}
			info, err := c.Info(t.Context())
			if err != nil || info.NumPending+uint64(info.NumAckPending) != 0 {
				return false
			}
		}
		return true
	}, "jobs still pending")
}

// TestRaggedBuckets: jobs of very different lengths go to different batches,
// each padded by less than 2× per job.
func TestRaggedBuckets(t *testing.T) {
	h := newHarness(t, testModel("m", 32, 300*time.Millisecond, true), 30*time.Second, nil)
	h.start()
	lengths := []int{3, 100, 4, 120, 2, 3, 90}
	for i, n := range lengths {
		h.job(1, fmt.Sprintf("j%d-%d", i, n), n, time.Time{})
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		n := 0
		for _, b := range h.batches {
			n += len(b.Jobs)
		}
		return n == len(lengths)
	}, "all jobs batched")
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.batches {
		width := b.Inputs[0].Shape[1]
		var real int64
		for _, j := range b.Jobs {
			l := j.InputShapes[0].Dims[1]
			real += l
			if 2*l <= width && l > 1 {
				t.Errorf("batch of width %d holds a job of length %d", width, l)
			}
		}
		fill := float64(real) / float64(width*int64(len(b.Jobs)))
		t.Logf("batch %v: width %d, fill %.2f, masks %d", jobIDs(b), width, fill, len(b.Masks))
		if fill < 0.5 {
			t.Errorf("fill ratio %.2f", fill)
		}
	}
	if len(h.batches) < 2 {
		t.Errorf("%d batches: short and long jobs were not bucketed apart", len(h.batches))
	}
}

// TestCrashBetweenPublishAndAck: a batch published but not acked is
// re-batched after a restart with the same id, and JetStream keeps one copy.
func TestCrashBetweenPublishAndAck(t *testing.T) {
	const ackWait = time.Second
	h := newHarness(t, testModel("m", 4, 20*time.Millisecond, false), ackWait, func(o *Options) {
		o.BeforeAck = func(string) bool { return false }
	})
	done := h.start()
	for i := range 4 {
		h.job(1, fmt.Sprintf("j%d", i), 2, time.Time{})
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("batcher: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("batcher did not stop at the hook")
	}
	h.opt.BeforeAck = nil
	h.start()
	bs := h.waitBatches(2, 10*time.Second)
	h.mu.Lock()
	ids := append([]string(nil), h.ids...)
	h.mu.Unlock()
	if ids[0] != ids[1] || bs[0].Id != bs[1].Id || len(bs[1].Jobs) != 4 {
		t.Fatalf("re-batch ids %v / %s %s, jobs %v", ids, bs[0].Id, bs[1].Id, jobIDs(bs[1]))
	}
	s, err := h.n.JS.Stream(t.Context(), h.topo.BatchesStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("batches stream holds %d messages, want 1 (deduplicated)", info.State.Msgs)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		c, _ := h.n.JS.Consumer(t.Context(), h.topo.JobsStream(), jetstream.BatcherPriorityConsumer("m", 1))
		ci, err := c.Info(t.Context())
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	}, "jobs not acked after the restart")
}

func TestChooseAging(t *testing.T) {
	now := time.Now()
	mk := func(id string, p int, age time.Duration, key string) *entry {
		return &entry{job: &inferqpb.Job{Id: id}, prio: p, recv: now.Add(-age), rows: 1, key: key}
	}
	var qs [numPrio][]*entry
	qs[0] = []*entry{mk("a0", 0, 10*time.Millisecond, "k"), mk("a1", 0, 5*time.Millisecond, "k")}
	qs[1] = []*entry{mk("b0", 1, 20*time.Millisecond, "k")}
	qs[2] = []*entry{mk("c0", 2, 2*time.Second, "k"), mk("c1", 2, time.Second, "other"), mk("c2", 2, 10*time.Millisecond, "k")}
	sel := choose(qs, now, 500*time.Millisecond, 3)
	var got []string
	for _, e := range sel.entries {
		got = append(got, e.job.Id)
	}
	// c0 is aged and leads; c1 is aged but incompatible; then p0, p0 in order.
	if fmt.Sprint(got) != "[c0 a0 a1]" || sel.rows != 3 || !sel.oldest.Equal(now.Add(-2*time.Second)) {
		t.Errorf("choose = %v rows %d", got, sel.rows)
	}
	sel = choose(qs, now, time.Hour, 10)
	got = got[:0]
	for _, e := range sel.entries {
		got = append(got, e.job.Id)
	}
	if fmt.Sprint(got) != "[a0 a1 b0 c0 c2]" {
		t.Errorf("without aging choose = %v", got)
	}
	sel.trimTo(2)
	if len(sel.entries) != 2 || sel.rows != 2 {
		t.Errorf("trim: %d entries", len(sel.entries))
	}
}

func TestBucketAndPreferred(t *testing.T) {
	for in, want := range map[int64]int64{0: 0, 1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 100: 128, 128: 128} {
		if got := bucket(in); got != want {
			t.Errorf("bucket(%d) = %d, want %d", in, got, want)
		}
	}
	if got := preferredSize([]int{4, 8, 16}, 12); got != 8 {
		t.Errorf("preferredSize = %d", got)
	}
	if got := preferredSize([]int{4, 8}, 3); got != 0 {
		t.Errorf("preferredSize = %d", got)
	}
}

// TestMetricsPerBatcher: each batcher counts on the registry it is given,
// so a second batcher in the process (tests, inferq dev beside a benchmark)
// neither panics on registration nor mixes its counts in; the queue wait
// is one metric, labelled by priority.
func TestMetricsPerBatcher(t *testing.T) {
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	h := newHarness(t, testModel("m", 1, time.Millisecond, false), 30*time.Second, func(o *Options) {
		o.Own = NewMetrics(regA)
	})
	_ = New(Options{Models: []config.Model{h.m}, Topology: h.topo, JS: h.n.JS, Own: NewMetrics(regB)})
	h.start()
	h.job(1, "j1", 2, time.Time{})
	h.waitBatches(1, 5*time.Second)
	count := func(reg *prometheus.Registry, name string) (n uint64, labels []string) {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				n += m.GetHistogram().GetSampleCount() + uint64(m.GetCounter().GetValue())
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
			}
		}
		return n, labels
	}
	// The batch is seen when published; its metrics follow the job acks,
	// the fill ratio last of them.
	testutil.Eventually(t, 5*time.Second, func() bool { n, _ := count(regA, "inferq_batch_fill_ratio"); return n >= 1 }, "the batch's metrics were not recorded")
	n, labels := count(regA, "inferq_queue_wait_seconds")
	if n != 1 || !slices.Equal(labels, []string{"model=m", "priority=p1"}) {
		t.Errorf("inferq_queue_wait_seconds: %d samples, labels %v; want 1 with model=m, priority=p1", n, labels)
	}
	if n, _ := count(regA, "inferq_batcher_jobs_batched_total"); n != 1 {
		t.Errorf("inferq_batcher_jobs_batched_total = %d, want 1", n)
	}
	if n, _ := count(regA, "inferq_batcher_queue_wait_seconds"); n != 0 {
		t.Errorf("inferq_batcher_queue_wait_seconds still recorded (%d samples): it duplicates inferq_queue_wait_seconds", n)
	}
	for _, name := range []string{"inferq_queue_wait_seconds", "inferq_batch_size", "inferq_batcher_jobs_batched_total", "inferq_batch_fill_ratio"} {
		if n, _ := count(regB, name); n != 0 {
			t.Errorf("the idle batcher's registry shows %d of %s: counts are shared between batchers", n, name)
		}
	}
}

// TestGateHoldsWhileWorkersBusy: while the only worker holds a batch and
// has no slot waiting for another, a ready batch is held back and keeps
// growing; it goes as soon as the worker waits for one again. Workers
// that put their counts in their notices drive the gate as well as the
// server's counts do for those that do not.
func TestGateHoldsWhileWorkersBusy(t *testing.T) {
	t.Run("server counts", func(t *testing.T) { gateHoldsWhileWorkersBusy(t, false) })
	t.Run("worker counts", func(t *testing.T) { gateHoldsWhileWorkersBusy(t, true) })
}

func gateHoldsWhileWorkersBusy(t *testing.T, counts bool) {
	h := newHarness(t, testModel("m", 32, 5*time.Millisecond, false), 30*time.Second, func(o *Options) {
		o.MaxWaitingBatches = 0 // the default gate
	})
	h.start()
	cons, err := h.n.JS.Consumer(t.Context(), h.topo.BatchesStream(), jetstream.WorkerConsumer(h.m.Name))
	if err != nil {
		t.Fatal(err)
	}
	// take is a worker slot: one pull request, and the batch it gets.
	take := func() (natsjs.Msg, error) {
		msgs, err := cons.Fetch(1, natsjs.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		for msg := range msgs.Messages() {
			return msg, nil
		}
		return nil, fmt.Errorf("no batch to take: %v", msgs.Error())
	}
	// notify is the worker's notice: taken names the batch it took, or is
	// empty when its slot waits again.
	notify := func(taken string) {
		t.Helper()
		msg := &nats.Msg{Subject: h.topo.TakenSubject(h.m.Name), Data: []byte(taken)}
		if counts {
			waiting, held := "0", "1"
			if taken == "" {
				waiting, held = "1", "0"
			}
			msg.Header = nats.Header{jetstream.HeaderWorker: []string{"w1"},
				jetstream.HeaderWaiting: []string{waiting}, jetstream.HeaderHeld: []string{held}}
		}
		if err := h.n.Conn.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
	}

	// No worker yet: the first batch goes to the stream for one to come.
	h.job(1, "a", 1, time.Time{})
	h.waitBatches(1, 5*time.Second)
	held, err := take() // the worker's only slot is now busy
	if err != nil {
		t.Fatal(err)
	}
	notify("batch-1")

	for _, id := range []string{"b", "c", "d", "e"} {
		h.job(1, id, 1, time.Time{})
	}
	// The observation window itself (nothing may be published in it): well
	// past max_queue_delay and the gate's 100ms re-check.
	time.Sleep(300 * time.Millisecond)
	h.mu.Lock()
	n := len(h.batches)
	h.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d batches published while the worker was busy, want 1", n)
	}

	// The worker finishes and waits for the next batch: the held one goes,
	// with every job that arrived meanwhile.
	if err := held.Ack(); err != nil {
		t.Fatal(err)
	}
	next := make(chan natsjs.Msg, 1)
	go func() {
		msg, _ := take()
		next <- msg
	}()
	// The pull request is out before the notice only if Fetch has sent it;
	// the batcher re-checks on every notice, so notify until it is seen.
	deadline := time.After(5 * time.Second)
	for {
		notify("")
		select {
		case msg := <-next:
			if msg == nil {
				t.Fatal("the held batch never reached the waiting worker")
			}
			b := &inferqpb.Batch{}
			if err := proto.Unmarshal(msg.Data(), b); err != nil {
				t.Fatal(err)
			}
			if got := jobIDs(b); len(got) != 4 {
				t.Fatalf("held batch has jobs %v, want b, c, d and e together", got)
			}
			_ = msg.Ack()
			return
		case <-deadline:
			t.Fatal("the held batch was not released to a waiting worker")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runUntil runs a batcher with h.opt until the returned stop is called;
// stop waits for Run to return.
func (h *harness) runUntil() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = New(h.opt).Run(ctx); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				h.t.Error("batcher did not stop")
			}
		})
	}
	h.t.Cleanup(stop)
	return stop
}

// notices collects the batch notices (their close reasons).
func (h *harness) notices() <-chan jetstream.BatchNotice {
	h.t.Helper()
	out := make(chan jetstream.BatchNotice, 64)
	sub, err := h.n.Conn.Subscribe(h.topo.BatchedSubject(h.m.Name), func(msg *nats.Msg) {
		var n jetstream.BatchNotice
		if json.Unmarshal(msg.Data, &n) == nil {
			out <- n
		}
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return out
}

// jobsConsumer is the info of the model's p1 batcher consumer.
func (h *harness) jobsConsumer() *natsjs.ConsumerInfo {
	h.t.Helper()
	c, err := h.n.JS.Consumer(h.t.Context(), h.topo.JobsStream(), jetstream.BatcherPriorityConsumer(h.m.Name, 1))
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := c.Info(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	return info
}

// TestCloseIdle: with max_queue_delay 500ms, a lone job waits it out while
// no worker waits ("delay"), and goes at once when one does ("idle").
func TestCloseIdle(t *testing.T) {
	h := newHarness(t, testModel("m", 32, 500*time.Millisecond, false), 30*time.Second, func(o *Options) {
		o.MaxWaitingBatches = 0 // the default gate: it knows when a worker waits
	})
	notices := h.notices()
	h.start()
	reason := func() string {
		t.Helper()
		select {
		case n := <-notices:
			return n.Reason
		case <-time.After(10 * time.Second):
			t.Fatal("no batch notice")
			return ""
		}
	}
	// No worker yet: the lone job waits out its delay, and the batcher,
	// having watched a batch for one max_queue_delay, now knows its rate.
	h.job(1, "alone", 1, time.Time{})
	if r := reason(); r != "delay" {
		t.Fatalf("with no worker the lone job's batch closed by %q, want delay", r)
	}

	// A worker slot waits for a batch (a pull request out, and its notice).
	cons, err := h.n.JS.Consumer(t.Context(), h.topo.BatchesStream(), jetstream.WorkerConsumer(h.m.Name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Fetch(1, natsjs.FetchMaxWait(5*time.Second)); err != nil { // takes "alone"'s batch
		t.Fatal(err)
	}
	got := make(chan *inferqpb.Batch, 1)
	go func() {
		msgs, err := cons.Fetch(1, natsjs.FetchMaxWait(10*time.Second))
		if err != nil {
			got <- nil
			return
		}
		for msg := range msgs.Messages() {
			b := &inferqpb.Batch{}
			_ = proto.Unmarshal(msg.Data(), b)
			_ = msg.Ack()
			got <- b
			return
		}
		got <- nil
	}()
	testutil.Eventually(t, 5*time.Second, func() bool {
		c, err := h.n.JS.Consumer(t.Context(), h.topo.BatchesStream(), jetstream.WorkerConsumer(h.m.Name))
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumWaiting > 0
	}, "the worker's pull request never reached the server")
	if err := h.n.Conn.Publish(h.topo.TakenSubject(h.m.Name), nil); err != nil {
		t.Fatal(err)
	}

	t0 := time.Now()
	h.job(1, "lone", 1, time.Time{})
	if r := reason(); r != "idle" {
		t.Fatalf("with a worker waiting the lone job's batch closed by %q, want idle", r)
	}
	select {
	case b := <-got:
		if b == nil || len(b.Jobs) != 1 || b.Jobs[0].Id != "lone" {
			t.Fatalf("the waiting worker got %v", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting worker got nothing")
	}
	t.Logf("lone job reached the waiting worker after %v (max_queue_delay 500ms)", time.Since(t0))
}

// TestShutdownReleasesBufferedJobs: a batcher stopped while it holds jobs
// it has not batched naks them, and a second batcher batches them at once,
// long before AckWait.
func TestShutdownReleasesBufferedJobs(t *testing.T) {
	const ackWait = 30 * time.Second
	h := newHarness(t, testModel("m", 32, time.Minute, false), ackWait, nil)
	stop := h.runUntil()
	for i := range 3 {
		h.job(1, fmt.Sprintf("j%d", i), 1, time.Time{})
	}
	// The first batcher holds all three (delivered, not acked); its delay
	// is a minute, so it batches none of them.
	testutil.Eventually(t, 5*time.Second, func() bool {
		info := h.jobsConsumer()
		return info.NumAckPending == 3 && info.NumPending == 0
	}, "the first batcher never pulled the jobs")
	t0 := time.Now()
	stop()
	h.opt.Models = []config.Model{testModel("m", 32, 20*time.Millisecond, false)}
	h.runUntil()
	h.waitBatches(1, 10*time.Second)
	el := time.Since(t0)
	testutil.Eventually(t, 5*time.Second, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		n := 0
		for _, b := range h.batches {
			n += len(b.Jobs)
		}
		return n == 3
	}, "the second batcher did not batch all three jobs")
	if el > ackWait/3 {
		t.Errorf("the second batcher batched them after %v: they waited out AckWait (%v)", el, ackWait)
	}
	t.Logf("released jobs batched %v after the first batcher stopped (AckWait %v)", el, ackWait)
}

// TestGateHeldPastAckWaitNoRedelivery: jobs held by the gate longer than
// AckWait are kept alive (InProgress) and delivered to the batcher once.
func TestGateHeldPastAckWaitNoRedelivery(t *testing.T) {
	const ackWait = time.Second
	h := newHarness(t, testModel("m", 32, 5*time.Millisecond, false), ackWait, func(o *Options) {
		o.MaxWaitingBatches = 0
	})
	h.start()
	cons, err := h.n.JS.Consumer(t.Context(), h.topo.BatchesStream(), jetstream.WorkerConsumer(h.m.Name))
	if err != nil {
		t.Fatal(err)
	}
	// No worker yet: the first batch goes to the stream; a worker takes it
	// and holds it (its only slot busy, kept alive), so the gate closes.
	h.job(1, "a", 1, time.Time{})
	h.waitBatches(1, 5*time.Second)
	msgs, err := cons.Fetch(1, natsjs.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var held natsjs.Msg
	for msg := range msgs.Messages() {
		held = msg
	}
	if held == nil {
		t.Fatal("no batch to hold")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(ackWait / 4):
				_ = held.InProgress()
			}
		}
	}()
	if err := h.n.Conn.Publish(h.topo.TakenSubject(h.m.Name), nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"b", "c", "d"} {
		h.job(1, id, 1, time.Time{})
	}
	// Held for 2.5 × AckWait: without InProgress the server would have
	// redelivered b, c and d twice by now.
	testutil.Eventually(t, 5*time.Second, func() bool { return h.jobsConsumer().NumAckPending == 3 }, "jobs not pulled")
	time.Sleep(5 * ackWait / 2) // waiting out AckWait is the point of the test
	h.mu.Lock()
	n := len(h.batches)
	h.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d batches published while the worker was busy, want 1", n)
	}
	info := h.jobsConsumer()
	// Deliveries so far: a once, then b, c and d once each.
	if info.Delivered.Consumer != 4 || info.NumRedelivered != 0 {
		t.Fatalf("jobs consumer delivered %d messages (%d redelivered), want 4 and 0", info.Delivered.Consumer, info.NumRedelivered)
	}
	// The worker finishes and waits again: one batch with b, c and d.
	cancel()
	if err := held.Ack(); err != nil {
		t.Fatal(err)
	}
	next := make(chan *inferqpb.Batch, 1)
	go func() {
		msgs, err := cons.Fetch(1, natsjs.FetchMaxWait(10*time.Second))
		if err != nil {
			next <- nil
			return
		}
		for msg := range msgs.Messages() {
			b := &inferqpb.Batch{}
			_ = proto.Unmarshal(msg.Data(), b)
			_ = msg.Ack()
			next <- b
			return
		}
		next <- nil
	}()
	deadline := time.After(10 * time.Second)
	for {
		_ = h.n.Conn.Publish(h.topo.TakenSubject(h.m.Name), nil)
		select {
		case b := <-next:
			if b == nil || len(b.Jobs) != 3 {
				t.Fatalf("the released batch is %v, want b, c and d", b)
			}
			if info := h.jobsConsumer(); info.Delivered.Consumer != 4 {
				t.Errorf("jobs consumer delivered %d messages, want 4 (one each)", info.Delivered.Consumer)
			}
			return
		case <-deadline:
			t.Fatal("the held batch was not released")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestJobWithBlobInputBatchedAlone: a job whose input is a reference to the
// blobs bucket goes out as a batch of its own whose input is that same
// reference; the jobs around it are still batched together.
func TestJobWithBlobInputBatchedAlone(t *testing.T) {
	h := newHarness(t, testModel("m", 32, 300*time.Millisecond, false), 30*time.Second, nil)
	h.start()
	h.job(1, "a", 4, time.Time{})
	ref := &inferqpb.BlobRef{Name: "big/in/0", Size: 4 << 20, Sha256: "00"}
	big := &inferqpb.Job{Id: "big", Tenant: "default", Model: h.m.Name, Version: "1", Priority: 1,
		CreatedUnixNano: time.Now().UnixNano(), Attempt: 1,
		Inputs: []*inferqpb.Tensor{{Name: "INPUT0", Datatype: "INT32", Shape: []int64{1, 1 << 20}, Ref: ref}}}
	if _, err := jetstream.Publish(context.Background(), h.n.JS, h.topo.JobSubject(h.m.Name, 1, "big"), big, "big"); err != nil {
		t.Fatal(err)
	}
	h.job(1, "b", 4, time.Time{})
	testutil.Eventually(t, 10*time.Second, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		n := 0
		for _, b := range h.batches {
			n += len(b.Jobs)
		}
		return n == 3
	}, "all jobs batched")
	h.mu.Lock()
	defer h.mu.Unlock()
	var alone, together bool
	for _, b := range h.batches {
		ids := jobIDs(b)
		switch {
		case slices.Contains(ids, "big"):
			in := b.Inputs[0]
			alone = len(ids) == 1 && proto.Equal(in.Ref, ref) && len(in.Data) == 0 &&
				slices.Equal(in.Shape, []int64{1, 1 << 20}) && b.Jobs[0].RowEnd == 1 && len(b.Masks) == 0
		case len(ids) == 2:
			together = true
		}
		t.Logf("batch %v", ids)
	}
	if !alone || !together {
		t.Fatalf("the job by reference alone with its reference: %v; the others together: %v", alone, together)
	}
}

// TestContinuousBatchClosesAtFreeSlots: for a continuously batched generate
// model the batch a worker gets is cut at the sequence slots it says are
// free, not grown to max_batch_size.
func TestContinuousBatchClosesAtFreeSlots(t *testing.T) {
	m := testModel("g", 32, 5*time.Millisecond, false)
	m.Kind = config.KindGenerate
	h := newHarness(t, m, 30*time.Second, func(o *Options) { o.MaxWaitingBatches = 0 })
	h.start()
	cons, err := h.n.JS.Consumer(t.Context(), h.topo.BatchesStream(), jetstream.WorkerConsumer(h.m.Name))
	if err != nil {
		t.Fatal(err)
	}
	notify := func(free int) {
		t.Helper()
		msg := &nats.Msg{Subject: h.topo.TakenSubject(h.m.Name), Header: nats.Header{}}
		msg.Header.Set(jetstream.HeaderWorker, "w1")
		msg.Header.Set(jetstream.HeaderFreeSlots, fmt.Sprint(free))
		if free > 0 {
			msg.Header.Set(jetstream.HeaderIdle, "1")
		}
		if err := h.n.Conn.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
	}
	h.job(1, "a", 1, time.Time{})
	h.waitBatches(1, 5*time.Second)
	msgs, err := cons.Fetch(1, natsjs.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range msgs.Messages() {
		defer func() { _ = msg.Ack() }() // held while its sequences run
	}
	notify(0) // every slot of the worker runs a sequence
	for _, id := range []string{"b", "c", "d", "e", "f"} {
		h.job(1, id, 1, time.Time{})
	}
	time.Sleep(300 * time.Millisecond)
	h.mu.Lock()
	n := len(h.batches)
	h.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d batches published while no slot was free, want 1", n)
	}
	next := make(chan *inferqpb.Batch, 1)
	go func() {
		msgs, err := cons.Fetch(1, natsjs.FetchMaxWait(5*time.Second))
		if err != nil {
			next <- nil
			return
		}
		for msg := range msgs.Messages() {
			b := &inferqpb.Batch{}
			_ = proto.Unmarshal(msg.Data(), b)
			_ = msg.Ack()
			next <- b
			return
		}
		next <- nil
	}()
	deadline := time.After(5 * time.Second)
	for {
		notify(2) // two sequences ended: two slots free
		select {
		case b := <-next:
			if b == nil {
				t.Fatal("no batch reached the worker with free slots")
			}
			if got := jobIDs(b); len(got) != 2 {
				t.Fatalf("batch has jobs %v, want 2: the worker's free slots", got)
			}
			return
		case <-deadline:
			t.Fatal("no batch released to the worker with free slots")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
