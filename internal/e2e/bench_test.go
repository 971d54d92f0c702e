package e2e

import (
	"bytes"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
)

// BenchmarkSubmit measures POST /v1/models/simple/jobs at concurrency 64
// against the ingress with embedded NATS and the KV results store: accepted
// jobs per second, p50/p99 latency, and allocations per request (the whole
// process: client, ingress, NATS server and store together).
func BenchmarkSubmit(b *testing.B) {
	s := startComponents(b, false, stack.Components{Ingress: true}, func(c *config.Config) {
		m, _ := c.Model("simple")
		m.Queue.MaxQueued = 1 << 30
		c.Log.Level = "error"
	})
	body := []byte(`{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},` +
		`{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}`)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}
	const conc = 64
	var (
		mu   sync.Mutex
		lats = make([]time.Duration, 0, b.N)
		bad  atomic.Int64
		next atomic.Int64
	)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, b.N/conc+1)
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				resp, err := hc.Post(s.URL+"/v1/models/simple/jobs", "application/json", bytes.NewReader(body))
				if err != nil {
					bad.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					bad.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	if n := bad.Load(); n > 0 {
		b.Fatalf("%d requests not accepted", n)
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	b.ReportMetric(float64(len(lats))/el.Seconds(), "jobs/s")
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-ms")
}
