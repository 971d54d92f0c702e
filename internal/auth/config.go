package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
)

// Config is the `auth:` section of inferq's configuration.
//
//	auth:
//	  enabled: true
//	  api_keys:
//	    - {name: ci, sha256: "<hex>", tenant: acme, scopes: [submit, read]}
//	  jwt:
//	    hs256_secret_file: /etc/inferq/hs256.key
//	    jwks_file: /etc/inferq/jwks.json
//	    jwks_url: https://issuer/.well-known/jwks.json
//	    issuer: https://issuer/
//	    audience: inferq
//	    leeway: 30s
//	  rate_limit:
//	    per_tenant_rps: 100
//	    burst: 200
//	    overrides: {acme: {rps: 500, burst: 1000}}
type Config struct {
	// Enabled false (the `inferq dev` default) makes every request tenant
	// "default" with all scopes.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// APIKeys are stored as SHA-256 hashes so the config file is not itself
	// a credential. Make one with `printf %s "$KEY" | sha256sum` or HashKey.
	APIKeys   []APIKey        `yaml:"api_keys" json:"api_keys"`
	JWT       JWTConfig       `yaml:"jwt" json:"jwt"`
	RateLimit RateLimitConfig `yaml:"rate_limit" json:"rate_limit"`
	// FailedAuth throttles addresses that keep failing authentication.
	FailedAuth FailedAuthConfig `yaml:"failed_auth" json:"failed_auth"`
}

// APIKey maps one key (by hash) to a tenant and scopes.
type APIKey struct {
	Name   string   `yaml:"name" json:"name"`     // logged instead of the key
	SHA256 string   `yaml:"sha256" json:"sha256"` // lowercase or uppercase hex of sha256(key)
	Tenant string   `yaml:"tenant" json:"tenant"`
	Scopes []string `yaml:"scopes" json:"scopes"`
}

// JWTConfig configures bearer JWTs. Any of the key sources may be combined.
type JWTConfig struct {
	HS256Secret     string `yaml:"hs256_secret" json:"hs256_secret"`           // at least 32 bytes
	HS256SecretFile string `yaml:"hs256_secret_file" json:"hs256_secret_file"` // trailing newline trimmed
	// JWKSFile holds RS256/ES256/ES384 public keys; it is re-read when it
	// changes, so keys rotate without a restart.
	JWKSFile string `yaml:"jwks_file" json:"jwks_file"`
	// JWKSURL is fetched at start, every JWKSRefresh, and on an unknown kid
	// (at most once per 30s). Must be https (plain http only on loopback).
	JWKSURL     string   `yaml:"jwks_url" json:"jwks_url"`
	JWKSRefresh Duration `yaml:"jwks_refresh" json:"jwks_refresh"` // default 5m
	Issuer      string   `yaml:"issuer" json:"issuer"`             // checked when set
	// Audience is required with any key source, so tokens an issuer mints
	// for other services are refused.
	Audience    string   `yaml:"audience" json:"audience"`
	TenantClaim string   `yaml:"tenant_claim" json:"tenant_claim"` // default "tenant"
	ScopeClaim  string   `yaml:"scope_claim" json:"scope_claim"`   // default "scope": space-separated string or array
	Leeway      Duration `yaml:"leeway" json:"leeway"`             // clock skew allowed on exp/nbf; at most 5m
}

// RateLimitConfig sets per-tenant token buckets.
type RateLimitConfig struct {
	PerTenantRPS float64                `yaml:"per_tenant_rps" json:"per_tenant_rps"` // 0 = unlimited
	Burst        int                    `yaml:"burst" json:"burst"`                   // default max(1, ceil(rps))
	Overrides    map[string]TenantLimit `yaml:"overrides" json:"overrides"`
	// MaxTenants bounds the buckets kept in memory (default 10000); idle
	// buckets are evicted first.
	MaxTenants int `yaml:"max_tenants" json:"max_tenants"`
}

// TenantLimit overrides the default bucket for one tenant; RPS 0 means
// unlimited.
type TenantLimit struct {
	RPS   float64 `yaml:"rps" json:"rps"`
	Burst int     `yaml:"burst" json:"burst"`
}

// Defaults for fields left zero.
const (
	DefaultTenantClaim = "tenant"
	DefaultScopeClaim  = "scope"
	DefaultJWKSRefresh = 5 * time.Minute
	DefaultMaxTenants  = 10000
	maxLeeway          = 5 * time.Minute
	minHS256Secret     = 32
)

// Duration is a time.Duration written as a Go duration string ("30s"); a
// bare number is refused, since yaml would otherwise read `leeway: 30` as
// 30 nanoseconds.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses a Go duration string (used by yaml.v3 and JSON).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("auth: duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// configured reports whether any JWT setting is present.
func (j *JWTConfig) configured() bool {
	return j.HS256Secret != "" || j.HS256SecretFile != "" || j.JWKSFile != "" || j.JWKSURL != "" ||
		j.Issuer != "" || j.Audience != ""
}

// hasKeySource reports whether any JWT can verify at all.
func (j *JWTConfig) hasKeySource() bool {
	return j.HS256Secret != "" || j.HS256SecretFile != "" || j.JWKSFile != "" || j.JWKSURL != ""
}

// withDefaults returns a copy with zero fields defaulted.
func (c Config) withDefaults() Config {
	if c.JWT.TenantClaim == "" {
		c.JWT.TenantClaim = DefaultTenantClaim
	}
	if c.JWT.ScopeClaim == "" {
		c.JWT.ScopeClaim = DefaultScopeClaim
	}
	if c.JWT.JWKSRefresh == 0 {
		c.JWT.JWKSRefresh = Duration(DefaultJWKSRefresh)
	}
	if c.RateLimit.MaxTenants == 0 {
		c.RateLimit.MaxTenants = DefaultMaxTenants
	}
	return c
}

