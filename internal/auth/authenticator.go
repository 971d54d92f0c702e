package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxCredentialLen bounds what is hashed or parsed per request.
const maxCredentialLen = 8 << 10

type apiKeyEntry struct {
	name   string
	hash   [sha256.Size]byte
	tenant string
	scopes Set
}

// Authenticator turns a request's bearer credential into a Principal. It is
// safe for concurrent use; Close stops its JWKS refresher.
type Authenticator struct {
	cfg     Config
	log     *slog.Logger
	keys    []apiKeyEntry
	compare func(a, b []byte) int // subtle.ConstantTimeCompare; swappable in tests

	hsSecret []byte
	sources  []keySource
	urlSrc   *urlSource
	parser   *jwt.Parser

	failures *FailureLimiter // nil: not throttled

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New validates cfg and builds an Authenticator. With a jwks_url it fetches
// the key set once (a failure is logged, not fatal: tokens are refused until
// a later refresh succeeds, so an issuer outage does not stop the ingress
// from starting) and refreshes it in a goroutine that lives until ctx ends
// or Close is called. A missing or unparsable jwks_file or secret file is
// fatal.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	a := &Authenticator{cfg: cfg, log: log, compare: subtle.ConstantTimeCompare}
	if cfg.Enabled {
		a.failures = NewFailureLimiter(cfg.FailedAuth)
	}
	for _, k := range cfg.APIKeys {
		e := apiKeyEntry{name: k.Name, tenant: k.Tenant}
		h, _ := hex.DecodeString(k.SHA256) // validated above
		copy(e.hash[:], h)
		e.scopes, _ = ParseScopes(k.Scopes)
		a.keys = append(a.keys, e)
	}

	j := cfg.JWT
	switch {
	case j.HS256Secret != "":
		a.hsSecret = []byte(j.HS256Secret)
	case j.HS256SecretFile != "":
		b, err := os.ReadFile(j.HS256SecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth: jwt: hs256_secret_file: %w", err)
		}
		a.hsSecret = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(a.hsSecret) < minHS256Secret {
			return nil, fmt.Errorf("auth: jwt: hs256_secret_file: secret must be at least %d bytes", minHS256Secret)
		}
	}
	if j.JWKSFile != "" {
		fs, err := newFileSource(j.JWKSFile, log)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		a.sources = append(a.sources, fs)
	}

	base, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	if j.JWKSURL != "" {
		u := &urlSource{url: j.JWKSURL, client: &http.Client{Timeout: fetchTimeout}, log: log,
			now: time.Now, minInterval: urlMinInterval, base: base}
		if err := u.refresh(); err != nil {
			log.Error("jwks_url initial fetch failed; JWTs from it are refused until a refresh succeeds", "err", err)
		}
		a.urlSrc = u
		a.sources = append(a.sources, u)
		a.wg.Go(func() { u.run(base, j.JWKSRefresh.D()) })
	}

	// Only algorithms with a configured key are accepted at all, on top of
	// the per-key checks in keyFunc. Strict decoding refuses non-canonical
	// base64, so a token cannot be altered and still verify.
	methods := []string{} // non-nil: an empty list must refuse every algorithm
	if a.hsSecret != nil {
		methods = append(methods, "HS256")
	}
	if len(a.sources) > 0 {
		methods = append(methods, "RS256", "ES256", "ES384")
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithLeeway(j.Leeway.D()),
		jwt.WithExpirationRequired(), jwt.WithStrictDecoding()}
	if j.Audience != "" {
		opts = append(opts, jwt.WithAudience(j.Audience))
	}
	if j.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(j.Issuer))
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// Close stops the JWKS refresher and waits for it. Safe to call twice.
func (a *Authenticator) Close() error {
	a.closeOnce.Do(func() {
		a.cancel()
		a.wg.Wait()
	})
	return nil
}

