package auth

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// sweepEvery is how often Allow looks for idle buckets to drop.
const sweepEvery = time.Minute

// Limiter keeps one token bucket per tenant. Memory is bounded: a bucket
// idle long enough to have refilled completely is indistinguishable from a
// new one, so it is dropped on the next sweep; past MaxTenants the least
// recently used bucket goes. A nil *Limiter allows everything.
type Limiter struct {
	def       TenantLimit
	overrides map[string]TenantLimit
	max       int
	now       func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim      *rate.Limiter
	lastSeen time.Time
	idleTTL  time.Duration // time for an empty bucket to refill
}

// NewLimiter builds a Limiter from cfg (assumed validated). It returns nil,
// meaning unlimited, when no tenant has a limit.
func NewLimiter(cfg RateLimitConfig) *Limiter { return NewLimiterClock(cfg, time.Now) }

// NewLimiterClock is NewLimiter reading time from now, so tests (here and
// in authecho) can step time instead of sleeping.
func NewLimiterClock(cfg RateLimitConfig, now func() time.Time) *Limiter {
	limited := cfg.PerTenantRPS > 0
	for _, o := range cfg.Overrides {
		limited = limited || o.RPS > 0
	}
	if !limited {
		return nil
	}
	maxTenants := cfg.MaxTenants
	if maxTenants <= 0 {
		maxTenants = DefaultMaxTenants
	}
	overrides := make(map[string]TenantLimit, len(cfg.Overrides)) // copied: read without the lock
	for t, o := range cfg.Overrides {
		overrides[t] = o
	}
	return &Limiter{
		def:       TenantLimit{RPS: cfg.PerTenantRPS, Burst: cfg.Burst},
		overrides: overrides,
		max:       maxTenants,
		now:       now,
		buckets:   map[string]*bucket{},
	}
}

// Allow takes a token from tenant's bucket. When none is left it answers
// false and how long until one will be.
func (l *Limiter) Allow(tenant string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	lim, found := l.overrides[tenant]
	if !found {
		lim = l.def
	}
	if lim.RPS <= 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked(now)
	b := l.buckets[tenant]
	if b == nil {
		burst := lim.Burst
		if burst <= 0 {
			burst = max(1, int(math.Ceil(lim.RPS)))
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(lim.RPS), burst),
			idleTTL: time.Duration(float64(burst) / lim.RPS * float64(time.Second))}
		l.evictForLocked()
		l.buckets[tenant] = b
	}
	b.lastSeen = now
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	r := b.lim.ReserveN(now, 1)
	defer r.CancelAt(now)
	if !r.OK() {
		return false, time.Second
	}
	return false, r.DelayFrom(now)
}

// sweepLocked drops buckets that have fully refilled, at most every
// sweepEvery.
func (l *Limiter) sweepLocked(now time.Time) {
	if now.Sub(l.lastSweep) < sweepEvery {
		return
	}
	l.lastSweep = now
	for t, b := range l.buckets {
		if now.Sub(b.lastSeen) > b.idleTTL {
			delete(l.buckets, t)
		}
	}
}

// evictForLocked makes room for one more bucket by dropping the least
// recently used one. O(n), but only reached with max tenants all active.
func (l *Limiter) evictForLocked() {
	if len(l.buckets) < l.max {
		return
	}
	var oldest string
	var oldestSeen time.Time
	for t, b := range l.buckets {
		if oldest == "" || b.lastSeen.Before(oldestSeen) {
			oldest, oldestSeen = t, b.lastSeen
		}
	}
	delete(l.buckets, oldest)
}

// size is the number of buckets held (tests).
func (l *Limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
