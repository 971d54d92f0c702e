package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestHashKey(t *testing.T) {
	// sha256("abc") from FIPS 180-2; equals `printf %s abc | sha256sum`.
	if got := HashKey("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("HashKey(abc) = %s", got)
	}
	k1, h1 := NewKey()
	k2, _ := NewKey()
	if k1 == k2 || HashKey(k1) != h1 || strings.Contains(k1, ".") || len(k1) < 24 {
		t.Fatalf("NewKey: %q %q", k1, h1)
	}
}

func ExampleHashKey() {
	// Store only the hash in the config: api_keys: [{name: ci, sha256: <this>, ...}]
	fmt.Println(HashKey("abc"))
	// Output: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
}

func TestConfigYAML(t *testing.T) {
	src := `
auth:
  enabled: true
  api_keys:
    - {name: ci, sha256: "` + HashKey("k") + `", tenant: acme, scopes: [submit, read]}
  jwt:
    hs256_secret: "` + testSecret + `"
    jwks_url: https://issuer/.well-known/jwks.json
    jwks_refresh: 10m
    issuer: https://issuer/
    audience: inferq
    tenant_claim: org
    leeway: 30s
  rate_limit:
    per_tenant_rps: 100
    burst: 200
    overrides: {acme: {rps: 500, burst: 1000}}
`
	var doc struct {
		Auth Config `yaml:"auth"`
	}
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	c := doc.Auth
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.Enabled || c.APIKeys[0].Scopes[1] != "read" || c.JWT.Leeway.D() != 30*time.Second ||
		c.JWT.JWKSRefresh.D() != 10*time.Minute || c.RateLimit.Overrides["acme"].Burst != 1000 || c.JWT.TenantClaim != "org" {
		t.Fatalf("decoded %+v", c)
	}
	d := c.withDefaults()
	if d.JWT.ScopeClaim != "scope" || d.JWT.TenantClaim != "org" || d.RateLimit.MaxTenants != DefaultMaxTenants {
		t.Fatalf("defaults: %+v", d.JWT)
	}
	// A bare number is not a duration (it would be nanoseconds).
	if err := yaml.Unmarshal([]byte("leeway: 30"), &c.JWT); err == nil {
		t.Fatal("leeway: 30 accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		return Config{Enabled: true,
			APIKeys: []APIKey{{Name: "ci", SHA256: HashKey("k"), Tenant: "acme", Scopes: []string{"submit"}}},
			JWT:     JWTConfig{JWKSFile: "/etc/jwks.json", Audience: "inferq"}}
	}
	tests := []struct {
		name string
		mut  func(*Config)
		want string // "" = valid
	}{
		{"good", func(*Config) {}, ""},
		{"disabled empty", func(c *Config) { *c = Config{} }, ""},
		{"uppercase hex ok", func(c *Config) { c.APIKeys[0].SHA256 = strings.ToUpper(c.APIKeys[0].SHA256) }, ""},
		{"bad hex", func(c *Config) { c.APIKeys[0].SHA256 = strings.Repeat("zz", 32) }, "not hex"},
		{"short hash", func(c *Config) { c.APIKeys[0].SHA256 = "abcd" }, "want 64 hex characters"},
		{"plain key instead of hash", func(c *Config) { c.APIKeys[0].SHA256 = "my-secret-key" }, "sha256"},
		{"unknown scope", func(c *Config) { c.APIKeys[0].Scopes = []string{"submit", "write"} }, `unknown scope "write"`},
		{"no scopes", func(c *Config) { c.APIKeys[0].Scopes = nil }, "at least one"},
		{"no name", func(c *Config) { c.APIKeys[0].Name = "" }, "name is required"},
		{"bad tenant", func(c *Config) { c.APIKeys[0].Tenant = "Acme Corp" }, "tenant"},
		{"duplicate name", func(c *Config) {
			c.APIKeys = append(c.APIKeys, APIKey{Name: "ci", SHA256: HashKey("other"), Tenant: "a", Scopes: []string{"read"}})
		}, "duplicate name"},
		{"duplicate hash", func(c *Config) {
			c.APIKeys = append(c.APIKeys, APIKey{Name: "ci2", SHA256: HashKey("k"), Tenant: "a", Scopes: []string{"read"}})
		}, "same key hash"},
		{"jwt without key source", func(c *Config) { c.JWT = JWTConfig{Issuer: "https://i/", Audience: "inferq"} }, "no key source"},
		{"jwt without audience", func(c *Config) { c.JWT.Audience = "" }, "audience is required"},
		{"short secret", func(c *Config) { c.JWT.HS256Secret = "short" }, "at least 32 bytes"},
		{"secret twice", func(c *Config) { c.JWT.HS256Secret, c.JWT.HS256SecretFile = testSecret, "/x" }, "only one"},
		{"http jwks url", func(c *Config) { c.JWT.JWKSURL = "http://issuer.example/jwks" }, "must be https"},
		{"loopback http ok", func(c *Config) { c.JWT.JWKSURL = "http://127.0.0.1:8080/jwks" }, ""},
		{"ftp jwks url", func(c *Config) { c.JWT.JWKSURL = "ftp://issuer/jwks" }, "unsupported scheme"},
		{"huge leeway", func(c *Config) { c.JWT.Leeway = Duration(time.Hour) }, "leeway"},
		{"tiny refresh", func(c *Config) { c.JWT.JWKSRefresh = Duration(time.Millisecond) }, "jwks_refresh"},
		{"enabled without credentials", func(c *Config) { c.APIKeys, c.JWT = nil, JWTConfig{} }, "no credentials"},
		{"negative rps", func(c *Config) { c.RateLimit.PerTenantRPS = -1 }, "negative"},
		{"bad override tenant", func(c *Config) { c.RateLimit.Overrides = map[string]TenantLimit{"A!": {RPS: 1}} }, "overrides"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.mut(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	// Every problem is reported at once.
	c := good()
	c.APIKeys[0].SHA256, c.APIKeys[0].Tenant = "x", "X"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "sha256") || !strings.Contains(err.Error(), "tenant") {
		t.Fatalf("joined errors: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("tooshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, "long")
	if err := os.WriteFile(long, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := JWTConfig{Audience: "inferq"}
	tests := []struct {
		name string
		jwt  JWTConfig
		want string
	}{
		{"missing jwks file", JWTConfig{Audience: "inferq", JWKSFile: filepath.Join(dir, "none.json")}, "jwks_file"},
		{"missing secret file", JWTConfig{Audience: "inferq", HS256SecretFile: filepath.Join(dir, "none")}, "hs256_secret_file"},
		{"short secret file", JWTConfig{Audience: "inferq", HS256SecretFile: short}, "at least 32 bytes"},
		{"invalid config", base, "no key source"},
	}
	for _, tt := range tests {
		_, err := New(t.Context(), Config{Enabled: true, JWT: tt.jwt}, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	a, err := New(t.Context(), Config{Enabled: true, JWT: JWTConfig{Audience: "inferq", HS256SecretFile: long}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if string(a.hsSecret) != testSecret {
		t.Fatal("secret file's trailing newline not trimmed")
	}
}
