package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/wire"
	"github.com/inferq/inferq/pkg/tensor"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// The built-in models are TEST MODELS: they exist to test and benchmark the
// broker (like Triton's QA models) and are not the product's inference.
//
//	identity  OUTPUT0 = INPUT0
//	simple    OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1 (INT32 [16])
//	simgpu    sleeps a + b·batch_size, then identity
//	repeat    streams max_tokens tokens cycling through text_input's characters
//	flaky     identity, but fails every batch as a whole while the file
//	          params.fail_while_exists exists, and every batch holding a job
//	          whose first INPUT0 element is params.poison (a poison job:
//	          the batch fails, the job alone is bad)
type builtin struct {
	model     *config.Model
	a, b      time.Duration // simgpu cost
	flag      string        // flaky's file
	poison    string        // flaky's poison value, as JSON text
	cancelled sync.Map      // job id → struct{}: jobs to stop (repeat)
	// device is simgpu's one simulated GPU: batches held at once (max_inflight)
	// overlap their I/O, never their compute, as on a real device.
	device sync.Mutex
}

// Describe says the test models run here, on the CPU, ready at once.
func (r *builtin) Describe() RunnerInfo { return RunnerInfo{Ready: true, Device: "cpu"} }

// Cancel stops a repeat job between two tokens.
func (r *builtin) Cancel(jobID string) { r.cancelled.Store(jobID, struct{}{}) }

func newBuiltin(m *config.Model) (*builtin, error) {
	r := &builtin{model: m}
	switch m.Runner.Builtin {
	case "identity", "simple", "repeat":
	case "simgpu":
		var err error
		if r.a, err = durationParam(m.Runner.Params, "a", 20*time.Millisecond); err != nil {
			return nil, err
		}
		if r.b, err = durationParam(m.Runner.Params, "b", time.Millisecond); err != nil {
			return nil, err
		}
	case "flaky":
		r.flag, _ = m.Runner.Params["fail_while_exists"].(string)
		if v, ok := m.Runner.Params["poison"]; ok {
			j, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("model %q: flaky params.poison %v: %w", m.Name, v, err)
			}
			r.poison = string(j)
		}
		if r.flag == "" && r.poison == "" {
			return nil, fmt.Errorf("model %q: flaky needs params.fail_while_exists or params.poison", m.Name)
		}
	default:
		return nil, fmt.Errorf("model %q: unknown builtin %q", m.Name, m.Runner.Builtin)
	}
	return r, nil
}

func durationParam(ps map[string]any, key string, def time.Duration) (time.Duration, error) {
	v, ok := ps[key]
	if !ok {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("param %q: want a duration like \"20ms\", got %v", key, v)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("param %q: want a duration like \"20ms\", got %q", key, s)
	}
	return d, nil
}

func (r *builtin) Close() error { return nil }

func (r *builtin) Run(ctx context.Context, b *inferqpb.Batch, emit func(*inferqpb.TokenChunk) error) (*inferqpb.BatchResult, error) {
	switch r.model.Runner.Builtin {
	case "identity":
		return splitResult(b, []*inferqpb.Tensor{renamed(b.Inputs[0], "OUTPUT0")})
	case "simple":
		return r.simple(b)
	case "simgpu":
		rows := int64(0)
		if len(b.Jobs) > 0 {
			rows = b.Jobs[len(b.Jobs)-1].RowEnd
		}
		r.device.Lock()
		defer r.device.Unlock()
		t := time.NewTimer(r.a + time.Duration(rows)*r.b)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		return splitResult(b, []*inferqpb.Tensor{renamed(b.Inputs[0], "OUTPUT0")})
	case "flaky":
		if r.flag != "" {
			if _, err := os.Stat(r.flag); err == nil {
				return nil, fmt.Errorf("flaky test model: %s exists", r.flag)
			}
		}
		if r.poison != "" {
			bad, err := r.poisoned(b)
			if err != nil {
				return nil, err
			}
			if bad {
				return nil, fmt.Errorf("flaky test model: a job's INPUT0 starts with the poison value %s", r.poison)
			}
		}
		return splitResult(b, []*inferqpb.Tensor{renamed(b.Inputs[0], "OUTPUT0")})
	case "repeat":
		return r.repeat(ctx, b, emit)
	}
	return nil, errors.New("unreachable")
}

