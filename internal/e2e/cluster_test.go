package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/service"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/stack/stacktest"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
)

// TestClusterNodeLoss runs the stack on a 3-node JetStream cluster with R3
// streams, consumers and results bucket, and shuts one node down while jobs
// flow. Every job answered 202 still ends succeeded with its own result.
func TestClusterNodeLoss(t *testing.T) {
	cl := testutil.StartCluster(t, 3)
	nc, err := jetstream.Connect(strings.Join(cl.URLs, ","), "inferq-test", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.Replicas = 3
	cfg.NATS.AckWait = config.D(3 * time.Second) // messages held by the lost node come back sooner
	s := &Stack{URL: stacktest.Start(t, &cfg, nc, stack.All), Cfg: &cfg}

	stop := make(chan struct{})
	go func() {
		time.Sleep(time.Second)
		cl.Nodes[1].Shutdown()
		time.Sleep(3 * time.Second)
		close(stop)
	}()
	good, refused := loadUntil(t, s, 4, stop)
	t.Logf("%d jobs accepted, %d refused while the fault lasted", len(good), refused)
	checkAll(t, s, good)
}

// TestClusterFrozenNode freezes (SIGSTOP) the whole node that holds the
// stack's NATS connection on a 3-node R3 cluster of separate processes, as
// a hung machine: its clients, its routes and any leaders on it stop. The
// stack must leave it within its ping bound and keep accepting jobs on the
// other nodes while it is frozen. Every submission carries an
// Idempotency-Key and a refused one is sent again after the thaw, as a
// client that obeys 503 does: each ends succeeded exactly once, with its
// own result, and none that was refused and then retried runs twice.
func TestClusterFrozenNode(t *testing.T) {
	cl := testutil.StartProcessCluster(t, 3)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL = cl.URLs[0] // the others are learnt from the cluster
	cfg.NATS.Replicas = 3
	cfg.NATS.AckWait = config.D(3 * time.Second)
	cfg.NATS.PingInterval, cfg.NATS.MaxPingsOut = config.D(250*time.Millisecond), 2
	nc, err := service.ConnectNATS(cfg.NATS, "inferq-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s := &Stack{URL: stacktest.Start(t, &cfg, nc, stack.All), Cfg: &cfg}

	var frozen atomic.Bool
	var duringFreeze atomic.Int64
	stop := make(chan struct{})
	go func() {
		time.Sleep(time.Second)
		frozen.Store(true)
		cl.Freeze(t, 0, true)
		// Longer than the cluster takes to elect new leaders for the
		// streams and buckets whose leader froze (its election timeout is
		// several seconds), so jobs must be accepted before the thaw.
		time.Sleep(15 * time.Second)
		cl.Freeze(t, 0, false)
		frozen.Store(false)
		time.Sleep(time.Second)
		close(stop)
	}()

	type keyed struct {
		key  string
		a, b []int32
	}
	var mu sync.Mutex
	var good []sentJob
	var refused []keyed
	var slowest time.Duration
	post := func(k keyed) (int, accepted) {
		data, _ := json.Marshal(simpleBody(k.a, k.b))
		req, _ := http.NewRequest("POST", s.URL+"/v1/models/simple/jobs", bytes.NewReader(data))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", k.key)
		client := http.Client{Timeout: 30 * time.Second}
		resp, err := client.Do(req)
		if err != nil {
			return 0, accepted{} // no answer: promises nothing, like a 503
		}
		defer resp.Body.Close()
		var acc accepted
		_ = json.NewDecoder(resp.Body).Decode(&acc)
		return resp.StatusCode, acc
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				j := keyed{key: fmt.Sprintf("w%d-%d", w, k), a: make([]int32, 16), b: make([]int32, 16)}
				for i := range j.a {
					j.a[i], j.b[i] = int32(w*100000+k), int32(-i)
				}
				start := time.Now()
				code, acc := post(j)
				took := time.Since(start)
				mu.Lock()
				if took > slowest {
					slowest = took
				}
				switch code {
				case http.StatusAccepted:
					good = append(good, sentJob{acc.ID, j.a, j.b})
					if frozen.Load() {
						duringFreeze.Add(1)
					}
				case http.StatusServiceUnavailable, 0:
					refused = append(refused, j)
				default:
					t.Errorf("POST answered %d", code)
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	t.Logf("%d jobs accepted (%d while the node was frozen), %d refused or unanswered; slowest answer %v",
		len(good), duringFreeze.Load(), len(refused), slowest)
	if duringFreeze.Load() == 0 {
		t.Error("no job was accepted while one node of three was frozen: the stack did not fail over")
	}
	// The client obeys the 503: the same request under the same key again.
	seen := map[string]bool{}
	for _, g := range good {
		seen[g.id] = true
	}
	for _, j := range refused {
		var code int
		var acc accepted
		// 202 queues it now; 200 is the Idempotency-Key's replay of the
		// first try, which was stored after all (its answer was lost).
		for try := 0; try < 20; try++ {
			if code, acc = post(j); code == http.StatusAccepted || code == http.StatusOK {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if code != http.StatusAccepted && code != http.StatusOK {
			t.Fatalf("retry of %s answered %d", j.key, code)
		}
		if seen[acc.ID] {
			t.Errorf("retry of %s named job %s, which another key already owns", j.key, acc.ID)
		}
		seen[acc.ID] = true
		good = append(good, sentJob{acc.ID, j.a, j.b})
	}
	checkAll(t, s, good)
	for _, g := range good {
		rec, err := s.waitErr(g.id)
		if err == nil && rec.Attempts != 1 {
			t.Errorf("job %s: %d attempts, want 1", g.id, rec.Attempts)
		}
	}
}
