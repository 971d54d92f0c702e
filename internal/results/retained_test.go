package results_test

import (
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/testutil"
)

// TestRetained: each store counts what it keeps: records and idempotency
// keys (on a 3-master Redis Cluster, over every master).
func TestRetained(t *testing.T) {
	n := testutil.StartNATS(t)
	kv, err := results.NewKV(testutil.Context(t), n.JS, results.KVConfig{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Close() })
	one, err := results.NewRedis(testutil.Context(t), results.RedisConfig{URL: testutil.StartRedis(t).URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = one.Close() })
	cluster, err := results.NewRedis(testutil.Context(t), results.RedisConfig{Addrs: testutil.StartRedisCluster(t, 3).Addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Close() })
	for name, s := range map[string]interface {
		results.Store
		results.Retainer
	}{"kv": kv, "redis": one, "redis-cluster": cluster} {
		ctx := testutil.Context(t)
		if got, err := s.Retained(ctx); err != nil || got != 0 {
			t.Errorf("%s: empty store retains %d, %v", name, got, err)
		}
		for i := range 20 {
			id := "r" + strings.Repeat("x", i)
			if err := s.Create(ctx, &results.Record{ID: id, Status: results.Queued, CreatedAt: time.Now(), Attempts: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Reserve(ctx, "abcd", results.Reservation{ID: "r"}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Retained(ctx); err != nil || got != 21 {
			t.Errorf("%s: retains %d, %v; want 20 records and 1 idempotency key", name, got, err)
		}
	}
}
