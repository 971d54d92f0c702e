package ingress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/pkg/tensor"
)

// The KServe v2 / Triton binary tensor data extension. A request with the
// Inference-Header-Content-Length header is N bytes of JSON inference
// request followed by the raw bytes of every input whose parameters carry
// binary_data_size, in the order of the request's inputs. Answers carry
// outputs the same way when asked: their JSON has binary_data_size and no
// data, and their bytes follow the JSON. inferq's tensors are raw
// little-endian bytes already, so neither side converts a number.

const (
	// headerInferLen is the length of the JSON part of a binary body.
	headerInferLen = "Inference-Header-Content-Length"
	// mimeOctetStream is the Content-Type of a binary body, either way.
	mimeOctetStream = "application/octet-stream"
	// paramBinarySize is the byte size of an input or output sent as binary.
	paramBinarySize = "binary_data_size"
	// paramBinaryOutput asks, in the request's parameters, for every output
	// as binary; the ingress reads it and the model never sees it.
	paramBinaryOutput = "binary_data_output"
	// paramBinary asks, in one requested output's parameters, for that
	// output as binary (true) or JSON (false); it overrides the others.
	paramBinary = "binary_data"
)

// oipExtensions are the OIP extensions the server metadata announces:
// Triton's model configuration endpoint, its generate endpoints and the
// binary tensor data extension.
var oipExtensions = []string{"model_configuration", "generate", "binary_tensor_data"}

// headerLength reads Inference-Header-Content-Length: a decimal byte count
// no larger than the body.
func headerLength(v string, bodyLen int) (int, error) {
	v = strings.TrimSpace(v)
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return 0, invalid("%s: want a byte count, got %q", headerInferLen, v)
	}
	if n > uint64(bodyLen) {
		return 0, invalid("%s: %d is larger than the %d-byte body", headerInferLen, n, bodyLen)
	}
	return int(n), nil
}

// readBinary reads a whole body in the binary form into raw, sized by size
// (the expected length, at most the body limit), and decodes it. On
// success raw holds the JSON part only (for the idempotency hash) and tail
// is the binary part; the inputs' tensors share raw's memory, so nothing
// may write to raw afterwards.
func readBinary(body io.Reader, headerValue string, size int64, raw *bytes.Buffer, m *config.Model) (
	*inferRequest, []*tensor.Tensor, jobParams, []byte, error) {
	if size > 0 {
		raw.Grow(int(size) + bytes.MinRead) // one allocation (ReadFrom wants MinRead spare to see EOF); MaxBytesReader bounds what is read
	}
	if _, err := raw.ReadFrom(body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, nil, jobParams{}, nil, apiError(http.StatusRequestEntityTooLarge, "too_large",
				fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit))
		}
		return nil, nil, jobParams{}, nil, invalid("request body: %v", err)
	}
	all := raw.Bytes()
	n, err := headerLength(headerValue, len(all))
	if err != nil {
		return nil, nil, jobParams{}, nil, err
	}
	req, inputs, p, err := decodeBinaryRequest(all, n, m)
	if err != nil {
		return nil, nil, p, nil, err
	}
	raw.Truncate(n)
	return req, inputs, p, all[n:], nil
}

// decodeBinaryRequest reads a body in the binary form: the first headerLen
// bytes are the JSON request, the rest the binary inputs' bytes. Inputs are
// validated exactly as JSON ones are; the tensors share body's memory.
func decodeBinaryRequest(body []byte, headerLen int, m *config.Model) (*inferRequest, []*tensor.Tensor, jobParams, error) {
	if headerLen < 0 || headerLen > len(body) {
		return nil, nil, jobParams{}, invalid("%s: %d is outside the %d-byte body", headerInferLen, headerLen, len(body))
	}
	return decode(body[:headerLen], body[headerLen:], true, m)
}

