package auth

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func authWith(a *Authenticator, header string) (*Principal, error) {
	r := httptest.NewRequest("GET", "/v1/models", nil)
	if header != "" {
		r.Header.Set("Authorization", header)
	}
	return a.Authenticate(r)
}

// unsigned builds a token by hand: the header is attacker-controlled here.
func unsigned(header map[string]any, c jwt.MapClaims, sig string) string {
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(c)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(p) + "." + sig
}

func TestJWT(t *testing.T) {
	k := getKeys(t)
	f := newFixture(t)
	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsaA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	with := func(mut func(jwt.MapClaims)) jwt.MapClaims { c := claims(); mut(c); return c }
	now := time.Now()

	tests := []struct {
		name       string
		token      string
		wantErr    error // nil: must authenticate
		wantTenant string
		wantScopes Set
	}{
		{"hs256", sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims()), nil, "acme", bitSubmit | bitRead},
		{"rs256", sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsaA, claims()), nil, "acme", bitSubmit | bitRead},
		{"es256", sign(t, jwt.SigningMethodES256, "ec-1", k.ecA, claims()), nil, "acme", bitSubmit | bitRead},
		{"es384", sign(t, jwt.SigningMethodES384, "ec384-1", k.ec384, claims()), nil, "acme", bitSubmit | bitRead},
		{"scope array", sign(t, jwt.SigningMethodES256, "ec-1", k.ecA,
			with(func(c jwt.MapClaims) { c["scope"] = []string{"admin", "openid"} })), nil, "acme", bitAdmin},
		{"scope string ignores unknown", sign(t, jwt.SigningMethodHS256, "", []byte(testSecret),
			with(func(c jwt.MapClaims) { c["scope"] = "openid  read profile" })), nil, "acme", bitRead},
		{"no scope claim", sign(t, jwt.SigningMethodHS256, "", []byte(testSecret),
			with(func(c jwt.MapClaims) { delete(c, "scope") })), nil, "acme", 0},
		{"aud array", sign(t, jwt.SigningMethodHS256, "", []byte(testSecret),
			with(func(c jwt.MapClaims) { c["aud"] = []string{"other", testAudience} })), nil, "acme", bitSubmit | bitRead},
		{"expired within leeway", sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsaA,
			with(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() })), nil, "acme", bitSubmit | bitRead},

		{"expired", sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsaA,
			with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), jwt.ErrTokenExpired, "", 0},
		{"no exp", sign(t, jwt.SigningMethodHS256, "", []byte(testSecret),
			with(func(c jwt.MapClaims) { delete(c, "exp") })), jwt.ErrTokenRequiredClaimMissing, "", 0},
		{"not yet valid", sign(t, jwt.SigningMethodES256, "ec-1", k.ecA,
			with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), jwt.ErrTokenNotValidYet, "", 0},
		{"wrong aud", sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsaA,
			with(func(c jwt.MapClaims) { c["aud"] = "billing" })), jwt.ErrTokenInvalidAudience, "", 0},
		{"no aud", sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsaA,
			with(func(c jwt.MapClaims) { delete(c, "aud") })), jwt.ErrTokenRequiredClaimMissing, "", 0},
		{"wrong iss", sign(t, jwt.SigningMethodHS256, "", []byte(testSecret),
			with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test/" })), jwt.ErrTokenInvalidIssuer, "", 0},
		{"wrong signature rsa", sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsaB, claims()), jwt.ErrTokenSignatureInvalid, "", 0},
		{"wrong signature ec", sign(t, jwt.SigningMethodES256, "ec-1", k.ecB, claims()), jwt.ErrTokenSignatureInvalid, "", 0},
		{"wrong hs256 secret", sign(t, jwt.SigningMethodHS256, "", []byte(strings.Repeat("x", 40)), claims()), jwt.ErrTokenSignatureInvalid, "", 0},
		{"unknown kid", sign(t, jwt.SigningMethodRS256, "rsa-9", k.rsaA, claims()), errUnknownKID, "", 0},
		{"no kid", sign(t, jwt.SigningMethodRS256, "", k.rsaA, claims()), errUnknownKID, "", 0},
		{"es256 token with rsa kid", sign(t, jwt.SigningMethodES256, "rsa-1", k.ecA, claims()), errKeyMismatch, "", 0},
		{"rs256 token with ec kid", sign(t, jwt.SigningMethodRS256, "ec-1", k.rsaA, claims()), errKeyMismatch, "", 0},
		{"es384 token with p256 kid", sign(t, jwt.SigningMethodES384, "ec-1", k.ec384, claims()), errKeyMismatch, "", 0},
		{"alg none", unsigned(map[string]any{"alg": "none", "typ": "JWT"}, claims(), ""), jwt.ErrTokenSignatureInvalid, "", 0},
		{"alg none with kid", unsigned(map[string]any{"alg": "none", "kid": "rsa-1"}, claims(), "AAAA"), jwt.ErrTokenSignatureInvalid, "", 0},
		{"non-canonical base64 signature", func() string {
			tok := sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), claims())
			last := tok[len(tok)-1]
			// HS256's 32-byte signature leaves 2 spare bits in the last
			// character; lax decoding would accept this altered token.
			alt := map[byte]byte{'A': 'B', 'E': 'F', 'I': 'J', 'M': 'N', 'Q': 'R', 'U': 'V', 'Y': 'Z', 'c': 'd',
				'g': 'h', 'k': 'l', 'o': 'p', 's': 't', 'w': 'x', '0': '1', '4': '5', '8': '9'}[last]
			return tok[:len(tok)-1] + string(alt)
		}(), jwt.ErrTokenMalformed, "", 0},
		{"alg unsupported", unsigned(map[string]any{"alg": "PS256", "kid": "rsa-1"}, claims(), "AAAA"), ErrInvalidCredentials, "", 0},
		{"hs256 with rsa public key pem", sign(t, jwt.SigningMethodHS256, "rsa-1", pubPEM, claims()), jwt.ErrTokenSignatureInvalid, "", 0},
		{"hs256 with rsa public key der", sign(t, jwt.SigningMethodHS256, "rsa-1", pubDER, claims()), jwt.ErrTokenSignatureInvalid, "", 0},
		{"tampered payload", func() string {
			tok := sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsaA, claims())
			parts := strings.Split(tok, ".")
			evil, _ := json.Marshal(with(func(c jwt.MapClaims) { c["tenant"] = "victim" }))
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(evil) + "." + parts[2]
		}(), jwt.ErrTokenSignatureInvalid, "", 0},
		{"malformed", "abc.def.ghi", jwt.ErrTokenMalformed, "", 0},
		{"bad tenant uppercase", sign(t, jwt.SigningMethodHS256, "", []byte(testSecret),
			with(func(c jwt.MapClaims) { c["tenant"] = "ACME" })), ErrInvalidCredentials, "", 0},
		{"bad tenant subject chars", sign(t, jwt.SigningMethodHS256, "", []byte(testSecret),
			with(func(c jwt.MapClaims) { c["tenant"] = "acme.>" })), ErrInvalidCredentials, "", 0},
		{"bad tenant number", sign(t, jwt.SigningMethodHS256, "", []byte(testSecret),
			with(func(c jwt.MapClaims) { c["tenant"] = 7 })), ErrInvalidCredentials, "", 0},
		{"missing tenant", sign(t, jwt.SigningMethodHS256, "", []byte(testSecret),
			with(func(c jwt.MapClaims) { delete(c, "tenant") })), ErrInvalidCredentials, "", 0},
		{"scope array of numbers", sign(t, jwt.SigningMethodHS256, "", []byte(testSecret),
			with(func(c jwt.MapClaims) { c["scope"] = []int{1} })), ErrInvalidCredentials, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := authWith(f.a, "Bearer "+tt.token)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if p.Tenant != tt.wantTenant || p.Scopes != tt.wantScopes || p.Method != MethodJWT || p.Subject != "user-42" {
					t.Fatalf("principal = %+v, want tenant %s scopes %v", p, tt.wantTenant, tt.wantScopes)
				}
				return
			}
			if err == nil {
				t.Fatalf("authenticated %+v, want error %v", p, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidCredentials) || !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v wrapped in ErrInvalidCredentials", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), tt.token) {
				t.Fatal("error message contains the token")
			}
		})
	}
}

