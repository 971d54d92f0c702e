package results_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/results/storetest"
	"github.com/inferq/inferq/internal/testutil"
)

// newRedisFactory returns a factory of stores on one redis-server, each
// under its own key prefix so parallel subtests do not see each other.
func newRedisFactory(t *testing.T, url string) storetest.Factory {
	return newRedisFactoryWith(t, results.RedisConfig{URL: url})
}

// newRedisFactoryWith is newRedisFactory for any connection settings (a
// Cluster's or Sentinels' addrs).
func newRedisFactoryWith(t *testing.T, base results.RedisConfig) storetest.Factory {
	var n atomic.Int64
	return func(t *testing.T, retention time.Duration) results.Store {
		cfg := base
		cfg.Prefix, cfg.Retention = fmt.Sprintf("test%d", n.Add(1)), retention
		s, err := results.NewRedis(testutil.Context(t), cfg)
		if err != nil {
			t.Fatalf("NewRedis: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
}

func TestRedisConformance(t *testing.T) {
	r := testutil.StartRedis(t)
	storetest.Run(t, newRedisFactory(t, r.URL))
}

func TestNewRedisErrors(t *testing.T) {
	ctx := testutil.Context(t)
	if _, err := results.NewRedis(ctx, results.RedisConfig{URL: "http://nope"}); err == nil {
		t.Fatal("NewRedis accepted a non-redis URL")
	}
	dead := fmt.Sprintf("redis://127.0.0.1:%d/0", testutil.FreePort(t))
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := results.NewRedis(cctx, results.RedisConfig{URL: dead}); err == nil {
		t.Fatal("NewRedis succeeded without a server")
	}
}

// TestRedisRestart kills and restarts redis-server under a live store: the
// store must work again without being recreated, its shared subscriber must
// resubscribe, and a waiter from before the crash must be woken (its job is
// gone, since the test server keeps no data).
func TestRedisRestart(t *testing.T) {
	r := testutil.StartRedis(t)
	s := newRedisFactory(t, r.URL)(t, time.Hour)
	ctx := testutil.Context(t)
	terminal := func(rec *results.Record) bool { return rec.Status.Terminal() }

	old := &results.Record{ID: "before0crash", Status: results.Queued, CreatedAt: time.Now(), Attempts: 1}
	if err := s.Create(ctx, old); err != nil {
		t.Fatalf("Create: %v", err)
	}
	oldWait := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := s.Wait(wctx, old.ID, terminal, nil)
		oldWait <- err
	}()
	testutil.Eventually(t, 5*time.Second, func() bool { return results.WaitersOf(s, old.ID, false) > 0 }, "the waiter did not register")

	r.Stop()
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded with the server down")
	}
	r.Start()

	select {
	case err := <-oldWait:
		if !errors.Is(err, results.ErrNotFound) {
			t.Fatalf("waiter from before the crash: got %v, want ErrNotFound", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter from before the crash was not woken after the restart")
	}

	testutil.Eventually(t, 5*time.Second, func() bool { return s.Ping(ctx) == nil }, "store reconnects")
	rec := &results.Record{ID: "after0crash", Status: results.Queued, CreatedAt: time.Now(), Attempts: 1}
	if err := s.Create(ctx, rec); err != nil {
		t.Fatalf("Create after restart: %v", err)
	}
	// The apply script is gone from the new server's cache: Apply must load it again.
	if _, changed, err := s.Apply(ctx, results.Update{ID: rec.ID, Status: results.Running, Attempt: 1, Time: time.Now()}); err != nil || !changed {
		t.Fatalf("Apply after restart: changed=%v err=%v", changed, err)
	}
	got := make(chan *results.Record, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		r, err := s.Wait(wctx, rec.ID, terminal, nil)
		if err != nil {
			t.Errorf("Wait after restart: %v", err)
		}
		got <- r
	}()
	testutil.Eventually(t, 5*time.Second, func() bool { return results.WaitersOf(s, rec.ID, false) > 0 }, "the waiter did not register")
	applied := time.Now()
	if _, _, err := s.Apply(ctx, results.Update{ID: rec.ID, Status: results.Succeeded, Attempt: 1, Time: time.Now(), Result: json.RawMessage(`{"ok":true}`)}); err != nil {
		t.Fatalf("Apply after restart: %v", err)
	}
	select {
	case r := <-got:
		if r == nil || r.Status != results.Succeeded {
			t.Fatalf("Wait after restart returned %+v", r)
		}
		if lag := time.Since(applied); lag > time.Second {
			t.Fatalf("Wait after restart woke %v after the Apply", lag)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait after restart was not woken")
	}
}

// TestRedisReserveLegacy: a key stored by a version that kept only the job
// id reads back as that job with no request hash (it matches any request),
// and is not overwritten.
func TestRedisReserveLegacy(t *testing.T) {
	r := testutil.StartRedis(t)
	ctx := testutil.Context(t)
	s, err := results.NewRedis(ctx, results.RedisConfig{URL: r.URL, Prefix: "legacy", Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(opt)
	t.Cleanup(func() { _ = raw.Close() })
	if err := raw.Set(ctx, "legacy:idem:abc123", "oldjob", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := s.Reserve(ctx, "abc123", results.Reservation{ID: "newjob", Hash: strings.Repeat("a", 64)})
	if err != nil || got != (results.Reservation{ID: "oldjob"}) {
		t.Fatalf("Reserve over a bare id: %+v, %v; want oldjob without a hash", got, err)
	}
	if v, _ := raw.Get(ctx, "legacy:idem:abc123").Result(); v != "oldjob" {
		t.Errorf("stored value became %q", v)
	}
}

// TestRedisReadsPreHashTagRecords: on one node, a record stored by a
// version before hash tags (<prefix>:job:<id>) still reads back, and its
// change notices (on the old channel) still wake waiters, so jobs in
// flight across an upgrade are not lost to readers.
func TestRedisReadsPreHashTagRecords(t *testing.T) {
	r := testutil.StartRedis(t)
	ctx := testutil.Context(t)
	s, err := results.NewRedis(ctx, results.RedisConfig{URL: r.URL, Prefix: "old", Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	opt, _ := redis.ParseURL(r.URL)
	raw := redis.NewClient(opt)
	t.Cleanup(func() { _ = raw.Close() })
	created := time.Now().UTC().Format(time.RFC3339Nano)
	if err := raw.HSet(ctx, "old:job:j1", "id", "j1", "tenant", "t", "model", "m", "version", "1",
		"status", "running", "created_at", created, "attempts", "1").Err(); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Get(ctx, "j1")
	if err != nil || rec.Status != results.Running || rec.Model != "m" {
		t.Fatalf("pre-hash-tag record: %+v, %v", rec, err)
	}
	done := make(chan *results.Record, 1)
	go func() {
		rec, _ := s.Wait(ctx, "j1", func(r *results.Record) bool { return r.Status.Terminal() }, nil)
		done <- rec
	}()
	testutil.Eventually(t, 5*time.Second, func() bool { return results.WaitersOf(s, "j1", false) > 0 }, "waiter registered")
	raw.HSet(ctx, "old:job:j1", "status", "succeeded", "finished_at", created)
	raw.Publish(ctx, "old:job:j1:notify", "succeeded")
	select {
	case rec := <-done:
		if rec == nil || rec.Status != results.Succeeded {
			t.Errorf("waiter got %+v", rec)
		}
	case <-time.After(5 * time.Second):
		t.Error("old-style notice did not wake the waiter")
	}
	// New writes use the hash-tagged key.
	if err := s.Create(ctx, &results.Record{ID: "j2", Status: results.Queued, CreatedAt: time.Now(), Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	if n := raw.Exists(ctx, "old:job:{j2}").Val(); n != 1 {
		t.Errorf("new record not under old:job:{j2}")
	}
}
