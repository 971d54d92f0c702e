package auth

import (
	"fmt"
	"testing"
	"time"
)

func newTestLimiter(cfg RateLimitConfig) (*Limiter, *fakeClock) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	return NewLimiterClock(cfg, c.now), c
}

func TestLimiter(t *testing.T) {
	l, clock := newTestLimiter(RateLimitConfig{PerTenantRPS: 2, Burst: 3,
		Overrides: map[string]TenantLimit{"big": {RPS: 100, Burst: 100}, "free": {}}})

	for i := range 3 {
		if ok, _ := l.Allow("acme"); !ok {
			t.Fatalf("request %d refused inside burst", i)
		}
	}
	ok, wait := l.Allow("acme")
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("over burst: ok=%v wait=%v, want refused with wait ≤ 500ms", ok, wait)
	}
	// Tenants do not share buckets.
	if ok, _ := l.Allow("other"); !ok {
		t.Fatal("other tenant throttled by acme")
	}
	// Refill.
	clock.add(wait)
	if ok, _ := l.Allow("acme"); !ok {
		t.Fatal("not refilled after Retry-After")
	}
	// Overrides: bigger bucket, and rps 0 is unlimited.
	for i := range 100 {
		if ok, _ := l.Allow("big"); !ok {
			t.Fatalf("big refused at %d", i)
		}
	}
	for range 1000 {
		if ok, _ := l.Allow("free"); !ok {
			t.Fatal("unlimited override throttled")
		}
	}
}

func TestLimiterUnlimited(t *testing.T) {
	if l := NewLimiter(RateLimitConfig{}); l != nil {
		t.Fatal("zero config should give a nil (unlimited) limiter")
	}
	var l *Limiter
	if ok, _ := l.Allow("x"); !ok {
		t.Fatal("nil limiter refused")
	}
	// Only an override limited: other tenants unlimited.
	l, _ = newTestLimiter(RateLimitConfig{Overrides: map[string]TenantLimit{"abuser": {RPS: 1, Burst: 1}}})
	for range 100 {
		if ok, _ := l.Allow("acme"); !ok {
			t.Fatal("unlimited tenant throttled")
		}
	}
	l.Allow("abuser")
	if ok, _ := l.Allow("abuser"); ok {
		t.Fatal("override not applied")
	}
}

func TestLimiterDefaultBurst(t *testing.T) {
	l, _ := newTestLimiter(RateLimitConfig{PerTenantRPS: 2.5})
	n := 0
	for {
		if ok, _ := l.Allow("t"); !ok {
			break
		}
		n++
	}
	if n != 3 {
		t.Fatalf("default burst = %d, want ceil(2.5) = 3", n)
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	l, clock := newTestLimiter(RateLimitConfig{PerTenantRPS: 10, Burst: 10, MaxTenants: 50})
	for i := range 200 {
		l.Allow(fmt.Sprintf("t%d", i))
	}
	if n := l.size(); n > 50 {
		t.Fatalf("%d buckets, cap 50", n)
	}
	// The most recent tenant survived the LRU eviction with its bucket.
	if _, ok := l.buckets["t199"]; !ok {
		t.Fatal("most recent tenant evicted")
	}
	// Idle buckets (refilled after 1s) go at the next sweep.
	clock.add(sweepEvery + time.Second)
	l.Allow("fresh")
	if n := l.size(); n != 1 {
		t.Fatalf("%d buckets after idle sweep, want 1", n)
	}
	// A still-refilling bucket is not swept (that would reset its limit).
	l2, clock2 := newTestLimiter(RateLimitConfig{PerTenantRPS: 0.001, Burst: 1})
	l2.Allow("slow")
	clock2.add(sweepEvery + time.Second)
	l2.Allow("other")
	if ok, _ := l2.Allow("slow"); ok {
		t.Fatal("sweep reset a bucket that had not refilled")
	}
}
