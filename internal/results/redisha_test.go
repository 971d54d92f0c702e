package results_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/results/storetest"
	"github.com/inferq/inferq/internal/testutil"
)

// TestRedisClusterConformance: the whole conformance suite passes on a
// 3-master Redis Cluster, reached through its seed addresses.
func TestRedisClusterConformance(t *testing.T) {
	c := testutil.StartRedisCluster(t, 3)
	storetest.Run(t, newRedisFactoryWith(t, results.RedisConfig{Addrs: c.Addrs}))
}

// TestRedisClusterEveryMaster: jobs whose keys live on each of the three
// masters are created, updated, streamed and waited for through one store;
// its one subscription (on one node) is woken by changes on every node, and
// the token script, which names the token stream and its channel, runs in
// one slot.
func TestRedisClusterEveryMaster(t *testing.T) {
	c := testutil.StartRedisCluster(t, 3)
	ctx := testutil.Context(t)
	s, err := results.NewRedis(ctx, results.RedisConfig{Addrs: c.Addrs, Prefix: "every", Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	raw := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = raw.Close() })

	// One job per master, found by where its key hashes.
	byMaster := map[string]string{}
	for i := 0; len(byMaster) < len(c.Addrs); i++ {
		if i > 1000 {
			t.Fatalf("no job id hashed to every master: %v", byMaster)
		}
		id := fmt.Sprintf("job%d", i)
		m, err := raw.MasterForKey(ctx, "every:job:{"+id+"}")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := byMaster[m.Options().Addr]; !ok {
			byMaster[m.Options().Addr] = id
		}
	}
	for addr, id := range byMaster {
		now := time.Now()
		if _, changed, err := s.Apply(ctx, results.Update{ID: id, Status: results.Running, Attempt: 1, Time: now,
			Tenant: "t", Model: "m", CreatedAt: now}); err != nil || !changed {
			t.Fatalf("apply running to %s on %s: %v %v", id, addr, changed, err)
		}
		done := make(chan *results.Record, 1)
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			rec, err := s.Wait(wctx, id, func(r *results.Record) bool { return r.Status.Terminal() }, nil)
			if err != nil {
				t.Errorf("wait %s (on %s): %v", id, addr, err)
			}
			done <- rec
		}()
		testutil.Eventually(t, 5*time.Second, func() bool { return results.WaitersOf(s, id, false) > 0 }, "waiter of %s", id)
		if ok, err := s.AppendToken(ctx, id, 1, results.Token{Seq: 1, Text: "hi"}); !ok || err != nil {
			t.Fatalf("append token to %s on %s: %v %v", id, addr, ok, err)
		}
		toks, err := s.WaitTokens(ctx, id, 1, 0)
		if err != nil || len(toks) != 1 || toks[0].Text != "hi" {
			t.Fatalf("tokens of %s on %s: %+v %v", id, addr, toks, err)
		}
		applied := time.Now()
		if _, _, err := s.Apply(ctx, results.Update{ID: id, Status: results.Succeeded, Attempt: 1, Time: applied,
			Result: json.RawMessage(`{"ok":true}`)}); err != nil {
			t.Fatalf("apply succeeded to %s: %v", id, err)
		}
		select {
		case rec := <-done:
			if rec == nil || rec.Status != results.Succeeded {
				t.Fatalf("%s on %s: waiter got %+v", id, addr, rec)
			}
			if lag := time.Since(applied); lag > 2*time.Second {
				t.Errorf("%s on %s: waiter woken %v after the change", id, addr, lag)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s on %s: waiter not woken", id, addr)
		}
		if n, err := raw.Exists(ctx, "every:job:{"+id+"}", "every:job:{"+id+"}:tokens").Result(); err != nil || n != 2 {
			t.Errorf("%s: hash-tagged keys exist %d, %v; want 2", id, n, err)
		}
	}
}

