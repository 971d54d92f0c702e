package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Error kinds count why jobs failed. A job is a success only when its answer
// was checked value by value; everything else is one of these (or
// submit_<status> / get_<status> for an unexpected HTTP status).
const (
	errSubmitTransport = "submit_transport" // the POST (or enqueue, publish) failed
	errGetTransport    = "get_transport"    // polling or streaming the job failed
	errWrongResult     = "wrong_result"     // the answer is not the model's answer
	errBadStream       = "bad_stream"       // tokens missing, repeated or out of order
	errLost            = "lost"             // accepted but not finished within -job-timeout
	errInterrupted     = "interrupted"      // the run was stopped (Ctrl-C) while the job ran
)

// errWrong marks an answer that arrived but is wrong.
var errWrong = errors.New("wrong result")

// verifyOutputs checks that got holds exactly the wanted outputs, in any
// order: names, datatypes, shapes and every value.
func verifyOutputs(got, want []tensorJSON) error {
	if len(got) != len(want) {
		return fmt.Errorf("%w: %d outputs, want %d", errWrong, len(got), len(want))
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(g tensorJSON) bool { return g.Name == w.Name })
		if i < 0 {
			return fmt.Errorf("%w: no output %q", errWrong, w.Name)
		}
		g := got[i]
		if g.Datatype != w.Datatype || !slices.Equal(g.Shape, w.Shape) {
			return fmt.Errorf("%w: output %q is %s %v, want %s %v", errWrong, w.Name, g.Datatype, g.Shape, w.Datatype, w.Shape)
		}
		if err := sameValues(g.Data, w.Data); err != nil {
			return fmt.Errorf("%w: output %q: %v", errWrong, w.Name, err)
		}
	}
	return nil
}

// sameValues compares two JSON tensors' data element by element; flat and
// nested forms of the same values are equal, as the contract allows both.
func sameValues(got, want json.RawMessage) error {
	g, err := flatValues(got)
	if err != nil {
		return err
	}
	w, err := flatValues(want)
	if err != nil {
		return err
	}
	if len(g) != len(w) {
		return fmt.Errorf("%d values, want %d", len(g), len(w))
	}
	for i := range w {
		if g[i] != w[i] {
			return fmt.Errorf("value %d is %v, want %v", i, g[i], w[i])
		}
	}
	return nil
}

// flatValues decodes JSON data into its scalars in row-major order.
// Numbers decode as float64, which is exact for INT32 and FP32.
func flatValues(raw json.RawMessage) ([]any, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("data %.40q: %w", raw, err)
	}
	var out []any
	var walk func(any)
	walk = func(x any) {
		if xs, ok := x.([]any); ok {
			for _, e := range xs {
				walk(e)
			}
			return
		}
		out = append(out, x)
	}
	walk(v)
	return out, nil
}

// textOutput reads text_output, a BYTES tensor of one string.
func textOutput(outputs []tensorJSON) (string, error) {
	i := slices.IndexFunc(outputs, func(t tensorJSON) bool { return t.Name == "text_output" })
	if i < 0 {
		return "", fmt.Errorf("%w: no text_output", errWrong)
	}
	vs, err := flatValues(outputs[i].Data)
	if err != nil {
		return "", fmt.Errorf("%w: text_output: %v", errWrong, err)
	}
	s, ok := "", len(vs) == 1
	if ok {
		s, ok = vs[0].(string)
	}
	if !ok {
		return "", fmt.Errorf("%w: text_output %.40s is not one string", errWrong, outputs[i].Data)
	}
	return s, nil
}

// verifyAnswer checks a terminal job's outputs against the job's want: the
// exact tensors for tensor models, the exact text for repeat, and a text at
// all for sampled models.
func verifyAnswer(j job, outputs []tensorJSON) error {
	if modelKinds[j.model] == kindTensor {
		return verifyOutputs(outputs, j.want.outputs)
	}
	text, err := textOutput(outputs)
	if err != nil {
		return err
	}
	if j.want.exact && text != j.want.text {
		return fmt.Errorf("%w: text_output %.40q, want %.40q", errWrong, text, j.want.text)
	}
	return nil
}

// streamToken is one `token` event of the SSE stream.
type streamToken struct {
	Seq  uint64 `json:"seq"`
	Text string `json:"text"`
}

// verifyTokens checks a streamed generation: sequence numbers 1, 2, 3...
// with no gap or repeat, at most max_tokens of them (exactly, for repeat),
// and for repeat the exact text both token by token and in the final
// text_output.
func verifyTokens(j job, tokens []streamToken, finalText string) error {
	if len(tokens) == 0 {
		return errors.New("no tokens")
	}
	var text strings.Builder
	for i, t := range tokens {
		if t.Seq != uint64(i+1) {
			return fmt.Errorf("token %d has seq %d", i+1, t.Seq)
		}
		text.WriteString(t.Text)
	}
	if len(tokens) > j.want.maxTokens || (j.want.exact && len(tokens) != j.want.maxTokens) {
		return fmt.Errorf("%d tokens, want %d", len(tokens), j.want.maxTokens)
	}
	if j.want.exact && (text.String() != j.want.text || finalText != j.want.text) {
		return fmt.Errorf("%w: tokens %.40q, text_output %.40q, want %.40q", errWrong, text.String(), finalText, j.want.text)
	}
	return nil
}
