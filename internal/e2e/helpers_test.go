package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/stack/stacktest"
	"github.com/inferq/inferq/internal/testutil"
)

// Stack is a running in-process inferq with its API's base URL.
type Stack struct {
	URL  string
	NATS *testutil.NATS
	Cfg  *config.Config
}

// startStack runs every component against an embedded NATS server and,
// when withRedis, a real redis-server; it stops with the test.
func startStack(t testing.TB, withRedis bool, edit func(*config.Config)) *Stack {
	t.Helper()
	return startComponents(t, withRedis, stack.All, edit)
}

// startComponents is startStack with a chosen set of components.
func startComponents(t testing.TB, withRedis bool, comps stack.Components, edit func(*config.Config)) *Stack {
	t.Helper()
	n := testutil.StartNATS(t)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL = n.URL
	if withRedis {
		cfg.Redis.URL = testutil.StartRedis(t).URL
	}
	if edit != nil {
		edit(&cfg)
		if err := cfg.Finish(); err != nil {
			t.Fatal(err)
		}
	}
	url := stacktest.Start(t, &cfg, n.Conn, comps)
	return &Stack{URL: url, NATS: n, Cfg: &cfg}
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func do(t testing.TB, method, url string, body any, out any) (int, http.Header) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = bytes.NewBufferString(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: status %d, body %q: %v", method, url, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode, resp.Header
}

type tensorJSON struct {
	Name     string          `json:"name"`
	Shape    []int64         `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data"`
}

type jobRecord struct {
	ID       string `json:"id"`
	Model    string `json:"model"`
	Version  string `json:"version"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Error    *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Result *struct {
		ModelName string       `json:"model_name"`
		ID        string       `json:"id"`
		Outputs   []tensorJSON `json:"outputs"`
	} `json:"result"`
}

type accepted struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	StreamSubject string `json:"stream_subject"`
	Links         struct {
		Self string `json:"self"`
	} `json:"links"`
}

// submit posts a job and fails the test unless it is accepted.
func (s *Stack) submit(t testing.TB, model string, body any) accepted {
	t.Helper()
	var a accepted
	code, h := do(t, "POST", s.URL+"/v1/models/"+model+"/jobs", body, &a)
	if code != http.StatusAccepted || a.ID == "" || h.Get("Location") != "/v1/jobs/"+a.ID {
		t.Fatalf("submit %s: status %d, body %+v, Location %q", model, code, a, h.Get("Location"))
	}
	return a
}

// wait long-polls a job until it is terminal.
func (s *Stack) wait(t testing.TB, id string) jobRecord {
	t.Helper()
	rec, err := s.waitErr(id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// waitErr long-polls job id until it is terminal, for at most 30 s. It
// returns an error instead of failing the test, so goroutines other than the
// test's own can use it.
func (s *Stack) waitErr(id string) (jobRecord, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var rec jobRecord
		code, err := getJSON(s.URL+"/v1/jobs/"+id+"?wait=10s", &rec)
		if err != nil {
			return rec, fmt.Errorf("get job %s: %w", id, err)
		}
		if code != http.StatusOK {
			return rec, fmt.Errorf("get job %s: status %d", id, code)
		}
		switch rec.Status {
		case "succeeded", "failed", "cancelled", "expired":
			return rec, nil
		}
	}
	return jobRecord{}, fmt.Errorf("job %s not terminal after 30s", id)
}

func simpleBody(a, b []int32) map[string]any {
	return map[string]any{"inputs": []map[string]any{
		{"name": "INPUT0", "shape": []int{1, 16}, "datatype": "INT32", "data": a},
		{"name": "INPUT1", "shape": []int{1, 16}, "datatype": "INT32", "data": b},
	}}
}

func ints(raw json.RawMessage) ([]int32, error) {
	var v []int32
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("data %s: %w", raw, err)
	}
	return v, nil
}

func jetstreamOrdered(subject string) natsjs.OrderedConsumerConfig {
	return natsjs.OrderedConsumerConfig{FilterSubjects: []string{subject}}
}

// sentJob is a simple job a load loop had accepted, with its inputs.
type sentJob struct {
	id   string
	a, b []int32
}

// loadUntil posts simple jobs from `workers` goroutines until stop closes.
// A 503 (the broker refusing while something is down) promises nothing and
// is counted; any other non-202 answer fails the test.
func loadUntil(t *testing.T, s *Stack, workers int, stop <-chan struct{}) (good []sentJob, refused int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
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
					good = append(good, sentJob{acc.ID, a, b})
				case http.StatusServiceUnavailable:
					refused++
				default:
					t.Errorf("POST answered %d", code)
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return good, refused
}

// checkAll waits for every job and checks its outputs.
func checkAll(t *testing.T, s *Stack, jobs []sentJob) {
	t.Helper()
	if len(jobs) < 50 {
		t.Fatalf("only %d jobs accepted", len(jobs))
	}
	next := make(chan sentJob)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				rec, err := s.waitErr(j.id)
				if err == nil {
					err = checkSimple(rec, j.a, j.b)
				}
				if err != nil {
					t.Errorf("job %s: %v", j.id, err)
				}
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
}

// getJSON GETs url and decodes a JSON answer into out; it never fails the
// test itself, so any goroutine may call it.
func getJSON(url string, out any) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// natsToken is a token chunk as published on inferq.tokens.<tenant>.<job>.
type natsToken struct {
	Job   string `json:"job"`
	Seq   uint64 `json:"seq"`
	Text  string `json:"text"`
	Final bool   `json:"final"`
}

// bearerCaller sends requests to base with an optional bearer key and
// returns the status, headers and body (as much as arrived).
func bearerCaller(t *testing.T, base string) func(method, path, key, body string) (int, http.Header, string) {
	return func(method, path, key, body string) (int, http.Header, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body) // a cut stream still shows what came
		return resp.StatusCode, resp.Header, string(b)
	}
}

// natsAndRedis starts a NATS server and a redis-server (with its
// append-only file when aof, as in production) and returns the default
// config pointed at both.
func natsAndRedis(t *testing.T, aof bool) (*testutil.NATS, *testutil.Redis, config.Config) {
	t.Helper()
	n := testutil.StartNATS(t)
	var r *testutil.Redis
	if aof {
		r = testutil.StartRedisAOF(t)
	} else {
		r = testutil.StartRedis(t)
	}
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL, cfg.Redis.URL = n.URL, r.URL
	return n, r, cfg
}
