package results_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/testutil"
)

// TestRedisTokenLog: tokens are kept in sequence per attempt; a duplicate
// is refused quietly, a gap with ErrTokenGap, and a new attempt starts at 1.
// A reader waiting for more is woken by the next append.
func TestRedisTokenLog(t *testing.T) {
	r := testutil.StartRedis(t)
	s, err := results.NewRedis(testutil.Context(t), results.RedisConfig{URL: r.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := testutil.Context(t)
	add := func(attempt uint32, seq uint64, text string) (bool, error) {
		return s.AppendToken(ctx, "job-1", attempt, results.Token{Seq: seq, Text: text, TokenID: int64(seq)})
	}
	for seq, text := range []string{"a", "b", "c"} {
		if ok, err := add(1, uint64(seq+1), text); !ok || err != nil {
			t.Fatalf("append %d: %v %v", seq+1, ok, err)
		}
	}
	if ok, err := add(1, 2, "b"); ok || err != nil {
		t.Errorf("duplicate: %v %v, want false, nil", ok, err)
	}
	if _, err := add(1, 5, "e"); !errors.Is(err, results.ErrTokenGap) {
		t.Errorf("gap: %v, want ErrTokenGap", err)
	}
	if _, err := add(2, 2, "x"); !errors.Is(err, results.ErrTokenGap) {
		t.Errorf("new attempt not starting at 1: %v, want ErrTokenGap", err)
	}
	got, err := s.WaitTokens(ctx, "job-1", 1, 1)
	if err != nil || len(got) != 2 || got[0].Seq != 2 || got[0].Text != "b" || got[1].Seq != 3 || got[1].TokenID != 3 {
		t.Fatalf("tokens after 1: %+v %v", got, err)
	}
	if ok, err := add(2, 1, "A"); !ok || err != nil {
		t.Fatalf("attempt 2 seq 1: %v %v", ok, err)
	}
	if ok, err := add(1, 4, "d"); ok || err != nil {
		t.Errorf("append to an older attempt: %v %v, want false, nil", ok, err)
	}
	got, err = s.WaitTokens(ctx, "job-1", 2, 0)
	if err != nil || len(got) != 1 || got[0].Text != "A" {
		t.Fatalf("attempt 2: %+v %v", got, err)
	}

	// A waiter for attempt 2's second token is woken when it is appended.
	res := make(chan []results.Token, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		ts, _ := s.WaitTokens(wctx, "job-1", 2, 1)
		res <- ts
	}()
	testutil.Eventually(t, 5*time.Second, func() bool { return results.WaitersOf(s, "job-1", true) > 0 }, "the token waiter did not register")
	if ok, err := s.AppendToken(ctx, "job-1", 2, results.Token{Seq: 2, Text: "B", Final: true}); !ok || err != nil {
		t.Fatalf("append: %v %v", ok, err)
	}
	if ts := <-res; len(ts) != 1 || ts[0].Text != "B" || !ts[0].Final {
		t.Fatalf("woken waiter got %+v", ts)
	}
}

// TestRedisTokenLogRetention: a token log expires after TokensRetention
// (inferq sets nats.tokens_max_age), not after the record's Retention, so a
// generating workload is not sized by a day of tokens.
func TestRedisTokenLogRetention(t *testing.T) {
	r := testutil.StartRedis(t)
	s, err := results.NewRedis(testutil.Context(t), results.RedisConfig{URL: r.URL, Retention: time.Hour, TokensRetention: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := testutil.Context(t)
	if ok, err := s.AppendToken(ctx, "job-1", 1, results.Token{Seq: 1, Text: "a"}); !ok || err != nil {
		t.Fatalf("append: %v %v", ok, err)
	}
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	ttl, err := c.PTTL(ctx, results.DefaultRedisPrefix+":job:{job-1}:tokens").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > time.Minute {
		t.Errorf("token log TTL %v, want at most TokensRetention (1m) and above zero", ttl)
	}
}
