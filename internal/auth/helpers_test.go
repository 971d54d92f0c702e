package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/subtle"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/inferq/inferq/internal/auth/authtest"
	"github.com/inferq/inferq/internal/testutil"
)

// The shared credentials come from authtest, under the names these tests use.
const (
	testSecret   = authtest.Secret
	testIssuer   = authtest.Issuer
	testAudience = authtest.Audience
)

type testKeys struct {
	rsaA, rsaB *rsa.PrivateKey
	ecA, ecB   *ecdsa.PrivateKey
	ec384      *ecdsa.PrivateKey
}

func getKeys(t testing.TB) *testKeys {
	t.Helper()
	k := authtest.GetKeys(t)
	return &testKeys{rsaA: k.RSAA, rsaB: k.RSAB, ecA: k.ECA, ecB: k.ECB, ec384: k.EC384}
}

func jwkOf(kid string, pub any) map[string]string { return authtest.JWK(kid, pub) }

func jwksJSON(jwks ...map[string]string) []byte { return authtest.JWKS(jwks...) }

// writeFileAtomic replaces path the way config management does (rename).
func writeFileAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func claims() jwt.MapClaims { return authtest.Claims() }

func sign(t testing.TB, method jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	return authtest.Sign(t, method, kid, key, c)
}

func newLog(w *testutil.Buffer) *slog.Logger { return authtest.NewLog(w) }

// fixture is an Authenticator with every kind of credential configured.
type fixture struct {
	a        *Authenticator
	jwksPath string
	apiKey   string // tenant acme, scopes submit+read
	readKey  string // tenant beta, scope read
	logs     *testutil.Buffer
}

func newFixture(t testing.TB, mutate ...func(*Config)) *fixture {
	t.Helper()
	k := getKeys(t)
	dir := t.TempDir()
	f := &fixture{jwksPath: filepath.Join(dir, "jwks.json"), apiKey: "iqk_ci_key_1234567890",
		readKey: "iqk_reader_0987654321", logs: &testutil.Buffer{}}
	writeFileAtomic(t, f.jwksPath, jwksJSON(jwkOf("rsa-1", &k.rsaA.PublicKey), jwkOf("ec-1", &k.ecA.PublicKey),
		jwkOf("ec384-1", &k.ec384.PublicKey)))
	cfg := Config{
		Enabled: true,
		APIKeys: []APIKey{
			{Name: "ci", SHA256: HashKey(f.apiKey), Tenant: "acme", Scopes: []string{"submit", "read"}},
			{Name: "reader", SHA256: HashKey(f.readKey), Tenant: "beta", Scopes: []string{"read"}},
		},
		JWT: JWTConfig{HS256Secret: testSecret, JWKSFile: f.jwksPath, Issuer: testIssuer,
			Audience: testAudience, Leeway: Duration(30 * time.Second)},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	a, err := New(context.Background(), cfg, newLog(f.logs))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	f.a = a
	return f
}

func subtleCompare(a, b []byte) int { return subtle.ConstantTimeCompare(a, b) }
