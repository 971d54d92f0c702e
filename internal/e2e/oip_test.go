package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/testutil"
)

// TestInferMatchesAsyncPath: a KServe v2 client's request to
// /v2/models/simple/infer gets the same outputs as the async path.
func TestInferMatchesAsyncPath(t *testing.T) {
	s := startStack(t, false, nil)
	a := []int32{5, -3, 7, 1, 0, 9, 2, 2, 100, -100, 4, 4, 8, 1, 6, 3}
	b := []int32{1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987}
	async := s.wait(t, s.submit(t, "simple", simpleBody(a, b)).ID)
	var sync struct {
		ModelName    string       `json:"model_name"`
		ModelVersion string       `json:"model_version"`
		ID           string       `json:"id"`
		Outputs      []tensorJSON `json:"outputs"`
	}
	body := simpleBody(a, b)
	body["id"] = "my-request-1"
	if code, _ := do(t, "POST", s.URL+"/v2/models/simple/infer", body, &sync); code != 200 {
		t.Fatalf("infer: status %d", code)
	}
	if sync.ModelName != "simple" || sync.ModelVersion != "1" || sync.ID != "my-request-1" || len(sync.Outputs) != 2 {
		t.Fatalf("infer response %+v", sync)
	}
	for k, o := range sync.Outputs {
		ao := async.Result.Outputs[k]
		if o.Name != ao.Name || o.Datatype != ao.Datatype || !slices.Equal(o.Shape, ao.Shape) || string(o.Data) != string(ao.Data) {
			t.Errorf("output %d: sync %+v, async %+v", k, o, ao)
		}
	}
	if code, _ := do(t, "POST", s.URL+"/v2/models/simple/versions/1/infer", simpleBody(a, b), nil); code != 200 {
		t.Errorf("versioned infer: status %d", code)
	}
	var meta struct {
		Name     string
		Versions []string
		Inputs   []struct {
			Name, Datatype string
			Shape          []int64
		}
	}
	if code, _ := do(t, "GET", s.URL+"/v2/models/simple", nil, &meta); code != 200 || meta.Name != "simple" ||
		len(meta.Inputs) != 2 || meta.Inputs[0].Datatype != "INT32" || !slices.Equal(meta.Inputs[0].Shape, []int64{-1, 16}) {
		t.Errorf("metadata %d %+v", code, meta)
	}
	testutilEventually(t, func() bool { code, _ := do(t, "GET", s.URL+"/v2/models/simple/ready", nil, nil); return code == 200 })
	for _, path := range []string{"/v2/health/live", "/v2/health/ready", "/healthz", "/readyz"} {
		if code, _ := do(t, "GET", s.URL+path, nil, nil); code != 200 {
			t.Errorf("%s: status %d", path, code)
		}
	}
}

func testutilEventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestGenerateAndGenerateStream(t *testing.T) {
	s := startStack(t, false, nil)
	var g struct {
		ModelName  string `json:"model_name"`
		TextOutput string `json:"text_output"`
	}
	if code, _ := do(t, "POST", s.URL+"/v2/models/repeat/generate", `{"text_input":"hey","parameters":{"max_tokens":5}}`, &g); code != 200 || g.TextOutput != "heyhe" || g.ModelName != "repeat" {
		t.Fatalf("generate: %d %+v", code, g)
	}
	resp, err := http.Post(s.URL+"/v2/models/repeat/generate_stream", "application/json",
		strings.NewReader(`{"text_input":"ab","parameters":{"max_tokens":50,"interval_ms":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var text strings.Builder
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev struct {
			TextOutput string `json:"text_output"`
			Error      string `json:"error"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Error != "" {
			t.Fatalf("event %q: %v", line, err)
		}
		text.WriteString(ev.TextOutput)
		n++
	}
	if n != 50 || text.String() != strings.Repeat("ab", 25) {
		t.Errorf("%d events, text %q", n, text.String())
	}
	if code, _ := do(t, "POST", s.URL+"/v2/models/simple/generate", `{"text_input":"x"}`, nil); code != 400 {
		t.Errorf("generate on a tensor model: status %d", code)
	}
}

// TestIdempotencyKey: the same key returns the original job (200, same
// body) and queues nothing new.
func TestIdempotencyKey(t *testing.T) {
	s := startStack(t, false, nil)
	post := func(key string) (int, accepted) {
		req, _ := http.NewRequest("POST", s.URL+"/v1/models/repeat/jobs", strings.NewReader(`{"text_input":"a","parameters":{"max_tokens":1}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a accepted
		_ = json.NewDecoder(resp.Body).Decode(&a)
		return resp.StatusCode, a
	}
	c1, a1 := post("order-42")
	c2, a2 := post("order-42")
	c3, a3 := post("order-43")
	if c1 != 202 || c2 != 200 || c3 != 202 || a1.ID != a2.ID || a1.ID == a3.ID || a2.StreamSubject != a1.StreamSubject {
		t.Fatalf("first %d %+v, again %d %+v, other %d %+v", c1, a1, c2, a2, c3, a3)
	}
	s.wait(t, a1.ID)
	s.wait(t, a3.ID)
	info, err := s.NATS.JS.Stream(t.Context(), "INFERQ_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 2 {
		t.Errorf("INFERQ_JOBS holds %d jobs, want 2", n)
	}
}

// TestMaxQueued: with nothing batching, the model's queue fills and further
// jobs get 503 with Retry-After, and nothing is published for them.
func TestMaxQueued(t *testing.T) {
	s := startComponents(t, false, stack.Components{Ingress: true, ResultSvc: true}, func(c *config.Config) {
		m, _ := c.Model("simple")
		m.Queue.MaxQueued = 3
	})
	a := make([]int32, 16)
	for range 3 {
		s.submit(t, "simple", simpleBody(a, a))
	}
	time.Sleep(300 * time.Millisecond) // the queue depth is cached for 250ms
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	code, h := do(t, "POST", s.URL+"/v1/models/simple/jobs", simpleBody(a, a), &e)
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || e.Error.Code != "queue_full" {
		t.Fatalf("status %d, Retry-After %q, error %+v", code, h.Get("Retry-After"), e)
	}
	info, _ := s.NATS.JS.Stream(t.Context(), "INFERQ_JOBS")
	if n := info.CachedInfo().State.Msgs; n != 3 {
		t.Errorf("INFERQ_JOBS holds %d jobs, want 3", n)
	}
	var models struct {
		Models []struct {
			Name  string
			Test  bool `json:"test_model"`
			Stats *struct {
				Queued uint64 `json:"queued"`
			}
		}
	}
	if code, _ := do(t, "GET", s.URL+"/v1/models", nil, &models); code != 200 || len(models.Models) != 4 {
		t.Fatalf("models: %d %+v", code, models)
	}
	for _, m := range models.Models {
		if m.Name == "simple" && (m.Stats == nil || m.Stats.Queued != 3 || !m.Test) {
			t.Errorf("simple stats %+v", m)
		}
	}
	if code, _ := do(t, "GET", s.URL+"/v1/models/nope", nil, nil); code != 404 {
		t.Errorf("unknown model: %d", code)
	}
}

// TestModelStats: after jobs ran, GET /v1/models/{m} shows the batches they
// went in (recent_batch_sizes adds up to the jobs), a live worker and an
// empty queue.
func TestModelStats(t *testing.T) {
	s := startStack(t, false, nil)
	a := make([]int32, 16)
	var ids []string
	for range 10 {
		ids = append(ids, s.submit(t, "simple", simpleBody(a, a)).ID)
	}
	for _, id := range ids {
		s.wait(t, id)
	}
	var info struct {
		Stats struct {
			Queued      uint64 `json:"queued"`
			LiveWorkers int    `json:"live_workers"`
			Recent      []int  `json:"recent_batch_sizes"`
		}
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		if code, _ := do(t, "GET", s.URL+"/v1/models/simple", nil, &info); code != 200 {
			t.Fatalf("status %d", code)
		}
		sum := 0
		for _, n := range info.Stats.Recent {
			sum += n
		}
		return sum == len(ids) && info.Stats.Queued == 0 && info.Stats.LiveWorkers >= 1
	}, "model stats")
}

// TestStatusCodes415And504: a body that is not JSON by its Content-Type is
// refused with 415 before anything is published, and a synchronous infer
// that no worker answers in time gets 504 with the job's URL to poll.
func TestStatusCodes415And504(t *testing.T) {
	s := startComponents(t, false, stack.Components{Ingress: true, ResultSvc: true}, func(c *config.Config) {
		c.Ingress.SyncTimeout = config.D(300 * time.Millisecond)
	})
	a := make([]int32, 16)
	body, _ := json.Marshal(simpleBody(a, a))
	resp, err := http.Post(s.URL+"/v1/models/simple/jobs", "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: status %d, want 415", resp.StatusCode)
	}
	info, _ := s.NATS.JS.Stream(t.Context(), "INFERQ_JOBS")
	if n := info.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("INFERQ_JOBS holds %d jobs after a 415", n)
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if code, _ := do(t, "POST", s.URL+"/v2/models/simple/infer", simpleBody(a, a), &e); code != http.StatusGatewayTimeout || e.Error.Code != "timeout" {
		t.Errorf("infer with no worker: status %d, error %+v; want 504 timeout", code, e)
	}
}
