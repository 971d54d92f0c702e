package auth

import (
	"errors"
	"testing"
	"time"
)

func TestHTTPError(t *testing.T) {
	e := &HTTPError{Status: 429, Code: CodeRateLimited, Message: "slow down", RetryAfter: 1500 * time.Millisecond}
	if e.RetryAfterSeconds() != 2 {
		t.Fatalf("RetryAfterSeconds = %d", e.RetryAfterSeconds())
	}
	if (&HTTPError{RetryAfter: time.Millisecond}).RetryAfterSeconds() != 1 {
		t.Fatal("sub-second wait must round up to 1")
	}
	var wrapped error = &HTTPError{Status: 403, err: ErrForbidden}
	if !errors.Is(wrapped, ErrForbidden) {
		t.Fatal("HTTPError does not unwrap to its sentinel")
	}
	if !errors.Is(ToHTTPError(ErrMissingCredentials), ErrMissingCredentials) {
		t.Fatal("missing credentials lost")
	}
}
