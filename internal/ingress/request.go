package ingress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/pkg/tensor"
)

// inferRequest is an OIP inference request, or the generate shorthand
// {"text_input": "...", "parameters": {...}}.
type inferRequest struct {
	ID         string                     `json:"id"`
	Inputs     []*tensor.JSON             `json:"inputs"`
	Outputs    []outputRequest            `json:"outputs"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	TextInput  *string                    `json:"text_input"`

	wish outputWish // the outputs to answer as binary data (binary.go)
}

type outputRequest struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters"`
}

// jobParams are the parameters the broker itself reads.
type jobParams struct {
	priority    int
	timeoutMS   int64
	stream      bool
	callbackURL string // checked against the webhook policy by the caller
}

func invalid(format string, args ...any) *Error {
	return apiError(http.StatusBadRequest, "invalid", fmt.Sprintf(format, args...))
}

// decodeRequest reads and validates a submission against the model. It
// returns the job's inputs in raw form and the parameters; any error is an
// *Error with the status to answer.
func decodeRequest(body io.Reader, m *config.Model) (*inferRequest, []*tensor.Tensor, jobParams, error) {
	var buf bytes.Buffer
	if err := readBody(&buf, body); err != nil {
		return nil, nil, jobParams{}, err
	}
	return decode(buf.Bytes(), nil, false, m)
}

// readBody reads all of body into buf; the error is the API's answer.
func readBody(buf *bytes.Buffer, body io.Reader) error {
	if _, err := buf.ReadFrom(body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return apiError(http.StatusRequestEntityTooLarge, "too_large",
				fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit))
		}
		return invalid("request body: %v", err)
	}
	return nil
}

// decode reads the JSON request in body; with the binary form (binary
// true) tail holds the bytes of the inputs that carry binary_data_size.
func decode(body, tail []byte, binary bool, m *config.Model) (*inferRequest, []*tensor.Tensor, jobParams, error) {
	var p jobParams
	req, ok := decodeFast(body)
	if !ok {
		req = &inferRequest{}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(req); err != nil {
			return nil, nil, p, invalid("request body: %v", err)
		}
		if dec.More() {
			return nil, nil, p, invalid("request body: trailing data after the JSON object")
		}
	}
	if len(req.ID) > 256 {
		return nil, nil, p, invalid("id: longer than 256 characters")
	}
	if req.TextInput != nil {
		if len(req.Inputs) > 0 {
			return nil, nil, p, invalid("give either text_input or inputs, not both")
		}
		in, ok := textInput(m)
		if !ok {
			return nil, nil, p, invalid("model %q takes tensor inputs, not text_input", m.Name)
		}
		req.Inputs = []*tensor.JSON{{Name: in, Shape: []int64{1, 1}, Datatype: "BYTES", Data: mustJSON([]string{*req.TextInput})}}
	}
	bin, err := binaryInputs(req.Inputs, tail, binary)
	if err != nil {
		return nil, nil, p, err
	}
	inputs, err := checkInputs(req.Inputs, bin, m)
	if err != nil {
		return nil, nil, p, err
	}
	if req.wish, err = takeOutputWish(req); err != nil {
		return nil, nil, p, err
	}
	for _, o := range req.Outputs {
		if !declared(m.Outputs, o.Name) {
			return nil, nil, p, invalid("output %q: not an output of model %q", o.Name, m.Name)
		}
	}
	p, err = readParams(req, m)
	return req, inputs, p, err
}

// textInput finds the BYTES input the generate shorthand fills.
func textInput(m *config.Model) (string, bool) {
	if len(m.Inputs) == 1 && m.Inputs[0].Datatype == string(tensor.Bytes) {
		return m.Inputs[0].Name, true
	}
	return "", false
}

func declared(ts []config.Tensor, name string) bool {
	for _, t := range ts {
		if t.Name == name {
			return true
		}
	}
	return false
}

// checkInputs decodes each input, from JSON or from its bytes in bin, and
// checks it against the model's declaration, in the model's order.
func checkInputs(in []*tensor.JSON, bin map[string][]byte, m *config.Model) ([]*tensor.Tensor, error) {
	byName := make(map[string]*tensor.JSON, len(in))
	for _, j := range in {
		if j == nil {
			return nil, invalid("inputs: null entry")
		}
		if !declared(m.Inputs, j.Name) {
			return nil, invalid("input %q: not an input of model %q", j.Name, m.Name)
		}
		if byName[j.Name] != nil {
			return nil, invalid("input %q: given twice", j.Name)
		}
		byName[j.Name] = j
	}
	out := make([]*tensor.Tensor, 0, len(m.Inputs))
	var rows int64 = -1
	for _, spec := range m.Inputs {
		j := byName[spec.Name]
		if j == nil {
			return nil, invalid("input %q: missing", spec.Name)
		}
		var t *tensor.Tensor
		var err error
		if data, ok := bin[spec.Name]; ok {
			if t, err = fromBinary(j, data); err != nil {
				return nil, err
			}
		} else if t, err = tensor.FromJSON(j); err != nil {
			return nil, invalid("input %q: %v", spec.Name, err)
		}
		if err := spec.Spec().Check(t); err != nil {
			return nil, invalid("%v", err)
		}
		if rows >= 0 && t.Shape[0] != rows {
			return nil, invalid("input %q: batch dimension %d differs from the other inputs' %d", spec.Name, t.Shape[0], rows)
		}
		rows = t.Shape[0]
		if rows > int64(m.Batching.MaxBatchSize) {
			return nil, invalid("input %q: batch dimension %d exceeds the model's max_batch_size %d", spec.Name, rows, m.Batching.MaxBatchSize)
		}
		out = append(out, t)
	}
	return out, nil
}

// readParams checks every parameter against the model's declarations (and
// the broker's own), fills in declared defaults the request leaves out, so
// the worker sees them, and reads priority, timeout_ms and stream. The
// model's parameters pass through to it unchanged.
func readParams(req *inferRequest, m *config.Model) (jobParams, error) {
	p := jobParams{priority: jetstream.DefaultPriority}
	names := make([]string, 0, len(req.Parameters))
	for name := range req.Parameters {
		names = append(names, name)
	}
	slices.Sort(names) // the same request always names the same parameter
	for _, name := range names {
		decl, ok := m.Param(name)
		if !ok {
			return p, invalid("parameter %q is not accepted by model %q; accepted: %s",
				name, m.Name, strings.Join(m.AcceptedParams(), ", "))
		}
		if err := decl.Check(req.Parameters[name]); err != nil {
			return p, invalid("parameter %q: %v", name, err)
		}
	}
	for i := range m.Parameters {
		d := &m.Parameters[i]
		if _, given := req.Parameters[d.Name]; !given && d.DefaultJSON() != nil {
			if req.Parameters == nil {
				req.Parameters = map[string]json.RawMessage{}
			}
			req.Parameters[d.Name] = d.DefaultJSON()
		}
	}
	// Checked above: these decode.
	if raw, ok := req.Parameters["priority"]; ok {
		_ = json.Unmarshal(raw, &p.priority)
	}
	if raw, ok := req.Parameters["timeout_ms"]; ok {
		_ = json.Unmarshal(raw, &p.timeoutMS)
	}
	if raw, ok := req.Parameters["stream"]; ok {
		_ = json.Unmarshal(raw, &p.stream)
	}
	if raw, ok := req.Parameters["callback_url"]; ok {
		_ = json.Unmarshal(raw, &p.callbackURL)
		// The broker's, not the model's: it travels in Job.callback_url.
		delete(req.Parameters, "callback_url")
	}
	return p, nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with plain strings
	}
	return b
}
