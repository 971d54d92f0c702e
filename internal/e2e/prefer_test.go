package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// postPrefer submits body to model with the given Prefer field (none when
// empty) and Idempotency-Key (none when empty), and returns the status, the
// headers, the raw body and how long the answer took.
func postPrefer(t *testing.T, s *Stack, model, prefer, key string, body any) (int, http.Header, []byte, time.Duration) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", s.URL+"/v1/models/"+model+"/jobs", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if prefer != "" {
		req.Header.Set("Prefer", prefer)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, raw, time.Since(start)
}

// TestPreferWait: `Prefer: wait=N` on a submission answers 200 with the job
// record when the job ends within N seconds, else the usual 202 with the
// accepted body after N seconds; without it, or with a wait that is not a
// number, the answer is 202 at once. An idempotent retry waits the same way.
func TestPreferWait(t *testing.T) {
	s := startStack(t, false, nil)
	a, b := make([]int32, 16), make([]int32, 16)
	for k := range a {
		a[k], b[k] = int32(k), int32(3*k)
	}

	// A simple job ends well within 5 s: 200 with its record and result.
	code, h, raw, _ := postPrefer(t, s, "simple", "wait=5", "", simpleBody(a, b))
	var rec jobRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatalf("body %s: %v", raw, err)
	}
	if code != http.StatusOK || h.Get("Preference-Applied") != "wait=5" || h.Get("Location") != "/v1/jobs/"+rec.ID {
		t.Fatalf("Prefer: wait=5: %d, Preference-Applied %q, Location %q, body %s", code, h.Get("Preference-Applied"), h.Get("Location"), raw)
	}
	if err := checkSimple(rec, a, b); err != nil {
		t.Fatalf("record: %v (%s)", err, raw)
	}
	// The same record as GET /v1/jobs/{id} answers.
	var got map[string]any
	if code, _ := do(t, "GET", s.URL+"/v1/jobs/"+rec.ID, nil, &got); code != 200 {
		t.Fatalf("get: %d", code)
	}
	var posted map[string]any
	_ = json.Unmarshal(raw, &posted)
	if !jsonEqual(raw, mustJSON(t, got)) {
		t.Errorf("POST answered %v, GET answers %v", posted, got)
	}

	// A repeat job of 30 tokens 100 ms apart outlasts wait=1: 202 after
	// about a second, with the accepted body.
	long := map[string]any{"text_input": "ab", "parameters": map[string]any{"max_tokens": 30, "interval_ms": 100}}
	code, h, raw, took := postPrefer(t, s, "repeat", "respond-async, wait=1", "long-key", long)
	var acc accepted
	if err := json.Unmarshal(raw, &acc); err != nil {
		t.Fatalf("body %s: %v", raw, err)
	}
	if code != http.StatusAccepted || acc.Status != "queued" || h.Get("Location") != "/v1/jobs/"+acc.ID || h.Get("Preference-Applied") != "wait=1" {
		t.Fatalf("long job with wait=1: %d, headers %v, body %s", code, h, raw)
	}
	if took < 900*time.Millisecond || took > 2500*time.Millisecond {
		t.Errorf("long job with wait=1 answered after %v, want about 1s", took)
	}
	// Its idempotent retry waits the same way: 202 while it runs...
	code, _, raw, _ = postPrefer(t, s, "repeat", "wait=1", "long-key", long)
	var again accepted
	_ = json.Unmarshal(raw, &again)
	if code != http.StatusAccepted || again.ID != acc.ID {
		t.Errorf("retry while running: %d %s, want 202 with job %s", code, raw, acc.ID)
	}
	// ...and 200 with the record once it ended within the wait.
	code, h, raw, _ = postPrefer(t, s, "repeat", "wait=10", "long-key", long)
	var done jobRecord
	_ = json.Unmarshal(raw, &done)
	if code != http.StatusOK || done.ID != acc.ID || done.Status != "succeeded" || done.Result == nil || h.Get("Preference-Applied") != "wait=10" {
		t.Errorf("retry with wait=10: %d %s, want 200 with the succeeded record of %s", code, raw, acc.ID)
	}

	// No Prefer, an unknown preference, or a wait that is not whole seconds:
	// 202 at once, no Preference-Applied, as before.
	for _, prefer := range []string{"", "respond-async", "wait=abc", "wait=1.5", "wait=-3"} {
		code, h, raw, took := postPrefer(t, s, "repeat", prefer, "", long)
		if code != http.StatusAccepted || h.Get("Preference-Applied") != "" || took > 800*time.Millisecond {
			t.Errorf("Prefer %q: %d after %v, Preference-Applied %q, body %s", prefer, code, took, h.Get("Preference-Applied"), raw)
		}
		do(t, "DELETE", s.URL+h.Get("Location"), nil, nil) // no need to run it
	}

	// A wait above ingress.max_wait is capped at it.
	code, h, _, _ = postPrefer(t, s, "simple", "wait=100000", "", simpleBody(a, b))
	if max := int(s.Cfg.Ingress.MaxWait.D() / time.Second); code != 200 || h.Get("Preference-Applied") != "wait="+strconv.Itoa(max) {
		t.Errorf("wait=100000: %d, Preference-Applied %q, want wait=%d", code, h.Get("Preference-Applied"), max)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
