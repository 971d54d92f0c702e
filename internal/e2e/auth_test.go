package e2e

import (
	"strings"
	"testing"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/config"
)

// TestAuthAndTenants runs the stack with API keys: credentials, scopes,
// tenant isolation (another tenant's job is 404) and per-tenant rate limits.
func TestAuthAndTenants(t *testing.T) {
	keys := map[string]string{"acme": "acme-secret-key-1", "beta": "beta-secret-key-2", "ops": "ops-secret-key-3", "tiny": "tiny-secret-key-4"}
	s := startStack(t, false, func(c *config.Config) {
		c.Auth.APIKeys = []auth.APIKey{
			{Name: "acme", SHA256: auth.HashKey(keys["acme"]), Tenant: "acme", Scopes: []string{"submit", "read"}},
			{Name: "beta", SHA256: auth.HashKey(keys["beta"]), Tenant: "beta", Scopes: []string{"read"}},
			{Name: "ops", SHA256: auth.HashKey(keys["ops"]), Tenant: "acme", Scopes: []string{"admin"}},
			{Name: "tiny", SHA256: auth.HashKey(keys["tiny"]), Tenant: "tiny", Scopes: []string{"read"}},
		}
		c.Auth.RateLimit = auth.RateLimitConfig{PerTenantRPS: 1000, Burst: 1000,
			Overrides: map[string]auth.TenantLimit{"tiny": {RPS: 0.5, Burst: 2}}}
	})
	call := bearerCaller(t, s.URL)
	job := `{"text_input":"hi","parameters":{"max_tokens":2}}`
	if code, h, _ := call("POST", "/v1/models/repeat/jobs", "", job); code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no credentials: %d %v", code, h)
	}
	if code, _, body := call("POST", "/v1/models/repeat/jobs", "wrong-key", job); code != 401 || strings.Contains(body, "wrong-key") {
		t.Errorf("bad key: %d %s", code, body)
	}
	code, _, body := call("POST", "/v1/models/repeat/jobs", keys["acme"], job)
	if code != 202 || !strings.Contains(body, `"stream_subject":"inferq.tokens.acme.`) {
		t.Fatalf("acme submit: %d %s", code, body)
	}
	id := body[strings.Index(body, `"id":"`)+6:][:26]
	if code, _, _ := call("GET", "/v1/jobs/"+id+"?wait=10s", keys["acme"], ""); code != 200 {
		t.Errorf("acme reads its job: %d", code)
	}
	for _, path := range []string{"/v1/jobs/" + id, "/v1/jobs/" + id + "/events"} {
		if code, _, _ := call("GET", path, keys["beta"], ""); code != 404 {
			t.Errorf("beta reads acme's %s: %d, want 404", path, code)
		}
	}
	if code, _, _ := call("DELETE", "/v1/jobs/"+id, keys["beta"], ""); code != 403 {
		t.Errorf("beta (read only) cancels: %d, want 403", code)
	}
	if code, _, _ := call("POST", "/v1/models/repeat/jobs", keys["beta"], job); code != 403 {
		t.Errorf("beta (read only) submits: %d, want 403", code)
	}
	if code, _, _ := call("POST", "/v1/jobs/"+id+"/replay", keys["acme"], ""); code != 403 {
		t.Errorf("acme replays without admin: %d, want 403", code)
	}
	if code, _, body := call("POST", "/v1/jobs/"+id+"/replay", keys["ops"], ""); code != 202 {
		t.Errorf("ops (admin, tenant acme) replays: %d %s", code, body)
	}
	// On /v2 the same refusal takes the OIP error form.
	if code, h, body := call("GET", "/v2/models/simple", "", ""); code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") ||
		!strings.Contains(body, `"code":"unauthenticated"`) || !strings.HasPrefix(body, `{"error":"`) {
		t.Errorf("OIP path without credentials: %d %v %s", code, h, body)
	}
	if code, _, body := call("GET", "/v1/models", "", ""); code != 401 || !strings.HasPrefix(body, `{"error":{"code":"unauthenticated"`) {
		t.Errorf("/v1 without credentials: %d %s", code, body)
	}
	for _, path := range []string{"/healthz", "/readyz", "/v2/health/live"} { // /metrics needs admin: TestProbeFindingsHTTP
		if code, _, _ := call("GET", path, "", ""); code != 200 {
			t.Errorf("%s without credentials: %d", path, code)
		}
	}
	got429 := false
	for range 5 {
		code, h, _ := call("GET", "/v1/models", keys["tiny"], "")
		if code == 429 {
			got429 = h.Get("Retry-After") != ""
			break
		}
	}
	if !got429 {
		t.Error("tenant tiny (0.5 rps, burst 2) was never answered 429 with Retry-After")
	}
	if code, _, _ := call("GET", "/v1/models", keys["acme"], ""); code != 200 {
		t.Errorf("acme is not limited by tiny's bucket: %d", code)
	}
}
