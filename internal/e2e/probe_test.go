package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
)

// TestProbeFindingsHTTP covers issue 15's HTTP findings: a long-poll for
// another tenant's job answers 404 at once, an address whose credentials
// keep failing gets 429 with Retry-After, and /metrics needs the admin scope
// when auth is on.
func TestProbeFindingsHTTP(t *testing.T) {
	keys := map[string]string{"acme": "acme-probe-key", "beta": "beta-probe-key", "ops": "ops-probe-key"}
	// No batcher or worker: the job stays queued, so a wait runs it out.
	s := startComponents(t, false, stack.Components{Ingress: true, ResultSvc: true}, func(c *config.Config) {
		c.Auth.APIKeys = []auth.APIKey{
			{Name: "acme", SHA256: auth.HashKey(keys["acme"]), Tenant: "acme", Scopes: []string{"submit", "read"}},
			{Name: "beta", SHA256: auth.HashKey(keys["beta"]), Tenant: "beta", Scopes: []string{"submit", "read"}},
			{Name: "ops", SHA256: auth.HashKey(keys["ops"]), Tenant: "acme", Scopes: []string{"admin"}},
		}
		c.Auth.FailedAuth = auth.FailedAuthConfig{MaxFailures: 5, Window: auth.Duration(time.Minute)}
	})
	call := bearerCaller(t, s.URL)
	code, _, body := call("POST", "/v1/models/repeat/jobs", keys["acme"], `{"text_input":"hi","parameters":{"max_tokens":2}}`)
	var acc struct{ ID string }
	if err := json.Unmarshal([]byte(body), &acc); err != nil || code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", code, body)
	}

	start := time.Now()
	if code, _, body := call("GET", "/v1/jobs/"+acc.ID+"?wait=10s", keys["beta"], ""); code != http.StatusNotFound {
		t.Errorf("beta long-polling acme's job: %d %s", code, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("beta's long-poll for acme's job took %s, want 404 at once", d)
	}
	start = time.Now()
	if code, _, body := call("GET", "/v1/jobs/"+acc.ID+"?wait=1s", keys["acme"], ""); code != http.StatusOK || !strings.Contains(body, `"queued"`) {
		t.Errorf("acme's own long-poll: %d %s", code, body)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("acme's long-poll of a queued job returned after %s, want the full wait", d)
	}

	// /metrics: 401 without credentials, 403 without admin, 200 with it.
	for key, want := range map[string]int{"": 401, keys["acme"]: 403, keys["ops"]: 200} {
		if code, _, _ := call("GET", "/metrics", key, ""); code != want {
			t.Errorf("/metrics with key %q: %d, want %d", key, code, want)
		}
	}

	// Five bad keys, then even a good one is refused for the window.
	for range 5 {
		if code, _, _ := call("GET", "/v1/jobs/"+acc.ID, "not-a-key", ""); code != http.StatusUnauthorized {
			t.Fatalf("bad key: %d", code)
		}
	}
	code, h, body := call("GET", "/v1/jobs/"+acc.ID, keys["acme"], "")
	if code != http.StatusTooManyRequests {
		t.Fatalf("after 5 failures: %d %s, want 429", code, body)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q", h.Get("Retry-After"))
	}
}
