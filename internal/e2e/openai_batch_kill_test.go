package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/openai/openai-go/v3"

	"github.com/inferq/inferq/internal/testutil"
)

// TestOpenAIBatchSurvivesKill9 kills `inferq dev` (SIGKILL) in the middle
// of a 300-line batch and starts it again on the same data directory: the
// batch completes, its output answers every line exactly once, and
// INFERQ_JOBS holds exactly one job per line (no line was queued twice).
func TestOpenAIBatchSurvivesKill9(t *testing.T) {
	const n, maxTokens = 300, 10
	dir := t.TempDir()
	cfg := filepath.Join(dir, "inferq.yaml")
	// 20ms a token and a window of 30 lines: the batch takes seconds, so
	// the kill lands mid-batch; a 3s lease lets the restart take it soon.
	if err := os.WriteFile(cfg, []byte(`models:
  - name: slowrep
    runner: {builtin: repeat}
    parameters: [{name: interval_ms, type: int, default: 20}]
ingress:
  openai: {batch_window: 30, batch_lease: 3s}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	natsPort := testutil.FreePort(t)
	args := []string{"dev", "--http", addr, "--nats-port", fmt.Sprint(natsPort), "--data", filepath.Join(dir, "data"), "--config", cfg}
	p := start(t, binary(t, "inferq"), nil, args...)
	waitHTTP(t, p, "http://"+addr+"/readyz")
	client := openaiClient("http://" + addr)

	b := uploadBatch(t, client, batchFile("slowrep", n, maxTokens), nil)
	pollBatch(t, client, b.ID, time.Minute, func(b *openai.Batch) bool { return b.RequestCounts.Completed >= 60 })
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	mid, _ := client.Batches.Get(t.Context(), b.ID)
	if mid != nil {
		t.Fatalf("the killed process still answers: %+v", mid)
	}

	p = start(t, binary(t, "inferq"), nil, args...)
	waitHTTP(t, p, "http://"+addr+"/readyz")
	b = pollBatch(t, client, b.ID, 2*time.Minute, ended)
	if b.Status != "completed" || b.RequestCounts.Completed != n || b.RequestCounts.Failed != 0 {
		t.Fatalf("batch after the restart: %s\n%s", b.RawJSON(), p.out)
	}
	checkOutput(t, fileLines(t, client, b.OutputFileID), n, maxTokens)

	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), "INFERQ_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Fatalf("INFERQ_JOBS holds %d jobs for %d lines: a line was queued twice or not at all", info.State.Msgs, n)
	}
}
