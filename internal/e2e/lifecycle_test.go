package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/stack/stacktest"
	"github.com/inferq/inferq/internal/testutil"
)

// TestIngressReadyWithoutRedis: with Redis down the ingress stays ready
// (/readyz and /v2/health/ready answer 200, so a Service keeps routing to
// it) and answers what needs the store with 503 + Retry-After, while
// inferq_dependency_up{dependency="store"} says 0; once Redis is back the
// job's record answers again.
func TestIngressReadyWithoutRedis(t *testing.T) {
	n, r, cfg := natsAndRedis(t, true)
	url := stacktest.Start(t, &cfg, n.Conn, stack.Components{Ingress: true, ResultSvc: true})

	var acc struct{ ID string }
	if code, _ := do(t, "POST", url+"/v1/models/identity/jobs", map[string]any{"inputs": []map[string]any{
		{"name": "INPUT0", "shape": []int{1, 1}, "datatype": "FP32", "data": []float64{1}}}}, &acc); code != http.StatusAccepted {
		t.Fatalf("submit: %d", code)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		code, _ := do(t, "GET", url+"/v1/jobs/"+acc.ID, nil, nil)
		return code == http.StatusOK
	}, "job %s never readable", acc.ID)

	r.Stop()
	for _, path := range []string{"/readyz", "/v2/health/ready"} {
		if code, _ := do(t, "GET", url+path, nil, nil); code != http.StatusOK {
			t.Errorf("%s with Redis down: %d, want 200 (the ingress still answers)", path, code)
		}
	}
	code, h := do(t, "GET", url+"/v1/jobs/"+acc.ID, nil, nil)
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Errorf("GET job with Redis down: %d, Retry-After %q; want 503 with Retry-After", code, h.Get("Retry-After"))
	}
	if v := metricValue(t, scrape(t, url), `inferq_dependency_up{dependency="store"}`); v != 0 {
		t.Errorf(`inferq_dependency_up{dependency="store"} = %v with Redis down, want 0`, v)
	}
	if body := scrape(t, url); !strings.Contains(body, `inferq_dependency_up{dependency="nats"} 1`) {
		t.Error(`inferq_dependency_up{dependency="nats"} is not 1`)
	}

	r.Start()
	testutil.Eventually(t, 10*time.Second, func() bool {
		code, _ := do(t, "GET", url+"/v1/jobs/"+acc.ID, nil, nil)
		return code == http.StatusOK
	}, "job %s not readable after Redis came back", acc.ID)
}

// TestRedisPausedAnswersWithinBound: with Redis frozen (SIGSTOP), calls that
// need the results store answer 503 with Retry-After within redis.timeout,
// a submission without an Idempotency-Key does not touch the store and is
// accepted, and once Redis runs again that job ends succeeded, exactly once.
func TestRedisPausedAnswersWithinBound(t *testing.T) {
	n, r, cfg := natsAndRedis(t, false)
	cfg.Redis.Timeout = config.D(500 * time.Millisecond)
	url := stacktest.Start(t, &cfg, n.Conn, stack.All)
	body := map[string]any{"inputs": []map[string]any{{"name": "INPUT0", "shape": []int{1, 1}, "datatype": "FP32", "data": []float64{2}}}}

	r.Pause()
	var acc struct{ ID string }
	if code, _ := do(t, "POST", url+"/v1/models/identity/jobs", body, &acc); code != http.StatusAccepted {
		t.Fatalf("submit without Idempotency-Key while Redis is paused: %d, want 202 (no store call)", code)
	}
	timed := func(what string, req func() (int, http.Header)) {
		start := time.Now()
		code, h := req()
		if el := time.Since(start); code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || el > 1500*time.Millisecond {
			t.Errorf("%s while Redis is paused: %d (Retry-After %q) after %v; want 503 with Retry-After within about 0.5s",
				what, code, h.Get("Retry-After"), el)
		}
	}
	timed("GET job", func() (int, http.Header) { return do(t, "GET", url+"/v1/jobs/"+acc.ID, nil, nil) })
	timed("submit with Idempotency-Key", func() (int, http.Header) {
		req, _ := http.NewRequest("POST", url+"/v1/models/identity/jobs", strings.NewReader(`{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP32","data":[3]}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "paused-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	})

	r.Resume()
	var rec struct {
		Status   string
		Attempts int
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		code, _ := do(t, "GET", url+"/v1/jobs/"+acc.ID, nil, &rec)
		return code == http.StatusOK && rec.Status == "succeeded"
	}, "job %s did not end after Redis resumed", acc.ID)
	if rec.Attempts != 1 {
		t.Errorf("job ran %d attempts, want 1", rec.Attempts)
	}
}
