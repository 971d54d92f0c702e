package authecho

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/testutil"
)

// The fixture mirrors internal/auth's test fixture (same names, keys and
// tenants), so the middleware tests read as they did beside the package.
const (
	testSecret   = "0123456789abcdef0123456789abcdef-test-secret"
	testIssuer   = "https://issuer.test/"
	testAudience = "inferq"
)

type testKeys struct {
	rsaA, rsaB *rsa.PrivateKey
	ecA        *ecdsa.PrivateKey
}

var (
	keysOnce sync.Once
	keys     testKeys
	keysErr  error
)

// getKeys generates the keys once per test binary (RSA is slow).
func getKeys(t testing.TB) *testKeys {
	t.Helper()
	keysOnce.Do(func() {
		var e1, e2, e3 error
		keys.rsaA, e1 = rsa.GenerateKey(rand.Reader, 2048)
		keys.rsaB, e2 = rsa.GenerateKey(rand.Reader, 2048)
		keys.ecA, e3 = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		for _, e := range []error{e1, e2, e3} {
			if e != nil && keysErr == nil {
				keysErr = e
			}
		}
	})
	if keysErr != nil {
		t.Fatalf("generate keys: %v", keysErr)
	}
	return &keys
}

// jwkOf renders a public key as a JWK map, the way an issuer would.
func jwkOf(t testing.TB, kid string, pub any) map[string]string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		e, err := k.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		b := e.Bytes() // 0x04 || x || y, P-256
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": enc(b[1:33]), "y": enc(b[33:])}
	}
	t.Fatalf("unsupported key %T", pub)
	return nil
}

// claims returns valid claims for tenant acme; mutate to break them.
func claims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": testIssuer, "aud": testAudience, "sub": "user-42", "tenant": "acme",
		"scope": "submit read", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

func sign(t testing.TB, method jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func newLog(w *testutil.Buffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

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
