package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/internal/version"
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
	testutil.Eventually(t, 10*time.Second, func() bool { code, _ := do(t, "GET", s.URL+"/v2/models/simple/ready", nil, nil); return code == 200 }, "model simple never ready")
	for _, path := range []string{"/v2/health/live", "/v2/health/ready", "/healthz", "/readyz"} {
		if code, _ := do(t, "GET", s.URL+path, nil, nil); code != 200 {
			t.Errorf("%s: status %d", path, code)
		}
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

// TestIdempotencyKey: with either results store, the same key with the same
// request returns the original job (200, same body) and queues nothing new,
// also when the retry reorders keys or whitespace; the key reused with
// another request (other input data, or another model) is 422
// idempotency_key_reused; a key stored without a request hash, by an older
// version, still returns its job.
func TestIdempotencyKey(t *testing.T) {
	for _, withRedis := range []bool{false, true} {
		name := "kv"
		if withRedis {
			name = "redis"
		}
		t.Run(name, func(t *testing.T) { testIdempotencyKey(t, withRedis) })
	}
}

func testIdempotencyKey(t *testing.T, withRedis bool) {
	s := startStack(t, withRedis, nil)
	post := func(model, key, body string) (int, accepted, string) {
		req, _ := http.NewRequest("POST", s.URL+"/v1/models/"+model+"/jobs", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw bytes.Buffer
		_, _ = raw.ReadFrom(resp.Body)
		var a accepted
		_ = json.Unmarshal(raw.Bytes(), &a)
		return resp.StatusCode, a, raw.String()
	}
	const body = `{"text_input":"a","parameters":{"max_tokens":1,"priority":1}}`
	c1, a1, _ := post("repeat", "order-42", body)
	c2, a2, _ := post("repeat", "order-42", body)
	c3, a3, _ := post("repeat", "order-43", body)
	if c1 != 202 || c2 != 200 || c3 != 202 || a1.ID != a2.ID || a1.ID == a3.ID || a2.StreamSubject != a1.StreamSubject {
		t.Fatalf("first %d %+v, again %d %+v, other %d %+v", c1, a1, c2, a2, c3, a3)
	}
	reordered := "{ \"parameters\" : {\"priority\":1, \"max_tokens\":1},\n\t\"text_input\":\"a\" }\n"
	if code, a, raw := post("repeat", "order-42", reordered); code != 200 || a.ID != a1.ID {
		t.Errorf("same request, keys reordered: %d %s; want 200 with job %s", code, raw, a1.ID)
	}
	for _, tc := range []struct{ what, model, body string }{
		{"other input data", "repeat", `{"text_input":"b","parameters":{"max_tokens":1,"priority":1}}`},
		{"other parameters", "repeat", `{"text_input":"a","parameters":{"max_tokens":2,"priority":1}}`},
		{"other model", "identity", `{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"BYTES","data":["a"]}]}`},
	} {
		code, _, raw := post(tc.model, "order-42", tc.body)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal([]byte(raw), &e)
		if code != http.StatusUnprocessableEntity || e.Error.Code != "idempotency_key_reused" || !strings.Contains(e.Error.Message, "different request") {
			t.Errorf("%s with the same key: %d %s; want 422 idempotency_key_reused", tc.what, code, raw)
		}
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
	if withRedis {
		return // the store tests cover bare ids in Redis
	}
	// A key an older version stored as the bare job id matches any request.
	kv, err := s.NATS.JS.KeyValue(t.Context(), results.DefaultKVBucket)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("default\x00legacy-key"))
	if _, err := kv.Create(t.Context(), "idem."+hex.EncodeToString(sum[:]), []byte(a3.ID)); err != nil {
		t.Fatal(err)
	}
	if code, a, raw := post("repeat", "legacy-key", `{"text_input":"zzz"}`); code != 200 || a.ID != a3.ID {
		t.Errorf("legacy key: %d %s; want 200 with job %s", code, raw, a3.ID)
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
	var e struct{ Error, Code string } // the OIP error form on /v2
	if code, _ := do(t, "POST", s.URL+"/v2/models/simple/infer", simpleBody(a, a), &e); code != http.StatusGatewayTimeout || e.Code != "timeout" || e.Error == "" {
		t.Errorf("infer with no worker: status %d, error %+v; want 504 timeout", code, e)
	}
}

// oipErr is the OIP error body: {"error": message}, with our code.
type oipErr struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// TestOIPRESTPaths checks every OIP REST path against the KServe v2 / Open
// Inference Protocol spec, and Triton's model configuration extension: server
// metadata, health, model metadata and readiness, infer, generate and
// generate_stream, each with its versioned form, and the spec's error body.
func TestOIPRESTPaths(t *testing.T) {
	s := startStack(t, false, nil)

	for _, path := range []string{"/v2", "/v2/"} {
		var meta struct {
			Name       string   `json:"name"`
			Version    string   `json:"version"`
			Extensions []string `json:"extensions"`
		}
		if code, _ := do(t, "GET", s.URL+path, nil, &meta); code != 200 || meta.Name != "inferq" ||
			meta.Version != version.String() || meta.Extensions == nil ||
			!slices.Contains(meta.Extensions, "model_configuration") || !slices.Contains(meta.Extensions, "generate") {
			t.Errorf("GET %s: %d %+v (want version %q)", path, code, meta, version.String())
		}
	}

	// Health: 200 for true, with an empty body.
	for _, path := range []string{"/v2/health/live", "/v2/health/ready"} {
		code, body := send(t, "GET", s.URL+path, "", "")
		if code != 200 || len(body) != 0 {
			t.Errorf("%s: %d %q", path, code, body)
		}
	}

	type tensorMeta struct {
		Name     string  `json:"name"`
		Datatype string  `json:"datatype"`
		Shape    []int64 `json:"shape"`
	}
	for _, path := range []string{"/v2/models/simple", "/v2/models/simple/versions/1"} {
		var meta struct {
			Name     string       `json:"name"`
			Versions []string     `json:"versions"`
			Platform string       `json:"platform"`
			Inputs   []tensorMeta `json:"inputs"`
			Outputs  []tensorMeta `json:"outputs"`
		}
		if code, _ := do(t, "GET", s.URL+path, nil, &meta); code != 200 || meta.Name != "simple" ||
			!slices.Equal(meta.Versions, []string{"1"}) || meta.Platform == "" || len(meta.Inputs) != 2 || len(meta.Outputs) != 2 ||
			meta.Inputs[1].Name != "INPUT1" || meta.Outputs[0].Datatype != "INT32" || !slices.Equal(meta.Outputs[0].Shape, []int64{-1, 16}) {
			t.Errorf("GET %s: %d %+v", path, code, meta)
		}
	}

	for _, path := range []string{"/v2/models/simple/ready", "/v2/models/simple/versions/1/ready"} {
		var r struct {
			Name  string `json:"name"`
			Ready bool   `json:"ready"`
		}
		testutil.Eventually(t, 10*time.Second, func() bool { code, _ := do(t, "GET", s.URL+path, nil, &r); return code == 200 && r.Ready }, "GET %s never ready", path)
	}

	// Triton's model configuration: dims without the batch dimension,
	// BYTES as TYPE_STRING, token streams decoupled.
	type tritonTensor struct {
		Name     string  `json:"name"`
		DataType string  `json:"data_type"`
		Dims     []int64 `json:"dims"`
	}
	type tritonConfig struct {
		Name         string         `json:"name"`
		MaxBatchSize int            `json:"max_batch_size"`
		Input        []tritonTensor `json:"input"`
		Output       []tritonTensor `json:"output"`
		Dynamic      *struct {
			Delay int64 `json:"max_queue_delay_microseconds"`
		} `json:"dynamic_batching"`
		Policy struct {
			Decoupled bool `json:"decoupled"`
		} `json:"model_transaction_policy"`
	}
	simple, _ := s.Cfg.Model("simple")
	for _, path := range []string{"/v2/models/simple/config", "/v2/models/simple/versions/1/config"} {
		var c tritonConfig
		if code, _ := do(t, "GET", s.URL+path, nil, &c); code != 200 || c.Name != "simple" || c.MaxBatchSize != simple.Batching.MaxBatchSize ||
			len(c.Input) != 2 || c.Input[0].DataType != "TYPE_INT32" || !slices.Equal(c.Input[0].Dims, []int64{16}) ||
			c.Dynamic == nil || c.Dynamic.Delay != simple.Batching.MaxQueueDelay.D().Microseconds() || c.Policy.Decoupled {
			t.Errorf("GET %s: %d %+v", path, code, c)
		}
	}
	var rc tritonConfig
	if code, _ := do(t, "GET", s.URL+"/v2/models/repeat/config", nil, &rc); code != 200 || !rc.Policy.Decoupled ||
		len(rc.Input) != 1 || rc.Input[0].DataType != "TYPE_STRING" {
		t.Errorf("repeat config: %d %+v", code, rc)
	}

	var g struct {
		ModelName    string `json:"model_name"`
		ModelVersion string `json:"model_version"`
		TextOutput   string `json:"text_output"`
	}
	if code, _ := do(t, "POST", s.URL+"/v2/models/repeat/versions/1/generate", `{"text_input":"ab","parameters":{"max_tokens":3}}`, &g); code != 200 ||
		g.ModelName != "repeat" || g.ModelVersion != "1" || g.TextOutput != "aba" {
		t.Errorf("versioned generate: %d %+v", code, g)
	}
	code, body := send(t, "POST", s.URL+"/v2/models/repeat/versions/1/generate_stream", "application/json", `{"text_input":"ab","parameters":{"max_tokens":3}}`)
	if code != 200 || bytes.Count(body, []byte("data: ")) != 3 || !bytes.Contains(body, []byte(`"model_version":"1"`)) {
		t.Errorf("versioned generate_stream: %d %s", code, body)
	}

	// Errors on /v2 carry the spec's {"error": <message string>}; /v1 keeps
	// the contract's {"error": {"code", "message"}}.
	a := make([]int32, 16)
	errCases := []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"GET", "/v2/models/nope", nil, 404, "not_found"},
		{"GET", "/v2/models/simple/versions/9", nil, 404, "not_found"},
		{"GET", "/v2/models/simple/versions/9/ready", nil, 404, "not_found"},
		{"GET", "/v2/models/nope/config", nil, 404, "not_found"},
		{"GET", "/v2/models/simple/versions/9/config", nil, 404, "not_found"},
		{"POST", "/v2/models/simple/versions/9/infer", simpleBody(a, a), 404, "not_found"},
		{"POST", "/v2/models/repeat/versions/9/generate", `{"text_input":"x"}`, 404, "not_found"},
		{"POST", "/v2/models/repeat/versions/9/generate_stream", `{"text_input":"x"}`, 404, "not_found"},
		{"POST", "/v2/models/simple/infer", `{"inputs":[]}`, 400, "invalid"},
		{"POST", "/v2/models/simple/generate", `{"text_input":"x"}`, 400, "invalid"},
		{"GET", "/v2/nothing", nil, 404, "not_found"},
	}
	for _, tc := range errCases {
		var e oipErr
		if code, _ := do(t, tc.method, s.URL+tc.path, tc.body, &e); code != tc.status || e.Code != tc.code || e.Error == "" {
			t.Errorf("%s %s: %d %+v, want %d %s in the OIP form", tc.method, tc.path, code, e, tc.status, tc.code)
		}
	}
	var v1 struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if code, _ := do(t, "GET", s.URL+"/v1/models/nope", nil, &v1); code != 404 || v1.Error.Code != "not_found" || v1.Error.Message == "" {
		t.Errorf("/v1 error: %d %+v", code, v1)
	}
}

// TestOIPNotReady: with no worker, model readiness is false, which the OIP
// health rule says with a 4xx (400, as Triton answers).
func TestOIPNotReady(t *testing.T) {
	s := startComponents(t, false, stack.Components{Ingress: true, ResultSvc: true}, nil)
	for _, path := range []string{"/v2/models/simple/ready", "/v2/models/simple/versions/1/ready"} {
		var r struct {
			Name  string `json:"name"`
			Ready *bool  `json:"ready"`
		}
		if code, _ := do(t, "GET", s.URL+path, nil, &r); code != http.StatusBadRequest || r.Name != "simple" || r.Ready == nil || *r.Ready {
			t.Errorf("%s: %d %+v, want 400 ready false", path, code, r)
		}
	}
}
