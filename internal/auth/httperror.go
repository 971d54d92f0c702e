package auth

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"
)

// HeaderRequestID carries the request id in both directions.
const HeaderRequestID = "X-Request-Id"

// Error codes of HTTPError, as in the API's error body.
const (
	CodeUnauthenticated = "unauthenticated" // 401
	CodeForbidden       = "forbidden"       // 403
	CodeRateLimited     = "rate_limited"    // 429
)

// publicPaths skip auth and rate limiting: probes carry no credentials and
// must not be throttled into reporting an outage. /metrics is not one: with
// auth on it needs the admin scope (the back-end services serve theirs on
// their admin listener).
var publicPaths = map[string]bool{
	"/healthz": true, "/readyz": true,
	"/v2/health/live": true, "/v2/health/ready": true,
}

// IsPublicPath reports whether path bypasses auth and rate limiting.
func IsPublicPath(path string) bool { return publicPaths[path] }

// HTTPError is how authentication, scope checks and rate limiting fail a
// request. The ingress error handler must render it as
// {"error":{"code","message"}} with Status plus its headers (Retry-After for
// 429, WWW-Authenticate for 401/403, see SetHeaders). errors.Is(err,
// ErrForbidden) etc. work on it. Build one with ToHTTPError, Forbidden or
// RateLimited.
type HTTPError struct {
	Status     int           `json:"-"`
	Code       string        `json:"code"`
	Message    string        `json:"message"`
	RetryAfter time.Duration `json:"-"`

	wwwAuth string // WWW-Authenticate value, RFC 6750
	err     error  // sentinel
}

func (e *HTTPError) Error() string { return e.Code + ": " + e.Message }

// Unwrap exposes the sentinel (ErrMissingCredentials, ErrInvalidCredentials,
// ErrForbidden) or nil for rate limiting.
func (e *HTTPError) Unwrap() error { return e.err }

// RetryAfterSeconds is the Retry-After header value: whole seconds, rounded
// up, at least 1 (0 when RetryAfter is unset).
func (e *HTTPError) RetryAfterSeconds() int {
	if e.RetryAfter <= 0 {
		return 0
	}
	return max(1, int(math.Ceil(e.RetryAfter.Seconds())))
}

// WWWAuthenticate is the error's WWW-Authenticate header value ("" if none).
func (e *HTTPError) WWWAuthenticate() string { return e.wwwAuth }

// SetHeaders writes the error's Retry-After and WWW-Authenticate headers.
func (e *HTTPError) SetHeaders(h http.Header) {
	if s := e.RetryAfterSeconds(); s > 0 {
		h.Set("Retry-After", strconv.Itoa(s))
	}
	if e.wwwAuth != "" {
		h.Set("WWW-Authenticate", e.wwwAuth)
	}
}

// ToHTTPError maps an Authenticate error to its 401 response. The message is
// the fixed reason, never the credential.
func ToHTTPError(err error) *HTTPError {
	reason := "invalid credentials"
	var ae *authError
	if errors.As(err, &ae) {
		reason = ae.kind.Error() + ": " + ae.reason
	}
	if errors.Is(err, ErrMissingCredentials) {
		return &HTTPError{Status: http.StatusUnauthorized, Code: CodeUnauthenticated,
			Message: "missing credentials: send Authorization: Bearer <token or API key>",
			wwwAuth: `Bearer realm="inferq"`, err: ErrMissingCredentials}
	}
	return &HTTPError{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: reason,
		wwwAuth: `Bearer realm="inferq", error="invalid_token"`, err: ErrInvalidCredentials}
}

// Forbidden is the 403 for a principal that lacks scope; it unwraps to
// ErrForbidden and names the scope in WWW-Authenticate (RFC 6750).
func Forbidden(scope string) *HTTPError {
	return &HTTPError{Status: http.StatusForbidden, Code: CodeForbidden,
		Message: "missing scope " + strconv.Quote(scope),
		wwwAuth: `Bearer realm="inferq", error="insufficient_scope", scope="` + scope + `"`,
		err:     ErrForbidden}
}

// TooManyFailures is the 429 for an address whose credentials keep failing.
func TooManyFailures(wait time.Duration) *HTTPError {
	return &HTTPError{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
		Message: "too many failed authentications from this address", RetryAfter: wait}
}

// RateLimited is the 429 for a tenant over its limit, retryable after wait.
func RateLimited(tenant string, wait time.Duration) *HTTPError {
	return &HTTPError{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
		Message: "rate limit exceeded for tenant " + strconv.Quote(tenant), RetryAfter: wait}
}
