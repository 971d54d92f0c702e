package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/inferq/inferq/internal/testutil"
)

func TestJWKSFileRotation(t *testing.T) {
	k := getKeys(t)
	f := newFixture(t, func(c *Config) { c.JWT.HS256Secret = "" })
	old := sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsaA, claims())
	rotated := sign(t, jwt.SigningMethodRS256, "rsa-2", k.rsaB, claims())
	if _, err := authWith(f.a, "Bearer "+rotated); !errors.Is(err, errUnknownKID) {
		t.Fatalf("before rotation: err = %v, want unknown kid", err)
	}

	// Issuer adds the new key next to the old one: both verify, no restart.
	writeFileAtomic(t, f.jwksPath, jwksJSON(jwkOf("rsa-1", &k.rsaA.PublicKey), jwkOf("rsa-2", &k.rsaB.PublicKey)))
	for name, tok := range map[string]string{"old": old, "rotated": rotated} {
		if _, err := authWith(f.a, "Bearer "+tok); err != nil {
			t.Fatalf("%s token after rotation: %v", name, err)
		}
	}

	// A broken write keeps the previous keys in force.
	writeFileAtomic(t, f.jwksPath, []byte(`{"keys": [`))
	if _, err := authWith(f.a, "Bearer "+sign(t, jwt.SigningMethodRS256, "rsa-3", k.rsaA, claims())); !errors.Is(err, errUnknownKID) {
		t.Fatalf("unknown kid with broken file: %v", err)
	}
	if _, err := authWith(f.a, "Bearer "+rotated); err != nil {
		t.Fatalf("after broken write: %v", err)
	}

	// Retiring rsa-1 (an in-place write this time) is noticed on the
	// periodic check, not only on unknown kids.
	if err := os.WriteFile(f.jwksPath, jwksJSON(jwkOf("rsa-2", &k.rsaB.PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	src := f.a.sources[0].(*fileSource)
	src.mu.Lock()
	src.lastCheck = time.Time{} // as if fileCheckInterval had passed
	src.mu.Unlock()
	if _, err := authWith(f.a, "Bearer "+old); !errors.Is(err, errUnknownKID) {
		t.Fatalf("retired key: err = %v, want unknown kid", err)
	}
	if _, err := authWith(f.a, "Bearer "+rotated); err != nil {
		t.Fatalf("rotated after retirement: %v", err)
	}
	if strings.Contains(f.logs.String(), old) || strings.Contains(f.logs.String(), rotated) {
		t.Fatal("a token reached the log")
	}
}

// jwksServer serves a swappable key set on loopback and counts fetches.
type jwksServer struct {
	*httptest.Server
	body atomic.Pointer[[]byte]
	hits atomic.Int64
	fail atomic.Bool
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{}
	s.body.Store(&body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(b []byte) { s.body.Store(&b) }

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newURLAuth(t *testing.T, url string) (*Authenticator, *urlSource, *fakeClock) {
	t.Helper()
	cfg := Config{Enabled: true, JWT: JWTConfig{JWKSURL: url, Issuer: testIssuer, Audience: testAudience}}
	a, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	clock := &fakeClock{t: time.Now()}
	a.urlSrc.fetchMu.Lock()
	a.urlSrc.now = clock.now
	a.urlSrc.lastAttempt = clock.now()
	a.urlSrc.fetchMu.Unlock()
	return a, a.urlSrc, clock
}

func TestJWKSURLRotation(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwksJSON(jwkOf("ec-1", &k.ecA.PublicKey), jwkOf("rsa-1", &k.rsaA.PublicKey)))
	a, u, clock := newURLAuth(t, srv.URL+"/.well-known/jwks.json")
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("fetches at start = %d, want 1", got)
	}
	for _, tok := range []string{
		sign(t, jwt.SigningMethodES256, "ec-1", k.ecA, claims()),
		sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsaA, claims()),
	} {
		if _, err := authWith(a, "Bearer "+tok); err != nil {
			t.Fatal(err)
		}
	}

	// The issuer rotates to ec-2. Inside the 30s cooldown an unknown kid
	// does not refetch, however many arrive.
	srv.set(jwksJSON(jwkOf("ec-2", &k.ecB.PublicKey)))
	rotated := sign(t, jwt.SigningMethodES256, "ec-2", k.ecB, claims())
	for range 20 {
		if _, err := authWith(a, "Bearer "+rotated); !errors.Is(err, errUnknownKID) {
			t.Fatalf("inside cooldown: err = %v", err)
		}
	}
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("fetches inside cooldown = %d, want 1", got)
	}

	// After the cooldown one unknown kid triggers one fetch and verifies.
	clock.add(urlMinInterval)
	if _, err := authWith(a, "Bearer "+rotated); err != nil {
		t.Fatalf("after cooldown: %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2", got)
	}
	// Garbage kids right after do not refetch.
	for range 10 {
		_, _ = authWith(a, "Bearer "+sign(t, jwt.SigningMethodES256, "nope", k.ecB, claims()))
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches after garbage = %d, want 2", got)
	}

	// A failing issuer keeps the cached keys.
	srv.fail.Store(true)
	if err := u.refresh(); err == nil {
		t.Fatal("refresh against a failing issuer succeeded")
	}
	if _, err := authWith(a, "Bearer "+rotated); err != nil {
		t.Fatalf("cached key after failed refresh: %v", err)
	}
}

