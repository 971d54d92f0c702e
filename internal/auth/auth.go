// Package auth authenticates inferq's public HTTP API and rate-limits it per
// tenant.
//
// Callers present `Authorization: Bearer <credential>`. A credential with
// exactly two dots is verified as a JWT (RS256/ES256/ES384 against a JWKS, or
// HS256 against a shared secret); anything else is looked up as an API key,
// whose configuration stores only its SHA-256 hash. Either way the caller
// becomes a [Principal]: a tenant plus scopes (submit, read, admin).
//
// This package is free of any HTTP framework, so every binary that reads
// the shared configuration can link it; the Echo middleware (request id,
// access log, auth, rate limit, per-route scopes) lives in
// internal/auth/authecho, which only the ingress links. Failures are
// [*HTTPError] values that any error handler can render.
//
// Credentials are never logged or echoed: logs carry only an API key's
// configured name or a JWT's kid and sub.
package auth

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Sentinel errors; Authenticate wraps them with a fixed, secret-free reason.
var (
	// ErrMissingCredentials means no bearer credential was presented (401).
	ErrMissingCredentials = errors.New("missing credentials")
	// ErrInvalidCredentials means the credential did not verify (401).
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrForbidden means the principal lacks a required scope (403).
	ErrForbidden = errors.New("forbidden")
)

// DefaultTenant is the tenant of every request while auth is disabled; it
// matches the ingress's own default.
const DefaultTenant = "default"

// Authentication methods reported in Principal.Method.
const (
	MethodJWT    = "jwt"
	MethodAPIKey = "api_key"
	MethodNone   = "none"
)

// Scopes understood by the API. Admin implies the others.
const (
	ScopeSubmit = "submit"
	ScopeRead   = "read"
	ScopeAdmin  = "admin"
)

// tenantRE is the architecture's name rule for tenants (and models); tenants
// end up in NATS subjects, so nothing looser may pass.
var tenantRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidTenant reports whether s is an acceptable tenant name.
func ValidTenant(s string) bool { return tenantRE.MatchString(s) }

// Set is a set of scopes, kept as a bitmask so a Principal is cheap to copy
// and compare.
type Set uint8

const (
	bitSubmit Set = 1 << iota
	bitRead
	bitAdmin
)

// AllScopes is what a principal gets while auth is disabled.
const AllScopes = bitSubmit | bitRead | bitAdmin

func scopeBit(s string) Set {
	switch s {
	case ScopeSubmit:
		return bitSubmit
	case ScopeRead:
		return bitRead
	case ScopeAdmin:
		return bitAdmin
	}
	return 0
}

// KnownScope reports whether s is one of submit, read, admin.
func KnownScope(s string) bool { return scopeBit(s) != 0 }

// ParseScopes builds a Set, failing on the first unknown scope (used for
// configuration, where a typo must not silently drop a permission).
func ParseScopes(scopes []string) (Set, error) {
	var set Set
	for _, s := range scopes {
		b := scopeBit(s)
		if b == 0 {
			return 0, fmt.Errorf("unknown scope %q (want submit, read or admin)", s)
		}
		set |= b
	}
	return set, nil
}

// scopesLenient builds a Set ignoring unknown scopes: identity providers put
// unrelated scopes (openid, profile) into tokens.
func scopesLenient(scopes []string) Set {
	var set Set
	for _, s := range scopes {
		set |= scopeBit(s)
	}
	return set
}

// Has reports whether the set grants scope; admin grants everything.
func (s Set) Has(scope string) bool {
	b := scopeBit(scope)
	return b != 0 && (s&b != 0 || s&bitAdmin != 0)
}

// Strings lists the scopes explicitly in the set, in a fixed order.
func (s Set) Strings() []string {
	var out []string
	for _, sc := range []string{ScopeSubmit, ScopeRead, ScopeAdmin} {
		if s&scopeBit(sc) != 0 {
			out = append(out, sc)
		}
	}
	return out
}

func (s Set) String() string { return strings.Join(s.Strings(), " ") }

// Principal is an authenticated caller.
type Principal struct {
	Tenant  string
	Scopes  Set
	Subject string // JWT sub, or the API key's configured name
	Method  string // MethodJWT, MethodAPIKey or MethodNone
	// Expires is a JWT's exp (zero for an API key): a NATS session opened
	// with the credential ends then too.
	Expires time.Time
}

// Has reports whether the principal holds scope (admin implies all).
func (p *Principal) Has(scope string) bool { return p != nil && p.Scopes.Has(scope) }

type ctxKey struct{}

// WithPrincipal returns ctx carrying p, so code below the HTTP layer (the
// results store, the publisher) can learn the tenant.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// PrincipalFrom returns the principal stored by WithPrincipal, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}
