package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// HTTP backend protocols (runner.http.protocol).
const (
	// ProtocolKServeV2 is the Open Inference Protocol (KServe v2, Triton):
	// one batched infer request per batch.
	ProtocolKServeV2 = "kserve-v2"
	// ProtocolOpenAI is an OpenAI-compatible completions server (vLLM,
	// TGI, llama.cpp, Ollama): one streamed request per job.
	ProtocolOpenAI = "openai"
)

// HTTPBackend is runner.http: the model runs on an inference server that is
// already there, and the worker agent sends it the batches over HTTP. The
// queue, batching, retries and replay stay inferq's.
type HTTPBackend struct {
	Protocol string `yaml:"protocol"` // kserve-v2 or openai
	// URL is the server's base: {url}/v2/models/... for kserve-v2,
	// {url}/v1/completions for openai.
	URL string `yaml:"url"`
	// Model is the backend's name of the model; default the model's own.
	Model string `yaml:"model"`
	// Version is the kserve-v2 model version to call; empty calls the
	// server's default version.
	Version string `yaml:"version"`
	// Binary sends inputs and asks for outputs with the binary tensor data
	// extension (kserve-v2 only): raw bytes, no JSON numbers.
	Binary bool `yaml:"binary"`
	// Concurrency is how many requests this worker has at the backend at
	// once, all batches together; default 4.
	Concurrency int `yaml:"concurrency"`
	// Timeout bounds one request: a kserve-v2 infer request whole, an
	// openai stream until its first byte and between two events; default
	// 60s. A request past it is retried like a 5xx.
	Timeout Duration `yaml:"timeout"`
	// AuthHeaderFile names a file holding the header sent with every
	// request: "Name: value", or a bare value sent as Authorization. It is
	// read again for each request, so a rotated secret takes effect.
	AuthHeaderFile string `yaml:"auth_header_file"`
	// HealthInterval is how often the backend's health is checked
	// (GET {url}/v2/health/ready, or {url}/v1/models); default 5s, and
	// every second while it is not ready.
	HealthInterval Duration `yaml:"health_interval"`
}

// finish fills the defaults of the http runner of model m and checks it.
func (h *HTTPBackend) finish(m *Model) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("runner.http: "+format, args...))
	}
	if h.Model == "" {
		h.Model = m.Name
	}
	if h.Concurrency == 0 {
		h.Concurrency = 4
	}
	if h.Timeout == 0 {
		h.Timeout = D(60 * time.Second)
	}
	if h.HealthInterval == 0 {
		h.HealthInterval = D(5 * time.Second)
	}
	h.URL = strings.TrimRight(h.URL, "/")
	if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("url %q: want an absolute http:// or https:// URL", h.URL)
	}
	if h.Concurrency < 1 {
		bad("concurrency must be positive")
	}
	if h.Timeout < 0 || h.HealthInterval < 0 {
		bad("timeout and health_interval must be positive")
	}
	switch h.Protocol {
	case ProtocolKServeV2:
		if m.Kind != KindTensor {
			bad("protocol kserve-v2 serves tensor models; model kind is %q", m.Kind)
		}
	case ProtocolOpenAI:
		if m.Kind != KindGenerate {
			bad("protocol openai serves generate models; model kind is %q", m.Kind)
		}
		if len(m.Inputs) != 1 || m.Inputs[0].Datatype != "BYTES" {
			bad("protocol openai needs one BYTES input (the prompt)")
		}
		if h.Binary || h.Version != "" {
			bad("binary and version apply to protocol kserve-v2 only")
		}
	default:
		bad("protocol %q: want kserve-v2 or openai", h.Protocol)
	}
	return errs
}
