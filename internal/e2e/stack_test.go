package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/testutil"
)

// TestSimpleConcurrent posts many `simple` jobs at once, through both results
// backends, and checks every output value.
func TestSimpleConcurrent(t *testing.T) {
	for _, backend := range []string{"kv", "redis"} {
		t.Run(backend, func(t *testing.T) {
			s := startStack(t, backend == "redis", nil)
			const jobs = 200
			var wg sync.WaitGroup
			errs := make(chan error, jobs)
			sem := make(chan struct{}, 32)
			for n := range jobs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem <- struct{}{}
					defer func() { <-sem }()
					a, b := make([]int32, 16), make([]int32, 16)
					for i := range a {
						a[i], b[i] = rand.Int32N(1<<20)-1<<19, rand.Int32N(1<<20)-1<<19
					}
					acc := s.submit(t, "simple", simpleBody(a, b))
					rec := s.wait(t, acc.ID)
					if err := checkSimple(rec, a, b); err != nil {
						errs <- fmt.Errorf("job %d (%s): %w", n, acc.ID, err)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func checkSimple(rec jobRecord, a, b []int32) error {
	if rec.Status != "succeeded" || rec.Result == nil {
		return fmt.Errorf("status %s, error %+v", rec.Status, rec.Error)
	}
	if rec.Result.ModelName != "simple" || rec.Result.ID != rec.ID || len(rec.Result.Outputs) != 2 {
		return fmt.Errorf("result %+v", rec.Result)
	}
	for _, o := range rec.Result.Outputs {
		got, err := ints(o.Data)
		if err != nil {
			return err
		}
		want := make([]int32, 16)
		for i := range want {
			if o.Name == "OUTPUT0" {
				want[i] = a[i] + b[i]
			} else {
				want[i] = a[i] - b[i]
			}
		}
		if o.Datatype != "INT32" || !slices.Equal(o.Shape, []int64{1, 16}) || !slices.Equal(got, want) {
			return fmt.Errorf("output %s: %s %v = %v, want %v", o.Name, o.Datatype, o.Shape, got, want)
		}
	}
	return nil
}

// TestReadmeSession is the README's curl session: INPUT0=[1..16], INPUT1=[1]*16.
func TestReadmeSession(t *testing.T) {
	s := startStack(t, false, nil)
	body := `{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},` +
		`{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}`
	acc := s.submit(t, "simple", body)
	if acc.Status != "queued" || acc.StreamSubject != "inferq.tokens.default."+acc.ID || acc.Links.Self != "/v1/jobs/"+acc.ID {
		t.Fatalf("accepted body %+v", acc)
	}
	rec := s.wait(t, acc.ID)
	a := []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	b := slices.Repeat([]int32{1}, 16)
	if err := checkSimple(rec, a, b); err != nil {
		t.Fatal(err)
	}
	if rec.Attempts != 1 || rec.Version != "1" {
		t.Errorf("record %+v", rec)
	}
}

// TestIdentityRagged sends identity jobs of different lengths and datatypes
// at once, so they share padded batches, and checks each comes back exactly.
func TestIdentityRagged(t *testing.T) {
	s := startStack(t, false, nil)
	cases := []struct {
		datatype string
		data     string
		n        int
	}{
		{"FP32", `[1.5,-2.25,3]`, 3},
		{"FP32", `[7]`, 1},
		{"INT64", `[9007199254740993,-1,0,5,6]`, 5},
		{"BYTES", `["héllo","","a\"b"]`, 3},
		{"BOOL", `[true,false]`, 2},
	}
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"inputs":[{"name":"INPUT0","shape":[1,%d],"datatype":"%s","data":%s}]}`, c.n, c.datatype, c.data)
			rec := s.wait(t, s.submit(t, "identity", body).ID)
			if rec.Status != "succeeded" || rec.Result == nil || len(rec.Result.Outputs) != 1 {
				t.Errorf("%s: %+v", c.datatype, rec)
				return
			}
			o := rec.Result.Outputs[0]
			if o.Name != "OUTPUT0" || o.Datatype != c.datatype || !slices.Equal(o.Shape, []int64{1, int64(c.n)}) || !jsonEqual(o.Data, c.data) {
				t.Errorf("%s: output %s %s %v %s, want %s", c.datatype, o.Name, o.Datatype, o.Shape, o.Data, c.data)
			}
		}()
	}
	wg.Wait()
}

func jsonEqual(a json.RawMessage, b string) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return string(xs) == string(ys)
}

// TestRepeatTokensOverNATS subscribes to a job's token subject, as any NATS
// client would, and checks the tokens arrive in order and make the result.
func TestRepeatTokensOverNATS(t *testing.T) {
	s := startStack(t, false, nil)
	sub, err := s.NATS.Conn.SubscribeSync("inferq.tokens.default.>")
	if err != nil {
		t.Fatal(err)
	}
	acc := s.submit(t, "repeat", `{"text_input":"abc","parameters":{"max_tokens":7}}`)
	rec := s.wait(t, acc.ID)
	if rec.Status != "succeeded" {
		t.Fatalf("record %+v", rec)
	}
	var text strings.Builder
	for seq := uint64(1); seq <= 7; seq++ {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("token %d: %v", seq, err)
		}
		var tok natsToken
		if err := json.Unmarshal(msg.Data, &tok); err != nil {
			t.Fatal(err)
		}
		if msg.Subject != acc.StreamSubject || tok.Job != acc.ID || tok.Seq != seq || tok.Final != (seq == 7) ||
			msg.Header.Get("Inferq-Seq") != fmt.Sprint(seq) {
			t.Fatalf("token %d: subject %s header %v body %+v", seq, msg.Subject, msg.Header, tok)
		}
		text.WriteString(tok.Text)
	}
	if text.String() != "abcabca" {
		t.Errorf("tokens %q", text.String())
	}
	var out []string
	if err := json.Unmarshal(rec.Result.Outputs[0].Data, &out); err != nil || len(out) != 1 || out[0] != "abcabca" {
		t.Errorf("text_output %s", rec.Result.Outputs[0].Data)
	}
	// The same tokens are kept in INFERQ_TOKENS for replay.
	info, err := s.NATS.JS.Stream(t.Context(), "INFERQ_TOKENS")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 7 {
		t.Errorf("INFERQ_TOKENS holds %d messages, want 7", n)
	}
}

// TestBadInputChangesNothing: every rejected request gets a clear 4xx and
// publishes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	s := startStack(t, false, nil)
	good0 := `{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}`
	good := `{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}`
	cases := []struct {
		name, model, body string
		status            int
		msg               string
	}{
		{"unknown model", "nope", `{}`, 404, `model "nope" not found`},
		{"not json", "simple", `{"inputs":`, 400, "request body"},
		{"missing input", "simple", `{"inputs":[` + good + `]}`, 400, `input "INPUT0": missing`},
		{"wrong shape", "simple", `{"inputs":[{"name":"INPUT0","shape":[1,15],"datatype":"INT32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},` + good + `]}`, 400, `expected shape [-1,16], got [1,15]`},
		{"wrong datatype", "simple", `{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"FP32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},` + good + `]}`, 400, `expected datatype INT32, got FP32`},
		{"short data", "simple", `{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,2]},` + good + `]}`, 400, `INPUT0`},
		{"unknown input", "simple", `{"inputs":[{"name":"X","shape":[1],"datatype":"INT32","data":[1]}]}`, 400, `input "X": not an input`},
		{"bad priority", "simple", `{"inputs":[` + good0 + `,` + good + `],"parameters":{"priority":7}}`, 400, `parameter "priority"`},
		{"fractional timeout", "simple", `{"inputs":[` + good0 + `,` + good + `],"parameters":{"timeout_ms":1.5}}`, 400, `parameter "timeout_ms"`},
		{"wrong version", "simple/versions/9", `{}`, 404, `has no version "9"`},
		{"text for tensor model", "simple", `{"text_input":"hi"}`, 400, "takes tensor inputs"},
		{"unknown field", "simple", `{"inptus":[]}`, 400, "unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			code, _ := do(t, "POST", s.URL+"/v1/models/"+c.model+"/jobs", c.body, &e)
			if code != c.status || !strings.Contains(e.Error.Message, c.msg) || e.Error.Code == "" {
				t.Errorf("status %d, error %+v; want %d containing %q", code, e.Error, c.status, c.msg)
			}
		})
	}
	info, err := s.NATS.JS.Stream(t.Context(), "INFERQ_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("INFERQ_JOBS holds %d jobs after only bad requests", n)
	}
	if code, _ := do(t, "GET", s.URL+"/v1/jobs/0000000000000000000000000a", nil, nil); code != http.StatusNotFound {
		t.Errorf("unknown job: status %d", code)
	}
	if code, _ := do(t, "GET", s.URL+"/v1/jobs/..%2f..%2fetc", nil, nil); code != http.StatusNotFound {
		t.Errorf("odd job id: status %d", code)
	}
	if code, _ := do(t, "POST", s.URL+"/v1/models/simple/jobs", strings.Repeat(" ", int(s.Cfg.Ingress.MaxBodyBytes)+1)+"{}", nil); code != http.StatusRequestEntityTooLarge {
		t.Errorf("huge body: status %d", code)
	}
}

// TestLongPollReturnsAtDeadline: ?wait= returns the current record when the
// wait ends before the job does.
func TestLongPollReturnsAtDeadline(t *testing.T) {
	s := startStack(t, false, nil)
	acc := s.submit(t, "repeat", `{"text_input":"x","parameters":{"max_tokens":20,"interval_ms":100}}`)
	start := time.Now()
	var rec jobRecord
	if code, _ := do(t, "GET", s.URL+"/v1/jobs/"+acc.ID+"?wait=300ms", nil, &rec); code != 200 {
		t.Fatalf("status %d", code)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 1500*time.Millisecond {
		t.Errorf("wait=300ms returned after %v", el)
	}
	if rec.Status != "queued" && rec.Status != "running" {
		t.Errorf("status %s before the job could finish", rec.Status)
	}
	if rec = s.wait(t, acc.ID); rec.Status != "succeeded" {
		t.Errorf("final %+v", rec)
	}
}

// TestRunningReportedForLongBatches: a batch that runs longer than the
// worker's RunningAfter shows its jobs running while it runs (short ones go
// straight from queued to their end).
func TestRunningReportedForLongBatches(t *testing.T) {
	s := startStack(t, false, func(c *config.Config) {
		m, _ := c.Model("simgpu")
		m.Runner.Params = map[string]any{"a": "1s", "b": "0s"}
	})
	acc := s.submit(t, "simgpu", `{"inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"INT32","data":[1,2]}]}`)
	var rec jobRecord
	testutil.Eventually(t, 5*time.Second, func() bool {
		if code, _ := do(t, "GET", s.URL+"/v1/jobs/"+acc.ID, nil, &rec); code != 200 {
			t.Fatalf("status %d", code)
		}
		return rec.Status == "running"
	}, "job reported running while its batch runs")
	if rec = s.wait(t, acc.ID); rec.Status != "succeeded" {
		t.Fatalf("record %+v", rec)
	}
}
