package authecho

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/labstack/echo/v4"
)

// server wires Chain the way the ingress does, with a fallback error
// handler standing in for the ingress's own.
type server struct {
	e       *echo.Echo
	f       *fixture
	lim     *auth.Limiter
	clock   *fakeClock
	seen    *auth.Principal // principal the last handler saw on the request context
	seenRID string
}

func newServer(t *testing.T, rl auth.RateLimitConfig) *server {
	f := newFixture(t)
	s := &server{e: echo.New(), f: f}
	s.lim, s.clock = newTestLimiter(rl)
	s.e.HTTPErrorHandler = WrapErrorHandler(func(err error, c echo.Context) {
		t.Errorf("fallback handler got %v", err)
		_ = c.NoContent(http.StatusInternalServerError)
	})
	s.e.Use(Chain(f.a, s.lim, newLog(f.logs), true)...)
	ok := func(c echo.Context) error {
		s.seen = auth.PrincipalFrom(c.Request().Context())
		s.seenRID = RequestID(c)
		if p := FromContext(c); p != s.seen {
			t.Errorf("echo context principal %p != request context principal %p", p, s.seen)
		}
		return c.String(http.StatusOK, "ok")
	}
	s.e.GET("/v1/jobs/:id", ok, Require(auth.ScopeRead))
	s.e.POST("/v1/models/:model/jobs", ok, Require(auth.ScopeSubmit))
	s.e.POST("/v1/jobs/:id/replay", ok, Require(auth.ScopeAdmin))
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"} {
		s.e.GET(p, ok)
	}
	return s
}

func (s *server) do(method, path, authz string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	s.e.ServeHTTP(w, r)
	return w
}

func errorBody(t *testing.T, w *httptest.ResponseRecorder) (code, msg string) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	return body.Error.Code, body.Error.Message
}

func TestMiddlewareAuth(t *testing.T) {
	s := newServer(t, auth.RateLimitConfig{})
	k := getKeys(t)
	adminClaims := claims()
	adminClaims["scope"] = []string{"admin"}
	admin := sign(t, jwt.SigningMethodES256, "ec-1", k.ecA, adminClaims)
	expired := claims()
	expired["exp"] = time.Now().Add(-time.Hour).Unix()

	tests := []struct {
		name, method, path, authz string
		status                    int
		code                      string
		wwwAuth                   string // substring
	}{
		{"missing header", "GET", "/v1/jobs/j1", "", 401, auth.CodeUnauthenticated, `Bearer realm="inferq"`},
		{"bad key", "GET", "/v1/jobs/j1", "Bearer iqk_wrong", 401, auth.CodeUnauthenticated, `error="invalid_token"`},
		{"expired jwt", "GET", "/v1/jobs/j1", "Bearer " + sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), expired),
			401, auth.CodeUnauthenticated, `error="invalid_token"`},
		{"basic auth", "GET", "/v1/jobs/j1", "Basic Zm9vOmJhcg==", 401, auth.CodeUnauthenticated, "Bearer"},
		{"read key may read", "GET", "/v1/jobs/j1", "Bearer " + s.f.readKey, 200, "", ""},
		{"read key may not submit", "POST", "/v1/models/m/jobs", "Bearer " + s.f.readKey, 403, auth.CodeForbidden, `error="insufficient_scope"`},
		{"submit key may submit", "POST", "/v1/models/m/jobs", "Bearer " + s.f.apiKey, 200, "", ""},
		{"submit key may not replay", "POST", "/v1/jobs/j1/replay", "Bearer " + s.f.apiKey, 403, auth.CodeForbidden, `scope="admin"`},
		{"admin jwt may do all", "POST", "/v1/jobs/j1/replay", "Bearer " + admin, 200, "", ""},
		{"healthz without credentials", "GET", "/healthz", "", 200, "", ""},
		{"readyz with garbage", "GET", "/readyz", "Bearer garbage", 200, "", ""},
		{"metrics needs credentials", "GET", "/metrics", "", 401, auth.CodeUnauthenticated, "Bearer"},
		{"oip live", "GET", "/v2/health/live", "", 200, "", ""},
		{"oip ready", "GET", "/v2/health/ready", "", 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := s.do(tt.method, tt.path, tt.authz)
			if w.Code != tt.status {
				t.Fatalf("status = %d (%s), want %d", w.Code, w.Body, tt.status)
			}
			if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, tt.wwwAuth) || (tt.wwwAuth == "") != (got == "") {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wwwAuth)
			}
			if tt.code != "" {
				if code, msg := errorBody(t, w); code != tt.code || msg == "" {
					t.Errorf("error body code %q message %q, want code %q", code, msg, tt.code)
				}
				if tt.authz != "" && strings.Contains(w.Body.String(), strings.TrimPrefix(tt.authz, "Bearer ")) {
					t.Error("response echoes the credential")
				}
			}
		})
	}
	s.do("GET", "/v1/jobs/j1", "Bearer "+s.f.readKey)
	if s.seen == nil || s.seen.Tenant != "beta" {
		t.Fatalf("handler saw principal %+v, want tenant beta", s.seen)
	}
}

