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
	Outputs      []*tensor.JSON `json:"outputs"`
}

// ResponseJSON renders a job's outputs as an OIP inference response.
func ResponseJSON(model, version, id string, outputs []*inferqpb.Tensor) (json.RawMessage, error) {
	r := Response{ModelName: model, ModelVersion: version, ID: id, Outputs: make([]*tensor.JSON, 0, len(outputs))}
	for _, o := range outputs {
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
