// Package authtest holds the credentials the auth tests share: keys made
// once per test binary, JWKs, valid claims and signed tokens. It imports
// nothing of auth, so auth's own tests and authecho's can both use it.
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The HS256 secret, issuer and audience the test configs name.
const (
	Secret   = "0123456789abcdef0123456789abcdef-test-secret"
	Issuer   = "https://issuer.test/"
	Audience = "inferq"
)

// Keys are the signing keys of the tests.
type Keys struct {
	RSAA, RSAB *rsa.PrivateKey
	ECA, ECB   *ecdsa.PrivateKey
	EC384      *ecdsa.PrivateKey
}

var (
	keysOnce sync.Once
	keys     Keys
	keysErr  error
)

// GetKeys generates the keys once per test binary: RSA generation is the
// slowest thing in the auth tests.
func GetKeys(t testing.TB) *Keys {
	t.Helper()
	keysOnce.Do(func() {
		gen := func(err error) {
			if err != nil && keysErr == nil {
				keysErr = err
			}
		}
		var err error
		keys.RSAA, err = rsa.GenerateKey(rand.Reader, 2048)
		gen(err)
		keys.RSAB, err = rsa.GenerateKey(rand.Reader, 2048)
		gen(err)
		keys.ECA, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		gen(err)
		keys.ECB, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		gen(err)
		keys.EC384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		gen(err)
	})
	if keysErr != nil {
		t.Fatalf("generate keys: %v", keysErr)
	}
	return &keys
}

// JWK renders a public key as a JWK map, the way an issuer would.
func JWK(kid string, pub any) map[string]string {
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

// JWKS is a JWK Set document holding jwks.
func JWKS(jwks ...map[string]string) []byte {
	b, err := json.Marshal(map[string]any{"keys": jwks})
	if err != nil {
		panic(err)
	}
	return b
}

// Claims returns valid claims for tenant acme; mutate them to break them.
func Claims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": Issuer, "aud": Audience, "sub": "user-42", "tenant": "acme",
		"scope": "submit read", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

// Sign signs c with key, naming kid in the header when it is not empty.
func Sign(t testing.TB, method jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
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

// NewLog is a debug-level JSON logger into w, for asserting on what auth logs.
func NewLog(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
