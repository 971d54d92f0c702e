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
		`{"text_input":"hi","parameters":{"max_tokens":-3}}`,
		`{"text_input":"hi","parameters":{"max_tokens":100000000}}`,
		`{"text_input":"hi","parameters":{"max_tokenz":8}}`,
		`{"text_input":"hi","parameters":{"max_tokens":"8"}}`,
		`{"text_input":"hi","parameters":{"max_tokens":1.5,"interval_ms":null}}`,
		`{"text_input":"hi","parameters":{"interval_ms":10001,"priority":0}}`,
		`{"text_input":"hi","parameters":{"max_tokens":1e400,"timeout_ms":-1}}`,
		`{"text_input":"hi","parameters":null}`,
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
		req, inputs, p, err := decodeRequest(strings.NewReader(body), m)
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
		for name, raw := range req.Parameters {
			decl, ok := m.Param(name)
			if !ok {
				t.Fatalf("accepted undeclared parameter %q", name)
			}
			if err := decl.Check(raw); err != nil {
				t.Fatalf("accepted parameter %q = %s: %v", name, raw, err)
			}
		}
		for _, d := range m.Parameters {
			if _, ok := req.Parameters[d.Name]; d.DefaultJSON() != nil && !ok {
				t.Fatalf("default of %q not filled in", d.Name)
			}
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

// TestRequestParameters: undeclared, mistyped and out-of-range parameters
// are refused with a 400 naming them; defaults are filled in.
func TestRequestParameters(t *testing.T) {
	models := testModels(t)
	for _, c := range []struct {
		model, params, want string
	}{
		{"repeat", `{"max_tokens":-3}`, `parameter "max_tokens": -3 is below the minimum 1`},
		{"repeat", `{"max_tokens":100000000}`, `parameter "max_tokens": 100000000 is above the maximum 4096`},
		{"repeat", `{"max_tokenz":8}`, `parameter "max_tokenz" is not accepted by model "repeat"; accepted: max_tokens, interval_ms, priority, timeout_ms, stream, callback_url`},
		{"repeat", `{"max_tokens":"8"}`, `parameter "max_tokens": want an integer, got "8"`},
		{"repeat", `{"max_tokens":1.5}`, `parameter "max_tokens": want an integer, got 1.5`},
		{"repeat", `{"interval_ms":60000}`, `parameter "interval_ms": 60000 is above the maximum 10000`},
		{"repeat", `{"priority":3}`, `parameter "priority": 3 is above the maximum 2`},
		{"repeat", `{"timeout_ms":1.5}`, `parameter "timeout_ms": want an integer, got 1.5`},
		{"repeat", `{"stream":"yes"}`, `parameter "stream": want true or false, got "yes"`},
		{"repeat", `{"b":1,"a":1}`, `parameter "a" is not accepted by model "repeat"; accepted: max_tokens, interval_ms, priority, timeout_ms, stream, callback_url`}, // the same one every time
		{"identity", `{"max_tokens":8}`, `parameter "max_tokens" is not accepted by model "identity"; accepted: priority, timeout_ms, stream, callback_url`},
	} {
		body := `{"text_input":"hi","parameters":` + c.params + `}`
		if c.model == "identity" {
			body = `{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"INT32","data":[1]}],"parameters":` + c.params + `}`
		}
		_, _, _, err := decodeRequest(strings.NewReader(body), models[c.model])
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Message != c.want {
			t.Errorf("%s %s: error %v, want 400 %q", c.model, c.params, err, c.want)
		}
	}

	req, _, p, err := decodeRequest(strings.NewReader(`{"text_input":"hi","parameters":{"interval_ms":5,"priority":0,"stream":true,"timeout_ms":250}}`), models["repeat"])
	if err != nil {
		t.Fatal(err)
	}
	if string(req.Parameters["max_tokens"]) != "16" || string(req.Parameters["interval_ms"]) != "5" || len(req.Parameters) != 5 {
		t.Errorf("parameters %s, want max_tokens 16 filled in", mustJSON(req.Parameters))
	}
	if p != (jobParams{priority: 0, timeoutMS: 250, stream: true}) {
		t.Errorf("broker parameters %+v", p)
	}
	req, _, p, err = decodeRequest(strings.NewReader(`{"text_input":"hi"}`), models["repeat"])
	if err != nil || string(mustJSON(req.Parameters)) != `{"max_tokens":16}` || p.priority != 1 {
		t.Errorf("no parameters: %v, %s, %+v", err, mustJSON(req.Parameters), p)
	}
	gpt := config.TinyGPT()
	req, _, _, err = decodeRequest(strings.NewReader(`{"text_input":"hi","parameters":{"max_tokens":24,"temperature":0.8,"top_p":0.9,"top_k":40,"seed":1234,"stop":["\n","."]}}`), &gpt)
	if err != nil || len(req.Parameters) != 6 {
		t.Errorf("tiny-gpt sampling parameters: %v, %v", err, req.Parameters)
	}
	if _, _, _, err = decodeRequest(strings.NewReader(`{"text_input":"hi","parameters":{"max_new_tokens":8}}`), &gpt); err == nil ||
		!strings.Contains(err.Error(), `accepted: max_tokens, temperature, top_p, top_k, seed, stop, priority, timeout_ms, stream, callback_url`) {
		t.Errorf("tiny-gpt max_new_tokens: %v", err)
	}
	req, _, _, err = decodeRequest(strings.NewReader(`{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"INT32","data":[1]}]}`), models["identity"])
	if err != nil || req.Parameters != nil {
		t.Errorf("tensor model: %v, parameters %v", err, req.Parameters)
	}
}
