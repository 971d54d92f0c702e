package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/pkg/jetstream"
)

// TestWorkerPoisonJobFailsAlone: a job that makes its whole batch fail
// (the flaky test model's poison value) fails alone, at once, with a
// useful error and a dead letter; the seven jobs batched with it succeed
// on the same delivery.
func TestWorkerPoisonJobFailsAlone(t *testing.T) {
	s := startStack(t, false, func(c *config.Config) {
		c.Models = []config.Model{{Name: "flaky",
			Runner:   config.Runner{Builtin: "flaky", Params: map[string]any{"poison": 13}},
			Batching: config.Batching{MaxBatchSize: 8, MaxQueueDelay: config.D(5 * time.Second)}, // one full batch of all eight
			Queue:    config.Queue{MaxDeliver: 3, Backoff: []config.Duration{config.D(time.Second)}}}}
	})
	const poison = 5
	ids := make([]string, 8)
	for k := range ids {
		body := pairBody(k + 1)
		if k == poison {
			body = `{"inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"INT32","data":[13,0]}]}`
		}
		ids[k] = s.submit(t, "flaky", body).ID
	}
	for k, id := range ids {
		rec := s.wait(t, id)
		if k == poison {
			if rec.Status != "failed" || rec.Attempts != 1 || rec.Error == nil || rec.Error.Code != "poison_job" ||
				!strings.Contains(rec.Error.Message, "poison value 13") || !strings.Contains(rec.Error.Message, "batch of 8") {
				t.Errorf("poison job: %+v %+v", rec, rec.Error)
			}
			continue
		}
		if err := checkPair(rec, k+1); err != nil {
			t.Errorf("job %d: %v", k, err)
		}
	}

	dead, err := s.NATS.JS.Stream(t.Context(), "INFERQ_DEAD")
	if err != nil {
		t.Fatal(err)
	}
	if n := dead.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("INFERQ_DEAD holds %d records, want 1 (the poison job's)", n)
	}
	raw, err := dead.GetMsg(t.Context(), dead.CachedInfo().State.FirstSeq)
	if err != nil {
		t.Fatal(err)
	}
	var dl jetstream.DeadLetter
	if err := json.Unmarshal(raw.Data, &dl); err != nil {
		t.Fatal(err)
	}
	// Deliveries 1: the poison job failed, and its neighbours succeeded,
	// on the batch's first delivery, without a retry.
	if dl.Job != ids[poison] || dl.Model != "flaky" || dl.Deliveries != 1 || dl.JobsSeq == 0 ||
		!strings.HasPrefix(dl.Error, "poison_job: ") {
		t.Errorf("dead letter %+v", dl)
	}
}
