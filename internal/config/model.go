package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/inferq/inferq/pkg/tensor"
)

// Model is one served model: the single source of truth for its inputs,
// outputs, batching and queue policy (as a Triton model config is).
type Model struct {
	Name     string   `yaml:"name"`
	Version  string   `yaml:"version"` // default "1"
	Kind     string   `yaml:"kind"`    // generate or tensor
	Runner   Runner   `yaml:"runner"`
	Inputs   []Tensor `yaml:"inputs"`
	Outputs  []Tensor `yaml:"outputs"`
	Batching Batching `yaml:"batching"`
	Queue    Queue    `yaml:"queue"`
	// Parameters are the request parameters the model takes besides the
	// broker's own (BrokerParameters); any other is refused with a 400.
	// Generate models always take max_tokens, and built-in test models
	// what they read.
	Parameters []Parameter `yaml:"parameters"`
	// MaxTokensLimit is the largest max_tokens a generate model accepts;
	// default DefaultMaxTokensLimit.
	MaxTokensLimit int `yaml:"max_tokens_limit"`
	// ChatTemplate turns the messages of an OpenAI chat completions request
	// into the prompt of a generate model: a Go text/template over
	// ChatTemplateData. Empty is DefaultChatTemplate.
	ChatTemplate string `yaml:"chat_template"`
}

// DefaultChatTemplate is the chat template of a generate model whose config
// sets none: one "role: content" line per message, then "assistant:" for the
// model to continue. Models trained on another format (ChatML, Llama's)
// should set their own.
const DefaultChatTemplate = "{{range .Messages}}{{.Role}}: {{.Content}}\n{{end}}assistant:"

// ChatMessage is one message of a chat, as a chat template sees it.
type ChatMessage struct {
	Role    string // system, developer, user, assistant or tool
	Name    string // the participant's name, when the client gave one
	Content string // the message's text (text parts joined)
}

// ChatTemplateData is what a chat template is executed with.
type ChatTemplateData struct {
	Messages []ChatMessage
	Model    string // the model's name
}

// ParseChatTemplate parses the model's chat template (DefaultChatTemplate
// when it sets none). Templates fail on a missing key rather than print
// "<no value>" into a prompt.
func (m *Model) ParseChatTemplate() (*template.Template, error) {
	src := m.ChatTemplate
	if src == "" {
		src = DefaultChatTemplate
	}
	t, err := template.New(m.Name).Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, fmt.Errorf("model %q: chat_template: %w", m.Name, err)
	}
	return t, nil
}

// Runner says what executes the model's batches: a built-in test model of the
// worker agent, or a runner subprocess (the Python runner).
type Runner struct {
	Builtin string   `yaml:"builtin"`
	Command []string `yaml:"command"`
	// Model is the Python runner's model source (see SourceSchemes); it
	// stands for command [python3, -m, inferq_runner, --model, SOURCE] when
	// command is empty.
	Model  string         `yaml:"model"`
	Device string         `yaml:"device"` // auto, cpu, cuda, cuda:N
	Params map[string]any `yaml:"params"`
	HTTP   *HTTPBackend   `yaml:"http"` // an inference server already running (httpbackend.go)
	// PythonPath are directories put first on the runner's sys.path, where
	// a python: source's module is found (relative to the worker's working
	// directory).
	PythonPath []string `yaml:"python_path"`
	// DeepSpeed wraps the model with deepspeed.init_inference; a runner
	// without DeepSpeed then fails to load rather than run without it.
	DeepSpeed bool `yaml:"deepspeed"`
}

// SourceSchemes are the prefixes of a runner.model source: builtin:NAME (the
// runner's test models), torchscript:PATH (a TorchScript file),
// python:MODULE:FACTORY (the user's own Python) and hf:PATH (a Hugging Face
// causal-LM directory). A source without a prefix is a Hugging Face
// directory, as before sources had names.
var SourceSchemes = []string{"builtin", "torchscript", "python", "hf"}

var schemeRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9_-]*):`)

// checkSource refuses a source the runner could never load, so that the
// mistake shows at config load rather than as a worker that is never ready.
func checkSource(src, kind string) error {
	m := schemeRE.FindStringSubmatch(src)
	if m == nil {
		if strings.TrimSpace(src) == "" {
			return errors.New("runner.model is empty")
		}
		return nil // a directory path
	}
	scheme, rest := m[1], src[len(m[0]):]
	switch scheme {
	case "builtin", "hf":
		if rest == "" {
			return fmt.Errorf("runner.model %q: %s: needs a name or path", src, scheme)
		}
	case "torchscript":
		if rest == "" {
			return fmt.Errorf("runner.model %q: torchscript: needs a file path", src)
		}
		if kind != KindTensor {
			return fmt.Errorf("runner.model %q: a TorchScript model is kind tensor, not %s", src, kind)
		}
	case "python":
		mod, factory, ok := strings.Cut(rest, ":")
		if !ok || mod == "" || factory == "" || strings.Contains(factory, ":") {
			return fmt.Errorf("runner.model %q: want python:MODULE:FACTORY", src)
		}
	default:
		return fmt.Errorf("runner.model %q: unknown source %q: want one of %s", src, scheme+":", strings.Join(SourceSchemes, ", "))
	}
	return nil
}

// Tensor declares an input or output. Dims exclude the batch dimension; -1 is
// any size. An empty datatype accepts any.
type Tensor struct {
	Name     string  `yaml:"name" json:"name"`
	Datatype string  `yaml:"datatype" json:"datatype"`
	Dims     []int64 `yaml:"dims" json:"dims"`
}

// Spec is the tensor package's form of the declaration.
func (t Tensor) Spec() tensor.Spec {
	return tensor.Spec{Name: t.Name, Datatype: tensor.DataType(t.Datatype), Dims: t.Dims}
}

// Batching is the dynamic batcher's policy for the model.
type Batching struct {
	MaxBatchSize        int      `yaml:"max_batch_size"`        // default 32
	PreferredBatchSizes []int    `yaml:"preferred_batch_sizes"` // optional
	MaxQueueDelay       Duration `yaml:"max_queue_delay"`       // default 5ms
	Ragged              bool     `yaml:"ragged"`                // pad -1 dims (with a mask) instead of splitting batches
	// Continuous turns on continuous (iteration-level) batching for a
	// generate model run by the Python runner: sequences join and leave
	// the running decode loop at every step. Nil means on for generate
	// models; false keeps static batching (measurable against it).
	Continuous *bool `yaml:"continuous"`
	// MaxNumSeqs is a continuous worker's capacity in sequences (default
	// max_batch_size); MaxStepTokens bounds the tokens one decoding step
	// processes, prompts that join included (default 4096).
	MaxNumSeqs    int `yaml:"max_num_seqs"`
	MaxStepTokens int `yaml:"max_step_tokens"`
	// JoinEverySteps groups admission to a continuous worker's running
	// set: waiting sequences join when the oldest has waited this many
	// steps less one, or when a quarter of max_num_seqs can join at once,
	// because every join costs a prefill pass. 1 joins at every step;
	// default 8 (measured, docs/benchmarks.md).
	JoinEverySteps int `yaml:"join_every_steps"`
	// JoinAtOnceBelow lifts that grouping while fewer sequences than this
	// run: a prefill then delays few rows, and under arriving traffic the
	// running set is small most of the time, so grouping would only delay
	// first tokens. Default max_num_seqs/2 (at least 1); 1 groups whenever
	// anything runs.
	JoinAtOnceBelow int `yaml:"join_at_once_below"`
}

// DefaultJoinEverySteps is batching.join_every_steps when the config leaves
// it out: on the 2-core VM it gave tiny-gpt 16-20% and sim-gpt 6% more
// tokens/s than joining at every step, for first tokens up to 7 steps later.
const DefaultJoinEverySteps = 8

// ContinuousBatching reports whether the model's generate sequences are
// batched continuously (batching.continuous, on by default for generate
// models; tensor models never are).
func (m *Model) ContinuousBatching() bool {
	return m.Kind == KindGenerate && (m.Batching.Continuous == nil || *m.Batching.Continuous)
}

// Queue is the model's queue policy.
type Queue struct {
	MaxQueued      int        `yaml:"max_queued"`      // default 10000
	DefaultTimeout Duration   `yaml:"default_timeout"` // 0: no deadline
	MaxDeliver     int        `yaml:"max_deliver"`     // default 3
	Backoff        []Duration `yaml:"backoff"`         // default [1s, 5s, 30s]
}

// Model kinds.
const (
	KindTensor   = "tensor"
	KindGenerate = "generate"
)

// Builtin test models: they exist to test and benchmark the broker, like
// Triton's QA models, and are not the product's inference.
var builtinDefaults = map[string]Model{
	"identity": {Kind: KindTensor,
		Inputs:   []Tensor{{Name: "INPUT0", Dims: []int64{-1}}},
		Outputs:  []Tensor{{Name: "OUTPUT0", Dims: []int64{-1}}},
		Batching: Batching{Ragged: true}},
	"simple": {Kind: KindTensor,
		Inputs:  []Tensor{{Name: "INPUT0", Datatype: "INT32", Dims: []int64{16}}, {Name: "INPUT1", Datatype: "INT32", Dims: []int64{16}}},
		Outputs: []Tensor{{Name: "OUTPUT0", Datatype: "INT32", Dims: []int64{16}}, {Name: "OUTPUT1", Datatype: "INT32", Dims: []int64{16}}}},
	"simgpu": {Kind: KindTensor,
		Inputs:   []Tensor{{Name: "INPUT0", Dims: []int64{-1}}},
		Outputs:  []Tensor{{Name: "OUTPUT0", Dims: []int64{-1}}},
		Batching: Batching{Ragged: true}},
	"flaky": {Kind: KindTensor,
		Inputs:   []Tensor{{Name: "INPUT0", Dims: []int64{-1}}},
		Outputs:  []Tensor{{Name: "OUTPUT0", Dims: []int64{-1}}},
		Batching: Batching{Ragged: true}},
	"repeat": {Kind: KindGenerate,
		Inputs:  []Tensor{{Name: "text_input", Datatype: "BYTES", Dims: []int64{1}}},
		Outputs: []Tensor{{Name: "text_output", Datatype: "BYTES", Dims: []int64{1}}},
		// max_tokens comes with every generate model; the pause between
		// tokens is bounded so one job cannot hold a worker for days.
		Parameters: []Parameter{{Name: "interval_ms", Type: ParamInt, Min: ptr(0), Max: ptr(10000)}}},
}

// IsBuiltin reports whether name is one of the worker agent's test models.
func IsBuiltin(name string) bool { _, ok := builtinDefaults[name]; return ok }

// TestModels are the built-in test models `inferq dev` serves without --config.
func TestModels() []Model {
	ms := []Model{
		{Name: "identity", Runner: Runner{Builtin: "identity"}},
		{Name: "simple", Runner: Runner{Builtin: "simple"}},
		{Name: "simgpu", Runner: Runner{Builtin: "simgpu", Params: map[string]any{"a": "20ms", "b": "1ms"}},
			Batching: Batching{MaxBatchSize: 32, MaxQueueDelay: D(2 * time.Millisecond)}},
		{Name: "repeat", Runner: Runner{Builtin: "repeat"}},
	}
	for i := range ms {
		if err := ms[i].finish(); err != nil {
			panic(err) // the table above is static
		}
	}
	return ms
}

// SamplingParameters are what the Python runner's generate models read
// besides max_tokens (worker/deepspeed_nats/python/inferq_runner/sampling.py):
// temperature (0 is greedy), nucleus and top-k filtering, a seed for
// reproducible sampling and stop strings. The runner refuses top_p 0.
func SamplingParameters() []Parameter {
	return []Parameter{
		{Name: "temperature", Type: ParamFloat, Min: ptr(0), Max: ptr(100)},
		{Name: "top_p", Type: ParamFloat, Min: ptr(0), Max: ptr(1)},
		{Name: "top_k", Type: ParamInt, Min: ptr(0)},
		{Name: "seed", Type: ParamInt},
		{Name: "stop", Type: ParamStrings},
	}
}

// TinyGPT is the real (small, seeded, CPU-friendly) generative model of the
// Python runner, served by `inferq dev` when python3 with torch is found.
func TinyGPT() Model {
	m := Model{Name: "tiny-gpt", Kind: KindGenerate,
		Runner:     Runner{Command: []string{"python3", "-m", "inferq_runner", "--model", "builtin:tiny-gpt"}, Device: "auto"},
		Inputs:     []Tensor{{Name: "text_input", Datatype: "BYTES", Dims: []int64{1}}},
		Outputs:    []Tensor{{Name: "text_output", Datatype: "BYTES", Dims: []int64{1}}},
		Batching:   Batching{MaxBatchSize: 8, MaxQueueDelay: D(5 * time.Millisecond)},
		Parameters: SamplingParameters()}
	if err := m.finish(); err != nil {
		panic(err) // static
	}
	return m
}

func (m *Model) finish() error {
	if !NameRE.MatchString(m.Name) {
		return fmt.Errorf("model %q: name must match %s", m.Name, NameRE)
	}
	var builtinParams []Parameter
	if b, ok := builtinDefaults[m.Runner.Builtin]; ok {
		builtinParams = b.Parameters
		if m.Kind == "" {
			m.Kind = b.Kind
		}
		if len(m.Inputs) == 0 {
			m.Inputs = slices.Clone(b.Inputs)
		}
		if len(m.Outputs) == 0 {
			m.Outputs = slices.Clone(b.Outputs)
		}
		m.Batching.Ragged = m.Batching.Ragged || b.Batching.Ragged
	} else if m.Runner.Builtin != "" {
		return fmt.Errorf("model %q: unknown builtin test model %q", m.Name, m.Runner.Builtin)
	}
	if m.Version == "" {
		m.Version = "1"
	}
	if m.Kind == "" {
		m.Kind = KindTensor
	}
	if m.Batching.MaxBatchSize == 0 {
		m.Batching.MaxBatchSize = 32
	}
	if m.Batching.MaxNumSeqs == 0 {
		m.Batching.MaxNumSeqs = m.Batching.MaxBatchSize
	}
	if m.Batching.MaxStepTokens == 0 {
		m.Batching.MaxStepTokens = 4096
	}
	if m.Batching.JoinEverySteps == 0 {
		m.Batching.JoinEverySteps = DefaultJoinEverySteps
	}
	if m.Batching.JoinAtOnceBelow == 0 {
		m.Batching.JoinAtOnceBelow = max(1, m.Batching.MaxNumSeqs/2)
	}
	if m.Batching.MaxQueueDelay == 0 {
		m.Batching.MaxQueueDelay = D(5 * time.Millisecond)
	}
	if m.Queue.MaxQueued == 0 {
		m.Queue.MaxQueued = 10000
	}
	if m.Queue.MaxDeliver == 0 {
		m.Queue.MaxDeliver = 3
	}
	if m.Queue.Backoff == nil {
		m.Queue.Backoff = []Duration{D(time.Second), D(5 * time.Second), D(30 * time.Second)}
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("model %q: "+format, append([]any{m.Name}, args...)...))
	}
	if m.Kind != KindTensor && m.Kind != KindGenerate {
		bad("kind %q must be tensor or generate", m.Kind)
	}
	if m.Runner.Model != "" {
		if m.Runner.Builtin != "" {
			bad("runner takes builtin or model, not both")
		}
		if m.Runner.HTTP != nil {
			bad("runner takes model or http, not both")
		}
		if err := checkSource(m.Runner.Model, m.Kind); err != nil {
			bad("%w", err)
		}
		if len(m.Runner.Command) == 0 {
			m.Runner.Command = []string{"python3", "-m", "inferq_runner", "--model", m.Runner.Model}
		}
	}
	if m.Runner.Builtin == "" && len(m.Runner.Command) == 0 && m.Runner.HTTP == nil {
		bad("runner needs builtin, model or command (or http)")
	}
	if m.Runner.HTTP != nil {
		if m.Runner.Builtin != "" || (len(m.Runner.Command) > 0 && m.Runner.Model == "") {
			bad("runner: give one of builtin, command and http")
		}
		for _, err := range m.Runner.HTTP.finish(m) {
			bad("%w", err)
		}
	}
	if len(m.Inputs) == 0 {
		bad("no inputs declared")
	}
	for _, list := range [][]Tensor{m.Inputs, m.Outputs} {
		names := map[string]bool{}
		for _, t := range list {
			if t.Name == "" || names[t.Name] {
				bad("tensor name %q empty or repeated", t.Name)
			}
			names[t.Name] = true
			if t.Datatype != "" && !tensor.DataType(t.Datatype).Valid() {
				bad("tensor %q: unknown datatype %q", t.Name, t.Datatype)
			}
			for _, d := range t.Dims {
				if d < -1 || d == 0 {
					bad("tensor %q: dims %v: each must be -1 or positive", t.Name, t.Dims)
					break
				}
			}
		}
	}
	if m.Batching.MaxBatchSize < 1 {
		bad("batching.max_batch_size must be positive")
	}
	if m.Batching.MaxNumSeqs < 1 || m.Batching.MaxStepTokens < 1 {
		bad("batching.max_num_seqs and batching.max_step_tokens must be positive")
	}
	if m.Batching.JoinEverySteps < 1 {
		bad("batching.join_every_steps must be at least 1, got %d", m.Batching.JoinEverySteps)
	}
	if b := m.Batching.JoinAtOnceBelow; b < 1 || b > m.Batching.MaxNumSeqs {
		bad("batching.join_at_once_below must be in 1..max_num_seqs (%d), got %d", m.Batching.MaxNumSeqs, b)
	}
	for _, p := range m.Batching.PreferredBatchSizes {
		if p < 1 || p > m.Batching.MaxBatchSize {
			bad("batching.preferred_batch_sizes: %d must be in 1..max_batch_size", p)
		}
	}
	if m.Queue.MaxDeliver < 1 {
		bad("queue.max_deliver must be positive")
	}
	if m.ChatTemplate != "" {
		if m.Kind != KindGenerate {
			bad("chat_template applies to generate models only")
		} else if _, err := m.ParseChatTemplate(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, err := range m.finishParams(builtinParams) {
		bad("%w", err)
	}
	return errors.Join(errs...)
}

// BackoffFor returns the redelivery delay after the n-th delivery (1-based).
func (q Queue) BackoffFor(n uint64) time.Duration {
	if len(q.Backoff) == 0 {
		return 0
	}
	i := int(n) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(q.Backoff) {
		i = len(q.Backoff) - 1
	}
	return q.Backoff[i].D()
}