// Validate checks the whole section, even when disabled, so a typo is caught
// before auth is switched on. It reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf("auth: "+format, a...)) }

	names := map[string]bool{}
	hashes := map[string]string{}
	for i, k := range c.APIKeys {
		where := fmt.Sprintf("api_keys[%d]", i)
		if k.Name == "" {
			add("%s: name is required (it is what logs show instead of the key)", where)
		} else {
			where = fmt.Sprintf("api_keys[%d] (%s)", i, k.Name)
			if names[k.Name] {
				add("%s: duplicate name", where)
			}
			names[k.Name] = true
		}
		if err := checkHash(k.SHA256); err != nil {
			add("%s: sha256: %v", where, err)
		} else if prev, dup := hashes[strings.ToLower(k.SHA256)]; dup {
			add("%s: same key hash as %q", where, prev)
		} else {
			hashes[strings.ToLower(k.SHA256)] = k.Name
		}
		if !ValidTenant(k.Tenant) {
			add("%s: tenant %q must match [a-z0-9][a-z0-9_-]{0,62}", where, k.Tenant)
		}
		if len(k.Scopes) == 0 {
			add("%s: scopes: at least one of submit, read, admin is required", where)
		} else if _, err := ParseScopes(k.Scopes); err != nil {
			add("%s: scopes: %v", where, err)
		}
	}

	j := &c.JWT
	if j.configured() {
		if !j.hasKeySource() {
			add("jwt: no key source: set hs256_secret, hs256_secret_file, jwks_file or jwks_url")
		}
		if j.Audience == "" {
			add("jwt: audience is required")
		}
	}
	if j.HS256Secret != "" && j.HS256SecretFile != "" {
		add("jwt: set only one of hs256_secret and hs256_secret_file")
	}
	if j.HS256Secret != "" && len(j.HS256Secret) < minHS256Secret {
		add("jwt: hs256_secret must be at least %d bytes", minHS256Secret)
	}
	if j.JWKSURL != "" {
		if err := checkJWKSURL(j.JWKSURL); err != nil {
			add("jwt: jwks_url: %v", err)
		}
	}
	if j.JWKSRefresh < 0 || (j.JWKSRefresh > 0 && j.JWKSRefresh.D() < time.Second) {
		add("jwt: jwks_refresh must be at least 1s")
	}
	if j.Leeway < 0 || j.Leeway.D() > maxLeeway {
		add("jwt: leeway must be between 0 and %s", maxLeeway)
	}
	for _, claim := range []struct{ name, v string }{{"tenant_claim", j.TenantClaim}, {"scope_claim", j.ScopeClaim}} {
		if claim.v != "" && strings.TrimSpace(claim.v) != claim.v {
			add("jwt: %s has surrounding spaces", claim.name)
		}
	}

	if c.Enabled && len(c.APIKeys) == 0 && !j.hasKeySource() {
		add("enabled but no credentials configured: add api_keys or a jwt key source")
	}

	if c.FailedAuth.Window < 0 {
		add("failed_auth: window must not be negative")
	}

	r := &c.RateLimit
	if r.PerTenantRPS < 0 || r.Burst < 0 {
		add("rate_limit: per_tenant_rps and burst must not be negative")
	}
	if r.MaxTenants < 0 {
		add("rate_limit: max_tenants must not be negative")
	}
	for t, o := range r.Overrides {
		if !ValidTenant(t) {
			add("rate_limit: overrides: tenant %q must match [a-z0-9][a-z0-9_-]{0,62}", t)
		}
		if o.RPS < 0 || o.Burst < 0 {
			add("rate_limit: overrides[%s]: rps and burst must not be negative", t)
		}
	}
	return errors.Join(errs...)
}

func checkHash(h string) error {
	if len(h) != 2*sha256.Size {
		return fmt.Errorf("want %d hex characters, got %d", 2*sha256.Size, len(h))
	}
	if _, err := hex.DecodeString(h); err != nil {
		return errors.New("not hex (make it with: printf %s \"$KEY\" | sha256sum)")
	}
	return nil
}

// checkJWKSURL insists on https so keys cannot be swapped in transit; plain
// http is tolerated only on loopback (tests, sidecars).
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	switch u.Scheme {
	case "https":
	case "http":
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return errors.New("must be https (http only on loopback)")
		}
	default:
		return fmt.Errorf("unsupported scheme %q", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("missing host")
	}
	return nil
}

// LogValue redacts the HS256 secret and key hashes so the config can be
// logged at startup.
func (c Config) LogValue() slog.Value {
	keys := make([]string, len(c.APIKeys))
	for i, k := range c.APIKeys {
		keys[i] = k.Name + ":" + k.Tenant
	}
	return slog.GroupValue(
		slog.Bool("enabled", c.Enabled),
		slog.Any("api_keys", keys),
		slog.Bool("hs256", c.JWT.HS256Secret != "" || c.JWT.HS256SecretFile != ""),
		slog.String("jwks_file", c.JWT.JWKSFile),
		slog.String("jwks_url", c.JWT.JWKSURL),
		slog.String("issuer", c.JWT.Issuer),
		slog.String("audience", c.JWT.Audience),
		slog.Float64("per_tenant_rps", c.RateLimit.PerTenantRPS),
	)
}

// HashKey returns the hex SHA-256 of an API key, the form api_keys[].sha256
// takes. Equivalent shell: printf %s "$KEY" | sha256sum
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// NewKey makes a random API key (about 130 bits, no dots so it is never
// mistaken for a JWT) and its hash for the config.
func NewKey() (key, hash string) {
	key = "iqk_" + rand.Text()
	return key, HashKey(key)
}
