package e2e

import (
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/worker/deepspeed_nats/agent"
)

// drainModel is simgpu batching four jobs at a time, with time enough to
// submit them before the batch closes.
func drainModel(c *config.Config) {
	c.Models = []config.Model{{Name: "simgpu",
		Runner:   config.Runner{Builtin: "simgpu", Params: map[string]any{"a": "20ms", "b": "1ms"}},
		Batching: config.Batching{MaxBatchSize: 4, MaxQueueDelay: config.D(300 * time.Millisecond)}}}
}

// TestWorkerDrainFinishesBatch: an agent told to stop (SIGTERM in the
// binaries) while it holds a batch stops pulling, finishes and acks the
// batch, then returns. Jobs submitted meanwhile wait for the next worker.
func TestWorkerDrainFinishesBatch(t *testing.T) {
	s := startComponents(t, false, brokerOnly, drainModel)
	slow := withParams(s.Cfg.Models[0], map[string]any{"a": "600ms", "b": "1ms"})
	a := startAgent(t, s, "draining", []config.Model{slow}, func(o *agent.Options) { o.DrainTimeout = 20 * time.Second })
	first := submitPairs(t, s, "simgpu", 0, 4)
	testutil.Eventually(t, 10*time.Second, func() bool { return a.Stats("simgpu").InFlight > 0 }, "the agent never held the batch")

	stopped := make(chan struct{})
	go func() { a.stop(); close(stopped) }()
	later := submitPairs(t, s, "simgpu", 4, 2) // while the agent drains
	<-stopped
	if st := a.Stats("simgpu"); st.Batches != 1 || st.Succeeded != 4 || st.Released != 0 || st.InFlight != 0 {
		t.Fatalf("after the drain: %+v, want the one batch finished and acked", st)
	}
	waitPairs(t, s, first)
	for k, id := range later {
		var rec jobRecord
		do(t, "GET", s.URL+"/v1/jobs/"+id, nil, &rec)
		if rec.Status != "queued" {
			t.Errorf("job %d submitted during the drain is %s: the draining agent pulled it", k, rec.Status)
		}
	}
	b := startAgent(t, s, "next", s.Cfg.Models, nil)
	waitPairs(t, s, later)
	// The records are written before the batch ack returns: wait for it.
	testutil.Eventually(t, 5*time.Second, func() bool { return b.Stats("simgpu").Succeeded == 2 }, "the next worker did not settle the two later jobs")
}

// TestWorkerDrainReleasesBatch: a batch that cannot finish within
// DrainTimeout is released (Nak) when the agent stops, so another worker
// runs it at once, long before AckWait would have returned it, and no job
// is lost or failed.
func TestWorkerDrainReleasesBatch(t *testing.T) {
	s := startComponents(t, false, brokerOnly, func(c *config.Config) {
		drainModel(c)
		c.NATS.AckWait = config.D(30 * time.Second)
	})
	stuck := withParams(s.Cfg.Models[0], map[string]any{"a": "60s", "b": "1ms"})
	a := startAgent(t, s, "stuck", []config.Model{stuck}, func(o *agent.Options) { o.DrainTimeout = 200 * time.Millisecond })
	ids := submitPairs(t, s, "simgpu", 0, 4)
	testutil.Eventually(t, 10*time.Second, func() bool { return a.Stats("simgpu").InFlight > 0 }, "the agent never held the batch")

	t0 := time.Now()
	a.stop()
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("stopping took %s with a 200ms drain timeout", d)
	}
	if st := a.Stats("simgpu"); st.Released != 1 || st.Batches != 0 || st.Failed != 0 {
		t.Fatalf("after the drain: %+v, want the batch released", st)
	}
	startAgent(t, s, "next", s.Cfg.Models, nil)
	waitPairs(t, s, ids)
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("released batch finished %s after the stop: it waited for AckWait instead of being redelivered", d)
	}
}
