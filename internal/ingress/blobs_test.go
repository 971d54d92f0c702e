package ingress

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/blob"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/internal/wire"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// fp32Request is an identity request of n FP32 values k/4 and their raw
// little-endian bytes.
func fp32Request(n int) (string, []byte) {
	var sb strings.Builder
	raw := make([]byte, 4*n)
	sb.WriteString(`{"inputs":[{"name":"INPUT0","shape":[1,` + strconv.Itoa(n) + `],"datatype":"FP32","data":[`)
	for k := range n {
		if k > 0 {
			sb.WriteByte(',')
		}
		f := float32(k) / 4
		sb.WriteString(strconv.FormatFloat(float64(f), 'g', -1, 32))
		binary.LittleEndian.PutUint32(raw[4*k:], math.Float32bits(f))
	}
	sb.WriteString("]}]}")
	return sb.String(), raw
}

// TestLargeInputStoredByReference: an input over blobs.threshold_bytes is
// put in the blobs bucket before the job is published, and the job in
// INFERQ_JOBS carries its reference instead of the bytes.
func TestLargeInputStoredByReference(t *testing.T) {
	n := testutil.StartNATS(t)
	i, url := startIngress(t, n, nil)
	body, raw := fp32Request(600_000) // 2.4 MB of FP32
	resp, err := http.Post(url+"/v1/models/identity/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var acc Accepted
	if err := json.NewDecoder(resp.Body).Decode(&acc); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("submit: %d %v", resp.StatusCode, err)
	}
	ctx := testutil.Context(t)
	s, err := n.JS.Stream(ctx, i.opt.Topology.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, i.opt.Topology.JobLookupSubject(acc.ID))
	if err != nil {
		t.Fatal(err)
	}
	var job inferqpb.Job
	if err := proto.Unmarshal(msg.Data, &job); err != nil {
		t.Fatal(err)
	}
	in := job.Inputs[0]
	if in.Ref == nil || len(in.Data) != 0 || in.Ref.Name != blob.InputName(acc.ID, 0) || in.Ref.Size != uint64(len(raw)) {
		t.Fatalf("job input: ref %v, %d bytes inline; want a reference to %d bytes", in.Ref, len(in.Data), len(raw))
	}
	got, err := i.opt.Blobs.Get(ctx, in.Ref)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("blob: %d bytes, %v", len(got), err)
	}
}

// TestBlobPutFailureIs503: when the blobs bucket cannot take an input the
// submission is 503 unavailable with Retry-After (transient), and no job
// is stored.
func TestBlobPutFailureIs503(t *testing.T) {
	n := testutil.StartNATS(t)
	i, url := startIngress(t, n, nil)
	ctx := testutil.Context(t)
	if err := n.JS.DeleteObjectStore(ctx, i.opt.Topology.BlobsBucket()); err != nil {
		t.Fatal(err)
	}
	body, _ := fp32Request(100_000)
	resp, err := http.Post(url+"/v1/models/identity/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	if resp.StatusCode != http.StatusServiceUnavailable || answer.Error.Code != "unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("blob put failed: %d %+v Retry-After %q; want 503 unavailable", resp.StatusCode, answer.Error, resp.Header.Get("Retry-After"))
	}
	s, err := n.JS.Stream(ctx, i.opt.Topology.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("jobs stream holds %d messages after a failed blob put (%v)", info.State.Msgs, err)
	}
}

// TestResolveResult: a stored result whose output is by reference comes
// back as an ordinary OIP response with the data; one without references
// comes back byte for byte.
func TestResolveResult(t *testing.T) {
	n := testutil.StartNATS(t)
	i, _ := startIngress(t, n, nil)
	ctx := testutil.Context(t)
	_, raw := fp32Request(5)
	ref, err := i.opt.Blobs.Put(ctx, "job/1/out/OUTPUT0", raw)
	if err != nil {
		t.Fatal(err)
	}
	small := &inferqpb.Tensor{Name: "OUTPUT1", Datatype: "INT32", Shape: []int64{1}, Data: []byte{7, 0, 0, 0}}
	stored, err := wire.ResponseJSON("identity", "1", "req-1", []*inferqpb.Tensor{
		{Name: "OUTPUT0", Datatype: "FP32", Shape: []int64{1, 5}, Ref: ref}, small})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(stored, []byte(`"inferq_blob"`)) || bytes.Contains(stored, []byte(`"data":null`)) {
		t.Fatalf("stored result %s: want a reference and no data", stored)
	}
	got, err := i.resolveResult(ctx, stored)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model_name":"identity","model_version":"1","id":"req-1","outputs":[` +
		`{"name":"OUTPUT0","shape":[1,5],"datatype":"FP32","data":[0,0.25,0.5,0.75,1]},` +
		`{"name":"OUTPUT1","shape":[1],"datatype":"INT32","data":[7]}]}`
	if string(got) != want {
		t.Fatalf("resolved:\n%s\nwant\n%s", got, want)
	}
	plain, _ := wire.ResponseJSON("identity", "1", "req-1", []*inferqpb.Tensor{small})
	if got, err := i.resolveResult(ctx, plain); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("result without references: %s, %v", got, err)
	}
	ref.Sha256 = blob.Digest(nil)
	bad, _ := wire.ResponseJSON("identity", "1", "req-1", []*inferqpb.Tensor{{Name: "OUTPUT0", Datatype: "FP32", Shape: []int64{1, 5}, Ref: ref}})
	if _, err := i.resolveResult(ctx, bad); !blob.Permanent(err) {
		t.Fatalf("result with a wrong digest: %v, want a permanent blob error", err)
	}
}
