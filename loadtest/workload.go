package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Model kinds, as in the model config: tensor models answer with output
// tensors, generate models with a text and a stream of tokens.
const (
	kindTensor   = "tensor"
	kindGenerate = "generate"
)

// modelKinds are the models the load test can make jobs for and check.
var modelKinds = map[string]string{
	"simple":   kindTensor,
	"identity": kindTensor,
	"simgpu":   kindTensor, // identity after a sleep
	"repeat":   kindGenerate,
	"tiny-gpt": kindGenerate,
}

// A job is one request and the answer it must get.
type job struct {
	model  string
	body   []byte // the POST body, JSON
	want   want
	stream bool // read the answer as Server-Sent Events
}

// want is what a correct answer holds.
type want struct {
	outputs   []tensorJSON // tensor models: exactly these outputs
	text      string       // repeat: exactly this text, token by token
	maxTokens int          // generate models: at most this many tokens
	exact     bool         // generate: text and token count are known (repeat), not sampled (tiny-gpt)
}

// tensorJSON is an OIP tensor as it travels in JSON.
type tensorJSON struct {
	Name     string          `json:"name"`
	Shape    []int64         `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data"`
}

// workload makes a run's jobs and shapes its load over time. Each client (or
// the open-loop scheduler) draws jobs from its own seeded source, so every
// system of a -compare run gets the same inputs in the same order.
type workload struct {
	models   []string
	stream   bool
	tokens   int
	tokenGap time.Duration
	shape    func(elapsed time.Duration) float64 // share of the peak load, in (0, 1]
}

// Load shapes: burst is at peak for burstLen of every burstEvery and at
// burstBase of it otherwise; ramp climbs linearly from rampFloor to 1.
const (
	burstEvery = 5 * time.Second
	burstLen   = time.Second
	burstBase  = 0.2
	rampFloor  = 0.05
)

func newWorkload(o options) *workload {
	w := &workload{models: o.models, stream: o.scenario == "streaming", tokens: o.tokens, tokenGap: o.tokenGap}
	w.shape = func(time.Duration) float64 { return 1 }
	switch o.scenario {
	case "burst":
		w.shape = func(el time.Duration) float64 {
			if el%burstEvery < burstLen {
				return 1
			}
			return burstBase
		}
	case "ramp":
		d := o.duration
		w.shape = func(el time.Duration) float64 { return math.Max(rampFloor, math.Min(1, float64(el)/float64(d))) }
	}
	return w
}

// activeClients is how many of n closed-loop clients send at this moment.
func (w *workload) activeClients(n int, elapsed time.Duration) int {
	return max(1, int(math.Ceil(w.shape(elapsed)*float64(n))))
}

// next makes the next job from r.
func (w *workload) next(r *rand.Rand) job {
	m := w.models[r.IntN(len(w.models))]
	switch m {
	case "simple":
		return simpleJob(r)
	case "identity":
		return identityJob(r, m)
	case "simgpu":
		return simgpuJob(r)
	}
	return w.generateJob(r, m)
}

// simpleJob asks for the sum and difference of two INT32 [1,16] tensors,
// with negative values and values large enough to catch a wrong width.
func simpleJob(r *rand.Rand) job {
	a, b := make([]int32, 16), make([]int32, 16)
	for i := range a {
		a[i], b[i] = r.Int32N(1<<24)-1<<23, r.Int32N(1<<24)-1<<23
	}
	body := mustJSON(map[string]any{"inputs": []tensorJSON{
		intTensor("INPUT0", a), intTensor("INPUT1", b)}})
	return job{model: "simple", body: body, want: want{outputs: simpleOutputs(a, b)}}
}

// simpleOutputs is what `simple` must answer for a and b.
func simpleOutputs(a, b []int32) []tensorJSON {
	sum, diff := make([]int32, len(a)), make([]int32, len(a))
	for i := range a {
		sum[i], diff[i] = a[i]+b[i], a[i]-b[i]
	}
	return []tensorJSON{intTensor("OUTPUT0", sum), intTensor("OUTPUT1", diff)}
}