// TestRedisSentinelFailover: a master with one replica and three
// Sentinels; the master is killed (SIGKILL) while 8 writers drive jobs
// through running to succeeded, retrying each step until it is stored, as
// resultsvc redelivers an event until it is applied. Every job ends
// succeeded (exactly once: no step reported making it terminal twice), the replica
// became the master, and a waiter from before the kill is woken.
func TestRedisSentinelFailover(t *testing.T) {
	rs := testutil.StartRedisSentinel(t)
	ctx := testutil.Context(t)
	s, err := results.NewRedis(ctx, results.RedisConfig{Addrs: rs.Sentinels, MasterName: rs.MasterName, Prefix: "fo", Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	// A waiter across the failover.
	if err := s.Create(ctx, &results.Record{ID: "across", Status: results.Queued, CreatedAt: time.Now(), Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	waited := make(chan *results.Record, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		rec, _ := s.Wait(wctx, "across", func(r *results.Record) bool { return r.Status.Terminal() }, nil)
		waited <- rec
	}()
	testutil.Eventually(t, 5*time.Second, func() bool { return results.WaitersOf(s, "across", false) > 0 }, "waiter registered")

	const writers, perWriter = 8, 150
	var (
		stored     atomic.Int64 // steps stored so far, to kill the master mid-load
		terminal   sync.Map     // id -> *atomic.Int64: stored steps that made the job terminal
		retries    atomic.Int64
		wg         sync.WaitGroup
		failedJobs atomic.Int64
	)
	// retry runs one step until Redis stores it, for at most 30s.
	retry := func(u results.Update) (bool, bool) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, changed, err := s.Apply(ctx, u)
			if err == nil {
				stored.Add(1)
				return changed, true
			}
			if time.Now().After(deadline) {
				t.Errorf("job %s %s: not stored within 30s: %v", u.ID, u.Status, err)
				return false, false
			}
			retries.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				id := fmt.Sprintf("w%dj%d", w, i)
				now := time.Now()
				if _, ok := retry(results.Update{ID: id, Status: results.Running, Attempt: 1, Time: now, Tenant: "t", Model: "m", CreatedAt: now}); !ok {
					failedJobs.Add(1)
					continue
				}
				n, _ := terminal.LoadOrStore(id, new(atomic.Int64))
				changed, ok := retry(results.Update{ID: id, Status: results.Succeeded, Attempt: 1, Time: time.Now(), Result: json.RawMessage(`{"i":1}`)})
				if !ok {
					failedJobs.Add(1)
					continue
				}
				if changed {
					n.(*atomic.Int64).Add(1)
				}
			}
		}()
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return stored.Load() >= writers*perWriter/2 }, "load before the kill")
	old := rs.Master.Addr
	rs.Master.Stop()
	killedAt := time.Now()
	t.Logf("master %s killed after %d stored steps", old, stored.Load())
	wg.Wait()
	t.Logf("load done %v after the kill; %d retried steps; %d writes not confirmed by a replica", time.Since(killedAt), retries.Load(), s.Unreplicated())
	if failedJobs.Load() > 0 {
		t.Fatalf("%d jobs never stored", failedJobs.Load())
	}
	if cur, err := rs.CurrentMaster(); err != nil || cur != rs.Replica.Addr {
		t.Fatalf("master after the kill: %q, %v; want the replica %s", cur, err, rs.Replica.Addr)
	}
	if _, _, err := s.Apply(ctx, results.Update{ID: "across", Status: results.Succeeded, Attempt: 1, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	select {
	case rec := <-waited:
		if rec == nil || rec.Status != results.Succeeded {
			t.Errorf("waiter across the failover got %+v", rec)
		}
	case <-time.After(10 * time.Second):
		t.Error("waiter from before the failover not woken")
	}
	for w := range writers {
		for i := range perWriter {
			id := fmt.Sprintf("w%dj%d", w, i)
			rec, err := s.Get(ctx, id)
			if err != nil || rec.Status != results.Succeeded || rec.Attempts != 1 || string(rec.Result) != `{"i":1}` {
				t.Errorf("job %s after the failover: %+v, %v", id, rec, err)
				continue
			}
			// 0 is possible: the step was stored but its answer was lost
			// with the master, and the retry found it already done.
			if n, _ := terminal.Load(id); n.(*atomic.Int64).Load() > 1 {
				t.Errorf("job %s: %d stored steps made it terminal, want at most 1", id, n.(*atomic.Int64).Load())
			}
		}
	}
}