func TestMiddlewareRateLimit(t *testing.T) {
	s := newServer(t, auth.RateLimitConfig{PerTenantRPS: 0.5, Burst: 2})
	key := "Bearer " + s.f.apiKey
	for i := range 2 {
		if w := s.do("GET", "/v1/jobs/j1", key); w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	w := s.do("GET", "/v1/jobs/j1", key)
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("status = %d, want 429", w.Code)
	}
	if ra := w.Header().Get("Retry-After"); ra != "2" {
		t.Fatalf("Retry-After = %q, want 2 (0.5 rps)", ra)
	}
	if code, _ := errorBody(t, w); code != auth.CodeRateLimited {
		t.Fatalf("code = %q", code)
	}
	// Other tenants and health probes are unaffected.
	if w := s.do("GET", "/v1/jobs/j1", "Bearer "+s.f.readKey); w.Code != 200 {
		t.Fatalf("other tenant: %d", w.Code)
	}
	for range 5 {
		if w := s.do("GET", "/healthz", ""); w.Code != 200 {
			t.Fatalf("healthz throttled: %d", w.Code)
		}
	}
	// Unauthenticated requests are refused before they can drain a bucket.
	if w := s.do("GET", "/v1/jobs/j1", ""); w.Code != 401 {
		t.Fatalf("unauthenticated: %d", w.Code)
	}
	s.clock.add(2 * time.Second)
	if w := s.do("GET", "/v1/jobs/j1", key); w.Code != 200 {
		t.Fatalf("after refill: %d", w.Code)
	}
}

func TestMiddlewareRequestID(t *testing.T) {
	s := newServer(t, auth.RateLimitConfig{})
	w := s.do("GET", "/v1/jobs/j1", "Bearer "+s.f.apiKey)
	gen := w.Header().Get(auth.HeaderRequestID)
	if len(gen) < 16 || gen != s.seenRID {
		t.Fatalf("generated id %q, handler saw %q", gen, s.seenRID)
	}
	if w2 := s.do("GET", "/v1/jobs/j1", "Bearer "+s.f.apiKey); w2.Header().Get(auth.HeaderRequestID) == gen {
		t.Fatal("request ids repeat")
	}
	for in, echoed := range map[string]bool{
		"3f2504e0-4f89-11d3-9a0c-0305e82c3301": true,
		"trace.abc_DEF:1":                      true,
		"bad id with spaces":                   false,
		"evil\"}{\"tenant\":\"root":            false,
		strings.Repeat("a", 129):               false,
	} {
		w := s.do("GET", "/healthz", "", auth.HeaderRequestID, in)
		got := w.Header().Get(auth.HeaderRequestID)
		if (got == in) != echoed || got == "" {
			t.Errorf("incoming %.20q: response id %.20q, echoed=%v want %v", in, got, got == in, echoed)
		}
	}
	// Errors carry the id too.
	if w := s.do("GET", "/v1/jobs/j1", "", auth.HeaderRequestID, "req-401"); w.Header().Get(auth.HeaderRequestID) != "req-401" {
		t.Fatal("401 lost the request id")
	}
}

func TestAccessLogHasNoSecrets(t *testing.T) {
	s := newServer(t, auth.RateLimitConfig{PerTenantRPS: 1, Burst: 1})
	k := getKeys(t)
	tok := sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsaA, claims())
	bad := sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsaB, claims())
	secrets := []string{tok, bad, s.f.apiKey, s.f.readKey, "iqk_wrong_key", testSecret, "querysecret"}
	s.do("GET", "/v1/jobs/j1?token=querysecret", "Bearer "+tok, auth.HeaderRequestID, "rid-1")
	s.do("GET", "/v1/jobs/j2", "Bearer "+tok) // 429
	s.do("GET", "/v1/jobs/j1", "Bearer "+bad)
	s.do("POST", "/v1/models/m/jobs", "Bearer "+s.f.readKey)
	s.do("GET", "/v1/jobs/j1", "Bearer "+s.f.apiKey)
	s.do("GET", "/v1/jobs/j1", "Bearer iqk_wrong_key")
	out := s.f.logs.String()
	for _, sec := range secrets {
		if strings.Contains(out, sec) {
			t.Fatalf("log contains secret %.12q…:\n%s", sec, out)
		}
	}
	var first map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m["msg"] == "http request" {
			first = m
			break
		}
	}
	want := map[string]any{"method": "GET", "route": "/v1/jobs/:id", "status": float64(200),
		"request_id": "rid-1", "tenant": "acme"}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("access log %s = %v, want %v (line %v)", k, first[k], v, first)
		}
	}
	if _, ok := first["duration"]; !ok {
		t.Error("access log has no duration")
	}
	for _, needle := range []string{`"status":429`, `"status":401`, `"status":403`, `"key":"ci"`, `"kid":"rsa-1"`} {
		if !strings.Contains(out, needle) {
			t.Errorf("log lacks %s", needle)
		}
	}
}

func TestRequireUnknownScopePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Require with an unknown scope did not panic")
		}
	}()
	Require("sudo")
}

// TestAccessLogErrorsOnly: without everyRequest a request answered below
// 400 logs at debug, one answered 4xx at info.
func TestAccessLogErrorsOnly(t *testing.T) {
	f := newFixture(t)
	var logs testutil.Buffer
	e := echo.New()
	e.HTTPErrorHandler = WrapErrorHandler(func(err error, c echo.Context) {
		t.Errorf("fallback handler got %v", err)
		_ = c.NoContent(http.StatusInternalServerError)
	})
	e.Use(Chain(f.a, nil, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), false)...)
	e.GET("/v1/jobs/:id", func(c echo.Context) error { return c.String(http.StatusOK, "ok") }, Require(auth.ScopeRead))
	for _, authz := range []string{"Bearer " + f.apiKey, "Bearer iqk_wrong_key"} {
		r := httptest.NewRequest("GET", "/v1/jobs/j1", nil)
		r.Header.Set("Authorization", authz)
		e.ServeHTTP(httptest.NewRecorder(), r)
	}
	levels := map[float64]string{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m["msg"] == "http request" {
			levels[m["status"].(float64)] = m["level"].(string)
		}
	}
	if levels[200] != "DEBUG" || levels[401] != "INFO" {
		t.Fatalf("access log levels by status = %v, want 200 at DEBUG and 401 at INFO", levels)
	}
}
