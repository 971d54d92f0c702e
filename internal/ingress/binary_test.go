package ingress

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/pkg/tensor"
)

// binaryBody is a body in the extension's form: the JSON header, then the
// tensor bytes; it returns the body and the header's length.
func binaryBody(header string, tensors ...[]byte) ([]byte, int) {
	b := []byte(header)
	for _, t := range tensors {
		b = append(b, t...)
	}
	return b, len(header)
}

func fp32(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func int64s(vs ...int64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func byteElems(vs ...string) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

// TestDecodeBinaryRequest: inputs given as binary data decode to exactly
// their bytes, alone or beside JSON inputs; every malformed body is a 400
// naming what is wrong.
func TestDecodeBinaryRequest(t *testing.T) {
	models := testModels(t)
	f := fp32(1.5, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, math.MaxFloat32)
	body, n := binaryBody(`{"inputs":[{"name":"INPUT0","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}`, f)
	_, in, _, err := decodeBinaryRequest(body, n, models["identity"])
	if err != nil || len(in) != 1 || !bytes.Equal(in[0].Data, f) || in[0].Datatype != tensor.FP32 {
		t.Fatalf("FP32: %v %+v", err, in)
	}
	s := byteElems("héllo", "", "\x00\xff")
	body, n = binaryBody(`{"inputs":[{"name":"INPUT0","shape":[1,3],"datatype":"BYTES","parameters":{"binary_data_size":`+strconv.Itoa(len(s))+`}}],
		"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}}]}`, s)
	req, in, _, err := decodeBinaryRequest(body, n, models["identity"])
	if err != nil || !bytes.Equal(in[0].Data, s) || !req.wish.binary("OUTPUT0") {
		t.Fatalf("BYTES: %v %+v %+v", err, in, req)
	}
	// simple: INPUT0 as binary, INPUT1 as JSON numbers; binary_data_output
	// is the ingress's and never reaches the model's parameters.
	a := make([]byte, 64)
	for k := range 16 {
		binary.LittleEndian.PutUint32(a[4*k:], uint32(k-3))
	}
	body, n = binaryBody(`{"inputs":[{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},
		{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}],"parameters":{"binary_data_output":true,"priority":0}}`, a)
	req, in, p, err := decodeBinaryRequest(body, n, models["simple"])
	if err != nil || !bytes.Equal(in[0].Data, a) || len(in[1].Data) != 64 || !req.wish.all || p.priority != 0 {
		t.Fatalf("mixed: %v %+v %+v", err, in, req)
	}
	if _, ok := req.Parameters[paramBinaryOutput]; ok || len(req.Parameters) != 1 {
		t.Errorf("parameters passed on: %s", mustJSON(req.Parameters))
	}
	// A header as long as the body: JSON only, as Triton allows.
	body, n = binaryBody(`{"inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"INT64","data":[1,2]}]}`)
	if _, in, _, err := decodeBinaryRequest(body, n, models["identity"]); err != nil || !bytes.Equal(in[0].Data, int64s(1, 2)) {
		t.Errorf("JSON only: %v", err)
	}

	i64 := int64s(math.MinInt64, -1, math.MaxInt64)
	hdr := func(size string, extra string) string {
		return `{"inputs":[{"name":"INPUT0","shape":[1,3],"datatype":"INT64","parameters":{"binary_data_size":` + size + `}` + extra + `}]}`
	}
	for _, c := range []struct {
		name   string
		model  string
		header string
		tail   []byte
		n      int // the header's value; 0: the JSON's length
		want   string
	}{
		{"size larger than the bytes", "identity", hdr("32", ""), i64, 0,
			`input "INPUT0": binary_data_size 32 runs past the end of the body: 24 binary bytes remain`},
		{"size smaller than the shape", "identity", hdr("16", ""), i64, 0,
			`the body has 24 bytes after the Inference-Header-Content-Length JSON bytes, but the inputs' binary_data_size add up to 16`},
		{"more bytes than the sizes", "identity", hdr("24", ""), cat("", i64, i64), 0,
			`the body has 48 bytes after the Inference-Header-Content-Length JSON bytes, but the inputs' binary_data_size add up to 24`},
		{"shape times datatype is not the size", "identity",
			`{"inputs":[{"name":"INPUT0","shape":[1,4],"datatype":"INT64","parameters":{"binary_data_size":24}}]}`, i64, 0,
			`input "INPUT0": binary_data_size 24 does not match shape [1 4] of INT64 (4 elements of 8 bytes)`},
		{"negative size", "identity", hdr("-8", ""), i64, 0, `input "INPUT0": binary_data_size: want a byte count, got -8`},
		{"fractional size", "identity", hdr("2.5", ""), i64, 0, `input "INPUT0": binary_data_size: want a byte count, got 2.5`},
		{"string size", "identity", hdr(`"24"`, ""), i64, 0, `input "INPUT0": binary_data_size: want a byte count, got 24`},
		{"huge size", "identity", hdr("1e300", ""), i64, 0,
			`input "INPUT0": binary_data_size 1e+300 runs past the end of the body: 24 binary bytes remain`},
		{"data and size", "identity", hdr("24", `,"data":[1,2,3]`), i64, 0, `input "INPUT0": give data or binary_data_size, not both`},
		{"header beyond the body", "identity", hdr("24", ""), i64, len(hdr("24", "")) + 25,
			fmt.Sprintf(`Inference-Header-Content-Length: %d is outside the %d-byte body`, len(hdr("24", ""))+25, len(hdr("24", ""))+24)},
		{"header cuts the JSON", "identity", hdr("24", ""), i64, 10, `request body: unexpected EOF`},
		{"truncated BYTES element", "identity",
			`{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"BYTES","parameters":{"binary_data_size":6}}]}`, []byte{9, 0, 0, 0, 'a', 'b'}, 0,
			`input "INPUT0": BYTES element 0 at offset 0 declares 9 bytes, only 2 remain`},
		{"unknown datatype", "identity",
			`{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP8","parameters":{"binary_data_size":1}}]}`, []byte{1}, 0,
			`input "INPUT0": unknown datatype "FP8"`},
		{"wrong datatype for the model", "simple",
			`{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"FP32","parameters":{"binary_data_size":64}},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}]}`,
			cat("", a, a), 0, `input "INPUT0": expected datatype INT32, got FP32`},
		{"negative dimension", "identity",
			`{"inputs":[{"name":"INPUT0","shape":[1,-2],"datatype":"INT8","parameters":{"binary_data_size":0}}]}`, nil, 0,
			`input "INPUT0": shape [1 -2] has a negative dimension or too many elements`},
		{"undeclared input", "identity",
			`{"inputs":[{"name":"INPUT9","shape":[1,3],"datatype":"INT64","parameters":{"binary_data_size":24}}]}`, i64, 0,
			`input "INPUT9": not an input of model "identity"`},
		{"binary_data_output not a bool", "identity",
			`{"inputs":[{"name":"INPUT0","shape":[1,3],"datatype":"INT64","parameters":{"binary_data_size":24}}],"parameters":{"binary_data_output":1}}`, i64, 0,
			`parameter "binary_data_output": want true or false, got 1`},
		{"binary_data not a bool", "identity",
			`{"inputs":[{"name":"INPUT0","shape":[1,3],"datatype":"INT64","parameters":{"binary_data_size":24}}],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":"yes"}}]}`, i64, 0,
			`output "OUTPUT0": parameter "binary_data": want true or false, got yes`},
	} {
		t.Run(c.name, func(t *testing.T) {
			body, n := binaryBody(c.header, c.tail)
			if c.n != 0 {
				n = c.n
			}
			_, _, _, err := decodeBinaryRequest(body, n, models[c.model])
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Message != c.want {
				t.Errorf("error %v\nwant 400 %q", err, c.want)
			}
		})
	}

	// Without the header, binary_data_size is refused, not read as empty.
	_, _, _, err = decodeRequest(strings.NewReader(hdr("24", "")), models["identity"])
	if err == nil || !strings.Contains(err.Error(), `input "INPUT0": binary_data_size given, but the request has no Inference-Header-Content-Length header`) {
		t.Errorf("binary_data_size without the header: %v", err)
	}
}

func cat(header string, tensors ...[]byte) []byte {
	b, _ := binaryBody(header, tensors...)
	return b
}

// TestHeaderLength: Inference-Header-Content-Length is a decimal count
// within the body.
func TestHeaderLength(t *testing.T) {
	for v, want := range map[string]int{"0": 0, "10": 10, " 7 ": 7, "11": -1, "-1": -1, "x": -1, "1e1": -1, "99999999999999999999": -1, "": -1} {
		got, err := headerLength(v, 10)
		if (err != nil) != (want < 0) || (want >= 0 && got != want) {
			t.Errorf("%q: %d, %v; want %d", v, got, err, want)
		}
	}
}

// FuzzDecodeBinaryRequest: no body and header length, however malformed,
// panics the binary decoder; every rejection is a 4xx *Error; every
// accepted input satisfies its spec and lies within the body.
func FuzzDecodeBinaryRequest(f *testing.F) {
	s := byteElems("a", "bc")
	for _, c := range []struct {
		header string
		tail   []byte
	}{
		{`{"inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}`, fp32(1, 2)},
		{`{"inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"BYTES","parameters":{"binary_data_size":11}}],"parameters":{"binary_data_output":true}}`, s},
		{`{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"INT64","parameters":{"binary_data_size":8}}],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":false}}]}`, int64s(7)},
		{`{"inputs":[{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}`, make([]byte, 64)},
		{`{"inputs":[{"name":"INPUT0","shape":[1,3],"datatype":"INT8","parameters":{"binary_data_size":2}}]}`, []byte{1, 2, 3}},
		{`{"text_input":"hi"}`, nil},
	} {
		body, n := binaryBody(c.header, c.tail)
		for _, m := range []string{"identity", "simple", "repeat"} {
			f.Add(m, body, n)
		}
	}
	models := testModels(f)
	f.Fuzz(func(t *testing.T, model string, body []byte, n int) {
		m, ok := models[model]
		if !ok {
			m = models["identity"]
		}
		_, inputs, _, err := decodeBinaryRequest(body, n, m)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Status > 499 || ae.Message == "" {
				t.Fatalf("rejection %v is not a 4xx API error", err)
			}
			return
		}
		if len(inputs) != len(m.Inputs) {
			t.Fatalf("accepted %d inputs", len(inputs))
		}
		for k, in := range inputs {
			if err := m.Inputs[k].Spec().Check(in); err != nil {
				t.Fatalf("accepted input fails its spec: %v", err)
			}
		}
	})
}

// TestBinaryOutputs: the outputs asked for lose data and gain
// binary_data_size, with their exact bytes after the JSON; the others and
// every other member of the response stay.
func TestBinaryOutputs(t *testing.T) {
	result := json.RawMessage(`{"model_name":"m","model_version":"1","id":"r1","parameters":{"x":1},"outputs":[` +
		`{"name":"A","shape":[1,3],"datatype":"FP32","data":[1.5,-0,1e-45]},` +
		`{"name":"B","shape":[1,2],"datatype":"BYTES","parameters":{"p":"q"},"data":["hé",""]},` +
		`{"name":"C","shape":[1,1],"datatype":"INT64","data":[-9007199254740993]}]}`)
	head, tail, err := binaryOutputs(result, outputWish{all: true, named: map[string]bool{"C": false}})
	if err != nil {
		t.Fatal(err)
	}
	if len(tail) != 2 || !bytes.Equal(tail[0], fp32(1.5, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32)) ||
		!bytes.Equal(tail[1], byteElems("hé", "")) {
		t.Fatalf("tail %v", tail)
	}
	want := `{"id":"r1","model_name":"m","model_version":"1","outputs":[` +
		`{"name":"A","shape":[1,3],"datatype":"FP32","parameters":{"binary_data_size":12}},` +
		`{"name":"B","shape":[1,2],"datatype":"BYTES","parameters":{"binary_data_size":11,"p":"q"}},` +
		`{"name":"C","shape":[1,1],"datatype":"INT64","data":[-9007199254740993]}],"parameters":{"x":1}}`
	if string(head) != want {
		t.Errorf("head\n%s\nwant\n%s", head, want)
	}
	if h, tail, err := binaryOutputs(result, outputWish{named: map[string]bool{"Z": true}}); err != nil || tail != nil || string(h) != string(result) {
		t.Errorf("nothing binary: %s %v %v", h, tail, err)
	}
	if _, _, err := binaryOutputs(json.RawMessage(`{"outputs":[{"name":"A","shape":[1,2],"datatype":"FP32","data":[1]}]}`), outputWish{all: true}); err == nil {
		t.Error("an output whose data does not fit its shape rendered")
	}
}

// TestAcceptsOctetStream: the Accept rule of GET /v1/jobs/{id} and the
// waiting answers.
func TestAcceptsOctetStream(t *testing.T) {
	for v, want := range map[string]bool{
		"application/octet-stream":                   true,
		"application/json, application/octet-stream": true,
		"application/octet-stream;q=0.5":             true,
		"Application/Octet-Stream":                   true,
		"application/octet-stream;q=0":               false,
		"application/json":                           false,
		"*/*":                                        false,
		"":                                           false,
		"application/octet-streamx":                  false,
		"application/octet-stream; q":                true, // a malformed parameter is ignored
	} {
		if got := acceptsOctetStream([]string{v}); got != want {
			t.Errorf("Accept %q: %v, want %v", v, got, want)
		}
	}
}

// TestTensorBodyRule: octet-stream needs the extension's header (400
// without it); with it the JSON types are fine too; others stay 415.
func TestTensorBodyRule(t *testing.T) {
	e := echo.New()
	for _, c := range []struct {
		ct     string
		header bool
		want   int
	}{
		{"application/octet-stream", true, 200},
		{"application/octet-stream", false, 400},
		{"", true, 200},
		{"application/json", true, 200},
		{"application/json", false, 200},
		{"text/plain", true, 415},
		{"text/plain", false, 415},
	} {
		r := httptest.NewRequest("POST", "/v2/models/identity/infer", strings.NewReader("{}"))
		if c.ct != "" {
			r.Header.Set("Content-Type", c.ct)
		}
		if c.header {
			r.Header.Set(headerInferLen, "2")
		}
		err := tensorBody(func(echo.Context) error { return nil })(e.NewContext(r, httptest.NewRecorder()))
		got := 200
		var ae *Error
		if errors.As(err, &ae) {
			got = ae.Status
		}
		if got != c.want {
			t.Errorf("%q header %v: %d (%v), want %d", c.ct, c.header, got, err, c.want)
		}
	}
}

// TestAnswerResultFraming: a record asked for with Accept
// application/octet-stream comes framed (JSON length header, the JSON,
// then the bytes); without outputs the framing stays, with N the body.
func TestAnswerResultFraming(t *testing.T) {
	i := &Ingress{}
	rec := &results.Record{ID: "j1", Model: "identity", Version: "1", Status: results.Succeeded,
		Result: json.RawMessage(`{"model_name":"identity","id":"j1","outputs":[{"name":"OUTPUT0","shape":[1,2],"datatype":"INT64","data":[5,-6]}]}`)}
	for _, c := range []struct {
		name     string
		rec      *results.Record
		asRecord bool
		wish     outputWish
		tail     []byte
	}{
		{"record", rec, true, outputWish{all: true, framed: true}, int64s(5, -6)},
		{"response", rec, false, outputWish{named: map[string]bool{"OUTPUT0": true}}, int64s(5, -6)},
		{"no result", &results.Record{ID: "j2", Model: "identity", Status: results.Failed, Error: &results.Error{Code: "x", Message: "y"}}, true,
			outputWish{all: true, framed: true}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			ctx := echo.New().NewContext(httptest.NewRequest("GET", "/", nil), w)
			if err := i.answerResult(ctx, 200, c.rec, c.asRecord, c.wish); err != nil {
				t.Fatal(err)
			}
			n, err := strconv.Atoi(w.Header().Get(headerInferLen))
			if err != nil || w.Header().Get("Content-Type") != mimeOctetStream || n > w.Body.Len() {
				t.Fatalf("headers %v, body %d bytes", w.Header(), w.Body.Len())
			}
			body := w.Body.Bytes()
			if !json.Valid(body[:n]) || !bytes.Equal(body[n:], c.tail) {
				t.Fatalf("JSON %s, tail %v", body[:n], body[n:])
			}
			if c.asRecord && !bytes.Contains(body[:n], []byte(`"id":"`+c.rec.ID+`"`)) {
				t.Errorf("record %s", body[:n])
			}
			if c.tail != nil && !bytes.Contains(body[:n], []byte(fmt.Sprintf(`"parameters":{"binary_data_size":%d}`, len(c.tail)))) {
				t.Errorf("no binary_data_size in %s", body[:n])
			}
		})
	}
}
