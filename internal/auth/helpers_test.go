package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
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
	"github.com/inferq/inferq/internal/testutil"
)

const (
	testSecret   = "0123456789abcdef0123456789abcdef-test-secret"
	testIssuer   = "https://issuer.test/"
	testAudience = "inferq"
)

// testKeys are generated once per test binary: RSA generation is the
// slowest thing in this package's tests.
type testKeys struct {
	rsaA, rsaB *rsa.PrivateKey
	ecA, ecB   *ecdsa.PrivateKey
	ec384      *ecdsa.PrivateKey
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func getKeys(t testing.TB) *testKeys {
	t.Helper()
	keysOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		keys.rsaA, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		keys.rsaB, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		keys.ecA, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		keys.ecB, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		keys.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
	})
	return &keys
}

// jwkOf renders a public key as a JWK map, the way an issuer would.
func jwkOf(kid string, pub any) map[string]string {
	enc := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
			"n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		e, err := k.ECDH()
		if err != nil {
			panic(err)
		}
		b := e.Bytes() // 0x04 || x || y
		crv := map[int]string{32: "P-256", 48: "P-384"}[size]
		return map[string]string{"kty": "EC", "kid": kid, "crv": crv,
			"x": enc(b[1 : 1+size]), "y": enc(b[1+size:])}
	}
	panic("unsupported key")
}

func jwksJSON(jwks ...map[string]string) []byte {
	b, err := json.Marshal(map[string]any{"keys": jwks})
	if err != nil {
		panic(err)
	}
	return b
}

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
