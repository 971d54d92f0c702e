// Package wire converts between the broker's in-memory tensors, their
// protobuf form on NATS, and the OIP JSON form clients see.
package wire

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/inferq/inferq/internal/jsonstr"
	"github.com/inferq/inferq/pkg/tensor"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// ToProto converts a tensor for the wire; the data is shared, not copied.
func ToProto(t *tensor.Tensor) *inferqpb.Tensor {
	return &inferqpb.Tensor{Name: t.Name, Datatype: string(t.Datatype), Shape: t.Shape, Data: t.Data}
}

// FromProto converts a wire tensor; the data is shared, not copied. It does
// not validate: call Validate where the bytes come from outside.
func FromProto(p *inferqpb.Tensor) *tensor.Tensor {
	return &tensor.Tensor{Name: p.GetName(), Datatype: tensor.DataType(p.GetDatatype()), Shape: p.GetShape(), Data: p.GetData()}
}

// Response is an OIP inference response.
type Response struct {
	ModelName    string         `json:"model_name"`
	ModelVersion string         `json:"model_version,omitempty"`
	ID           string         `json:"id"`
	Parameters   map[string]any `json:"parameters,omitempty"`
	Outputs      []any          `json:"outputs"` // *tensor.JSON, or *RefJSON for an output by reference
}

// BlobParam is the output parameter that names a result tensor's bytes in
// the blobs bucket: a job record keeps this reference, and the ingress
// puts the data back (resolves it) before a client sees the record.
const BlobParam = "inferq_blob"

// RefJSON is an output tensor by reference in a stored result: no data,
// and parameters {"inferq_blob": {"name","size","sha256"}}.
type RefJSON struct {
	Name       string             `json:"name"`
	Shape      []int64            `json:"shape"`
	Datatype   string             `json:"datatype"`
	Parameters map[string]BlobRef `json:"parameters"`
}

// BlobRef is inferqpb.BlobRef in a result's JSON.
type BlobRef struct {
	Name   string `json:"name"`
	Size   uint64 `json:"size"`
	Sha256 string `json:"sha256"`
}

// Proto is the wire form of r.
func (r BlobRef) Proto() *inferqpb.BlobRef {
	return &inferqpb.BlobRef{Name: r.Name, Size: r.Size, Sha256: r.Sha256}
}

// ResponseJSON renders a job's outputs as an OIP inference response. It is
// on every job's path, so it appends the JSON by hand instead of going
// through encoding/json: the bytes are exactly what json.Marshal writes for a
// Response of *tensor.JSON and *RefJSON outputs (the tests hold it to that).
func ResponseJSON(model, version, id string, outputs []*inferqpb.Tensor) (json.RawMessage, error) {
	size := 64 + len(model) + len(version) + len(id)
	for _, o := range outputs {
		size += 96 + len(o.GetName()) + 8*len(o.GetShape()) + 2*len(o.GetData())
	}
	b := make([]byte, 0, size)
	b = append(b, `{"model_name":`...)
	b = jsonstr.Append(b, model)
	if version != "" {
		b = append(b, `,"model_version":`...)
		b = jsonstr.Append(b, version)
	}
	b = append(b, `,"id":`...)
	b = jsonstr.Append(b, id)
	b = append(b, `,"outputs":[`...)
	for i, o := range outputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = jsonstr.Append(b, o.GetName())
		if ref := o.GetRef(); ref != nil {
			// RefJSON: the shape as it is (null when nil), no data.
			b = append(b, `,"shape":`...)
			b = appendShape(b, o.GetShape(), true)
			b = append(b, `,"datatype":`...)
			b = jsonstr.Append(b, o.GetDatatype())
			b = append(b, `,"parameters":{"`+BlobParam+`":{"name":`...)
			b = jsonstr.Append(b, ref.GetName())
			b = append(b, `,"size":`...)
			b = strconv.AppendUint(b, ref.GetSize(), 10)
			b = append(b, `,"sha256":`...)
			b = jsonstr.Append(b, ref.GetSha256())
			b = append(b, "}}}"...)
			continue
		}
		// tensor.JSON from tensor.ToJSON: the shape copied (never null),
		// no parameters, the data as AppendJSONData writes it.
		b = append(b, `,"shape":`...)
		b = appendShape(b, o.GetShape(), false)
		b = append(b, `,"datatype":`...)
		b = jsonstr.Append(b, o.GetDatatype())
		b = append(b, `,"data":`...)
		var err error
		if b, err = tensor.AppendJSONData(b, FromProto(o)); err != nil {
			return nil, fmt.Errorf("output %q: %w", o.GetName(), err)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...), nil
}

// appendShape appends a shape as a JSON array; a nil shape is null when
// nilIsNull (as encoding/json writes a nil slice), else [].
func appendShape(b []byte, shape []int64, nilIsNull bool) []byte {
	if shape == nil && nilIsNull {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, d := range shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return append(b, ']')
}