func TestJWKSURLPeriodicRefreshAndClose(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwksJSON(jwkOf("ec-1", &k.ecA.PublicKey)))
	a, u, _ := newURLAuth(t, srv.URL)
	srv.set(jwksJSON(jwkOf("ec-2", &k.ecB.PublicKey)))

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { u.run(ctx, 5*time.Millisecond); close(done) }()
	testutil.Eventually(t, 5*time.Second, func() bool { _, ok := u.get("ec-2"); return ok }, "periodic refresh never picked up ec-2")
	cancel()
	<-done

	// Close stops the refresher New started and is idempotent.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	if u.base.Err() == nil {
		t.Fatal("refresher context still live after Close")
	}
}

func TestJWKSURLDownAtStart(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwksJSON(jwkOf("ec-1", &k.ecA.PublicKey)))
	srv.fail.Store(true)
	a, _, clock := newURLAuth(t, srv.URL)
	tok := sign(t, jwt.SigningMethodES256, "ec-1", k.ecA, claims())
	if _, err := authWith(a, "Bearer "+tok); err == nil {
		t.Fatal("authenticated with no keys")
	}
	srv.fail.Store(false)
	clock.add(urlMinInterval)
	if _, err := authWith(a, "Bearer "+tok); err != nil {
		t.Fatalf("after issuer recovered: %v", err)
	}
}

func TestParseJWKS(t *testing.T) {
	k := getKeys(t)
	good := jwkOf("ec-1", &k.ecA.PublicKey)
	mod := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	offCurve := mod(good, "y", good["x"])
	tests := []struct {
		name     string
		data     []byte
		wantKeys int
		wantErr  bool
	}{
		{"good", jwksJSON(good, jwkOf("rsa-1", &k.rsaA.PublicKey), jwkOf("ec384", &k.ec384.PublicKey)), 3, false},
		{"not json", []byte("nope"), 0, true},
		{"empty", []byte(`{"keys":[]}`), 0, true},
		{"off-curve point skipped", jwksJSON(good, mod(offCurve, "kid", "bad")), 1, false},
		{"enc key skipped", jwksJSON(good, mod(good, "kid", "enc", "use", "enc")), 1, false},
		{"oct key skipped", jwksJSON(good, map[string]string{"kty": "oct", "kid": "h", "k": "AAAA"}), 1, false},
		{"no kid skipped", jwksJSON(good, mod(jwkOf("x", &k.ecB.PublicKey), "kid", "")), 1, false},
		{"duplicate kid skipped", jwksJSON(good, mod(jwkOf("x", &k.ecB.PublicKey), "kid", "ec-1")), 1, false},
		{"small rsa skipped", jwksJSON(good, mod(jwkOf("r", &k.rsaA.PublicKey), "n", "AQAB")), 1, false},
		{"even exponent skipped", jwksJSON(good, mod(jwkOf("r", &k.rsaA.PublicKey), "e", "AAI")), 1, false},
		{"alg mismatch skipped", jwksJSON(good, mod(jwkOf("r", &k.ecB.PublicKey), "alg", "ES384")), 1, false},
		{"unknown curve skipped", jwksJSON(good, mod(jwkOf("r", &k.ecB.PublicKey), "crv", "P-521")), 1, false},
		{"bad base64 skipped", jwksJSON(good, mod(jwkOf("r", &k.ecB.PublicKey), "x", "!!")), 1, false},
		{"padded base64 accepted", jwksJSON(mod(good, "x", good["x"]+"=")), 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, _, err := parseJWKS(tt.data)
			if (err != nil) != tt.wantErr || len(keys) != tt.wantKeys {
				t.Fatalf("keys = %d, err = %v; want %d keys, err %v", len(keys), err, tt.wantKeys, tt.wantErr)
			}
		})
	}
}
