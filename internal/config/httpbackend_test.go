package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func loadYAML(t *testing.T, text string) (Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

// TestHTTPBackendDefaults: a minimal runner.http entry gets the backend's
// model name, concurrency, timeout and health interval filled in.
func TestHTTPBackendDefaults(t *testing.T) {
	cfg, err := loadYAML(t, `models:
- name: remote-simple
  runner: {http: {protocol: kserve-v2, url: "http://triton:8000/", binary: true}}
  inputs: [{name: INPUT0, datatype: INT32, dims: [16]}]
  outputs: [{name: OUTPUT0, datatype: INT32, dims: [16]}]
- name: remote-llm
  kind: generate
  runner: {http: {protocol: openai, url: "http://vllm:8000", model: meta-llama/Llama-3.1-8B, concurrency: 16, timeout: 2m}}
  inputs: [{name: text_input, datatype: BYTES, dims: [1]}]
  outputs: [{name: text_output, datatype: BYTES, dims: [1]}]
`)
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Models[0].Runner.HTTP
	if h.Model != "remote-simple" || h.URL != "http://triton:8000" || h.Concurrency != 4 || h.Timeout.D() != time.Minute ||
		h.HealthInterval.D() != 5*time.Second || !h.Binary {
		t.Errorf("kserve-v2 backend %+v", h)
	}
	h = cfg.Models[1].Runner.HTTP
	if h.Model != "meta-llama/Llama-3.1-8B" || h.Concurrency != 16 || h.Timeout.D() != 2*time.Minute {
		t.Errorf("openai backend %+v", h)
	}
}

func TestHTTPBackendInvalid(t *testing.T) {
	tensorModel := func(runner string) string {
		return "models: [{name: m, runner: " + runner + ", inputs: [{name: x, datatype: FP32, dims: [1]}]}]"
	}
	cases := []struct{ name, yaml, want string }{
		{"protocol", tensorModel("{http: {protocol: grpc, url: 'http://h'}}"), `protocol "grpc": want kserve-v2 or openai`},
		{"url", tensorModel("{http: {protocol: kserve-v2, url: 'h:8000'}}"), `url "h:8000": want an absolute http://`},
		{"no url", tensorModel("{http: {protocol: kserve-v2}}"), `url "": want an absolute`},
		{"two runners", tensorModel("{builtin: identity, http: {protocol: kserve-v2, url: 'http://h'}}"), "give one of builtin, command and http"},
		{"openai tensor", tensorModel("{http: {protocol: openai, url: 'http://h'}}"), "protocol openai serves generate models"},
		{"concurrency", tensorModel("{http: {protocol: kserve-v2, url: 'http://h', concurrency: -1}}"), "concurrency must be positive"},
		{"kserve generate", "models: [{name: m, kind: generate, runner: {http: {protocol: kserve-v2, url: 'http://h'}}, inputs: [{name: t, datatype: BYTES, dims: [1]}]}]",
			"protocol kserve-v2 serves tensor models"},
		{"openai binary", "models: [{name: m, kind: generate, runner: {http: {protocol: openai, url: 'http://h', binary: true}}, inputs: [{name: t, datatype: BYTES, dims: [1]}]}]",
			"binary and version apply to protocol kserve-v2 only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadYAML(t, c.yaml)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}
