package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/pkg/jetstream"
)

// TestPoisonBatchIsDeadLettered: a batch that fails on every delivery is
// retried max_deliver times with backoff, then its job ends failed with a
// useful error and a record in INFERQ_DEAD that points at the original job.
func TestPoisonBatchIsDeadLettered(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fail")
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, false, func(c *config.Config) {
		c.Models = append(c.Models, config.Model{Name: "flaky",
			Runner: config.Runner{Builtin: "flaky", Params: map[string]any{"fail_while_exists": flag}},
			Queue:  config.Queue{MaxDeliver: 3, Backoff: []config.Duration{config.D(50 * time.Millisecond)}}})
	})
	acc := s.submit(t, "flaky", `{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP32","data":[1]}]}`)
	other := s.submit(t, "flaky", `{"inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"FP32","data":[2,3]}]}`)
	s.wait(t, other.ID)
	rec := s.wait(t, acc.ID)
	if rec.Status != "failed" || rec.Error == nil || rec.Error.Code != "batch_failed" || rec.Attempts != 1 {
		t.Fatalf("record %+v", rec)
	}
	cons, err := s.NATS.JS.OrderedConsumer(t.Context(), "INFERQ_DEAD", jetstreamOrdered("inferq.dead.flaky"))
	if err != nil {
		t.Fatal(err)
	}
	var dl jetstream.DeadLetter
	for range 2 { // two jobs failed; find acc's record
		msg, err := cons.Next()
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(msg.Data(), &dl); err != nil {
			t.Fatal(err)
		}
		if dl.Job == acc.ID {
			break
		}
	}
	if dl.Job != acc.ID || dl.Model != "flaky" || dl.Deliveries != 3 || dl.JobsSeq == 0 || dl.Error == "" {
		t.Errorf("dead letter %+v", dl)
	}
	// The dead letter points at the original job in INFERQ_JOBS.
	jobs, err := s.NATS.JS.Stream(t.Context(), "INFERQ_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jobs.GetMsg(t.Context(), dl.JobsSeq)
	if err != nil || raw.Header.Get(nats.MsgIdHdr) != acc.ID {
		t.Errorf("jobs stream seq %d: %v %v", dl.JobsSeq, err, raw)
	}

	// Remove the fault and replay: by id, then the rest by model.
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	var r struct {
		Attempt int `json:"attempt"`
	}
	if code, _ := do(t, "POST", s.URL+"/v1/jobs/"+acc.ID+"/replay", nil, &r); code != 202 || r.Attempt != 2 {
		t.Fatalf("replay: %d %+v", code, r)
	}
	if rec := s.wait(t, acc.ID); rec.Status != "succeeded" || rec.Attempts != 2 || string(rec.Result.Outputs[0].Data) != "[1]" {
		t.Fatalf("replayed job %+v", rec)
	}
	if code, _ := do(t, "POST", s.URL+"/v1/jobs/"+acc.ID+"/replay", nil, nil); code != 202 {
		t.Errorf("replaying a succeeded job: %d", code)
	}
	s.wait(t, acc.ID)
	var n struct{ Count int }
	if code, _ := do(t, "POST", s.URL+"/v1/models/flaky/replay", `{"status":"failed","limit":10}`, &n); code != 200 || n.Count != 1 {
		t.Fatalf("model replay: %d %+v", code, n)
	}
	if rec := s.wait(t, other.ID); rec.Status != "succeeded" || rec.Attempts != 2 || string(rec.Result.Outputs[0].Data) != "[2,3]" {
		t.Fatalf("model-replayed job %+v", rec)
	}
	if code, _ := do(t, "POST", s.URL+"/v1/models/flaky/replay", `{"status":"queued"}`, nil); code != 400 {
		t.Errorf("replay by status queued: %d", code)
	}
}
