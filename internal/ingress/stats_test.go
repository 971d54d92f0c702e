package ingress

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
)

// provisioned creates cfg's streams and consumers on n and a KV results
// store, for an ingress under test.
func provisioned(t *testing.T, n *testutil.NATS, cfg *config.Config) (jetstream.Topology, *results.KVStore) {
	t.Helper()
	ctx := testutil.Context(t)
	topo := jetstream.DefaultTopology()
	topo.Prefix = cfg.NATS.Prefix
	var pol []provision.ModelPolicy
	for _, m := range cfg.Models {
		pol = append(pol, provision.ModelPolicy{Name: m.Name, MaxBatchSize: m.Batching.MaxBatchSize, MaxDeliver: m.Queue.MaxDeliver})
	}
	if err := provision.All(ctx, n.JS, topo, pol); err != nil {
		t.Fatal(err)
	}
	store, err := results.NewKV(ctx, n.JS, results.KVConfig{Bucket: topo.ResultsBucket(), Retention: time.Hour, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return topo, store
}

// startIngress serves an ingress alone (no batcher, so jobs stay queued) on
// the embedded NATS server n, with n's streams and a KV results store.
func startIngress(t *testing.T, n *testutil.NATS, edit func(*config.Config)) (*Ingress, string) {
	t.Helper()
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL = n.URL
	if edit != nil {
		edit(&cfg)
		if err := cfg.Finish(); err != nil {
			t.Fatal(err)
		}
	}
	topo, store := provisioned(t, n, &cfg)
	reg := obs.NewRegistry()
	i := New(Options{Config: &cfg, Topology: topo, JS: n.JS, Store: store,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg})
	srv := httptest.NewServer(i.Handler())
	t.Cleanup(srv.Close)
	return i, srv.URL
}

// slowStats wraps i's stats reader: while slow holds, every read first
// sleeps d (or until its context ends).
func slowStats(i *Ingress, d time.Duration) *atomic.Bool {
	var slow atomic.Bool
	real := i.readStats
	i.readStats = func(ctx context.Context, model string) (Stats, error) {
		if slow.Load() {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		return real(ctx, model)
	}
	return &slow
}

// postRepeat submits a one-token repeat job and returns the status and
// the error code, if any.
func postRepeat(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url+"/v1/models/repeat/jobs", "application/json",
		strings.NewReader(`{"text_input":"a","parameters":{"max_tokens":1}}`))
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error.Code
}

// TestSlowStatsDoNotStallSubmits: when reading the queue's stats takes
// seconds (a frozen NATS node), concurrent submissions are not serialized
// behind it: each answers within the cache's short wait, on the last known
// figures, and the slow read still lands in the cache afterwards.
func TestSlowStatsDoNotStallSubmits(t *testing.T) {
	n := testutil.StartNATS(t)
	i, url := startIngress(t, n, nil)
	const delay = 3 * time.Second
	slow := slowStats(i, delay)
	if code, ecode := postRepeat(t, url); code != http.StatusAccepted {
		t.Fatalf("first submit: %d %s", code, ecode)
	}
	slow.Store(true)
	time.Sleep(i.cache.ttl + 50*time.Millisecond) // the figures go stale

	const jobs = 16
	start := time.Now()
	var wg sync.WaitGroup
	took := make(chan time.Duration, jobs)
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			if code, ecode := postRepeat(t, url); code != http.StatusAccepted {
				t.Errorf("submit during a slow stats read: %d %s", code, ecode)
			}
			took <- time.Since(t0)
		}()
	}
	wg.Wait()
	close(took)
	total := time.Since(start)
	// A submit waits at most cache.wait for the read; the rest is the
	// store write and the publish, well under a second even on a busy box.
	bound := i.cache.wait + time.Second
	for d := range took {
		if d > bound {
			t.Errorf("a submit took %v with stats reads taking %v; want under %v", d, delay, bound)
		}
	}
	if total > bound {
		t.Errorf("%d concurrent submits took %v in all; want under %v (not serialized behind the %v read)", jobs, total, bound, delay)
	}
	// The slow read finishes in the background and refreshes the entry.
	slow.Store(false)
	testutil.Eventually(t, 2*delay, func() bool {
		s, err := i.stats(t.Context(), "repeat")
		return err == nil && s.Queued == jobs+1
	}, "the stats never showed the %d queued jobs", jobs+1)
}

// TestStatsFirstReadIsWaitedFor: an ingress that has never read a model's
// figures waits for the first reading, however slow, before judging
// max_queued, rather than admitting a job on an empty one.
func TestStatsFirstReadIsWaitedFor(t *testing.T) {
	n := testutil.StartNATS(t)
	limit := func(c *config.Config) {
		m, _ := c.Model("repeat")
		m.Queue.MaxQueued = 2
	}
	_, first := startIngress(t, n, limit)
	for range 2 {
		if code, ecode := postRepeat(t, first); code != http.StatusAccepted {
			t.Fatalf("submit: %d %s", code, ecode)
		}
	}
	second, url := startIngress(t, n, limit)
	slowStats(second, 500*time.Millisecond).Store(true)
	if code, ecode := postRepeat(t, url); code != http.StatusServiceUnavailable || ecode != "queue_full" {
		t.Fatalf("third job on a fresh ingress: %d %q, want 503 queue_full", code, ecode)
	}
}