// TestJWTAlgConfusionWithoutSecret: with no HS256 secret configured, HS256
// is not even an accepted algorithm, so the public-key trick cannot work.
func TestJWTAlgConfusionWithoutSecret(t *testing.T) {
	k := getKeys(t)
	f := newFixture(t, func(c *Config) { c.JWT.HS256Secret = "" })
	der, _ := x509.MarshalPKIXPublicKey(&k.rsaA.PublicKey)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	for _, key := range [][]byte{der, pemBytes, k.rsaA.N.Bytes()} {
		tok := sign(t, jwt.SigningMethodHS256, "rsa-1", key, claims())
		if p, err := authWith(f.a, "Bearer "+tok); err == nil {
			t.Fatalf("HS256 token signed with public key bytes authenticated: %+v", p)
		}
	}
	// Asymmetric tokens still work.
	if _, err := authWith(f.a, "Bearer "+sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsaA, claims())); err != nil {
		t.Fatal(err)
	}
}

func TestJWTCustomClaims(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.JWT.TenantClaim, c.JWT.ScopeClaim = "org", "permissions" })
	c := claims()
	c["org"], c["permissions"] = "team-7", []any{"read"}
	p, err := authWith(f.a, "Bearer "+sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), c))
	if err != nil {
		t.Fatal(err)
	}
	if p.Tenant != "team-7" || !p.Has(ScopeRead) || p.Has(ScopeSubmit) {
		t.Fatalf("principal = %+v", p)
	}
}

