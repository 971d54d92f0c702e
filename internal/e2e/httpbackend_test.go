package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/worker/deepspeed_nats/agent"
)

// backendProxy is a real HTTP server in front of a backend stack: it counts
// the work requests (infer, completions) that reach the backend, answers
// the first fail503 of them 503 itself, and with auth set refuses requests
// without that Authorization header.
type backendProxy struct {
	URL     string
	fail503 atomic.Int32
	passed  atomic.Int32 // work requests passed to the backend
	refused atomic.Int32 // work requests answered 503 here
	auth    string
}

func newBackendProxy(t *testing.T, target string, auth string) *backendProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &backendProxy{auth: auth}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // pass server-sent events on at once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.auth != "" && r.Header.Get("Authorization") != p.auth {
			http.Error(w, `{"error":"missing or wrong credentials"}`, http.StatusUnauthorized)
			return
		}
		work := strings.HasSuffix(r.URL.Path, "/infer") || strings.HasSuffix(r.URL.Path, "/completions")
		if work {
			if p.fail503.Add(-1) >= 0 {
				p.refused.Add(1)
				http.Error(w, `{"error":"warming up"}`, http.StatusServiceUnavailable)
				return
			}
			p.passed.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// TestHTTPBackends serves models through the HTTP runner against a second,
// real inferq: kserve-v2 against its /v2 endpoint (identity with the binary
// extension, simple as JSON), openai against its /openai/v1 face (repeat).
// A 4xx ends a job backend_rejected without retry, two 503s are retried
// through redelivery, and a backend that is down keeps the worker not
// ready while the others are.
func TestHTTPBackends(t *testing.T) {
	back := startStack(t, false, nil) // identity, simple, simgpu, repeat
	authFile := filepath.Join(t.TempDir(), "backend-auth")
	if err := os.WriteFile(authFile, []byte("Bearer s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pxIdentity := newBackendProxy(t, back.URL, "")
	pxSimple := newBackendProxy(t, back.URL, "Bearer s3cret")
	pxStrict := newBackendProxy(t, back.URL, "")
	pxFlaky := newBackendProxy(t, back.URL, "")
	pxFlaky.fail503.Store(2)
	pxRepeat := newBackendProxy(t, back.URL, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there

	batching := config.Batching{MaxBatchSize: 8, MaxQueueDelay: config.D(300 * time.Millisecond)}
	int32s := func(name string, dims ...int64) config.Tensor {
		return config.Tensor{Name: name, Datatype: "INT32", Dims: dims}
	}
	simpleIO := func(m config.Model, dims ...int64) config.Model {
		m.Inputs = []config.Tensor{int32s("INPUT0", dims...), int32s("INPUT1", dims...)}
		m.Outputs = []config.Tensor{int32s("OUTPUT0", dims...), int32s("OUTPUT1", dims...)}
		return m
	}
	text := []config.Tensor{{Name: "text_input", Datatype: "BYTES", Dims: []int64{1}}}
	textOut := []config.Tensor{{Name: "text_output", Datatype: "BYTES", Dims: []int64{1}}}
	models := []config.Model{
		{Name: "remote-identity", Runner: config.Runner{HTTP: &config.HTTPBackend{Protocol: "kserve-v2", URL: pxIdentity.URL, Model: "identity", Binary: true}},
			Inputs: []config.Tensor{int32s("INPUT0", -1)}, Outputs: []config.Tensor{int32s("OUTPUT0", -1)},
			Batching: config.Batching{MaxBatchSize: 8, MaxQueueDelay: config.D(300 * time.Millisecond), Ragged: true}},
		simpleIO(config.Model{Name: "remote-simple", Batching: batching,
			Runner: config.Runner{HTTP: &config.HTTPBackend{Protocol: "kserve-v2", URL: pxSimple.URL, Model: "simple", Version: "1", AuthHeaderFile: authFile}}}, 16),
		// Any length passes here; simple's own [16] refuses all but 16.
		simpleIO(config.Model{Name: "remote-strict", Runner: config.Runner{HTTP: &config.HTTPBackend{Protocol: "kserve-v2", URL: pxStrict.URL, Model: "simple"}},
			Queue: config.Queue{MaxDeliver: 3, Backoff: []config.Duration{config.D(100 * time.Millisecond)}}}, -1),
		simpleIO(config.Model{Name: "remote-flaky", Runner: config.Runner{HTTP: &config.HTTPBackend{Protocol: "kserve-v2", URL: pxFlaky.URL, Model: "simple"}},
			Queue: config.Queue{MaxDeliver: 3, Backoff: []config.Duration{config.D(100 * time.Millisecond)}}}, 16),
		{Name: "remote-repeat", Kind: "generate", Inputs: text, Outputs: textOut, MaxTokensLimit: 100000, Batching: batching,
			Runner: config.Runner{HTTP: &config.HTTPBackend{Protocol: "openai", URL: pxRepeat.URL + "/openai", Model: "repeat", Concurrency: 3}}},
		simpleIO(config.Model{Name: "remote-down", Runner: config.Runner{HTTP: &config.HTTPBackend{Protocol: "kserve-v2", URL: downURL, Model: "simple"}}}, 16),
	}
	front := startComponents(t, false, brokerOnly, func(c *config.Config) { c.Models = models })
	w := startAgent(t, front, "http-worker", front.Cfg.Models, nil)
	testutil.Eventually(t, 15*time.Second, func() bool {
		err := w.Ready(t.Context())
		return err != nil && strings.HasSuffix(err.Error(), ": remote-down")
	}, "every backend but remote-down ready: %v", w.Ready(t.Context()))

	t.Run("kserve-v2 binary, ragged batch", func(t *testing.T) {
		var ids []string
		for k := range 6 {
			data := make([]int32, k+1) // lengths 1..6: padded in the batch, cropped back
			for i := range data {
				data[i] = int32(100*k + i - 3)
			}
			ids = append(ids, front.submit(t, "remote-identity", map[string]any{"inputs": []map[string]any{
				{"name": "INPUT0", "shape": []int{1, len(data)}, "datatype": "INT32", "data": data}}}).ID)
		}
		for k, id := range ids {
			rec := front.wait(t, id)
			want := make([]string, k+1)
			for i := range want {
				want[i] = fmt.Sprint(100*k + i - 3)
			}
			if rec.Status != "succeeded" || len(rec.Result.Outputs) != 1 || rec.Result.Outputs[0].Name != "OUTPUT0" ||
				compact(rec.Result.Outputs[0].Data) != "["+strings.Join(want, ",")+"]" ||
				fmt.Sprint(rec.Result.Outputs[0].Shape) != fmt.Sprintf("[1 %d]", k+1) {
				t.Errorf("job %d: %+v", k, rec)
			}
		}
		if n := pxIdentity.passed.Load(); n < 1 || n >= 6 {
			t.Errorf("6 jobs reached the backend in %d infer requests, want them batched", n)
		}
	})

	t.Run("kserve-v2 json with auth header", func(t *testing.T) {
		ids := map[int]string{}
		for k := range 5 {
			a, b := make([]int32, 16), make([]int32, 16)
			for i := range a {
				a[i], b[i] = int32(k*i), int32(i-k)
			}
			ids[k] = front.submit(t, "remote-simple", simpleBody(a, b)).ID
		}
		for k, id := range ids {
			rec := front.wait(t, id)
			var sum, diff []string
			for i := range 16 {
				sum, diff = append(sum, fmt.Sprint(k*i+i-k)), append(diff, fmt.Sprint(k*i-(i-k)))
			}
			if rec.Status != "succeeded" || len(rec.Result.Outputs) != 2 ||
				compact(rec.Result.Outputs[0].Data) != "["+strings.Join(sum, ",")+"]" ||
				compact(rec.Result.Outputs[1].Data) != "["+strings.Join(diff, ",")+"]" {
				t.Errorf("job %d: %+v", k, rec)
			}
		}
		if n := pxSimple.passed.Load(); n < 1 || n >= 5 {
			t.Errorf("5 jobs reached the backend in %d infer requests, want them batched", n)
		}
	})

	t.Run("4xx fails the job without retry", func(t *testing.T) {
		four := []int32{1, 2, 3, 4}
		bad := front.submit(t, "remote-strict", map[string]any{"inputs": []map[string]any{
			{"name": "INPUT0", "shape": []int{1, 4}, "datatype": "INT32", "data": four},
			{"name": "INPUT1", "shape": []int{1, 4}, "datatype": "INT32", "data": four}}})
		rec := front.wait(t, bad.ID)
		if rec.Status != "failed" || rec.Error == nil || rec.Error.Code != agent.CodeBackendRejected ||
			!strings.Contains(rec.Error.Message, "400") || !strings.Contains(rec.Error.Message, "INPUT0") || rec.Attempts != 1 {
			t.Errorf("refused job: %+v (error %+v)", rec, rec.Error)
		}
		if n := pxStrict.passed.Load(); n != 1 {
			t.Errorf("the refused job reached the backend %d times, want once", n)
		}
		good := front.submit(t, "remote-strict", simpleBody(make([]int32, 16), make([]int32, 16)))
		if rec := front.wait(t, good.ID); rec.Status != "succeeded" {
			t.Errorf("a job of the right shape after it: %+v", rec)
		}
	})

	t.Run("503 twice then 200 succeeds by redelivery", func(t *testing.T) {
		a, b := make([]int32, 16), make([]int32, 16)
		for i := range a {
			a[i], b[i] = 7, int32(i)
		}
		rec := front.wait(t, front.submit(t, "remote-flaky", simpleBody(a, b)).ID)
		// Redeliveries are the same attempt (attempts counts replays).
		if rec.Status != "succeeded" || rec.Attempts != 1 || compact(rec.Result.Outputs[0].Data) != "[7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22]" {
			t.Errorf("job after two 503s: %+v (error %+v)", rec, rec.Error)
		}
		if r, p := pxFlaky.refused.Load(), pxFlaky.passed.Load(); r != 2 || p != 1 {
			t.Errorf("backend saw %d refused and %d passed infer requests, want 2 and 1", r, p)
		}
	})

	t.Run("openai streams tokens", func(t *testing.T) {
		sub, err := front.NATS.Conn.SubscribeSync("inferq.tokens.default.>")
		if err != nil {
			t.Fatal(err)
		}
		prompts := map[string]string{}
		for k, p := range []string{"abc", "xy", "hello", "q"} {
			acc := front.submit(t, "remote-repeat", fmt.Sprintf(`{"text_input":%q,"parameters":{"max_tokens":%d}}`, p, 5+k))
			prompts[acc.ID] = strings.Repeat(p, 10)[:5+k]
		}
		for id, want := range prompts {
			if got := generated(t, front.wait(t, id)); got != want {
				t.Errorf("job %s: text %q, want %q", id, got, want)
			}
		}
		streamed := map[string]*strings.Builder{}
		seqs := map[string][]uint64{}
		final := map[string]bool{}
		for len(final) < len(prompts) {
			msg, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("tokens: %v (have %v)", err, seqs)
			}
			var tok natsToken
			if err := json.Unmarshal(msg.Data, &tok); err != nil {
				t.Fatal(err)
			}
			// A stream the backend broke off is run again (a redelivery of
			// the same attempt) and its chunks come again from seq 1: a live
			// reader starts over, as docs/architecture.md tells readers to.
			if streamed[tok.Job] == nil || tok.Seq == 1 {
				streamed[tok.Job], seqs[tok.Job] = &strings.Builder{}, nil
				delete(final, tok.Job)
			}
			streamed[tok.Job].WriteString(tok.Text)
			seqs[tok.Job] = append(seqs[tok.Job], tok.Seq)
			if tok.Final {
				final[tok.Job] = true
			}
		}
		for id, want := range prompts {
			n := uint64(len(want))
			wantSeqs := make([]uint64, n)
			for i := range wantSeqs {
				wantSeqs[i] = uint64(i + 1)
			}
			if streamed[id] == nil || streamed[id].String() != want || !slices.Equal(seqs[id], wantSeqs) || !final[id] {
				t.Errorf("job %s: streamed %v seqs %v final %v, want %q", id, streamed[id], seqs[id], final[id], want)
			}
		}
		// Over the backend's max_tokens limit (4096): refused, not retried.
		before := pxRepeat.passed.Load()
		rec := front.wait(t, front.submit(t, "remote-repeat", `{"text_input":"a","parameters":{"max_tokens":5000}}`).ID)
		if rec.Status != "failed" || rec.Error == nil || rec.Error.Code != agent.CodeBackendRejected ||
			!strings.Contains(rec.Error.Message, "max_tokens") || rec.Attempts != 1 {
			t.Errorf("job over the backend's limit: %+v (error %+v)", rec, rec.Error)
		}
		if n := pxRepeat.passed.Load() - before; n != 1 {
			t.Errorf("the refused completion reached the backend %d times, want once", n)
		}
	})

	t.Run("a backend that is down keeps its worker not ready", func(t *testing.T) {
		kv, err := front.NATS.JS.KeyValue(t.Context(), stack.Topology(front.Cfg).WorkersBucket())
		if err != nil {
			t.Fatal(err)
		}
		beat := func(model string) agent.Heartbeat {
			var hb agent.Heartbeat
			e, err := kv.Get(t.Context(), agent.HeartbeatKey(model, "http-worker"))
			if err == nil {
				_ = json.Unmarshal(e.Value(), &hb)
			}
			return hb
		}
		testutil.Eventually(t, 5*time.Second, func() bool { return beat("remote-simple").Ready },
			"remote-simple's heartbeat %+v, want ready", beat("remote-simple"))
		time.Sleep(1500 * time.Millisecond) // more than one health check later
		if hb := beat("remote-down"); hb.Ready || hb.Model != "remote-down" {
			t.Errorf("remote-down's heartbeat %+v, want present and not ready", hb)
		}
		if err := w.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "remote-down") {
			t.Errorf("worker readiness with remote-down's backend down: %v", err)
		}
	})
}

// compact is JSON without spaces, for comparing data arrays.
func compact(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
