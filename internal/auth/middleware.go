package auth

import (
	"crypto/rand"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
)

// HeaderRequestID carries the request id in both directions.
const HeaderRequestID = "X-Request-Id"

// Error codes of HTTPError, as in the API's error body.
const (
	CodeUnauthenticated = "unauthenticated" // 401
	CodeForbidden       = "forbidden"       // 403
	CodeRateLimited     = "rate_limited"    // 429
)

// publicPaths skip auth and rate limiting: probes and scrapers carry no
// credentials and must not be throttled into reporting an outage.
var publicPaths = map[string]bool{
	"/healthz": true, "/readyz": true, "/metrics": true,
	"/v2/health/live": true, "/v2/health/ready": true,
}

// IsPublicPath reports whether path bypasses auth and rate limiting.
func IsPublicPath(path string) bool { return publicPaths[path] }

// HTTPError is how this package's middleware fails a request. The ingress
// error handler must render it as {"error":{"code","message"}} with Status
// plus its headers (Retry-After for 429, WWW-Authenticate for 401/403);
// HTTPError.Render does exactly that, and WrapErrorHandler plugs it in front
// of an existing handler. errors.Is(err, ErrForbidden) etc. work on it.
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

// SetHeaders writes the error's Retry-After and WWW-Authenticate headers.
func (e *HTTPError) SetHeaders(h http.Header) {
	if s := e.RetryAfterSeconds(); s > 0 {
		h.Set("Retry-After", strconv.Itoa(s))
	}
	if e.wwwAuth != "" {
		h.Set("WWW-Authenticate", e.wwwAuth)
	}
}

// Render writes the error as the API's error body with its headers.
func (e *HTTPError) Render(c echo.Context) error {
	e.SetHeaders(c.Response().Header())
	return c.JSON(e.Status, map[string]*HTTPError{"error": e})
}

// WrapErrorHandler renders *HTTPError itself and passes every other error
// to next: e.HTTPErrorHandler = auth.WrapErrorHandler(i.handleError).
func WrapErrorHandler(next echo.HTTPErrorHandler) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		var he *HTTPError
		if errors.As(err, &he) {
			if !c.Response().Committed {
				_ = he.Render(c)
			}
			return
		}
		next(err, c)
	}
}

// toHTTPError maps an Authenticate error to its response. The message is
// the fixed reason, never the credential.
func toHTTPError(err error) *HTTPError {
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

// Chain is the API's middleware stack in order: request id, access log,
// authentication, rate limiting. l may be nil (no limits); a must not.
func Chain(a *Authenticator, l *Limiter, log *slog.Logger) []echo.MiddlewareFunc {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return []echo.MiddlewareFunc{requestIDMiddleware, accessLog(log), authMiddleware(a), rateLimitMiddleware(l)}
}

// saneRequestID accepts ids a client or proxy may reasonably send (UUIDs,
// hex, base32/64url) and rejects anything that could mangle logs.
func saneRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

func requestIDMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(HeaderRequestID)
		if !saneRequestID(id) {
			id = rand.Text()
			c.Request().Header.Set(HeaderRequestID, id) // handlers and proxies downstream see the final id
		}
		c.Set(requestIDKey, id)
		c.Response().Header().Set(HeaderRequestID, id)
		return next(c)
	}
}

// accessLog logs one line per request with the route template (bounded,
// and free of ids and query secrets) and never any header. It renders a
// handler's error itself (c.Error) so the logged status is the one sent,
// and then returns nil, as Echo's own request logger does.
func accessLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err)
			}
			req := c.Request()
			tenant := ""
			if p := FromContext(c); p != nil {
				tenant = p.Tenant
			}
			level := slog.LevelInfo
			if IsPublicPath(req.URL.Path) {
				level = slog.LevelDebug // probes every few seconds would drown the rest
			}
			log.LogAttrs(req.Context(), level, "http request",
				slog.String("method", req.Method),
				slog.String("route", c.Path()),
				slog.Int("status", c.Response().Status),
				slog.Duration("duration", time.Since(start)),
				slog.Int64("bytes", c.Response().Size),
				slog.String("request_id", RequestID(c)),
				slog.String("tenant", tenant),
			)
			return nil
		}
	}
}

func authMiddleware(a *Authenticator) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if IsPublicPath(c.Request().URL.Path) {
				return next(c)
			}
			p, err := a.Authenticate(c.Request())
			if err != nil {
				return toHTTPError(err)
			}
			c.Set(principalKey, p)
			c.SetRequest(c.Request().WithContext(WithPrincipal(c.Request().Context(), p)))
			return next(c)
		}
	}
}

func rateLimitMiddleware(l *Limiter) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if l == nil || IsPublicPath(c.Request().URL.Path) {
				return next(c)
			}
			tenant := DefaultTenant
			if p := FromContext(c); p != nil {
				tenant = p.Tenant
			}
			if ok, wait := l.Allow(tenant); !ok {
				return &HTTPError{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
					Message: "rate limit exceeded for tenant " + strconv.Quote(tenant), RetryAfter: wait}
			}
			return next(c)
		}
	}
}

// Require guards a route with a scope: 401 if no principal (auth did not
// run), 403 if the principal lacks scope (admin holds every scope). It
// panics on an unknown scope, a programming error best caught at start.
func Require(scope string) echo.MiddlewareFunc {
	if !KnownScope(scope) {
		panic("auth.Require: unknown scope " + strconv.Quote(scope))
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := FromContext(c)
			if p == nil {
				return toHTTPError(ErrMissingCredentials)
			}
			if !p.Has(scope) {
				return &HTTPError{Status: http.StatusForbidden, Code: CodeForbidden,
					Message: "missing scope " + strconv.Quote(scope),
					wwwAuth: `Bearer realm="inferq", error="insufficient_scope", scope="` + scope + `"`,
					err:     ErrForbidden}
			}
			return next(c)
		}
	}
}
