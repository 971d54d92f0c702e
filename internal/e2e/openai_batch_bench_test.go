package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
)

// BenchmarkOpenAIBatch runs a 10,000-line Batch API batch and then the same
// 10,000 jobs submitted directly (POST /v1/models/gen/jobs at priority 2,
// as many in flight as the batch window), on one stack, and reports both
// rates and their ratio (target ≥ 0.9). The model, gen, is the repeat test
// model with 2ms a token: simgpu is a tensor model, which no OpenAI line
// can name.
//
//	go test -run '^$' -bench BenchmarkOpenAIBatch -benchtime 1x ./internal/e2e/
func BenchmarkOpenAIBatch(b *testing.B) {
	const n, maxTokens = 10000, 4
	s := startStack(b, false, func(c *config.Config) {
		c.Models = append(c.Models, config.Model{Name: "gen", Runner: config.Runner{Builtin: "repeat"},
			Parameters: []config.Parameter{{Name: "interval_ms", Type: config.ParamInt, Default: 2}}})
	})
	client := openaiClient(s.URL)
	window := s.Cfg.Ingress.OpenAI.BatchWindow
	var batchRate, directRate float64
	for b.Loop() {
		start := time.Now()
		bt := uploadBatch(b, client, batchFile("gen", n, maxTokens), nil)
		bt = pollBatch(b, client, bt.ID, 10*time.Minute, ended)
		if bt.Status != "completed" || bt.RequestCounts.Completed != n {
			b.Fatalf("batch %s", bt.RawJSON())
		}
		batchRate = n / time.Since(start).Seconds()

		start = time.Now()
		work := make(chan int)
		var wg sync.WaitGroup
		for range window {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range work {
					body := fmt.Sprintf(`{"text_input":"p%d-","parameters":{"max_tokens":%d,"priority":2}}`, k, maxTokens)
					var acc struct{ ID string }
					if code, _ := do(b, http.MethodPost, s.URL+"/v1/models/gen/jobs", body, &acc); code != http.StatusAccepted {
						b.Errorf("submit: %d", code)
						continue
					}
					// waitErr gives up after 30s; a job deep in an overloaded
					// queue may take longer, so wait again (up to 10 min).
					var rec jobRecord
					var err error
					for try := 0; try < 20; try++ {
						if rec, err = s.waitErr(acc.ID); err == nil {
							break
						}
					}
					if err != nil || rec.Status != "succeeded" {
						b.Errorf("job %s %s %v", acc.ID, rec.Status, err)
					}
				}
			}()
		}
		for k := range n {
			work <- k
		}
		close(work)
		wg.Wait()
		directRate = n / time.Since(start).Seconds()
	}
	b.ReportMetric(batchRate, "batch-lines/s")
	b.ReportMetric(directRate, "direct-jobs/s")
	b.ReportMetric(batchRate/directRate, "ratio")
}