// Failures is the throttle of addresses whose credentials keep failing
// (auth.failed_auth); nil while auth is off or the throttle is turned off.
func (a *Authenticator) Failures() *FailureLimiter { return a.failures }

// Enabled reports whether credentials are checked at all.
func (a *Authenticator) Enabled() bool { return a.cfg.Enabled }

// Authenticate maps the request's `Authorization: Bearer` credential to a
// Principal. Errors wrap ErrMissingCredentials or ErrInvalidCredentials with
// a fixed reason that never contains the credential.
func (a *Authenticator) Authenticate(r *http.Request) (*Principal, error) {
	if !a.cfg.Enabled {
		return &Principal{Tenant: DefaultTenant, Scopes: AllScopes, Method: MethodNone}, nil
	}
	tok, err := bearer(r)
	if err != nil {
		return nil, err
	}
	return a.verify(tok)
}

// AuthenticateCredential maps a bare credential (an API key or a JWT) to a
// Principal, exactly as Authenticate does for a bearer header. It is how a
// NATS client's connect token is checked (internal/natsauth), so a tenant
// has one identity on HTTP and NATS.
func (a *Authenticator) AuthenticateCredential(tok string) (*Principal, error) {
	if !a.cfg.Enabled {
		return &Principal{Tenant: DefaultTenant, Scopes: AllScopes, Method: MethodNone}, nil
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return nil, fail(ErrMissingCredentials, "empty credential", nil)
	}
	if err := checkCredential(tok); err != nil {
		return nil, err
	}
	return a.verify(tok)
}

func (a *Authenticator) verify(tok string) (*Principal, error) {
	if strings.Count(tok, ".") == 2 {
		return a.verifyJWT(tok)
	}
	return a.verifyKey(tok)
}

// bearer extracts the credential, refusing anything ambiguous.
func bearer(r *http.Request) (string, error) {
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) == 0 || (len(vals) == 1 && strings.TrimSpace(vals[0]) == ""):
		return "", fail(ErrMissingCredentials, "no Authorization header", nil)
	case len(vals) > 1:
		return "", fail(ErrInvalidCredentials, "more than one Authorization header", nil)
	}
	v := strings.TrimSpace(vals[0])
	if strings.EqualFold(v, "Bearer") { // net/http trims "Bearer " to this
		return "", fail(ErrMissingCredentials, "empty bearer credential", nil)
	}
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fail(ErrInvalidCredentials, "not a bearer credential", nil)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fail(ErrMissingCredentials, "empty bearer credential", nil)
	}
	if err := checkCredential(tok); err != nil {
		return "", err
	}
	return tok, nil
}

// checkCredential bounds the length and refuses anything but printable
// ASCII before a credential is hashed or parsed.
func checkCredential(tok string) error {
	if len(tok) > maxCredentialLen {
		return fail(ErrInvalidCredentials, "credential too long", nil)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c > '~' {
			return fail(ErrInvalidCredentials, "credential has invalid characters", nil)
		}
	}
	return nil
}

// verifyKey hashes the key and compares the hash with every configured one
// in constant time, without stopping at a match, so neither the key nor its
// position in the list leaks through timing.
func (a *Authenticator) verifyKey(key string) (*Principal, error) {
	sum := sha256.Sum256([]byte(key))
	var found *apiKeyEntry
	for i := range a.keys {
		if a.compare(sum[:], a.keys[i].hash[:]) == 1 && found == nil {
			found = &a.keys[i]
		}
	}
	if found == nil {
		a.log.Debug("authentication failed", "method", MethodAPIKey, "reason", "unknown api key")
		return nil, fail(ErrInvalidCredentials, "unknown api key", nil)
	}
	a.log.Debug("authenticated", "method", MethodAPIKey, "key", found.name, "tenant", found.tenant)
	return &Principal{Tenant: found.tenant, Scopes: found.scopes, Subject: found.name, Method: MethodAPIKey}, nil
}

