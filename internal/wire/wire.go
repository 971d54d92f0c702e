// Package wire converts between the broker's in-memory tensors, their
// protobuf form on NATS, and the OIP JSON form clients see.
package wire

import (
	"encoding/json"
	"fmt"

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

// ResponseJSON renders a job's outputs as an OIP inference response.
func ResponseJSON(model, version, id string, outputs []*inferqpb.Tensor) (json.RawMessage, error) {
	r := Response{ModelName: model, ModelVersion: version, ID: id, Outputs: make([]any, 0, len(outputs))}
	for _, o := range outputs {
		if ref := o.GetRef(); ref != nil {
			r.Outputs = append(r.Outputs, &RefJSON{Name: o.GetName(), Shape: o.GetShape(), Datatype: o.GetDatatype(),
				Parameters: map[string]BlobRef{BlobParam: {Name: ref.Name, Size: ref.Size, Sha256: ref.Sha256}}})
			continue
		}
		j, err := tensor.ToJSON(FromProto(o))
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", o.GetName(), err)
		}
		r.Outputs = append(r.Outputs, j)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return b, nil
}
