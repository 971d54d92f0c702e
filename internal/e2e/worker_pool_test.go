package e2e

import (
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/testutil"
)

// TestWorkerPoolSpreadsWorkAndSurvivesAKill runs three agents on one
// model's shared consumer: every agent gets batches, and when one is killed
// mid-batch (its connection dropped, nothing acked) its batch comes back
// after AckWait to the others. Every job ends in exactly one terminal
// status, succeeded, with its own output.
func TestWorkerPoolSpreadsWorkAndSurvivesAKill(t *testing.T) {
	s := startComponents(t, false, brokerOnly, func(c *config.Config) {
		c.NATS.AckWait = config.D(2 * time.Second)
		c.Models = []config.Model{{Name: "simgpu",
			Runner:   config.Runner{Builtin: "simgpu", Params: map[string]any{"a": "40ms", "b": "1ms"}},
			Batching: config.Batching{MaxBatchSize: 4, MaxQueueDelay: config.D(5 * time.Millisecond)}}}
	})
	m := s.Cfg.Models[0]
	// The victim runs the same model more slowly, so that it surely holds
	// a batch when it is killed.
	victim := startAgent(t, s, "victim", []config.Model{withParams(m, map[string]any{"a": "400ms", "b": "1ms"})}, nil)
	w2 := startAgent(t, s, "w2", s.Cfg.Models, nil)
	w3 := startAgent(t, s, "w3", s.Cfg.Models, nil)
	agents := []*testAgent{victim, w2, w3}

	terminal := watchTerminal(t, s, "simgpu")

	// Work spreads over all three.
	ids := submitPairs(t, s, "simgpu", 0, 48)
	waitPairs(t, s, ids)
	// An agent counts a batch once it is acked, just after its jobs' events
	// are stored: wait for the counts to settle, the victim's batch included.
	for i, a := range agents {
		testutil.Eventually(t, 10*time.Second, func() bool {
			st := a.Stats("simgpu")
			return st.Batches > 0 && st.Succeeded > 0 && st.InFlight == 0
		}, "agent %d ran no batch: %+v", i, a.Stats("simgpu"))
	}

	// Kill the victim while it holds a batch, under load.
	more := make(chan map[int]string, 1)
	go func() { more <- submitPairs(t, s, "simgpu", 48, 96) }()
	testutil.Eventually(t, 10*time.Second, func() bool { return victim.Stats("simgpu").InFlight > 0 }, "the victim never held a batch")
	before := victim.Stats("simgpu")
	victim.kill()
	after := victim.Stats("simgpu")
	if after.Batches != before.Batches || after.Released == before.Released {
		t.Errorf("victim acked a batch after its connection was dropped: before %+v, after %+v", before, after)
	}
	for k, id := range <-more {
		ids[k] = id
	}
	waitPairs(t, s, ids)
	settle(t, s, "simgpu")
	for k, id := range ids {
		var rec jobRecord
		do(t, "GET", s.URL+"/v1/jobs/"+id, nil, &rec)
		if err := checkPair(rec, k); err != nil {
			t.Errorf("job %d after settling: %v", k, err)
		}
		if st, ok := terminal.onlySucceeded(id); !ok {
			t.Errorf("job %d: terminal events %v, want only succeeded", k, st)
		}
	}
	var total uint64
	for _, a := range agents {
		total += a.Stats("simgpu").Succeeded
	}
	if total < uint64(len(ids)) {
		t.Errorf("agents report %d jobs succeeded, want at least %d", total, len(ids))
	}
	t.Logf("batches: victim %d, w2 %d, w3 %d", victim.Stats("simgpu").Batches, w2.Stats("simgpu").Batches, w3.Stats("simgpu").Batches)
}
