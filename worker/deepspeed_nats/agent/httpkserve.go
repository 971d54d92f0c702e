package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/inferq/inferq/internal/wire"
	"github.com/inferq/inferq/pkg/tensor"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// The kserve-v2 protocol: a batch is one Open Inference Protocol infer
// request whose inputs are the batch's (rows along dimension 0), and the
// answer's outputs are cut back into the jobs' rows.

const (
	// headerInferLen is the length of the JSON part of a body in the binary
	// tensor data extension; the raw tensor bytes follow it.
	headerInferLen = "Inference-Header-Content-Length"
	// maxAnswer bounds an infer answer read into memory.
	maxAnswer = 1 << 30
)

// oipTensor is an input or output in an OIP request or answer.
type oipTensor struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

type oipRequest struct {
	ID         string         `json:"id,omitempty"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Inputs     []oipTensor    `json:"inputs"`
}

type oipAnswer struct {
	Outputs []oipTensor `json:"outputs"`
}

// runKServe runs the batch as one infer request. When the backend refuses
// it (4xx), the batch is halved until each refused job stands alone: those
// end backend_rejected, and their neighbours' outputs are kept. Requests
// for halves are few and only made after a refusal.
func (r *httpRunner) runKServe(ctx context.Context, b *inferqpb.Batch) (*inferqpb.BatchResult, error) {
	res, err := r.inferKServe(ctx, b)
	var rej *rejectedError
	if !errors.As(err, &rej) {
		return res, err
	}
	if len(b.Jobs) == 1 || !contiguous(b) {
		out := &inferqpb.BatchResult{BatchId: b.Id}
		for _, j := range b.Jobs {
			out.Jobs = append(out.Jobs, &inferqpb.JobResult{JobId: j.Id, Error: rej.jobError(r.cfg.Protocol)})
		}
		return out, nil
	}
	r.log.Debug("batch refused by the backend; halving it to find the refused jobs", "batch", b.Id, "size", len(b.Jobs), "err", rej)
	out := &inferqpb.BatchResult{BatchId: b.Id}
	for _, h := range halves(span{0, len(b.Jobs)}) {
		sub, err := subBatch(b, h.lo, h.hi)
		if err != nil {
			return nil, err
		}
		part, err := r.runKServe(ctx, sub)
		if err != nil {
			return nil, err
		}
		out.Jobs = append(out.Jobs, part.Jobs...)
	}
	return out, nil
}

// inferPath is the backend's infer endpoint of the model.
func (r *httpRunner) inferPath() string {
	p := "/v2/models/" + url.PathEscape(r.cfg.Model)
	if r.cfg.Version != "" {
		p += "/versions/" + url.PathEscape(r.cfg.Version)
	}
	return p + "/infer"
}

// inferKServe sends one infer request for b and splits its answer by jobs.
func (r *httpRunner) inferKServe(ctx context.Context, b *inferqpb.Batch) (*inferqpb.BatchResult, error) {
	body, headerLen, err := r.encodeInfer(b)
	if err != nil {
		return nil, &PermanentError{Err: fmt.Errorf("batch %s: %w", b.Id, err)}
	}
	release, err := r.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	reqCtx, cancel := context.WithTimeoutCause(ctx, r.cfg.Timeout.D(), errRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, r.cfg.URL+r.inferPath(), bytes.NewReader(body))
	if err != nil {
		return nil, &PermanentError{Err: err}
	}
	if headerLen >= 0 {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set(headerInferLen, strconv.Itoa(headerLen))
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := r.authorize(req); err != nil {
		return nil, r.unavailable("%v", err)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, r.requestError(ctx, reqCtx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, r.answerError(resp)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, r.requestError(ctx, reqCtx, err)
	}
	if len(data) > maxAnswer {
		return nil, fmt.Errorf("kserve-v2 backend: answer larger than %d bytes", maxAnswer)
	}
	outputs, err := decodeInferAnswer(data, resp.Header.Get(headerInferLen))
	if err != nil {
		return nil, fmt.Errorf("kserve-v2 backend %s: answer to batch %s: %w", r.cfg.URL, b.Id, err)
	}
	return splitResult(b, r.declaredOutputs(outputs))
}

// encodeInfer is the request body for b: JSON, or with binary the JSON part
// followed by the inputs' raw bytes (headerLen is then the JSON's length,
// else -1). inferq's tensors are already in the extension's byte layout.
func (r *httpRunner) encodeInfer(b *inferqpb.Batch) (body []byte, headerLen int, err error) {
	req := oipRequest{ID: b.Id, Inputs: make([]oipTensor, 0, len(b.Inputs))}
	var tail [][]byte
	for _, in := range b.Inputs {
		t := oipTensor{Name: in.Name, Shape: in.Shape, Datatype: in.Datatype}
		if r.cfg.Binary {
			t.Parameters = map[string]any{"binary_data_size": len(in.Data)}
			tail = append(tail, in.Data)
		} else if t.Data, err = tensor.AppendJSONData(nil, wire.FromProto(in)); err != nil {
			return nil, 0, fmt.Errorf("input %q: %w", in.Name, err)
		}
		req.Inputs = append(req.Inputs, t)
	}
	if r.cfg.Binary {
		req.Parameters = map[string]any{"binary_data_output": true}
	}
	head, err := json.Marshal(req)
	if err != nil {
		return nil, 0, fmt.Errorf("encode infer request: %w", err)
	}
	if !r.cfg.Binary {
		return head, -1, nil
	}
	for _, t := range tail {
		head = append(head, t...)
	}
	return head, len(head) - sumLen(tail), nil
}

func sumLen(bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// decodeInferAnswer reads an infer answer: JSON, or (with an
// Inference-Header-Content-Length header) JSON followed by the bytes of
// the outputs that carry binary_data_size, in output order.
func decodeInferAnswer(data []byte, headerValue string) ([]*inferqpb.Tensor, error) {
	head, tail := data, []byte(nil)
	if headerValue != "" {
		n, err := strconv.Atoi(headerValue)
		if err != nil || n < 0 || n > len(data) {
			return nil, fmt.Errorf("%s %q: not a length within the %d-byte answer", headerInferLen, headerValue, len(data))
		}
		head, tail = data[:n], data[n:]
	}
	var a oipAnswer
	if err := json.Unmarshal(head, &a); err != nil {
		return nil, fmt.Errorf("not an inference response: %w", err)
	}
	out := make([]*inferqpb.Tensor, 0, len(a.Outputs))
	for _, o := range a.Outputs {
		var t *tensor.Tensor
		if size, ok := o.Parameters["binary_data_size"]; ok {
			n, isNum := size.(float64)
			if !isNum || n < 0 || n > float64(len(tail)) || n != float64(int(n)) {
				return nil, fmt.Errorf("output %q: binary_data_size %v is not a length within the %d bytes left", o.Name, size, len(tail))
			}
			dt, err := tensor.ParseDataType(o.Datatype)
			if err != nil {
				return nil, fmt.Errorf("output %q: unknown datatype %q", o.Name, o.Datatype)
			}
			t = &tensor.Tensor{Name: o.Name, Datatype: dt, Shape: o.Shape, Data: tail[:int(n):int(n)]}
			tail = tail[int(n):]
		} else {
			var err error
			if t, err = tensor.FromJSON(&tensor.JSON{Name: o.Name, Shape: o.Shape, Datatype: o.Datatype, Data: o.Data}); err != nil {
				return nil, fmt.Errorf("output %q: %w", o.Name, err)
			}
		}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("output %q: %w", o.Name, err)
		}
		if len(t.Shape) == 0 {
			return nil, fmt.Errorf("output %q: a scalar has no batch dimension to split by jobs", o.Name)
		}
		out = append(out, wire.ToProto(t))
	}
	if len(tail) > 0 {
		return nil, fmt.Errorf("%d binary bytes after the last output", len(tail))
	}
	return out, nil
}

// declaredOutputs keeps the outputs the model's config declares (all when
// it declares none), in the config's order: outputs the backend adds
// are not inferq's to store.
func (r *httpRunner) declaredOutputs(outs []*inferqpb.Tensor) []*inferqpb.Tensor {
	if len(r.model.Outputs) == 0 {
		return outs
	}
	kept := make([]*inferqpb.Tensor, 0, len(r.model.Outputs))
	for _, d := range r.model.Outputs {
		for _, o := range outs {
			if o.Name == d.Name {
				kept = append(kept, o)
				break
			}
		}
	}
	return kept
}
