package authecho

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/auth/authtest"
	"github.com/inferq/inferq/internal/testutil"
)

// The fixture mirrors internal/auth's test fixture (same names, keys and
// tenants, from authtest), so the middleware tests read as they did beside
// the package.
const (
	testSecret   = authtest.Secret
	testIssuer   = authtest.Issuer
	testAudience = authtest.Audience
)

type testKeys struct {
	rsaA, rsaB *rsa.PrivateKey
	ecA        *ecdsa.PrivateKey
}

func getKeys(t testing.TB) *testKeys {
	t.Helper()
	k := authtest.GetKeys(t)
	return &testKeys{rsaA: k.RSAA, rsaB: k.RSAB, ecA: k.ECA}
}

func jwkOf(t testing.TB, kid string, pub any) map[string]string {
	t.Helper()
	return authtest.JWK(kid, pub)
}

func claims() jwt.MapClaims { return authtest.Claims() }

func sign(t testing.TB, method jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	return authtest.Sign(t, method, kid, key, c)
}

func newLog(w *testutil.Buffer) *slog.Logger { return authtest.NewLog(w) }

// fixture is an Authenticator with every kind of credential configured.
type fixture struct {
	a       *auth.Authenticator
	apiKey  string // tenant acme, scopes submit+read
	readKey string // tenant beta, scope read
	logs    *testutil.Buffer
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	k := getKeys(t)
	f := &fixture{apiKey: "iqk_ci_key_1234567890", readKey: "iqk_reader_0987654321", logs: &testutil.Buffer{}}
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{
		jwkOf(t, "rsa-1", &k.rsaA.PublicKey), jwkOf(t, "ec-1", &k.ecA.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	jwksPath := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksPath, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := auth.Config{
		Enabled: true,
		APIKeys: []auth.APIKey{
			{Name: "ci", SHA256: auth.HashKey(f.apiKey), Tenant: "acme", Scopes: []string{"submit", "read"}},
			{Name: "reader", SHA256: auth.HashKey(f.readKey), Tenant: "beta", Scopes: []string{"read"}},
		},
		JWT: auth.JWTConfig{HS256Secret: testSecret, JWKSFile: jwksPath, Issuer: testIssuer,
			Audience: testAudience, Leeway: auth.Duration(30 * time.Second)},
	}
	a, err := auth.New(t.Context(), cfg, newLog(f.logs))
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	f.a = a
	return f
}

// fakeClock lets the rate-limit test refill a bucket without sleeping.
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

func newTestLimiter(cfg auth.RateLimitConfig) (*auth.Limiter, *fakeClock) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	return auth.NewLimiterClock(cfg, c.now), c
}
