package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
)

// The live registry under load: while simple runs from 4 goroutines, a new
// model registered over the API serves within seconds, a batching change
// of simple takes effect without a restart, and simple loses or fails no
// job. Then a split sends jobs to both versions, and a deleted version's
// queued jobs still run before it goes.
func TestRegistryLiveUnderLoad(t *testing.T) {
	s := startStack(t, true, func(c *config.Config) { c.Registry = true })
	call := bearerCaller(t, s.URL)
	put := func(path, body string) {
		t.Helper()
		if code, _, b := call("PUT", path, "", body); code != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", path, code, b)
		}
	}
	stop := make(chan struct{})
	var good []sentJob
	var refused int
	done := make(chan struct{})
	go func() { defer close(done); good, refused = loadUntil(t, s, 4, stop) }()
	time.Sleep(time.Second)

	// A new model, registered while simple runs.
	start := time.Now()
	put("/v1/models/echo", `{"name":"echo","runner":{"builtin":"identity"}}`)
	echo := map[string]any{"inputs": []map[string]any{{"name": "INPUT0", "shape": []int{1, 3}, "datatype": "FP32", "data": []float32{1, 2, 3}}}}
	var served time.Duration
	testutil.Eventually(t, 15*time.Second, func() bool {
		var a accepted
		if code, _ := do(t, "POST", s.URL+"/v1/models/echo/jobs", echo, &a); code != http.StatusAccepted {
			return false
		}
		rec, err := s.waitErr(a.ID)
		served = time.Since(start)
		return err == nil && rec.Status == "succeeded"
	}, "the registered model never served a job")
	t.Logf("new model served %v after its PUT", served.Round(time.Millisecond))

	// A batching change of simple: batches of at most 2 from now on.
	batches := make(chan int, 4096)
	sub, err := s.NATS.Conn.Subscribe(jetstream.DefaultTopology().BatchedSubject("simple"), func(m *nats.Msg) {
		var n jetstream.BatchNotice
		if json.Unmarshal(m.Data, &n) == nil {
			select {
			case batches <- n.Jobs:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	put("/v1/models/simple/versions/1", `{"name":"simple","runner":{"builtin":"simple"},"batching":{"max_batch_size":2}}`)
	time.Sleep(2 * time.Second) // the batcher restarts the loop
	for len(batches) > 0 {
		<-batches
	}
	time.Sleep(2 * time.Second)
	seen := 0
	for len(batches) > 0 {
		if n := <-batches; n > 2 {
			t.Errorf("a batch of %d jobs after max_batch_size became 2", n)
		}
		seen++
	}
	if seen == 0 {
		t.Error("no batch of simple seen after the batching change")
	}
	close(stop)
	<-done
	if refused > 0 {
		t.Errorf("%d submissions of simple refused", refused)
	}
	checkAll(t, s, good)
	t.Logf("simple under load: %d jobs, none failed or lost", len(good))

	// A 50/50 split between two versions runs both.
	put("/v1/models/simple/versions/2", `{"name":"simple","runner":{"builtin":"simple"}}`)
	put("/v1/models/simple", `{"split":{"1":50,"2":50}}`)
	time.Sleep(500 * time.Millisecond)
	versions := map[string]int{}
	a, b := make([]int32, 16), make([]int32, 16)
	for range 20 {
		acc := s.submit(t, "simple", simpleBody(a, b))
		rec := s.wait(t, acc.ID)
		if rec.Status != "succeeded" {
			t.Fatalf("split job %s: %s", acc.ID, rec.Status)
		}
		versions[rec.Version]++
	}
	if versions["1"] == 0 || versions["2"] == 0 {
		t.Fatalf("the split ran versions %v, want both", versions)
	}

	// A slow version with queued jobs is deleted: every queued job runs.
	put("/v1/models/slow/versions/1", `{"name":"slow","runner":{"builtin":"simgpu","params":{"a":"200ms","b":"1ms"}},"batching":{"max_batch_size":1}}`)
	slow := map[string]any{"inputs": []map[string]any{{"name": "INPUT0", "shape": []int{1, 2}, "datatype": "FP32", "data": []float32{1, 2}}}}
	testutil.Eventually(t, 15*time.Second, func() bool {
		code, _ := do(t, "POST", s.URL+"/v1/models/slow/jobs", slow, nil)
		return code == http.StatusAccepted
	}, "slow never took a job")
	var ids []string
	for range 8 {
		ids = append(ids, s.submit(t, "slow", slow).ID)
	}
	if code, _, body := call("DELETE", "/v1/models/slow/versions/1", "", ""); code != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	// Every ingress sees the retirement once its watch delivers it.
	testutil.Eventually(t, 5*time.Second, func() bool {
		code, _ := do(t, "POST", s.URL+"/v1/models/slow/jobs", slow, nil)
		return code == http.StatusNotFound
	}, "a retired model kept taking jobs")
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			if rec, err := s.waitErr(id); err != nil || rec.Status != "succeeded" {
				t.Errorf("queued job %s of the deleted version: %+v %v", id, rec, err)
			}
		})
	}
	wg.Wait()
	testutil.Eventually(t, 20*time.Second, func() bool {
		_, err := s.NATS.JS.Consumer(t.Context(), jetstream.DefaultTopology().BatchesStream(), jetstream.WorkerConsumer("slow"))
		return err != nil
	}, "the drained version's consumers were never removed")
}

// Bad bodies are refused with a 400 that names the field, and change
// nothing; the routes need the admin scope.
func TestRegistryRefusesBadBodies(t *testing.T) {
	s := startStack(t, false, func(c *config.Config) { c.Registry = true })
	call := bearerCaller(t, s.URL)
	for _, tc := range []struct{ path, body, want string }{
		{"/v1/models/x", `{"name":"x","runner":{"builtin":"simple"},"batching":{"max_batch":1}}`, "max_batch"},
		{"/v1/models/x", `{"name":"x","runner":{"builtin":"simple"},"batching":{"max_batch_size":0,"preferred_batch_sizes":[99]}}`, "preferred_batch_sizes"},
		{"/v1/models/x", `{"name":"y","runner":{"builtin":"simple"}}`, "name"},
		{"/v1/models/x", `[1,2]`, "JSON object"},
		{"/v1/models/x/versions/2", `{"name":"x","version":"3","runner":{"builtin":"simple"}}`, "version"},
		{"/v1/models/simple", `{"split":{"1":50,"7":50}}`, "split"},
		{"/v1/models/simple", `{"default_version":"9"}`, "default"},
		{"/v1/models/x/versions/A.B", `{"name":"x","runner":{"builtin":"simple"}}`, "version"},
	} {
		code, _, body := call("PUT", tc.path, "", tc.body)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("PUT %s %s: %d %s, want 400 naming %q", tc.path, tc.body, code, body, tc.want)
		}
	}
	if code, _, body := call("POST", "/v1/models/x/jobs", "", `{"inputs":[]}`); code != http.StatusNotFound {
		t.Errorf("a refused model exists: %d %s", code, body)
	}
	if code, _, _ := call("DELETE", "/v1/models/nope", "", ""); code != http.StatusNotFound {
		t.Errorf("DELETE of a missing model: %d", code)
	}
}