func (a *Authenticator) verifyJWT(tok string) (*Principal, error) {
	claims := jwt.MapClaims{}
	t, err := a.parser.ParseWithClaims(tok, claims, a.keyFunc)
	kid := ""
	if t != nil {
		kid, _ = t.Header["kid"].(string)
		if len(kid) > 64 {
			kid = kid[:64] // attacker-chosen; keep log lines bounded
		}
	}
	if err != nil {
		reason := jwtReason(err)
		a.log.Debug("authentication failed", "method", MethodJWT, "kid", kid, "reason", reason)
		return nil, fail(ErrInvalidCredentials, reason, err)
	}
	sub, _ := claims["sub"].(string)
	tenant, _ := claims[a.cfg.JWT.TenantClaim].(string)
	if !ValidTenant(tenant) {
		a.log.Debug("authentication failed", "method", MethodJWT, "kid", kid, "sub", sub, "reason", "bad tenant claim")
		return nil, fail(ErrInvalidCredentials, "tenant claim missing or not a valid tenant name", nil)
	}
	scopes, err := scopesFromClaim(claims[a.cfg.JWT.ScopeClaim])
	if err != nil {
		a.log.Debug("authentication failed", "method", MethodJWT, "kid", kid, "sub", sub, "reason", "bad scope claim")
		return nil, fail(ErrInvalidCredentials, "bad scope claim", err)
	}
	a.log.Debug("authenticated", "method", MethodJWT, "kid", kid, "sub", sub, "tenant", tenant)
	p := &Principal{Tenant: tenant, Scopes: scopes, Subject: sub, Method: MethodJWT}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil { // required, so always set
		p.Expires = exp.Time
	}
	return p, nil
}

// keyFunc picks the verification key by algorithm family first and only
// then by kid, so HS256 only ever sees the shared secret (never JWKS bytes)
// and asymmetric algorithms only ever see a JWKS key of the matching type.
func (a *Authenticator) keyFunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	switch alg {
	case "HS256":
		if a.hsSecret == nil {
			return nil, errors.New("hs256 not configured")
		}
		return a.hsSecret, nil
	case "RS256", "ES256", "ES384":
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, fmt.Errorf("%w: token has no kid", errUnknownKID)
		}
		// First pass from memory; reload sources only if nobody knows kid.
		for _, refresh := range []bool{false, true} {
			for _, s := range a.sources {
				if k, ok := s.lookup(kid, refresh); ok {
					return k.forAlg(alg)
				}
			}
		}
		return nil, errUnknownKID
	}
	return nil, fmt.Errorf("algorithm %q not accepted", alg)
}

// jwtReason is a fixed, secret-free description of why a token failed.
func jwtReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing required claim"
	case errors.Is(err, errUnknownKID):
		return "unknown signing key"
	case errors.Is(err, errKeyMismatch):
		return "key does not match algorithm"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "bad signature or algorithm"
	}
	return "token rejected"
}

// scopesFromClaim accepts the OAuth space-separated string or a JSON array
// of strings; unknown scopes are ignored, a missing claim means no scopes.
func scopesFromClaim(v any) (Set, error) {
	switch s := v.(type) {
	case nil:
		return 0, nil
	case string:
		return scopesLenient(strings.Fields(s)), nil
	case []any:
		list := make([]string, 0, len(s))
		for _, e := range s {
			str, ok := e.(string)
			if !ok {
				return 0, errors.New("array must hold strings")
			}
			list = append(list, str)
		}
		return scopesLenient(list), nil
	}
	return 0, errors.New("must be a string or an array of strings")
}

// authError is what Authenticate returns: a sentinel (kind), a fixed reason
// safe to show the client, and the underlying cause for errors.Is/As.
type authError struct {
	kind   error
	reason string
	cause  error
}

func fail(kind error, reason string, cause error) error {
	return &authError{kind: kind, reason: reason, cause: cause}
}

func (e *authError) Error() string {
	s := e.kind.Error() + ": " + e.reason
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *authError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}
