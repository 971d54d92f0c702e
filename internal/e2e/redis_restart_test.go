package e2e

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/testutil"
)

// TestRedisRestartLosesNoJob: Redis (with its append-only file, as in
// production) is killed and restarted while jobs flow. Every job that was
// answered 202 still ends succeeded with its correct result: events wait in
// JetStream while the store is down and are applied when it returns.
func TestRedisRestartLosesNoJob(t *testing.T) {
	n := testutil.StartNATS(t)
	r := testutil.StartRedisAOF(t)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL, cfg.Redis.URL = n.URL, r.URL
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- stack.Run(ctx, stack.Options{Config: &cfg, Conn: n.Conn, Components: stack.All, IngressListener: ln,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: func() { close(ready) }})
	}()
	<-ready
	t.Cleanup(func() { cancel(); <-done })
	s := &Stack{URL: "http://" + ln.Addr().String(), NATS: n, Cfg: &cfg}

	type sent struct {
		id   string
		a, b []int32
	}
	var (
		mu      sync.Mutex
		good    []sent
		refused int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				a, b := make([]int32, 16), make([]int32, 16)
				for i := range a {
					a[i], b[i] = int32(w*1000+k), int32(i)
				}
				var acc accepted
				code, _ := do(t, "POST", s.URL+"/v1/models/simple/jobs", simpleBody(a, b), &acc)
				mu.Lock()
				switch code {
				case http.StatusAccepted:
					good = append(good, sent{acc.ID, a, b})
				case http.StatusServiceUnavailable:
					refused++ // the store is down: not accepted, nothing promised
				default:
					t.Errorf("POST answered %d", code)
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	r.Stop()
	time.Sleep(1500 * time.Millisecond)
	r.Start()
	time.Sleep(1 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d jobs accepted, %d refused while Redis was down", len(good), refused)
	if len(good) < 50 {
		t.Fatalf("only %d jobs accepted", len(good))
	}
	for _, j := range good {
		rec := s.wait(t, j.id)
		if err := checkSimple(rec, j.a, j.b); err != nil {
			t.Errorf("job %s: %v", j.id, err)
		}
	}
}
