package ingress

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/inferq/inferq/internal/config"
)

func testModels(t testing.TB) map[string]*config.Model {
	t.Helper()
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*config.Model{}
	for i := range cfg.Models {
		out[cfg.Models[i].Name] = &cfg.Models[i]
	}
	return out
}

// FuzzDecodeRequest: no body, however malformed, panics the decoder; every
// rejection is a 4xx *Error; every acceptance satisfies the model's schema.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]]}],"parameters":{"priority":0,"timeout_ms":100}}`,
		`{"text_input":"hello","parameters":{"max_tokens":3,"stream":true}}`,
		`{"inputs":[{"name":"INPUT0","shape":[2,3],"datatype":"BYTES","data":["a","b","c","d","e","f"]}],"outputs":[{"name":"OUTPUT0"}]}`,
		`{"inputs":null}`, `[]`, `{"id":1}`, `{"inputs":[{"shape":[-1]}]}`,
	} {
		f.Add("simple", s)
		f.Add("identity", s)
		f.Add("repeat", s)
	}
	models := testModels(f)
	f.Fuzz(func(t *testing.T, model, body string) {
		m, ok := models[model]
		if !ok {
			m = models["identity"]
		}
		_, inputs, p, err := decodeRequest(strings.NewReader(body), m)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Status > 499 || ae.Message == "" {
				t.Fatalf("rejection %v is not a 4xx API error", err)
			}
			return
		}
		if len(inputs) != len(m.Inputs) || p.priority < 0 || p.priority > 2 || p.timeoutMS < 0 {
			t.Fatalf("accepted %d inputs, params %+v", len(inputs), p)
		}
		for i, in := range inputs {
			if err := m.Inputs[i].Spec().Check(in); err != nil {
				t.Fatalf("accepted input fails its spec: %v", err)
			}
			if in.Shape[0] != inputs[0].Shape[0] {
				t.Fatalf("accepted inputs with different batch sizes")
			}
		}
	})
}

func TestParseWait(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		bad  bool
	}{
		{"", "0s", false}, {"30s", "30s", false}, {"2", "2s", false}, {"0.5", "500ms", false},
		{"5m", "1m0s", false}, {"-1s", "", true}, {"soon", "", true}, {"1e300", "", true},
	} {
		got, err := parseWait(c.in, 60e9)
		if (err != nil) != c.bad || (!c.bad && got.String() != c.want) {
			t.Errorf("parseWait(%q) = %v, %v", c.in, got, err)
		}
		var ae *Error
		if c.bad && (!errors.As(err, &ae) || ae.Status != http.StatusBadRequest) {
			t.Errorf("parseWait(%q): error %v is not a 400", c.in, err)
		}
	}
}