// poisoned reports whether a job's first INPUT0 element is the poison
// value, compared as JSON text (13 matches INT32 13 and FP32 13.0).
func (r *builtin) poisoned(b *inferqpb.Batch) (bool, error) {
	parts, err := tensor.Split(wire.FromProto(b.Inputs[0]), rangesOf(b))
	if err != nil {
		return false, fmt.Errorf("flaky: %w", err)
	}
	for _, p := range parts {
		data, err := tensor.AppendJSONData(nil, p)
		if err != nil {
			return false, fmt.Errorf("flaky: %w", err)
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(data, &elems); err != nil {
			return false, fmt.Errorf("flaky: %w", err)
		}
		if len(elems) > 0 && string(elems[0]) == r.poison {
			return true, nil
		}
	}
	return false, nil
}

func renamed(t *inferqpb.Tensor, name string) *inferqpb.Tensor {
	return &inferqpb.Tensor{Name: name, Datatype: t.Datatype, Shape: t.Shape, Data: t.Data}
}

// simple is Triton's `simple`: element-wise sum and difference of two INT32 tensors.
func (r *builtin) simple(b *inferqpb.Batch) (*inferqpb.BatchResult, error) {
	if len(b.Inputs) != 2 {
		return nil, fmt.Errorf("simple: want 2 inputs, got %d", len(b.Inputs))
	}
	x, y := b.Inputs[0], b.Inputs[1]
	if x.Datatype != "INT32" || y.Datatype != "INT32" || len(x.Data) != len(y.Data) || len(x.Data)%4 != 0 {
		return nil, errors.New("simple: inputs must be INT32 tensors of one shape")
	}
	sum, diff := make([]byte, len(x.Data)), make([]byte, len(x.Data))
	for i := 0; i < len(x.Data); i += 4 {
		a := int32(binary.LittleEndian.Uint32(x.Data[i:]))
		c := int32(binary.LittleEndian.Uint32(y.Data[i:]))
		binary.LittleEndian.PutUint32(sum[i:], uint32(a+c))
		binary.LittleEndian.PutUint32(diff[i:], uint32(a-c))
	}
	return splitResult(b, []*inferqpb.Tensor{
		{Name: "OUTPUT0", Datatype: "INT32", Shape: x.Shape, Data: sum},
		{Name: "OUTPUT1", Datatype: "INT32", Shape: x.Shape, Data: diff},
	})
}

// splitResult cuts batched outputs into per-job outputs by row range and
// crops padded rows back to each job's own shape (output k follows input k's
// shape when the model is ragged).
func splitResult(b *inferqpb.Batch, outputs []*inferqpb.Tensor) (*inferqpb.BatchResult, error) {
	ranges := rangesOf(b)
	res := &inferqpb.BatchResult{BatchId: b.Id, Jobs: make([]*inferqpb.JobResult, len(b.Jobs))}
	for i, j := range b.Jobs {
		res.Jobs[i] = &inferqpb.JobResult{JobId: j.Id}
	}
	for k, out := range outputs {
		parts, err := tensor.Split(wire.FromProto(out), ranges)
		if err != nil {
			return nil, fmt.Errorf("split output %q: %w", out.Name, err)
		}
		for i, j := range b.Jobs {
			p := parts[i]
			if k < len(j.InputShapes) && !sameDims(p.Shape, j.InputShapes[k].Dims) {
				if p, err = tensor.Unpad(p, j.InputShapes[k].Dims); err != nil {
					return nil, fmt.Errorf("unpad output %q of job %s: %w", out.Name, j.Id, err)
				}
			}
			if wanted(j.Outputs, out.Name) {
				res.Jobs[i].Outputs = append(res.Jobs[i].Outputs, wire.ToProto(p))
			}
		}
	}
	return res, nil
}

func sameDims(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func wanted(names []string, name string) bool {
	if len(names) == 0 {
		return true
	}
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// repeat streams max_tokens tokens per job, token k being character k of
// its text_input (cycling), one every interval_ms.
func (r *builtin) repeat(ctx context.Context, b *inferqpb.Batch, emit func(*inferqpb.TokenChunk) error) (*inferqpb.BatchResult, error) {
	texts, err := tensor.Split(wire.FromProto(b.Inputs[0]), rangesOf(b))
	if err != nil {
		return nil, fmt.Errorf("repeat: %w", err)
	}
	res := &inferqpb.BatchResult{BatchId: b.Id}
	for i, j := range b.Jobs {
		var p struct {
			MaxTokens  *int `json:"max_tokens"`
			IntervalMS int  `json:"interval_ms"`
		}
		if len(j.ParametersJson) > 0 {
			_ = json.Unmarshal(j.ParametersJson, &p) // unknown shapes fall back to defaults
		}
		n := 16
		if p.MaxTokens != nil && *p.MaxTokens >= 0 {
			n = min(*p.MaxTokens, 100000)
		}
		chars := []rune(firstString(texts[i].Data))
		var out strings.Builder
		stopped := false
		for k := 0; k < n && len(chars) > 0; k++ {
			if _, stopped = r.cancelled.LoadAndDelete(j.Id); stopped {
				break
			}
			if p.IntervalMS > 0 {
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(time.Duration(p.IntervalMS) * time.Millisecond):
				}
			}
			c := chars[k%len(chars)]
			out.WriteRune(c)
			if err := emit(&inferqpb.TokenChunk{JobId: j.Id, Seq: uint64(k + 1), Text: string(c), TokenId: int64(c), Final: k == n-1}); err != nil {
				return nil, err
			}
		}
		if stopped {
			res.Jobs = append(res.Jobs, &inferqpb.JobResult{JobId: j.Id, Error: &inferqpb.Error{Code: "cancelled", Message: "cancelled while generating"}})
			continue
		}
		text := out.String()
		data := binary.LittleEndian.AppendUint32(nil, uint32(len(text)))
		res.Jobs = append(res.Jobs, &inferqpb.JobResult{JobId: j.Id, Outputs: []*inferqpb.Tensor{
			{Name: "text_output", Datatype: "BYTES", Shape: []int64{1, 1}, Data: append(data, text...)},
		}})
	}
	return res, nil
}

func rangesOf(b *inferqpb.Batch) []tensor.Range {
	rs := make([]tensor.Range, len(b.Jobs))
	for i, j := range b.Jobs {
		rs[i] = tensor.Range{Start: j.RowStart, End: j.RowEnd}
	}
	return rs
}

// firstString reads the first element of a raw BYTES tensor.
func firstString(data []byte) string {
	if len(data) < 4 {
		return ""
	}
	n := binary.LittleEndian.Uint32(data)
	if uint64(n) > uint64(len(data)-4) {
		return ""
	}
	s := string(data[4 : 4+n])
	if !utf8.ValidString(s) {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}
