package ingress

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeFast: whatever body the fast decoder takes, encoding/json (as
// decode runs it) takes too and reads into the same request.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range []string{
		`{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]]}],"parameters":{"priority":0,"timeout_ms":100}}`,
		` { "id" : "r1", "text_input" : "hello" , "parameters" : { "max_tokens" : 3 , "stream" : true, "stop": ["\n", "\u00e9x"], "o": {"a": [1.5e-3, -0, null, false]} } } `,
		`{"inputs":[{"name":"INPUT0","shape":[2,3],"datatype":"BYTES","data":["a","b","c","d","e","f"]}],"outputs":[{"name":"OUTPUT0"}]}`,
		`{"inputs":[{"name":"X","shape":[],"datatype":"FP32","data":[-1.25E+2]}],"parameters":{}}`,
		`{"inputs":null}`, `[]`, `{"id":1}`, `{"inputs":[{"shape":[-1]}]}`, `{}`, `{"ID":"x"}`, `{"id":"a","id":"b"}`,
		`{"inputs":[{"shape":[01]}]}`, `{"inputs":[{"shape":[1.0]}]}`, `{"inputs":[{"shape":[99999999999999999999]}]}`,
		`{"parameters":{"a":1,"a":2}}`,
		"{\"inputs\":[{\"name\":\"X\",\"shape\":[2],\"datatype\":\"BYTES\",\"data\":[\"h\xc3\xa9llo\",\"\xff\\u0041\"]}]}",
		`{"parameters":{"deep":[[[[[[[[[[[[[[[[[[[[{"a":[{}]}]]]]]]]]]]]]]]]]]]]],"e":{"":-0.0e+1}}}`, `{"text_input":"x"} {}`, `{"text_input":"\u0041"}`, `{"inputs":[{"data":[1,]}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		fast, ok := decodeFast([]byte(body))
		if !ok {
			return
		}
		slow := &inferRequest{}
		dec := json.NewDecoder(bytes.NewReader([]byte(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(slow); err != nil {
			t.Fatalf("fast path took %q, encoding/json refuses it: %v", body, err)
		}
		if dec.More() {
			t.Fatalf("fast path took %q with trailing data", body)
		}
		if !reflect.DeepEqual(fast, slow) {
			gotJSON, _ := json.Marshal(fast)
			wantJSON, _ := json.Marshal(slow)
			t.Fatalf("fast path read %q as\n%s\nencoding/json as\n%s\n(%#v against %#v)", body, gotJSON, wantJSON, fast, slow)
		}
	})
}

// TestDecodeFastTakesTheUsualForms: the forms clients send go the fast way.
func TestDecodeFastTakesTheUsualForms(t *testing.T) {
	for _, body := range []string{
		`{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]]}]}`,
		`{"id":"req-1","inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"FP32","data":[0.5,-1e3]}],"parameters":{"priority":1,"timeout_ms":100,"stream":false}}`,
		`{"text_input":"hello","parameters":{"max_tokens":3,"stop":["\n"]}}`,
	} {
		if _, ok := decodeFast([]byte(body)); !ok {
			t.Errorf("decodeFast refused %s", body)
		}
	}
}

// BenchmarkDecodeSmallJob decodes the load test's simple job (two INT32
// [1,16] inputs) the fast way and with encoding/json.
func BenchmarkDecodeSmallJob(b *testing.B) {
	body := []byte(`{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,-2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[16,15,14,13,12,11,10,9,8,7,6,5,4,3,2,-1]}]}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, ok := decodeFast(body); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			req := &inferRequest{}
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
