package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// send posts body with the given Content-Type (none when ct is empty: Go's
// client adds none of its own) and returns the status and the body.
func send(t *testing.T, method, url, ct, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// TestContentTypeRule: every route that takes a JSON body follows one rule.
// No Content-Type and curl's default form type (`curl -d`) are read as JSON,
// as is application/json with or without a charset; any other type is 415
// with the error shape of the route's protocol, and nothing is queued.
func TestContentTypeRule(t *testing.T) {
	s := startStack(t, false, nil)
	a := make([]int32, 16)
	simple, _ := json.Marshal(simpleBody(a, a))
	gen := `{"text_input":"hi","parameters":{"max_tokens":2}}`
	// finished returns a fresh ended job to replay: a replayed job is queued
	// again, so every case gets its own.
	finished := func(t *testing.T) string {
		id := s.submit(t, "simple", simpleBody(a, a)).ID
		s.wait(t, id)
		return id
	}
	routes := []struct {
		name string
		path func(t *testing.T, accepted bool) string
		body string
		want int
	}{
		{"submit", fixed("/v1/models/simple/jobs"), string(simple), http.StatusAccepted},
		{"versioned submit", fixed("/v1/models/simple/versions/1/jobs"), string(simple), http.StatusAccepted},
		{"replay one", func(t *testing.T, accepted bool) string {
			if !accepted {
				return "/v1/jobs/01JB8Y3Q6J4V5X7Z9A1C3E5G7K/replay" // refused before the lookup
			}
			return "/v1/jobs/" + finished(t) + "/replay"
		}, `{}`, http.StatusAccepted},
		{"replay model", fixed("/v1/models/simple/replay"), `{"limit":5}`, http.StatusOK},
		{"v2 infer", fixed("/v2/models/simple/infer"), string(simple), http.StatusOK},
		{"v2 versioned infer", fixed("/v2/models/simple/versions/1/infer"), string(simple), http.StatusOK},
		{"generate", fixed("/v2/models/repeat/generate"), gen, http.StatusOK},
		{"generate_stream", fixed("/v2/models/repeat/generate_stream"), gen, http.StatusOK},
	}
	types := []struct {
		ct string
		ok bool
	}{
		{"", true},
		{"application/x-www-form-urlencoded", true},
		{"application/json", true},
		{"application/json; charset=utf-8", true},
		{"text/plain", false},
		{"application/xml", false},
	}

	// Refusals first: nothing may reach the jobs stream.
	for _, r := range routes {
		for _, ty := range types {
			if ty.ok {
				continue
			}
			t.Run(r.name+"/"+ty.ct, func(t *testing.T) {
				path := r.path(t, false)
				code, body := send(t, "POST", s.URL+path, ty.ct, r.body)
				if code != http.StatusUnsupportedMediaType {
					t.Fatalf("status %d, body %s; want 415", code, body)
				}
				if got := errorCode(t, path, body); got != "unsupported_media_type" {
					t.Errorf("error code %q in %s", got, body)
				}
			})
		}
	}
	info, err := s.NATS.JS.Stream(t.Context(), "INFERQ_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("INFERQ_JOBS holds %d jobs after only 415s", n)
	}

	for _, r := range routes {
		for _, ty := range types {
			if !ty.ok {
				continue
			}
			name := ty.ct
			if name == "" {
				name = "none"
			}
			t.Run(r.name+"/"+name, func(t *testing.T) {
				code, body := send(t, "POST", s.URL+r.path(t, true), ty.ct, r.body)
				if code != r.want {
					t.Fatalf("status %d, body %s; want %d", code, body, r.want)
				}
				if strings.HasSuffix(r.name, "generate_stream") && !bytes.Contains(body, []byte(`"text_output":"h"`)) {
					t.Errorf("stream %s has no token", body)
				}
			})
		}
	}
}

func fixed(path string) func(*testing.T, bool) string {
	return func(*testing.T, bool) string { return path }
}

// errorCode reads the code of an error answer: {"error":{"code","message"}}
// on /v1, the OIP form {"error":"message","code":"..."} on /v2.
func errorCode(t *testing.T, path string, body []byte) string {
	t.Helper()
	if strings.HasPrefix(path, "/v2/") {
		var e struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
			t.Errorf("OIP error body %s: %v", body, err)
		}
		return e.Code
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" {
		t.Errorf("error body %s: %v", body, err)
	}
	return e.Error.Code
}
