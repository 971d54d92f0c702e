package agent

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// TestKServeRefusedBatchIsHalved: when the backend refuses a batch (400)
// because of one job, the runner halves it until that job stands alone:
// it ends backend_rejected and the other jobs get their outputs. The
// server here refuses any request holding the value 13, answering the
// rest as identity.
func TestKServeRefusedBatchIsHalved(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/health/ready" {
			return
		}
		if r.URL.Path != "/v2/models/echo/infer" {
			http.NotFound(w, r)
			return
		}
		requests.Add(1)
		var req oipRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Inputs) != 1 {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		var vals []int32
		_ = json.Unmarshal(req.Inputs[0].Data, &vals)
		for _, v := range vals {
			if v == 13 {
				http.Error(w, `{"error":"input \"INPUT0\": 13 is unlucky"}`, http.StatusBadRequest)
				return
			}
		}
		in := req.Inputs[0]
		_ = json.NewEncoder(w).Encode(oipAnswer{Outputs: []oipTensor{{Name: "OUTPUT0", Shape: in.Shape, Datatype: in.Datatype, Data: in.Data}}})
	}))
	defer srv.Close()
	m := &config.Model{Name: "echo", Kind: config.KindTensor,
		Inputs:  []config.Tensor{{Name: "INPUT0", Datatype: "INT32", Dims: []int64{1}}},
		Outputs: []config.Tensor{{Name: "OUTPUT0", Datatype: "INT32", Dims: []int64{1}}},
		Runner: config.Runner{HTTP: &config.HTTPBackend{Protocol: config.ProtocolKServeV2, URL: srv.URL, Model: "echo",
			Concurrency: 2, Timeout: config.D(5 * time.Second), HealthInterval: config.D(time.Second)}}}
	r, err := newHTTPRunner(m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	vals := []int32{1, 2, 13, 4}
	b := &inferqpb.Batch{Id: "b1", Inputs: []*inferqpb.Tensor{{Name: "INPUT0", Datatype: "INT32", Shape: []int64{4, 1}}}}
	for i, v := range vals {
		b.Inputs[0].Data = binary.LittleEndian.AppendUint32(b.Inputs[0].Data, uint32(v))
		b.Jobs = append(b.Jobs, &inferqpb.BatchJob{Id: string(rune('a' + i)), RowStart: int64(i), RowEnd: int64(i + 1)})
	}
	res, err := r.Run(t.Context(), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Jobs) != 4 {
		t.Fatalf("results %v", res.Jobs)
	}
	for i, jr := range res.Jobs {
		if vals[i] == 13 {
			if jr.Error == nil || jr.Error.Code != CodeBackendRejected || !strings.Contains(jr.Error.Message, "13 is unlucky") {
				t.Errorf("job %s: %v, want backend_rejected with the backend's message", jr.JobId, jr)
			}
			continue
		}
		if jr.Error != nil || len(jr.Outputs) != 1 || int32(binary.LittleEndian.Uint32(jr.Outputs[0].Data)) != vals[i] {
			t.Errorf("job %s: %v, want OUTPUT0 [%d]", jr.JobId, jr, vals[i])
		}
	}
	// The whole batch, its halves, and the refused half's halves.
	if n := requests.Load(); n != 5 {
		t.Errorf("%d infer requests, want 5", n)
	}
}

// TestSSEStreamChunks: text chunks go out one behind, the last one final,
// whether the finish reason comes with text, alone, or only [DONE] ends it.
func TestSSEStreamChunks(t *testing.T) {
	cases := map[string][]string{
		"finish with text": {`{"choices":[{"text":"a"}]}`, `{"choices":[{"text":"b","finish_reason":"length"}]}`},
		"finish alone":     {`{"choices":[{"text":"a"}]}`, `{"choices":[{"text":"b"}]}`, `{"choices":[{"text":"","finish_reason":"stop"}]}`, "[DONE]"},
		"done only":        {`{"choices":[{"text":"a"}]}`, `{"choices":[{"text":"b"}]}`, "[DONE]"},
	}
	for name, events := range cases {
		t.Run(name, func(t *testing.T) {
			var got []*inferqpb.TokenChunk
			s := sseStream{job: "j", emit: func(c *inferqpb.TokenChunk) error { got = append(got, c); return nil }}
			for _, e := range events {
				if err := s.event(e); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.flush(); err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0].Text != "a" || got[0].Seq != 1 || got[0].Final || got[1].Text != "b" || got[1].Seq != 2 || !got[1].Final {
				t.Errorf("chunks %v", got)
			}
			if s.text.String() != "ab" {
				t.Errorf("text %q", s.text.String())
			}
		})
	}
	s := sseStream{job: "j", emit: func(*inferqpb.TokenChunk) error { return nil }}
	if err := s.event(`{"error":{"message":"max_tokens too large","type":"invalid_request_error"}}`); err == nil ||
		!strings.Contains(err.Error(), "max_tokens too large") {
		t.Errorf("error event: %v", err)
	}
}
