package docs

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"gopkg.in/yaml.v3"

	"github.com/inferq/inferq/internal/ingress"
)

const specPath = "openapi.yaml"

func readSpec(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatalf("read %s: %v", specPath, err)
	}
	return b
}

// loadSpec parses the document and builds its OpenAPI 3 model, failing on
// any error (including unresolved or circular references).
func loadSpec(t *testing.T) (libopenapi.Document, *v3.Document) {
	t.Helper()
	doc, err := libopenapi.NewDocument(readSpec(t))
	if err != nil {
		t.Fatalf("parse %s: %v", specPath, err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("build OpenAPI 3 model of %s: %v", specPath, err)
	}
	return doc, &m.Model
}

func newValidator(t *testing.T, doc libopenapi.Document) validator.Validator {
	t.Helper()
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("create validator: %v", errs)
	}
	return v
}

func describe(errs []*verrors.ValidationError) string {
	var sb strings.Builder
	for _, e := range errs {
		sb.WriteString("\n  - ")
		sb.WriteString(e.Message)
		if e.Reason != "" {
			sb.WriteString(": " + e.Reason)
		}
		if e.SpecLine > 0 {
			sb.WriteString(" (line " + strconv.Itoa(e.SpecLine) + ")")
		}
		for _, f := range e.SchemaValidationErrors {
			sb.WriteString("\n      " + f.Error())
		}
	}
	return sb.String()
}

// operations lists the document's operations as "METHOD /path".
func operations(m *v3.Document) map[string]*v3.Operation {
	out := map[string]*v3.Operation{}
	if m.Paths == nil || m.Paths.PathItems == nil {
		return out
	}
	for path, item := range m.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			out[strings.ToUpper(method)+" "+path] = op
		}
	}
	return out
}

func TestOpenAPIIsValid(t *testing.T) {
	doc, m := loadSpec(t)

	if v := doc.GetVersion(); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi version %q, want 3.1.x", v)
	}
	if ok, errs := newValidator(t, doc).ValidateDocument(); !ok || len(errs) > 0 {
		t.Fatalf("%s does not validate against the OpenAPI schema:%s", specPath, describe(errs))
	}

	ops := operations(m)
	if len(ops) == 0 {
		t.Fatal("no operations")
	}
	ids := map[string]string{}
	for key, op := range ops {
		if op.OperationId == "" {
			t.Errorf("%s: no operationId", key)
		} else if prev, dup := ids[op.OperationId]; dup {
			t.Errorf("%s: operationId %q also used by %s", key, op.OperationId, prev)
		} else {
			ids[op.OperationId] = key
		}
		var success bool
		if op.Responses != nil && op.Responses.Codes != nil {
			for code := range op.Responses.Codes.KeysFromOldest() {
				if strings.HasPrefix(code, "2") {
					success = true
				}
			}
		}
		if !success {
			t.Errorf("%s: no 2xx response", key)
		}
	}
}

var echoParam = regexp.MustCompile(`:([A-Za-z_][A-Za-z0-9_]*)`)

// openAPIPath converts an Echo route path (":param") to OpenAPI ("{param}").
func openAPIPath(p string) string { return echoParam.ReplaceAllString(p, "{$1}") }

func TestEveryEchoRouteIsDocumented(t *testing.T) {
	_, m := loadSpec(t)
	ops := operations(m)
	served := map[string]bool{}
	for _, r := range ingress.Routes() {
		if strings.Contains(r.Path, "*") {
			t.Errorf("%s %s: wildcard route cannot be described; document it by hand and teach this test", r.Method, r.Path)
			continue
		}
		key := strings.ToUpper(r.Method) + " " + openAPIPath(r.Path)
		served[key] = true
		if ops[key] == nil {
			t.Errorf("route %s %s (%s) is served but not in %s", r.Method, r.Path, key, specPath)
		}
	}
	if len(served) == 0 {
		t.Fatal("ingress.Routes() returned no routes")
	}
	var extra []string
	for key := range ops {
		if !served[key] {
			extra = append(extra, key)
		}
	}
	sort.Strings(extra)
	for _, key := range extra {
		t.Errorf("%s is documented in %s but the ingress does not serve it", key, specPath)
	}
}