func intTensor(name string, v []int32) tensorJSON {
	return tensorJSON{Name: name, Shape: []int64{1, int64(len(v))}, Datatype: "INT32", Data: mustJSON(v)}
}

// identityJob sends one INPUT0 of a random datatype and length (1 to 64, so
// jobs share padded ragged batches) and wants it back as OUTPUT0.
func identityJob(r *rand.Rand, model string) job {
	n := 1 + r.IntN(64)
	var (
		dt   string
		data any
	)
	switch r.IntN(3) {
	case 0:
		dt = "INT32"
		v := make([]int32, n)
		for i := range v {
			v[i] = r.Int32() - 1<<30
		}
		data = v
	case 1:
		dt = "FP32"
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.IntN(1<<16)-1<<15) / 4 // exact in FP32 and in JSON
		}
		data = v
	default:
		dt = "BYTES"
		v := make([]string, n)
		for i := range v {
			v[i] = randomWord(r, 0, 12)
		}
		data = v
	}
	in := tensorJSON{Name: "INPUT0", Shape: []int64{1, int64(n)}, Datatype: dt, Data: mustJSON(data)}
	out := in
	out.Name = "OUTPUT0"
	return job{model: model, body: mustJSON(map[string]any{"inputs": []tensorJSON{in}}), want: want{outputs: []tensorJSON{out}}}
}

// simgpuJob sends what a fixed-shape GPU model takes, FP32 [1,16], so jobs
// can share batches the way a real model's do (identity's jobs vary their
// datatype and length on purpose, to exercise ragged batching). The answer
// must echo it.
func simgpuJob(r *rand.Rand) job {
	v := make([]float32, 16)
	for i := range v {
		v[i] = float32(r.IntN(1<<16)-1<<15) / 4 // exact in FP32 and in JSON
	}
	in := tensorJSON{Name: "INPUT0", Shape: []int64{1, 16}, Datatype: "FP32", Data: mustJSON(v)}
	out := in
	out.Name = "OUTPUT0"
	return job{model: "simgpu", body: mustJSON(map[string]any{"inputs": []tensorJSON{in}}), want: want{outputs: []tensorJSON{out}}}
}

// generateJob uses the generate shorthand. repeat's answer is known: token k
// is character k of the prompt, cycling; tiny-gpt's is sampled, so only its
// framing is checked.
func (w *workload) generateJob(r *rand.Rand, model string) job {
	params := map[string]any{"max_tokens": w.tokens}
	if w.stream {
		params["stream"] = true
	}
	var prompt string
	wt := want{maxTokens: w.tokens}
	if model == "repeat" {
		prompt = randomWord(r, 3, 12)
		if w.tokenGap > 0 {
			params["interval_ms"] = max(1, w.tokenGap.Milliseconds())
		}
		wt.text, wt.exact = repeatText(prompt, w.tokens), true
	} else {
		prompt = tinyPrompts[r.IntN(len(tinyPrompts))]
	}
	body := mustJSON(map[string]any{"text_input": prompt, "parameters": params})
	return job{model: model, body: body, want: wt, stream: w.stream}
}

var tinyPrompts = []string{"Once upon a time", "The queue was", "A batch of", "In the morning the GPU"}

// repeatText is what the repeat test model generates: n characters of
// prompt, cycling.
func repeatText(prompt string, n int) string {
	chars := []rune(prompt)
	var b strings.Builder
	for k := range n {
		b.WriteRune(chars[k%len(chars)])
	}
	return b.String()
}

func randomWord(r *rand.Rand, minLen, maxLen int) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, minLen+r.IntN(maxLen-minLen+1))
	for i := range b {
		b[i] = letters[r.IntN(len(letters))]
	}
	return string(b)
}

// mustJSON marshals values the load test built itself; failing is a bug.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
