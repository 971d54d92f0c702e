package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/cli"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
)

// TestMaxDeliveriesAdvisory: a worker that dies on every delivery of a batch
// never dead-letters it itself. JetStream stops after max_deliver and sends
// an advisory; resultsvc turns it into a failed job with a dead letter, and
// removes the batch.
func TestMaxDeliveriesAdvisory(t *testing.T) {
	s := startComponents(t, false, stack.Components{Ingress: true, Batcher: true, ResultSvc: true}, func(c *config.Config) {
		c.NATS.AckWait = config.D(300 * time.Millisecond)
		m, _ := c.Model("simple")
		m.Queue.MaxDeliver = 2
	})
	// The "worker": takes each delivery and dies with it (never acks).
	cons, err := s.NATS.JS.Consumer(t.Context(), "INFERQ_BATCHES", "workers-simple")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var mu sync.Mutex
	deliveries := 0
	wg.Go(func() {
		for ctx.Err() == nil {
			batch, err := cons.Fetch(1, natsjs.FetchMaxWait(200*time.Millisecond))
			if err != nil {
				continue
			}
			for range batch.Messages() {
				mu.Lock()
				deliveries++
				mu.Unlock()
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })

	a := make([]int32, 16)
	acc := s.submit(t, "simple", simpleBody(a, a))
	rec := s.wait(t, acc.ID)
	if rec.Status != "failed" || rec.Error == nil || rec.Error.Code != "max_deliver" {
		t.Fatalf("record %+v", rec)
	}
	mu.Lock()
	if deliveries != 2 {
		t.Errorf("batch delivered %d times, want max_deliver 2", deliveries)
	}
	mu.Unlock()

	dead, err := s.NATS.JS.OrderedConsumer(t.Context(), "INFERQ_DEAD", jetstreamOrdered("inferq.dead.simple"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := dead.Next(natsjs.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var dl jetstream.DeadLetter
	if err := json.Unmarshal(msg.Data(), &dl); err != nil {
		t.Fatal(err)
	}
	if dl.Job != acc.ID || dl.Deliveries != 2 || dl.JobsSeq == 0 || dl.Batch == "" {
		t.Errorf("dead letter %+v", dl)
	}
	batches, err := s.NATS.JS.Stream(t.Context(), "INFERQ_BATCHES")
	if err != nil {
		t.Fatal(err)
	}
	// resultsvc removes the batch only after its jobs' failed events are
	// stored (so a crash in between cannot lose them), which can be just
	// after the record reads failed.
	testutil.Eventually(t, 5*time.Second, func() bool {
		info, err := batches.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	}, "INFERQ_BATCHES still holds the exhausted batch")

	// With a working worker instead, `inferq replay` runs it again.
	cancel()
	wg.Wait()
	startAgent(t, s, "healthy", s.Cfg.Models, nil)
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := cli.Client(context.Background(), "replay", append([]string{"-url", s.URL}, args...), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run(acc.ID); code != cli.ExitOK || !strings.Contains(out, `"attempt":2`) {
		t.Fatalf("inferq replay %s: %d %s", acc.ID, code, out)
	}
	if rec := s.wait(t, acc.ID); rec.Status != "succeeded" || rec.Attempts != 2 {
		t.Fatalf("replayed job %+v", rec)
	}
	if code, out := run("-model", "simple", "-since", "1h"); code != cli.ExitOK || !strings.Contains(out, `"count":0`) {
		t.Errorf("inferq replay -model (nothing failed now): %d %s", code, out)
	}
	if code, _ := run(); code != cli.ExitUsage {
		t.Errorf("inferq replay with no job: exit %d", code)
	}
}
