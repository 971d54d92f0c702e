package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/blob"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/jobid"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// fp32Body is an identity request of n FP32 values (exact in JSON, short
// enough that 16 MiB of them stay under the 64 MiB body limit) and the
// values themselves.
func fp32Body(n int) ([]byte, []float32) {
	want := make([]float32, n)
	b := make([]byte, 0, 11*n+128)
	b = fmt.Appendf(b, `{"inputs":[{"name":"INPUT0","shape":[1,%d],"datatype":"FP32","data":[`, n)
	for i := range want {
		want[i] = float32(i%65536)*0.125 - 4096
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(want[i]), 'g', -1, 32)
	}
	return append(b, "]}]}"...), want
}

// post sends body with the given headers and returns the answer.
func post(t testing.TB, url string, body []byte, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k := 0; k+1 < len(header); k += 2 {
		req.Header.Set(header[k], header[k+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// checkFP32 fails the test unless outputs hold OUTPUT0 with exactly want.
func checkFP32(t testing.TB, what string, outputs []tensorJSON, want []float32) {
	t.Helper()
	if len(outputs) != 1 || outputs[0].Name != "OUTPUT0" || outputs[0].Datatype != "FP32" {
		t.Fatalf("%s: outputs %d, first %+v", what, len(outputs), outputs)
	}
	var got []float32
	if err := json.Unmarshal(outputs[0].Data, &got); err != nil {
		t.Fatalf("%s: data: %v", what, err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: value %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

// blobExists reports whether the stack's blobs bucket holds name.
func blobExists(t testing.TB, s *Stack, name string) bool {
	t.Helper()
	obs, err := s.NATS.JS.ObjectStore(context.Background(), jetstream.DefaultTopology().BlobsBucket())
	if err != nil {
		t.Fatal(err)
	}
	_, err = obs.GetInfo(context.Background(), name)
	return err == nil
}

// TestLargeTensorsByReference: FP32 jobs of 2 MB and 16 MiB, far over NATS's
// 1 MB max payload, go through identity in both results stores with
// bit-exact outputs. Input and output travel through the blobs bucket; the
// client sees ordinary JSON from GET, and for the 2 MB job also from
// `Prefer: wait`, the synchronous /v2 infer route and the SSE result event.
func TestLargeTensorsByReference(t *testing.T) {
	for _, backend := range []string{"kv", "redis"} {
		t.Run(backend, func(t *testing.T) {
			s := startStack(t, backend == "redis", nil)
			for _, size := range []int{2_000_000, 16 << 20} {
				body, want := fp32Body(size / 4)
				var a accepted
				code, out := post(t, s.URL+"/v1/models/identity/jobs", body)
				if err := json.Unmarshal(out, &a); code != http.StatusAccepted || err != nil {
					t.Fatalf("submit %d bytes: %d %.300s", size, code, out)
				}
				rec := s.wait(t, a.ID)
				if rec.Status != "succeeded" || rec.Result == nil {
					t.Fatalf("%d bytes: %s %+v", size, rec.Status, rec.Error)
				}
				checkFP32(t, fmt.Sprintf("GET, %d bytes", size), rec.Result.Outputs, want)
				if !blobExists(t, s, blob.InputName(a.ID, 0)) || !blobExists(t, s, blob.OutputName(a.ID, 1, "OUTPUT0")) {
					t.Fatalf("%d bytes: input and output not kept in the blobs bucket", size)
				}
				if size > 2_000_000 {
					continue
				}
				// Prefer: wait answers the record.
				code, out = post(t, s.URL+"/v1/models/identity/jobs", body, "Prefer", "wait=30")
				var waited jobRecord
				if err := json.Unmarshal(out, &waited); code != http.StatusOK || err != nil || waited.Result == nil {
					t.Fatalf("Prefer: wait: %d %.300s", code, out)
				}
				checkFP32(t, "Prefer: wait", waited.Result.Outputs, want)
				// The synchronous /v2 route answers the inference response.
				code, out = post(t, s.URL+"/v2/models/identity/infer", body)
				var inferred struct {
					Outputs []tensorJSON `json:"outputs"`
				}
				if err := json.Unmarshal(out, &inferred); code != http.StatusOK || err != nil {
					t.Fatalf("/v2 infer: %d %.300s", code, out)
				}
				checkFP32(t, "/v2 infer", inferred.Outputs, want)
				// The SSE result event carries the whole record.
				checkFP32(t, "SSE result", sseResult(t, s, a.ID).Result.Outputs, want)
			}
		})
	}
}

// sseResult reads a finished job's event stream up to its result event.
func sseResult(t *testing.T, s *Stack, id string) jobRecord {
	t.Helper()
	resp, err := http.Get(s.URL + "/v1/jobs/" + id + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReaderSize(resp.Body, 1<<20)
	event := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("events of %s: no result event (%v)", id, err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "result":
			var rec jobRecord
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &rec); err != nil || rec.Result == nil {
				t.Fatalf("result event: %v %.300s", err, line)
			}
			return rec
		case strings.HasPrefix(line, "data: ") && event == "error":
			t.Fatalf("events of %s: %s", id, line)
		}
	}
}

// TestBodyOverMaxBodyBytesIs413: a body over ingress.max_body_bytes gets
// 413 too_large naming the limit, and no job.
func TestBodyOverMaxBodyBytesIs413(t *testing.T) {
	s := startStack(t, false, func(c *config.Config) { c.Ingress.MaxBodyBytes = 1 << 20 })
	body, _ := fp32Body(500_000) // about 4 MB of JSON
	code, out := post(t, s.URL+"/v1/models/identity/jobs", body)
	var answer struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(out, &answer)
	if code != http.StatusRequestEntityTooLarge || answer.Error.Code != "too_large" ||
		!strings.Contains(answer.Error.Message, strconv.Itoa(1<<20)) {
		t.Fatalf("body over the limit: %d %s; want 413 too_large naming %d", code, out, 1<<20)
	}
	info, err := s.NATS.JS.Stream(context.Background(), jetstream.DefaultTopology().JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	if st, err := info.Info(context.Background()); err != nil || st.State.Msgs != 0 {
		t.Fatalf("jobs stream holds %d messages after a refused body (%v)", st.State.Msgs, err)
	}
}

// TestBadBlobFailsJob: a job whose input reference does not match the
// blob (a wrong digest) or names no blob ends failed at once with a clear
// code and a dead letter, never retried or stuck.
func TestBadBlobFailsJob(t *testing.T) {
	s := startStack(t, false, nil)
	ctx := context.Background()
	topo := jetstream.DefaultTopology()
	data := bytes.Repeat([]byte{0, 0, 128, 63}, 1<<18) // 1 MiB of FP32 1.0
	tests := []struct {
		name, code string
		ref        func(id string) *inferqpb.BlobRef
	}{
		{"wrong digest", "blob_corrupt", func(id string) *inferqpb.BlobRef {
			ref, err := blob.New(s.NATS.JS, topo.BlobsBucket()).Put(ctx, blob.InputName(id, 0), data)
			if err != nil {
				t.Fatal(err)
			}
			ref.Sha256 = blob.Digest([]byte("something else"))
			return ref
		}},
		{"missing", "blob_missing", func(id string) *inferqpb.BlobRef {
			return &inferqpb.BlobRef{Name: blob.InputName(id, 0), Size: uint64(len(data)), Sha256: blob.Digest(data)}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			id := jobid.At(now)
			job := &inferqpb.Job{Id: id, Tenant: "default", Model: "identity", Version: "1", Priority: 1,
				CreatedUnixNano: now.UnixNano(), Attempt: 1,
				Inputs: []*inferqpb.Tensor{{Name: "INPUT0", Datatype: "FP32", Shape: []int64{1, int64(len(data) / 4)}, Ref: tc.ref(id)}}}
			if _, err := jetstream.Publish(ctx, s.NATS.JS, topo.JobSubject("identity", 1, id), job, id); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			rec := s.wait(t, id)
			if rec.Status != "failed" || rec.Error == nil || rec.Error.Code != tc.code || rec.Attempts != 1 {
				t.Fatalf("job with a bad blob: %s attempts %d error %+v; want failed %s", rec.Status, rec.Attempts, rec.Error, tc.code)
			}
			t.Logf("failed in %v: %s", time.Since(start).Round(time.Millisecond), rec.Error.Message)
		})
	}
}
