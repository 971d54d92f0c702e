// Package authecho is internal/auth's Echo middleware: request id, access
// log, authentication and rate limiting ([Chain]), and per-route scopes
// ([Require]). It is apart from internal/auth so that only the ingress
// links Echo; the worker, batcher and results service read the same auth
// configuration without it.
//
// Middleware failures are returned as [*auth.HTTPError]; the ingress error
// handler renders them (see [Render] and [WrapErrorHandler]).
package authecho

import (
	"crypto/rand"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/inferq/inferq/internal/auth"
	"github.com/labstack/echo/v4"
)

// Keys under which the middleware stores its results in the Echo context.
const (
	principalKey = "inferq.auth.principal"
	requestIDKey = "inferq.auth.request_id"
)

// FromContext returns the principal the auth middleware stored in c, or nil
// when auth did not run (health paths).
func FromContext(c echo.Context) *auth.Principal {
	if p, ok := c.Get(principalKey).(*auth.Principal); ok {
		return p
	}
	return auth.PrincipalFrom(c.Request().Context())
}

// RequestID returns the request id the middleware assigned to c ("" if none).
func RequestID(c echo.Context) string {
	s, _ := c.Get(requestIDKey).(string)
	return s
}

// Render writes e as the API's error body, {"error":{"code","message"}},
// with its status and headers.
func Render(c echo.Context, e *auth.HTTPError) error {
	e.SetHeaders(c.Response().Header())
	return c.JSON(e.Status, map[string]*auth.HTTPError{"error": e})
}

// WrapErrorHandler renders *auth.HTTPError itself and passes every other
// error to next: e.HTTPErrorHandler = authecho.WrapErrorHandler(h).
func WrapErrorHandler(next echo.HTTPErrorHandler) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		var he *auth.HTTPError
		if errors.As(err, &he) {
			if !c.Response().Committed {
				_ = Render(c, he)
			}
			return
		}
		next(err, c)
	}
}

// Chain is the API's middleware stack in order: request id, access log,
// authentication, rate limiting. l may be nil (no limits); a must not.
// everyRequest logs every request at info level; otherwise only those
// answered 4xx or 5xx are, and the rest at debug.
func Chain(a *auth.Authenticator, l *auth.Limiter, log *slog.Logger, everyRequest bool) []echo.MiddlewareFunc {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return []echo.MiddlewareFunc{requestIDMiddleware, accessLog(log, everyRequest), authMiddleware(a), rateLimitMiddleware(l)}
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
		id := c.Request().Header.Get(auth.HeaderRequestID)
		if !saneRequestID(id) {
			id = rand.Text()
			c.Request().Header.Set(auth.HeaderRequestID, id) // handlers and proxies downstream see the final id
		}
		c.Set(requestIDKey, id)
		c.Response().Header().Set(auth.HeaderRequestID, id)
		return next(c)
	}
}

// accessLog logs one line per request with the route template (bounded,
// and free of ids and query secrets) and never any header. It renders a
// handler's error itself (c.Error) so the logged status is the one sent,
// and then returns nil, as Echo's own request logger does.
//
// Unless everyRequest, a request answered below 400 logs at debug: a line
// per job at info cost 5% of the broker's CPU at a few thousand jobs a
// second, and every request is counted in inferq_http_request_duration_seconds and
// traced anyway.
func accessLog(log *slog.Logger, everyRequest bool) echo.MiddlewareFunc {
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
			switch {
			case auth.IsPublicPath(req.URL.Path):
				level = slog.LevelDebug // probes every few seconds would drown the rest
			case !everyRequest && c.Response().Status < 400:
				level = slog.LevelDebug
			}
			if !log.Enabled(req.Context(), level) {
				return nil // the attributes below cost allocations even when not written
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

func authMiddleware(a *auth.Authenticator) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if auth.IsPublicPath(c.Request().URL.Path) {
				return next(c)
			}
			// An address whose credentials keep failing is refused before
			// any is checked, so keys cannot be guessed at line rate.
			addr, now := c.RealIP(), time.Now()
			if ok, wait := a.Failures().Allow(addr, now); !ok {
				return auth.TooManyFailures(wait)
			}
			p, err := a.Authenticate(c.Request())
			if err != nil {
				if errors.Is(err, auth.ErrInvalidCredentials) {
					a.Failures().Fail(addr, now)
				}
				return auth.ToHTTPError(err)
			}
			c.Set(principalKey, p)
			c.SetRequest(c.Request().WithContext(auth.WithPrincipal(c.Request().Context(), p)))
			return next(c)
		}
	}
}

func rateLimitMiddleware(l *auth.Limiter) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if l == nil || auth.IsPublicPath(c.Request().URL.Path) {
				return next(c)
			}
			tenant := auth.DefaultTenant
			if p := FromContext(c); p != nil {
				tenant = p.Tenant
			}
			if ok, wait := l.Allow(tenant); !ok {
				return auth.RateLimited(tenant, wait)
			}
			return next(c)
		}
	}
}

// Require guards a route with a scope: 401 if no principal (auth did not
// run), 403 if the principal lacks scope (admin holds every scope). It
// panics on an unknown scope, a programming error best caught at start.
func Require(scope string) echo.MiddlewareFunc {
	if !auth.KnownScope(scope) {
		panic("authecho.Require: unknown scope " + strconv.Quote(scope))
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := FromContext(c)
			if p == nil {
				return auth.ToHTTPError(auth.ErrMissingCredentials)
			}
			if !p.Has(scope) {
				return auth.Forbidden(scope)
			}
			return next(c)
		}
	}
}