// specExamples reads components.examples.<name>.value as JSON.
func specExamples(t *testing.T) map[string][]byte {
	t.Helper()
	var raw struct {
		Components struct {
			Examples map[string]struct {
				Value any `yaml:"value"`
			} `yaml:"examples"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(readSpec(t), &raw); err != nil {
		t.Fatalf("decode %s: %v", specPath, err)
	}
	out := map[string][]byte{}
	for name, ex := range raw.Components.Examples {
		b, err := json.Marshal(ex.Value)
		if err != nil {
			t.Fatalf("example %s: %v", name, err)
		}
		out[name] = b
	}
	return out
}

func TestExamplesValidate(t *testing.T) {
	doc, _ := loadSpec(t)
	v := newValidator(t, doc)
	ex := specExamples(t)
	for _, name := range []string{"SimpleRequest", "GenerateRequest"} {
		if ex[name] == nil {
			t.Fatalf("components.examples.%s missing", name)
		}
	}

	cases := []struct {
		name, method, path, body string
		valid                    bool
	}{
		{"simple example", "POST", "/v1/models/simple/jobs", string(ex["SimpleRequest"]), true},
		{"generate example", "POST", "/v1/models/repeat/jobs", string(ex["GenerateRequest"]), true},
		{"versioned simple", "POST", "/v1/models/simple/versions/1/jobs", string(ex["SimpleRequest"]), true},
		{"OIP infer", "POST", "/v2/models/simple/infer", string(ex["SimpleRequest"]), true},
		{"OIP generate", "POST", "/v2/models/repeat/generate", string(ex["GenerateRequest"]), true},
		{"nested BYTES, extra parameters", "POST", "/v1/models/identity/jobs",
			`{"inputs":[{"name":"INPUT0","shape":[2,1],"datatype":"BYTES","data":[["a"],["b"]]}],"parameters":{"priority":2,"custom":{"x":1}}}`, true},
		{"unknown datatype", "POST", "/v1/models/simple/jobs",
			`{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"INT128","data":[1]}]}`, false},
		{"priority out of range", "POST", "/v1/models/simple/jobs",
			`{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"INT32","data":[1]}],"parameters":{"priority":3}}`, false},
		{"both text_input and inputs", "POST", "/v1/models/repeat/jobs",
			`{"text_input":"hi","inputs":[{"name":"INPUT0","shape":[1],"datatype":"INT32","data":[1]}]}`, false},
		{"unknown top-level field", "POST", "/v1/models/repeat/jobs", `{"text_input":"hi","prompt":"x"}`, false},
		{"missing data", "POST", "/v2/models/simple/infer",
			`{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"INT32"}]}`, false},
		{"bad model name", "POST", "/v1/models/Bad.Name/jobs", string(ex["GenerateRequest"]), false},
		{"replay body", "POST", "/v1/models/simple/replay", `{"status":"failed","since":"2025-01-01T00:00:00Z","limit":10}`, true},
		{"replay bad limit", "POST", "/v1/models/simple/replay", `{"limit":0}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "http://127.0.0.1:8080"+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer test-key")
			ok, errs := v.ValidateHttpRequestSync(req)
			if ok != tc.valid {
				t.Errorf("valid = %v, want %v; body %s%s", ok, tc.valid, tc.body, describe(errs))
			}
		})
	}

	t.Run("long-poll query", func(t *testing.T) {
		for wait, want := range map[string]bool{"30s": true, "1m30s": true, "2.5": true, "soon": false} {
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080/v1/jobs/01JB8Y3Q6J4V5X7Z9A1C3E5G7K?wait="+wait, nil)
			req.Header.Set("Authorization", "Bearer test-key")
			if ok, errs := v.ValidateHttpRequestSync(req); ok != want {
				t.Errorf("wait=%s: valid = %v, want %v%s", wait, ok, want, describe(errs))
			}
		}
	})
}
