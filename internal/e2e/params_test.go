package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// TestRequestParametersValidated: each model's declared parameters are the
// only ones accepted, on every submission endpoint; a bad one is a 400
// naming it that queues nothing, and declared defaults reach the worker.
func TestRequestParametersValidated(t *testing.T) {
	s := startStack(t, false, func(c *config.Config) {
		c.Models = append(c.Models, config.Model{Name: "short", Runner: config.Runner{Builtin: "repeat"},
			Parameters: []config.Parameter{{Name: "max_tokens", Type: config.ParamInt, Default: 3}}})
	})
	stream, err := s.NATS.JS.Stream(t.Context(), stack.Topology(s.Cfg).JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	queued := func() uint64 {
		t.Helper()
		info, err := stream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	bad := []struct{ params, msg string }{
		{`{"max_tokens":-3}`, `parameter "max_tokens": -3 is below the minimum 1`},
		{`{"max_tokens":100000000}`, `parameter "max_tokens": 100000000 is above the maximum 4096`},
		{`{"max_tokenz":8}`, `parameter "max_tokenz" is not accepted by model "repeat"; accepted: max_tokens, interval_ms, priority, timeout_ms, stream, callback_url`},
		{`{"max_tokens":"8"}`, `parameter "max_tokens": want an integer, got "8"`},
		{`{"max_tokens":1.5}`, `parameter "max_tokens": want an integer, got 1.5`},
		{`{"interval_ms":3600000}`, `parameter "interval_ms": 3600000 is above the maximum 10000`},
	}
	for _, path := range []string{"/v1/models/repeat/jobs", "/v2/models/repeat/generate", "/v2/models/repeat/generate_stream", "/v2/models/repeat/infer"} {
		for _, c := range bad {
			body := `{"text_input":"hi","parameters":` + c.params + `}`
			if strings.HasSuffix(path, "/infer") {
				body = `{"inputs":[{"name":"text_input","shape":[1,1],"datatype":"BYTES","data":["hi"]}],"parameters":` + c.params + `}`
			}
			// /v1 answers {"error":{"code","message"}}, /v2 the OIP form {"error":"...","code"}.
			var raw struct {
				Error json.RawMessage `json:"error"`
				Code  string          `json:"code"`
			}
			code, _ := do(t, "POST", s.URL+path, body, &raw)
			var e struct{ Code, Message string }
			if strings.HasPrefix(path, "/v2/") {
				e.Code = raw.Code
				_ = json.Unmarshal(raw.Error, &e.Message)
			} else {
				_ = json.Unmarshal(raw.Error, &e)
			}
			if code != http.StatusBadRequest || e.Message != c.msg || e.Code != "invalid" {
				t.Errorf("%s %s: status %d, error %+v; want 400 %q", path, c.params, code, e, c.msg)
			}
		}
	}
	if n := queued(); n != 0 {
		t.Fatalf("%d jobs queued after only refused requests", n)
	}

	// Valid: accepted, and the job carries the default max_tokens (16).
	acc := s.submit(t, "repeat", `{"text_input":"ab","parameters":{"interval_ms":1,"priority":0}}`)
	if n := queued(); n != 1 {
		t.Fatalf("%d jobs queued after one accepted", n)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetMsg(t.Context(), info.State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	var job inferqpb.Job
	if err := proto.Unmarshal(msg.Data, &job); err != nil {
		t.Fatal(err)
	}
	var params map[string]any
	if err := json.Unmarshal(job.ParametersJson, &params); err != nil || job.Id != acc.ID ||
		params["max_tokens"] != float64(16) || params["interval_ms"] != float64(1) || params["priority"] != float64(0) {
		t.Errorf("queued job %s parameters %s (%v)", job.Id, job.ParametersJson, err)
	}
	if got := textOutput(t, s.wait(t, acc.ID)); got != strings.Repeat("ab", 8) {
		t.Errorf("repeat with the default max_tokens: %q, want 16 tokens", got)
	}
	// A declared default other than the runner's own is what the worker runs.
	if got := textOutput(t, s.wait(t, s.submit(t, "short", `{"text_input":"xyzw"}`).ID)); got != "xyz" {
		t.Errorf("short (default max_tokens 3): %q", got)
	}
}

func textOutput(t *testing.T, rec jobRecord) string {
	t.Helper()
	if rec.Status != "succeeded" || rec.Result == nil || len(rec.Result.Outputs) == 0 {
		t.Fatalf("record %+v", rec)
	}
	var texts []string
	if err := json.Unmarshal(rec.Result.Outputs[0].Data, &texts); err != nil || len(texts) != 1 {
		t.Fatalf("text_output %s: %v", rec.Result.Outputs[0].Data, err)
	}
	return texts[0]
}
