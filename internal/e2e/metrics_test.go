package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/internal/version"
)

// TestQueueGauges: the ingress's /metrics shows the gauges the alerts use:
// live workers, queued jobs and the oldest one's age (with no batcher, the
// jobs wait), and that NATS and the store are reachable.
func TestQueueGauges(t *testing.T) {
	s := startComponents(t, false, stack.Components{Ingress: true, ResultSvc: true, Worker: true}, nil)
	a := make([]int32, 16)
	s.submit(t, "simple", simpleBody(a, a))
	s.submit(t, "simple", simpleBody(a, a))
	time.Sleep(300 * time.Millisecond) // the oldest job is at least this old
	var body string
	testutil.Eventually(t, 5*time.Second, func() bool {
		body = scrape(t, s.URL)
		return strings.Contains(body, `inferq_workers_live{model="simple"} 1`)
	}, "inferq_workers_live for simple")
	for _, want := range []string{
		`inferq_queue_jobs{model="simple"} 2`,
		`inferq_dependency_up{dependency="nats"} 1`,
		`inferq_dependency_up{dependency="store"} 1`,
		`inferq_build_info{goversion="` + version.GoVersion() + `",version="` + version.String() + `"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	age := metricValue(t, body, `inferq_queue_oldest_job_age_seconds{model="simple"}`)
	if age < 0.3 || age > 30 {
		t.Errorf("oldest job age %v s, want about 0.3 s or a little more", age)
	}
}

// metricValue finds one sample's value in a Prometheus text exposition.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics lacks %s", series)
	return 0
}

// TestOneProcessMetrics: with every component in one process (as inferq
// dev runs them) on one registry, each component's metrics count the job
// once, and the queue wait is one metric labelled by priority.
func TestOneProcessMetrics(t *testing.T) {
	s := startStack(t, false, nil)
	a := make([]int32, 16)
	rec := s.wait(t, s.submit(t, "simple", simpleBody(a, a)).ID)
	if rec.Status != "succeeded" {
		t.Fatalf("job %s", rec.Status)
	}
	wants := []string{
		`inferq_jobs_submitted_total{model="simple"} 1`,
		`inferq_queue_wait_seconds_count{model="simple",priority="p1"} 1`,
		`inferq_batch_size_count{model="simple"} 1`,
		`inferq_batcher_jobs_batched_total{model="simple",priority="p1"} 1`,
		`inferq_worker_batch_duration_seconds_count{model="simple"} 1`,
		`inferq_jobs_finished_total{model="simple",status="succeeded"} 1`,
	}
	var body string
	testutil.Eventually(t, 5*time.Second, func() bool {
		body = scrape(t, s.URL)
		for _, want := range wants {
			if !strings.Contains(body, want) {
				return false
			}
		}
		return true
	}, "every component's metrics for the job")
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Counters an alert takes a rate or increase of exist from the start, at
	// zero, for every model: the first dead letter of a new process counts.
	for _, zero := range []string{
		`inferq_dead_letters_total{model="simgpu",reason="max_deliver"} 0`,
		`inferq_jobs_dropped_total{model="repeat",reason="expired"} 0`,
		`inferq_jobs_rejected_total{model="identity",reason="queue_full"} 0`,
		`inferq_jobs_submitted_total{model="simgpu"} 0`,
	} {
		if !strings.Contains(body, zero) {
			t.Errorf("/metrics lacks %s", zero)
		}
	}
	if strings.Contains(body, "inferq_batcher_queue_wait_seconds") {
		t.Error("/metrics still has inferq_batcher_queue_wait_seconds, which duplicates inferq_queue_wait_seconds")
	}
}

// scrape reads the Prometheus text of the ingress at url.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
