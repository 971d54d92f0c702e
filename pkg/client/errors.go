package client

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The API's errors, one per error code of the contract
// (docs/architecture.md, "Errors"). An error this package returns for an
// answer of the broker is an *APIError that matches one of them with
// errors.Is: errors.Is(err, client.ErrQueueFull).
var (
	ErrInvalid              = errors.New("inferq: invalid request")              // 400 invalid
	ErrUnauthorized         = errors.New("inferq: unauthenticated")              // 401 unauthenticated
	ErrForbidden            = errors.New("inferq: forbidden")                    // 403 forbidden
	ErrNotFound             = errors.New("inferq: not found")                    // 404 not_found
	ErrMethodNotAllowed     = errors.New("inferq: method not allowed")           // 405 method_not_allowed
	ErrConflict             = errors.New("inferq: conflict")                     // 409 conflict and not_replayable
	ErrNotReplayable        = errors.New("inferq: job not replayable")           // 409 not_replayable
	ErrTooLarge             = errors.New("inferq: too large")                    // 413 too_large
	ErrUnsupportedMediaType = errors.New("inferq: unsupported media type")       // 415 unsupported_media_type
	ErrIdempotencyKeyReused = errors.New("inferq: idempotency key reused")       // 422 idempotency_key_reused
	ErrRateLimited          = errors.New("inferq: rate limited")                 // 429 rate_limited
	ErrInternal             = errors.New("inferq: internal error")               // 500 internal (or a synchronous job's own error)
	ErrQueueFull            = errors.New("inferq: queue full")                   // 503 queue_full
	ErrUnavailable          = errors.New("inferq: unavailable")                  // 503 unavailable and not_ready
	ErrNotReady             = errors.New("inferq: not ready")                    // 503 not_ready
	ErrTimeout              = errors.New("inferq: timeout")                      // 504 timeout
	ErrExpired              = errors.New("inferq: job expired")                  // 504 expired
	ErrStreamEnded          = errors.New("inferq: event stream ended too early") // a stream that could not be resumed
)

// byCode maps the contract's error codes to the sentinels they match.
var byCode = map[string][]error{
	"invalid":                {ErrInvalid},
	"unauthenticated":        {ErrUnauthorized},
	"forbidden":              {ErrForbidden},
	"not_found":              {ErrNotFound},
	"method_not_allowed":     {ErrMethodNotAllowed},
	"conflict":               {ErrConflict},
	"not_replayable":         {ErrNotReplayable, ErrConflict},
	"too_large":              {ErrTooLarge},
	"unsupported_media_type": {ErrUnsupportedMediaType},
	"idempotency_key_reused": {ErrIdempotencyKeyReused},
	"rate_limited":           {ErrRateLimited},
	"internal":               {ErrInternal},
	"queue_full":             {ErrQueueFull},
	"unavailable":            {ErrUnavailable},
	"not_ready":              {ErrNotReady, ErrUnavailable},
	"timeout":                {ErrTimeout},
	"expired":                {ErrExpired},
}

// byStatus is the sentinel of an answer whose code this client does not
// know (a proxy's error page, a newer server), from its HTTP status.
var byStatus = map[int]error{
	http.StatusBadRequest:            ErrInvalid,
	http.StatusUnauthorized:          ErrUnauthorized,
	http.StatusForbidden:             ErrForbidden,
	http.StatusNotFound:              ErrNotFound,
	http.StatusMethodNotAllowed:      ErrMethodNotAllowed,
	http.StatusConflict:              ErrConflict,
	http.StatusRequestEntityTooLarge: ErrTooLarge,
	http.StatusUnsupportedMediaType:  ErrUnsupportedMediaType,
	http.StatusUnprocessableEntity:   ErrIdempotencyKeyReused,
	http.StatusTooManyRequests:       ErrRateLimited,
	http.StatusInternalServerError:   ErrInternal,
	http.StatusBadGateway:            ErrUnavailable,
	http.StatusServiceUnavailable:    ErrUnavailable,
	http.StatusGatewayTimeout:        ErrTimeout,
}

// APIError is an error answer of the broker: its HTTP status, the
// contract's error code and message, and the Retry-After it asked for.
type APIError struct {
	StatusCode int
	Code       string // e.g. "queue_full"; "" when the body carried none
	Message    string
	// RetryAfter is the answer's Retry-After (0 when absent): how long the
	// broker asks a client to wait before trying again.
	RetryAfter time.Duration
	RequestID  string // the answer's X-Request-Id, for the broker's logs
}

func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = strings.ToLower(strings.ReplaceAll(http.StatusText(e.StatusCode), " ", "_"))
	}
	s := fmt.Sprintf("inferq: %d %s: %s", e.StatusCode, code, e.Message)
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %v)", e.RetryAfter)
	}
	return s
}

// Is makes errors.Is(err, ErrQueueFull) and the other sentinels match by
// the error code, or by the HTTP status when the code is unknown.
func (e *APIError) Is(target error) bool {
	if sentinels, ok := byCode[e.Code]; ok {
		for _, s := range sentinels {
			if s == target {
				return true
			}
		}
		return false
	}
	return byStatus[e.StatusCode] == target && target != nil
}

// Temporary reports whether the same request may succeed later: the broker
// refused it for now (429, 503), and did nothing with it.
func (e *APIError) Temporary() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusServiceUnavailable
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// localError is a request this client refuses before sending it; it
// matches ErrInvalid.
func localError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
