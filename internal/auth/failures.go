package auth

import (
	"sync"
	"time"
)

// Defaults of the failed-authentication throttle.
const (
	DefaultMaxFailures   = 20
	DefaultFailureWindow = time.Minute
	maxFailureAddrs      = 100000
)

// FailedAuthConfig throttles addresses whose credentials keep failing, so
// keys cannot be guessed at line rate (HTTP 429, NATS connect refused).
type FailedAuthConfig struct {
	// MaxFailures failed authentications from one address within Window
	// block it for the rest of the Window. 0 means the default (20); a
	// negative value turns the throttle off.
	MaxFailures int      `yaml:"max_failures" json:"max_failures"`
	Window      Duration `yaml:"window" json:"window"` // default 1m
}

// FailureLimiter counts failed authentications per client address. A nil
// *FailureLimiter allows everything. Safe for concurrent use.
type FailureLimiter struct {
	max    int
	window time.Duration

	mu    sync.Mutex
	addrs map[string]*failures
}

type failures struct {
	start time.Time // of the current window
	count int
}

// NewFailureLimiter builds the throttle, or nil when cfg turns it off.
func NewFailureLimiter(cfg FailedAuthConfig) *FailureLimiter {
	if cfg.MaxFailures < 0 {
		return nil
	}
	l := &FailureLimiter{max: cfg.MaxFailures, window: cfg.Window.D(), addrs: map[string]*failures{}}
	if l.max == 0 {
		l.max = DefaultMaxFailures
	}
	if l.window <= 0 {
		l.window = DefaultFailureWindow
	}
	return l
}

// Allow reports whether addr may try to authenticate now, and if not, how
// long until it may.
func (l *FailureLimiter) Allow(addr string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.addrs[addr]
	if f == nil || now.Sub(f.start) >= l.window {
		return true, 0
	}
	if f.count < l.max {
		return true, 0
	}
	return false, f.start.Add(l.window).Sub(now)
}

// Fail records one failed authentication from addr.
func (l *FailureLimiter) Fail(addr string, now time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.addrs[addr]
	if f == nil || now.Sub(f.start) >= l.window {
		if f == nil && len(l.addrs) >= maxFailureAddrs {
			l.sweepLocked(now)
		}
		f = &failures{start: now}
		l.addrs[addr] = f
	}
	f.count++
}

// sweepLocked drops expired windows, and everything if that is not enough,
// so an attacker cycling addresses cannot grow the map without bound.
func (l *FailureLimiter) sweepLocked(now time.Time) {
	for a, f := range l.addrs {
		if now.Sub(f.start) >= l.window {
			delete(l.addrs, a)
		}
	}
	if len(l.addrs) >= maxFailureAddrs {
		clear(l.addrs)
	}
}
