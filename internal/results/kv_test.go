package results_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/results/storetest"
	"github.com/inferq/inferq/internal/testutil"
)

func TestKVConformance(t *testing.T) {
	n := testutil.StartNATS(t)
	var seq atomic.Int64
	storetest.Run(t, func(t *testing.T, retention time.Duration) results.Store {
		s, err := results.NewKV(testutil.Context(t), n.JS, results.KVConfig{
			Bucket: fmt.Sprintf("results_%d", seq.Add(1)), Retention: retention,
		})
		if err != nil {
			t.Fatalf("NewKV: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// TestNewKVIdempotent: every process calls NewKV at start-up, possibly with
// a changed retention; the bucket and its records survive.
func TestNewKVIdempotent(t *testing.T) {
	n := testutil.StartNATS(t)
	ctx := testutil.Context(t)
	s1, err := results.NewKV(ctx, n.JS, results.KVConfig{})
	if err != nil {
		t.Fatalf("NewKV: %v", err)
	}
	defer s1.Close()
	rec := &results.Record{ID: "keep", Status: results.Queued, CreatedAt: time.Now(), Attempts: 1}
	if err := s1.Create(ctx, rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	s2, err := results.NewKV(ctx, n.JS, results.KVConfig{Retention: 2 * time.Hour})
	if err != nil {
		t.Fatalf("second NewKV: %v", err)
	}
	defer s2.Close()
	if _, err := s2.Get(ctx, rec.ID); err != nil {
		t.Fatalf("record lost by second NewKV: %v", err)
	}
	kv, err := n.JS.KeyValue(ctx, results.DefaultKVBucket)
	if err != nil {
		t.Fatalf("bucket: %v", err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.TTL() != 2*time.Hour || st.History() != 1 {
		t.Fatalf("bucket ttl %v history %d, want 2h and 1", st.TTL(), st.History())
	}
	if _, err := results.NewKV(ctx, n.JS, results.KVConfig{Bucket: "bad bucket"}); err == nil {
		t.Fatal("NewKV accepted an invalid bucket name")
	}
	var _ jetstream.KeyValue = kv
}
