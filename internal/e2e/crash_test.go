package e2e

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/testutil"
)

// TestWorkerCrashMidBatch kills a worker process (SIGKILL) while it runs a
// batch. JetStream redelivers the batch after AckWait to a second worker,
// and every job still ends exactly once, succeeded, with its own output.
func TestWorkerCrashMidBatch(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "inferq.yaml")
	yaml := `nats: {ack_wait: 2s}
models:
  - name: simgpu
    runner: {builtin: simgpu, params: {a: 1500ms, b: 1ms}}
    batching: {max_batch_size: 8, max_queue_delay: 50ms}
`
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startComponents(t, false, stack.Components{Ingress: true, Batcher: true, ResultSvc: true}, func(c *config.Config) {
		loaded, err := config.Load(cfgFile)
		if err != nil {
			t.Fatal(err)
		}
		loaded.NATS.URL = c.NATS.URL
		*c = loaded
	})
	applied := watchApplied(t, s)
	env := []string{"INFERQ_NATS_URL=" + s.Cfg.NATS.URL, "INFERQ_CONFIG=" + cfgFile, "INFERQ_WORKER_NAME=w1"}
	w1 := start(t, binary(t, "deepspeed_nats"), env)

	const jobs = 6
	ids := make(map[int]string, jobs)
	for k := range jobs {
		ids[k] = s.submit(t, "simgpu", pairBody(k)).ID
	}
	// Wait until the first worker holds the batch, then crash it.
	testutil.Eventually(t, 10*time.Second, func() bool {
		var rec jobRecord
		do(t, "GET", s.URL+"/v1/jobs/"+ids[0], nil, &rec)
		return rec.Status == "running"
	}, "job %s never ran on the first worker", ids[0])
	if err := w1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w1.done
	start(t, binary(t, "deepspeed_nats"), append(env, "INFERQ_WORKER_NAME=w2"))

	waitPairs(t, s, ids)
	// Exactly one terminal status each: once the batches and events are
	// drained, every record stays succeeded and the store applied one
	// terminal change per job, though the crashed batch ran twice.
	settle(t, s, "simgpu")
	applied.waitSeen(t, slices.Collect(maps.Values(ids)))
	for _, id := range ids {
		var rec jobRecord
		do(t, "GET", s.URL+"/v1/jobs/"+id, nil, &rec)
		if rec.Status != "succeeded" {
			t.Errorf("job %s changed to %s", id, rec.Status)
		}
		if st, ok := applied.only(id, "succeeded"); !ok {
			t.Errorf("job %s: terminal changes applied %v, want exactly one succeeded", id, st)
		}
	}
}
