package ingress

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/jobid"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/testutil"
)

// waitSpy is a results store that reports each Wait as it starts, so the
// test knows its requests are in flight before it stops the server.
type waitSpy struct {
	results.Store
	waiting chan string
}

func (s *waitSpy) Wait(ctx context.Context, id string, done func(*results.Record) bool, orElse results.Fallback) (*results.Record, error) {
	s.waiting <- id
	return s.Store.Wait(ctx, id, done, orElse)
}

// TestShutdownDrainsLongPolls: requests that wait (GET ?wait=, POST with
// Prefer: wait=N) and are in flight when the ingress starts to stop get
// their answer, even when it comes later than the old fixed 10s drain:
// the drain lasts as long as the longest allowed wait.
func TestShutdownDrainsLongPolls(t *testing.T) {
	const wait = 12 * time.Second // above the old fixed 10s drain
	n := testutil.StartNATS(t)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL = n.URL
	cfg.Ingress.MaxWait = config.D(wait)
	cfg.Ingress.SyncTimeout = config.D(wait)
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	if got, want := DrainTimeout(cfg.Ingress), wait+drainMargin; got != want {
		t.Fatalf("DrainTimeout = %v, want %v (max_wait plus the margin)", got, want)
	}
	ctx := testutil.Context(t)
	topo, kv := provisioned(t, n, &cfg)
	store := &waitSpy{Store: kv, waiting: make(chan string, 8)}
	i := New(Options{Config: &cfg, Topology: topo, JS: n.JS, Store: store,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: obs.NewRegistry()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- i.Serve(serveCtx, ln) }()

	// Two jobs no batcher will run: one stays queued, one ends mid-drain.
	queued, endsLate := jobid.New(), jobid.New()
	for _, id := range []string{queued, endsLate} {
		if err := kv.Create(ctx, &results.Record{ID: id, Tenant: "default", Model: "repeat", Status: results.Queued, CreatedAt: time.Now(), Attempts: 1}); err != nil {
			t.Fatal(err)
		}
	}
	type answer struct {
		name   string
		code   int
		status string
		err    error
		after  time.Duration
	}
	answers := make(chan answer, 3)
	do := func(name string, req *http.Request) {
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answers <- answer{name: name, err: err, after: time.Since(t0)}
			return
		}
		defer resp.Body.Close()
		var rec struct{ Status string }
		err = json.NewDecoder(resp.Body).Decode(&rec)
		answers <- answer{name, resp.StatusCode, rec.Status, err, time.Since(t0)}
	}
	get := func(id string) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, url+"/v1/jobs/"+id+"?wait="+wait.String(), nil)
		return req
	}
	post, _ := http.NewRequest(http.MethodPost, url+"/v1/models/repeat/jobs",
		strings.NewReader(`{"text_input":"a","parameters":{"max_tokens":1}}`))
	post.Header.Set("Content-Type", "application/json")
	post.Header.Set("Prefer", "wait=12")
	go do("GET of a queued job", get(queued))
	go do("GET of a job that ends mid-drain", get(endsLate))
	go do("POST with Prefer: wait=12", post)
	for range 3 {
		select {
		case <-store.waiting:
		case a := <-answers:
			t.Fatalf("%s answered before the shutdown: %d %s %v", a.name, a.code, a.status, a.err)
		case <-time.After(10 * time.Second):
			t.Fatal("the requests did not start waiting")
		}
	}

	t0 := time.Now()
	stop()
	// Past the old fixed drain, the job ends: its waiter still hears it.
	time.Sleep(11 * time.Second) // the drain's length is the thing under test
	if _, _, err := kv.Apply(ctx, results.Update{ID: endsLate, Status: results.Succeeded, Attempt: 1, Time: time.Now(),
		Result: json.RawMessage(`{"ok":true}`)}); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		code   int
		status string
	}{
		"GET of a queued job":              {http.StatusOK, string(results.Queued)},
		"GET of a job that ends mid-drain": {http.StatusOK, string(results.Succeeded)},
		"POST with Prefer: wait=12":        {http.StatusAccepted, string(results.Queued)},
	}
	for range 3 {
		a := <-answers
		t.Logf("%s: %d %s after %v", a.name, a.code, a.status, a.after.Round(time.Millisecond))
		if a.err != nil {
			t.Errorf("%s: cut by the shutdown after %v: %v", a.name, a.after, a.err)
			continue
		}
		if w := want[a.name]; a.code != w.code || a.status != w.status {
			t.Errorf("%s: %d %s, want %d %s", a.name, a.code, a.status, w.code, w.status)
		}
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		if took := time.Since(t0); took > DrainTimeout(cfg.Ingress) {
			t.Errorf("Serve returned %v after the shutdown began, past the drain of %v", took, DrainTimeout(cfg.Ingress))
		}
	case <-time.After(DrainTimeout(cfg.Ingress)):
		t.Error("Serve did not return once the requests in flight had their answers")
	}
}
