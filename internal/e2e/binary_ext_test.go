package e2e

import (
	"bytes"
	byteorder "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawTensor is one tensor of a binary-extension test: its JSON header
// fields and its bytes as Triton's client lays them out.
type rawTensor struct {
	datatype string
	n        int // elements in the one row
	data     []byte
}

func leFP32(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = byteorder.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func leInt64(vs ...int64) []byte {
	var b []byte
	for _, v := range vs {
		b = byteorder.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func leInt32(vs []int32) []byte {
	var b []byte
	for _, v := range vs {
		b = byteorder.LittleEndian.AppendUint32(b, uint32(v))
	}
	return b
}

// leBytes lays BYTES elements out as the extension does: each a 4-byte
// little-endian length, then its bytes.
func leBytes(vs ...string) []byte {
	var b []byte
	for _, v := range vs {
		b = byteorder.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

// identityTensors are the inputs the binary round trips send through
// identity: values JSON numbers would spell with care (negative zero, the
// smallest subnormal, the int64 extremes) and BYTES with a NUL and a quote.
var identityTensors = []rawTensor{
	{"FP32", 7, leFP32(1.5, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32, float32(math.Pi), 1e-7)},
	{"INT64", 5, leInt64(math.MinInt64, -1, 0, 1<<53+1, math.MaxInt64)},
	{"BYTES", 4, leBytes("héllo", "", "a\"b\x00c", strings.Repeat("z", 300))},
}

// tritonBody builds a request body byte by byte as Triton's HTTP client
// does: the JSON inference header, then each binary input's bytes in order.
func tritonBody(inputs string, extra string, tensors ...[]byte) ([]byte, int) {
	head := []byte(`{"inputs":[` + inputs + `]` + extra + `}`)
	body := append([]byte(nil), head...)
	for _, t := range tensors {
		body = append(body, t...)
	}
	return body, len(head)
}

// binaryInput is the JSON header entry of an input sent as binary data.
func binaryInput(name string, t rawTensor) string {
	return fmt.Sprintf(`{"name":%q,"shape":[1,%d],"datatype":%q,"parameters":{"binary_data_size":%d}}`, name, t.n, t.datatype, len(t.data))
}

// postRaw sends body with headers and returns the status, headers and body.
func postRaw(t *testing.T, method, url string, headers map[string]string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
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
	return resp.StatusCode, resp.Header, data
}

// binaryOutput is an output in a binary answer's JSON.
type binaryOutput struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters"`
	Data       json.RawMessage `json:"data"`
}

// splitBinary splits a framed answer into its JSON and the bytes after it,
// checking the extension's headers.
func splitBinary(t *testing.T, h http.Header, body []byte) ([]byte, []byte) {
	t.Helper()
	if ct := h.Get("Content-Type"); ct != "application/octet-stream" {
		t.Fatalf("Content-Type %q, body %q", ct, body)
	}
	n, err := strconv.Atoi(h.Get("Inference-Header-Content-Length"))
	if err != nil || n < 0 || n > len(body) {
		t.Fatalf("Inference-Header-Content-Length %q with a %d-byte body", h.Get("Inference-Header-Content-Length"), len(body))
	}
	return body[:n], body[n:]
}

// checkBinaryOutputs checks that outs carry exactly want, in order, as
// binary data sizes whose bytes follow in tail.
func checkBinaryOutputs(t *testing.T, outs []binaryOutput, tail []byte, want ...rawTensor) {
	t.Helper()
	if len(outs) != len(want) {
		t.Fatalf("%d outputs, want %d", len(outs), len(want))
	}
	off := 0
	for k, o := range outs {
		size, ok := o.Parameters["binary_data_size"].(float64)
		if !ok || o.Data != nil || o.Datatype != want[k].datatype || len(o.Shape) != 2 || o.Shape[1] != int64(want[k].n) {
			t.Fatalf("output %d: %+v", k, o)
		}
		if off+int(size) > len(tail) || !bytes.Equal(tail[off:off+int(size)], want[k].data) {
			t.Fatalf("output %d (%s): bytes differ from the input's\n got %v\nwant %v", k, o.Datatype, tail[off:min(off+int(size), len(tail))], want[k].data)
		}
		off += int(size)
	}
	if off != len(tail) {
		t.Fatalf("%d bytes after the outputs", len(tail)-off)
	}
}

// TestBinaryTensorExtension: requests built byte by byte as Triton's client
// builds them round-trip bit-exactly through identity, on /v2 infer and
// through job submission and GET, in both results stores; JSON and binary
// inputs mix; malformed binary bodies are 400s that queue nothing.
func TestBinaryTensorExtension(t *testing.T) {
	for _, withRedis := range []bool{false, true} {
		t.Run(map[bool]string{false: "kv", true: "redis"}[withRedis], func(t *testing.T) {
			s := startStack(t, withRedis, nil)
			for _, in := range identityTensors {
				t.Run(in.datatype, func(t *testing.T) {
					testBinaryRoundTrip(t, s, in)
				})
			}
		})
	}
}

func testBinaryRoundTrip(t *testing.T, s *Stack, in rawTensor) {
	// /v2 infer, the output asked for as binary as Triton's client asks.
	body, n := tritonBody(binaryInput("INPUT0", in), `,"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}}]`, in.data)
	code, h, resp := postRaw(t, "POST", s.URL+"/v2/models/identity/infer",
		map[string]string{"Inference-Header-Content-Length": strconv.Itoa(n), "Content-Type": "application/octet-stream"}, body)
	if code != http.StatusOK {
		t.Fatalf("infer: status %d, body %q", code, resp)
	}
	head, tail := splitBinary(t, h, resp)
	var inf struct {
		ModelName string         `json:"model_name"`
		Outputs   []binaryOutput `json:"outputs"`
	}
	if err := json.Unmarshal(head, &inf); err != nil || inf.ModelName != "identity" {
		t.Fatalf("infer JSON %s: %v", head, err)
	}
	checkBinaryOutputs(t, inf.Outputs, tail, in)

	// Job submission with no Content-Type (as Triton's client sends it),
	// then GET: as binary with Accept, as JSON numbers without.
	code, _, resp = postRaw(t, "POST", s.URL+"/v1/models/identity/jobs",
		map[string]string{"Inference-Header-Content-Length": strconv.Itoa(n)}, body)
	var acc accepted
	if code != http.StatusAccepted || json.Unmarshal(resp, &acc) != nil || acc.ID == "" {
		t.Fatalf("submit: status %d, body %q", code, resp)
	}
	rec := s.wait(t, acc.ID)
	if rec.Status != "succeeded" || rec.Result == nil || len(rec.Result.Outputs) != 1 {
		t.Fatalf("job %+v", rec)
	}
	if o := rec.Result.Outputs[0]; len(o.Data) == 0 || o.Datatype != in.datatype {
		t.Fatalf("JSON output without Accept: %+v", o)
	}
	code, h, resp = postRaw(t, "GET", s.URL+"/v1/jobs/"+acc.ID, map[string]string{"Accept": "application/octet-stream"}, nil)
	if code != http.StatusOK {
		t.Fatalf("GET: status %d, body %q", code, resp)
	}
	head, tail = splitBinary(t, h, resp)
	var got struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Result struct {
			Outputs []binaryOutput `json:"outputs"`
		} `json:"result"`
	}
	if err := json.Unmarshal(head, &got); err != nil || got.ID != acc.ID || got.Status != "succeeded" {
		t.Fatalf("record JSON %s: %v", head, err)
	}
	checkBinaryOutputs(t, got.Result.Outputs, tail, in)
	if !strings.Contains(h.Get("Vary"), "Accept") {
		t.Errorf("Vary %q: the record's form depends on Accept", h.Get("Vary"))
	}

	// `Prefer: wait` with binary_data_output answers the record in binary.
	body, n = tritonBody(binaryInput("INPUT0", in), `,"parameters":{"binary_data_output":true}`, in.data)
	code, h, resp = postRaw(t, "POST", s.URL+"/v1/models/identity/jobs",
		map[string]string{"Inference-Header-Content-Length": strconv.Itoa(n), "Content-Type": "application/octet-stream", "Prefer": "wait=20"}, body)
	if code != http.StatusOK {
		t.Fatalf("Prefer wait: status %d, body %q", code, resp)
	}
	head, tail = splitBinary(t, h, resp)
	got.Result.Outputs = nil
	if err := json.Unmarshal(head, &got); err != nil || got.Status != "succeeded" {
		t.Fatalf("record JSON %s: %v", head, err)
	}
	checkBinaryOutputs(t, got.Result.Outputs, tail, in)
}

// TestBinaryTensorMixedAndMalformed: simple takes one input as binary data
// and the other as JSON numbers, in either order; a JSON request asking for
// binary output gets it; malformed binary bodies are 400s naming the fault,
// and nothing reaches the jobs stream.
func TestBinaryTensorMixedAndMalformed(t *testing.T) {
	s := startStack(t, false, nil)
	a := []int32{5, -3, 7, 1, 0, 9, 2, 2, 100, -100, 4, 4, 8, 1, 6, math.MaxInt32 - 1000}
	b := []int32{1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987}
	sum, diff := make([]int32, 16), make([]int32, 16)
	for k := range a {
		sum[k], diff[k] = a[k]+b[k], a[k]-b[k]
	}
	bJSON, _ := json.Marshal(b)
	mixed, n := tritonBody(binaryInput("INPUT0", rawTensor{"INT32", 16, leInt32(a)})+
		`,{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":`+string(bJSON)+`}`,
		`,"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}},{"name":"OUTPUT1"}]`, leInt32(a))
	code, h, resp := postRaw(t, "POST", s.URL+"/v2/models/simple/infer",
		map[string]string{"Inference-Header-Content-Length": strconv.Itoa(n), "Content-Type": "application/octet-stream"}, mixed)
	if code != http.StatusOK {
		t.Fatalf("mixed: status %d, body %q", code, resp)
	}
	head, tail := splitBinary(t, h, resp)
	var inf struct {
		Outputs []binaryOutput `json:"outputs"`
	}
	if err := json.Unmarshal(head, &inf); err != nil || len(inf.Outputs) != 2 {
		t.Fatalf("mixed JSON %s: %v", head, err)
	}
	checkBinaryOutputs(t, inf.Outputs[:1], tail, rawTensor{"INT32", 16, leInt32(sum)})
	if got, err := ints(inf.Outputs[1].Data); err != nil || fmt.Sprint(got) != fmt.Sprint(diff) {
		t.Errorf("OUTPUT1 as JSON: %v %v, want %v", got, err, diff)
	}

	// A plain JSON request may ask for binary outputs too.
	req, _ := json.Marshal(map[string]any{"inputs": simpleBody(a, b)["inputs"], "parameters": map[string]any{"binary_data_output": true}})
	code, h, resp = postRaw(t, "POST", s.URL+"/v2/models/simple/infer", map[string]string{"Content-Type": "application/json"}, req)
	if code != http.StatusOK {
		t.Fatalf("JSON asking binary: status %d, body %q", code, resp)
	}
	head, tail = splitBinary(t, h, resp)
	inf.Outputs = nil // a fresh decode: the binary outputs have no data
	if err := json.Unmarshal(head, &inf); err != nil {
		t.Fatal(err)
	}
	checkBinaryOutputs(t, inf.Outputs, tail, rawTensor{"INT32", 16, leInt32(sum)}, rawTensor{"INT32", 16, leInt32(diff)})

	stream, err := s.NATS.JS.Stream(t.Context(), "INFERQ_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	before := info.State.Msgs
	in := rawTensor{"FP32", 3, leFP32(1, 2, 3)}
	ok, okN := tritonBody(binaryInput("INPUT0", in), "", in.data)
	bad := func(size int) ([]byte, int) {
		return tritonBody(fmt.Sprintf(`{"name":"INPUT0","shape":[1,3],"datatype":"FP32","parameters":{"binary_data_size":%d}}`, size), "", in.data)
	}
	short, shortN := bad(8)
	long, longN := bad(16)
	for _, c := range []struct {
		name    string
		headers map[string]string
		body    []byte
		want    string
	}{
		{"header longer than the body", map[string]string{"Inference-Header-Content-Length": strconv.Itoa(len(ok) + 1), "Content-Type": "application/octet-stream"}, ok,
			fmt.Sprintf("Inference-Header-Content-Length: %d is larger than the %d-byte body", len(ok)+1, len(ok))},
		{"header not a number", map[string]string{"Inference-Header-Content-Length": "ten", "Content-Type": "application/octet-stream"}, ok,
			`Inference-Header-Content-Length: want a byte count, got "ten"`},
		{"size below the shape", map[string]string{"Inference-Header-Content-Length": strconv.Itoa(shortN), "Content-Type": "application/octet-stream"}, short,
			"the body has 12 bytes after the Inference-Header-Content-Length JSON bytes, but the inputs' binary_data_size add up to 8"},
		{"size past the body", map[string]string{"Inference-Header-Content-Length": strconv.Itoa(longN), "Content-Type": "application/octet-stream"}, long,
			`input "INPUT0": binary_data_size 16 runs past the end of the body: 12 binary bytes remain`},
		{"octet-stream without the header", map[string]string{"Content-Type": "application/octet-stream"}, ok,
			"Content-Type application/octet-stream needs the Inference-Header-Content-Length header (the binary tensor data extension)"},
		{"header too short for the JSON", map[string]string{"Inference-Header-Content-Length": strconv.Itoa(okN - 1), "Content-Type": "application/octet-stream"}, ok,
			"request body: unexpected EOF"},
	} {
		for _, path := range []string{"/v2/models/identity/infer", "/v1/models/identity/jobs"} {
			t.Run(c.name+path, func(t *testing.T) {
				code, _, resp := postRaw(t, "POST", s.URL+path, c.headers, c.body)
				if code != http.StatusBadRequest || !bytes.Contains(resp, []byte(jsonString(c.want))) {
					t.Errorf("status %d, body %s; want 400 with %q", code, resp, c.want)
				}
				if got := errorCode(t, path, resp); got != "invalid" {
					t.Errorf("error code %q", got)
				}
			})
		}
	}
	time.Sleep(100 * time.Millisecond) // a publish that slipped through would be stored by now
	info, err = stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != before {
		t.Fatalf("INFERQ_JOBS went from %d to %d jobs with only 400s", before, info.State.Msgs)
	}
}

// jsonString is s as it appears inside a JSON string.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}