// binaryInputs cuts tail into the bytes of the inputs that carry
// binary_data_size, in request order, keyed by input name. Without the
// binary form (binary false) no input may claim binary data.
func binaryInputs(in []*tensor.JSON, tail []byte, binary bool) (map[string][]byte, error) {
	var out map[string][]byte
	off := 0
	for _, j := range in {
		if j == nil {
			continue // checkInputs names it
		}
		raw, ok := j.Parameters[paramBinarySize]
		if !ok {
			continue
		}
		if !binary {
			return nil, invalid("input %q: %s given, but the request has no %s header", j.Name, paramBinarySize, headerInferLen)
		}
		f, isNum := raw.(float64)
		if !isNum || f < 0 || f != math.Trunc(f) {
			return nil, invalid("input %q: %s: want a byte count, got %v", j.Name, paramBinarySize, raw)
		}
		if len(j.Data) > 0 && string(j.Data) != "null" {
			return nil, invalid("input %q: give data or %s, not both", j.Name, paramBinarySize)
		}
		if f > float64(len(tail)-off) {
			return nil, invalid("input %q: %s %s runs past the end of the body: %d binary bytes remain",
				j.Name, paramBinarySize, strconv.FormatFloat(f, 'g', -1, 64), len(tail)-off)
		}
		size := int(f)
		if out == nil {
			out = map[string][]byte{}
		}
		out[j.Name] = tail[off : off+size : off+size]
		off += size
	}
	if off != len(tail) {
		return nil, invalid("the body has %d bytes after the %s JSON bytes, but the inputs' %s add up to %d",
			len(tail), headerInferLen, paramBinarySize, off)
	}
	return out, nil
}

// fromBinary makes the tensor of input j from its raw bytes, checking that
// shape × datatype size is binary_data_size (BYTES elements are walked by
// the spec check that follows).
func fromBinary(j *tensor.JSON, data []byte) (*tensor.Tensor, error) {
	dt, err := tensor.ParseDataType(j.Datatype)
	if err != nil {
		return nil, invalid("input %q: unknown datatype %q", j.Name, j.Datatype)
	}
	t := &tensor.Tensor{Name: j.Name, Datatype: dt, Shape: append([]int64(nil), j.Shape...), Data: data}
	n := t.NumElements()
	if n < 0 {
		return nil, invalid("input %q: shape %v has a negative dimension or too many elements", j.Name, j.Shape)
	}
	if es := int64(dt.ElemSize()); dt != tensor.Bytes && (n > math.MaxInt64/es || n*es != int64(len(data))) {
		return nil, invalid("input %q: %s %d does not match shape %v of %s (%d elements of %d bytes)",
			j.Name, paramBinarySize, len(data), j.Shape, dt, n, es)
	}
	if err := t.Validate(); err != nil { // BYTES: every length prefix within the data
		return nil, invalid("input %q: %s", j.Name, strings.TrimPrefix(err.Error(), fmt.Sprintf("tensor %q: ", j.Name)))
	}
	return t, nil
}

// outputWish says which outputs an answer carries as binary data.
type outputWish struct {
	all    bool            // every output, unless named says otherwise
	named  map[string]bool // per output, from its binary_data parameter
	framed bool            // the client sent Accept: application/octet-stream
}

// binary reports whether output name goes as binary data.
func (w outputWish) binary(name string) bool {
	if v, ok := w.named[name]; ok {
		return v
	}
	return w.all
}

// wanted reports whether the answer may differ from plain JSON.
func (w outputWish) wanted() bool {
	if w.all || w.framed {
		return true
	}
	for _, v := range w.named {
		if v {
			return true
		}
	}
	return false
}

// withAccept adds the client's Accept header: application/octet-stream
// asks for every output as binary (outputs the request named binary_data
// false stay JSON), framed as the extension frames it even when no output
// is binary.
func (w outputWish) withAccept(h http.Header) outputWish {
	if acceptsOctetStream(h.Values(echo.HeaderAccept)) {
		w.all, w.framed = true, true
	}
	return w
}