func TestJWTNoLeeway(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.JWT.Leeway = 0 })
	c := claims()
	c["exp"] = time.Now().Add(-5 * time.Second).Unix()
	if _, err := authWith(f.a, "Bearer "+sign(t, jwt.SigningMethodHS256, "", []byte(testSecret), c)); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("err = %v, want expired", err)
	}
}

func TestBearerParsing(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		header string
		want   error
	}{
		{"", ErrMissingCredentials},
		{"   ", ErrMissingCredentials},
		{"Bearer ", ErrMissingCredentials},
		{"Bearer", ErrMissingCredentials},
		{"Bearerx", ErrInvalidCredentials},
		{"Basic dXNlcjpwYXNz", ErrInvalidCredentials},
		{"Bearer " + f.apiKey, nil},
		{"bearer " + f.apiKey, nil},
		{"BEARER   " + f.apiKey + "  ", nil},
		{"Bearer " + f.apiKey + " extra", ErrInvalidCredentials},
		{"Bearer " + f.apiKey + "\x00", ErrInvalidCredentials},
		{"Bearer " + strings.Repeat("a", maxCredentialLen+1), ErrInvalidCredentials},
		{"Bearer a.b", ErrInvalidCredentials},
	}
	for _, tt := range tests {
		_, err := authWith(f.a, tt.header)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("header %.40q: err = %v, want %v", tt.header, err, tt.want)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Add("Authorization", "Bearer "+f.apiKey)
	r.Header.Add("Authorization", "Bearer "+f.apiKey)
	if _, err := f.a.Authenticate(r); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("two Authorization headers: err = %v", err)
	}
}

func TestAPIKeys(t *testing.T) {
	f := newFixture(t)
	p, err := authWith(f.a, "Bearer "+f.apiKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.Tenant != "acme" || !p.Has(ScopeSubmit) || !p.Has(ScopeRead) || p.Has(ScopeAdmin) ||
		p.Method != MethodAPIKey || p.Subject != "ci" {
		t.Fatalf("principal = %+v", p)
	}
	p, err = authWith(f.a, "Bearer "+f.readKey)
	if err != nil || p.Tenant != "beta" || p.Has(ScopeSubmit) {
		t.Fatalf("reader: %+v, %v", p, err)
	}
	for _, bad := range []string{"iqk_nope", f.apiKey + "x", f.apiKey[:len(f.apiKey)-1], HashKey(f.apiKey)} {
		if _, err := authWith(f.a, "Bearer "+bad); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("key %q: err = %v", bad, err)
		}
	}
}

// TestAPIKeyConstantTimePath checks that every configured hash is compared
// with the constant-time compare whether the key matches first, last or not
// at all, so timing reveals neither a match nor its position.
func TestAPIKeyConstantTimePath(t *testing.T) {
	f := newFixture(t)
	calls := 0
	f.a.compare = func(a, b []byte) int {
		calls++
		if len(a) != len(b) {
			t.Fatalf("compared %d and %d bytes", len(a), len(b))
		}
		return subtleCompare(a, b)
	}
	for _, key := range []string{f.apiKey, f.readKey, "iqk_unknown"} {
		calls = 0
		_, _ = authWith(f.a, "Bearer "+key)
		if calls != len(f.a.keys) {
			t.Errorf("key %s: %d comparisons, want %d", key[:4], calls, len(f.a.keys))
		}
	}
}

func TestDisabled(t *testing.T) {
	a, err := New(t.Context(), Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, h := range []string{"", "Bearer garbage"} {
		p, err := authWith(a, h)
		if err != nil || p.Tenant != DefaultTenant || p.Method != MethodNone || p.Scopes != AllScopes {
			t.Fatalf("disabled: %+v, %v", p, err)
		}
	}
}
