package e2e

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, ready := make(chan error, 1), make(chan struct{})
	go func() {
		done <- stack.Run(ctx, stack.Options{Config: &cfg, Conn: nc, Components: stack.All, IngressListener: ln,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("stack: %v", err)
	}
	t.Cleanup(func() { cancel(); <-done })
	s := &Stack{URL: "http://" + ln.Addr().String(), Cfg: &cfg}

	type sent struct {
		id   string
		a, b []int32
	}
	var (
		mu   sync.Mutex
		good []sent
		shed int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
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
					a[i], b[i] = int32(w*100000+k), int32(-i)
				}
				var acc accepted
				code, _ := do(t, "POST", s.URL+"/v1/models/simple/jobs", simpleBody(a, b), &acc)
				mu.Lock()
				switch code {
				case http.StatusAccepted:
					good = append(good, sent{acc.ID, a, b})
				case http.StatusServiceUnavailable:
					shed++ // during the failover: refused, so nothing was promised
				default:
					t.Errorf("POST answered %d", code)
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	time.Sleep(time.Second)
	cl.Nodes[1].Shutdown()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d jobs accepted, %d refused during the failover", len(good), shed)
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
