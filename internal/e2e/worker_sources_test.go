package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/worker/deepspeed_nats/agent"
)

// affineScript builds the TorchScript model of TestWorkerTorchScriptEndToEnd
// with PyTorch on CPU: y = 2x + 1, and ROWS, the number of rows of the batch
// the model was given, on each row.
const affineScript = `import sys
import torch


class Affine(torch.nn.Module):
    def forward(self, x: torch.Tensor):
        n = x.shape[0]
        return x * 2.0 + 1.0, torch.full([n, 1], n, dtype=torch.int64)


torch.jit.save(torch.jit.script(Affine()), sys.argv[1])
`

// TestWorkerTorchScriptEndToEnd serves a TorchScript file built here through
// the whole stack (runner: {model: torchscript:PATH}): concurrent jobs come
// back with exact outputs, and the model itself saw batches of more than one
// row (its ROWS output), as the batcher's metrics say too.
func TestWorkerTorchScriptEndToEnd(t *testing.T) {
	py, err := agent.FindPython()
	if err != nil {
		t.Fatalf("TorchScript models run in the Python runner, which needs torch: %v", err)
	}
	dir := t.TempDir()
	src, pt := filepath.Join(dir, "build.py"), filepath.Join(dir, "affine.pt")
	if err := os.WriteFile(src, []byte(affineScript), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(py, src, pt).CombinedOutput(); err != nil {
		t.Fatalf("building the TorchScript model: %v\n%s", err, out)
	}
	s := startStack(t, false, func(c *config.Config) {
		c.Models = []config.Model{{Name: "affine",
			Runner:   config.Runner{Model: "torchscript:" + pt, Device: "auto"},
			Inputs:   []config.Tensor{{Name: "x", Datatype: "FP32", Dims: []int64{4}}},
			Outputs:  []config.Tensor{{Name: "y", Datatype: "FP32", Dims: []int64{4}}, {Name: "ROWS", Datatype: "INT64", Dims: []int64{1}}},
			Batching: config.Batching{MaxBatchSize: 8, MaxQueueDelay: config.D(20 * time.Millisecond)}}}
		c.Worker.Name = "e2e-ts"
	})

	const jobs = 48
	type answer struct {
		x    []float32
		rec  jobRecord
		err  error
		rows int64
	}
	answers := make([]answer, jobs)
	var wg sync.WaitGroup
	for i := range jobs {
		x := []float32{float32(i), -float32(i) / 2, 0.25, float32(i * i)}
		answers[i].x = x
		wg.Go(func() {
			body := map[string]any{"inputs": []map[string]any{{"name": "x", "shape": []int{1, 4}, "datatype": "FP32", "data": x}}}
			var acc accepted
			if code, _ := do(t, "POST", s.URL+"/v1/models/affine/jobs", body, &acc); code != http.StatusAccepted {
				answers[i].err = fmt.Errorf("submit: status %d", code)
				return
			}
			answers[i].rec, answers[i].err = s.waitErr(acc.ID)
		})
	}
	wg.Wait()
	maxRows := int64(0)
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("job %d: %v", i, a.err)
		}
		if a.rec.Status != "succeeded" || a.rec.Result == nil {
			t.Fatalf("job %d: %s %+v", i, a.rec.Status, a.rec.Error)
		}
		out := map[string]json.RawMessage{}
		for _, o := range a.rec.Result.Outputs {
			out[o.Name] = o.Data
		}
		var y []float32
		var rows []int64
		if err := json.Unmarshal(out["y"], &y); err != nil {
			t.Fatalf("job %d: y %s: %v", i, out["y"], err)
		}
		if err := json.Unmarshal(out["ROWS"], &rows); err != nil || len(rows) != 1 {
			t.Fatalf("job %d: ROWS %s: %v", i, out["ROWS"], err)
		}
		want := make([]float32, 4)
		for k, v := range a.x {
			want[k] = 2*v + 1
		}
		if fmt.Sprint(y) != fmt.Sprint(want) {
			t.Errorf("job %d: y %v, want %v", i, y, want)
		}
		if rows[0] < 1 || rows[0] > 8 {
			t.Errorf("job %d ran in a batch of %d rows; max_batch_size is 8", i, rows[0])
		}
		maxRows = max(maxRows, rows[0])
	}
	if maxRows < 2 {
		t.Errorf("the model saw only batches of one row under %d concurrent jobs", jobs)
	}
	body := scrape(t, s.URL)
	n, sum := metricValue(t, body, `inferq_batch_size_count{model="affine"}`), metricValue(t, body, `inferq_batch_size_sum{model="affine"}`)
	if sum != jobs || n >= sum {
		t.Errorf("batcher: %v batches for %v jobs, want fewer batches than jobs", n, sum)
	}
	t.Logf("%d jobs in %v batches; the largest the model saw had %d rows", jobs, n, maxRows)
}