// acceptsOctetStream reports whether an Accept header lists
// application/octet-stream with a quality above zero.
func acceptsOctetStream(fields []string) bool {
	for _, f := range fields {
		for _, r := range strings.Split(f, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(r))
			if (err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter)) || mt != mimeOctetStream {
				continue
			}
			if q, ok := params["q"]; ok {
				if v, err := strconv.ParseFloat(q, 64); err != nil || v <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// takeOutputWish reads and removes the request's binary_data_output and
// checks each requested output's binary_data: both must be booleans.
func takeOutputWish(req *inferRequest) (outputWish, error) {
	var w outputWish
	if raw, ok := req.Parameters[paramBinaryOutput]; ok {
		if err := json.Unmarshal(raw, &w.all); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return w, invalid("parameter %q: want true or false, got %s", paramBinaryOutput, raw)
		}
		delete(req.Parameters, paramBinaryOutput)
		if len(req.Parameters) == 0 {
			req.Parameters = nil
		}
	}
	for _, o := range req.Outputs {
		v, ok := o.Parameters[paramBinary]
		if !ok {
			continue
		}
		b, isBool := v.(bool)
		if !isBool {
			return w, invalid("output %q: parameter %q: want true or false, got %v", o.Name, paramBinary, v)
		}
		if w.named == nil {
			w.named = map[string]bool{}
		}
		w.named[o.Name] = b
	}
	return w, nil
}

// outputJSON is a response output; data is left out once it goes binary.
type outputJSON struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

// binaryOutputs rewrites an OIP inference response so that the outputs w
// names lose their data and gain binary_data_size; it returns the new JSON
// and those outputs' raw bytes in output order. Members it does not know
// are kept.
func binaryOutputs(result json.RawMessage, w outputWish) (json.RawMessage, [][]byte, error) {
	var resp map[string]json.RawMessage
	if err := json.Unmarshal(result, &resp); err != nil {
		return nil, nil, fmt.Errorf("stored result: %w", err)
	}
	var outs []*tensor.JSON
	if raw, ok := resp["outputs"]; ok {
		if err := json.Unmarshal(raw, &outs); err != nil {
			return nil, nil, fmt.Errorf("stored result outputs: %w", err)
		}
	}
	var tail [][]byte
	rendered := make([]outputJSON, len(outs))
	for k, o := range outs {
		if o == nil {
			return nil, nil, fmt.Errorf("stored result: output %d is null", k)
		}
		rendered[k] = outputJSON{Name: o.Name, Shape: o.Shape, Datatype: o.Datatype, Parameters: o.Parameters, Data: o.Data}
		if !w.binary(o.Name) {
			continue
		}
		t, err := tensor.FromJSON(o)
		if err != nil {
			return nil, nil, fmt.Errorf("stored result: output %q: %w", o.Name, err)
		}
		params := make(map[string]any, len(o.Parameters)+1)
		for k, v := range o.Parameters {
			params[k] = v
		}
		params[paramBinarySize] = len(t.Data)
		rendered[k].Parameters, rendered[k].Data = params, nil
		tail = append(tail, t.Data)
	}
	if len(tail) == 0 {
		return result, nil, nil
	}
	b, err := json.Marshal(rendered)
	if err != nil {
		return nil, nil, fmt.Errorf("encode outputs: %w", err)
	}
	resp["outputs"] = b
	head, err := json.Marshal(resp)
	if err != nil {
		return nil, nil, fmt.Errorf("encode response: %w", err)
	}
	return head, tail, nil
}

// answerResult is the one place an answer that carries a job's outputs is
// written: the inference response alone (asRecord false: /v2 infer) or the
// job record around it (GET /v1/jobs/{id}, a `Prefer: wait` POST). The
// outputs w names go as binary tensor data after the JSON; without such a
// wish the stored bytes are answered as they are.
func (i *Ingress) answerResult(c echo.Context, code int, rec *results.Record, asRecord bool, w outputWish) error {
	if asRecord {
		c.Response().Header().Add("Vary", echo.HeaderAccept)
	}
	// Outputs stored by reference are resolved here, before any rendering:
	// rec replaced by a copy whose result holds their data.
	rec, err := i.resolved(c.Request().Context(), rec)
	if err != nil {
		return err
	}
	plain := func() error {
		if asRecord {
			return writeRecord(c, code, rec)
		}
		return c.JSONBlob(code, rec.Result)
	}
	if !w.wanted() || (len(rec.Result) == 0 && !w.framed) {
		return plain()
	}
	head, tail := rec.Result, [][]byte(nil)
	if len(rec.Result) > 0 {
		var err error
		if head, tail, err = binaryOutputs(rec.Result, w); err != nil {
			return fmt.Errorf("job %s: %w", rec.ID, err)
		}
	}
	if len(tail) == 0 && !w.framed {
		return plain() // asked for, but no output is binary
	}
	if asRecord {
		cp := *rec
		cp.Result = head
		b, err := json.Marshal(&cp)
		if err != nil {
			return fmt.Errorf("job %s: encode record: %w", rec.ID, err)
		}
		head = b
	}
	size := len(head)
	for _, t := range tail {
		size += len(t)
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, mimeOctetStream)
	h.Set(headerInferLen, strconv.Itoa(len(head)))
	h.Set(echo.HeaderContentLength, strconv.Itoa(size))
	c.Response().WriteHeader(code)
	if _, err := c.Response().Write(head); err != nil {
		return nil // the client is gone; nothing to answer
	}
	for _, t := range tail {
		if _, err := c.Response().Write(t); err != nil {
			return nil
		}
	}
	return nil
}
