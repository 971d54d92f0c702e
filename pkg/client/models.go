package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Model is a model's configuration and live figures (GET /v1/models).
type Model struct {
	Name     string         `json:"name"`
	Version  string         `json:"version"`
	Kind     string         `json:"kind"`       // "tensor" or "generate"
	Test     bool           `json:"test_model"` // a built-in test model, not real inference
	Inputs   []TensorSpec   `json:"inputs"`
	Outputs  []TensorSpec   `json:"outputs"`
	Batching Batching       `json:"batching"`
	Queue    map[string]any `json:"queue"` // max_queued, default_timeout, max_deliver
	// Parameters are the request parameters the model takes besides the
	// broker's priority, timeout_ms and stream.
	Parameters []Parameter `json:"parameters"`
	Workers    int         `json:"workers"` // live workers serving the model
	Stats      *Stats      `json:"stats"`   // nil when the broker could not read them
	// Raw is the model's JSON as the broker sent it, with any field this
	// client does not know.
	Raw json.RawMessage `json:"-"`
}

// TensorSpec is a declared input or output. An empty Datatype accepts any;
// Dims leave out the batch dimension, and -1 is any size.
type TensorSpec struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Dims     []int64 `json:"dims"`
}

// Batching is the model's dynamic batching policy.
type Batching struct {
	MaxBatchSize        int    `json:"max_batch_size"`
	PreferredBatchSizes []int  `json:"preferred_batch_sizes"`
	MaxQueueDelay       string `json:"max_queue_delay"` // a Go duration
	Ragged              bool   `json:"ragged"`
}

// Parameter is a request parameter a model declares.
type Parameter struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"` // int, float, bool, string or strings
	Min     *float64 `json:"min"`
	Max     *float64 `json:"max"`
	Default any      `json:"default"`
}

// Stats are a model's live queue figures.
type Stats struct {
	Queued           uint64 `json:"queued"`          // jobs not yet batched
	BatchesPending   uint64 `json:"batches_pending"` // batches waiting for a worker
	InFlight         uint64 `json:"in_flight"`       // batches a worker holds
	LiveWorkers      int    `json:"live_workers"`
	RecentBatchSizes []int  `json:"recent_batch_sizes"`
	DesiredReplicas  uint64 `json:"desired_replicas"` // what the shipped KEDA ScaledObject asks for
}

// UnmarshalJSON keeps the model's JSON in Raw.
func (m *Model) UnmarshalJSON(b []byte) error {
	type plain Model
	if err := json.Unmarshal(b, (*plain)(m)); err != nil {
		return err
	}
	m.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// Models lists every model the broker serves, with its live figures.
func (c *Client) Models(ctx context.Context) ([]Model, error) {
	a, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/models", repeatable: true})
	if err != nil {
		return nil, err
	}
	var v struct {
		Models []Model `json:"models"`
	}
	if err := json.Unmarshal(a.body, &v); err != nil {
		return nil, fmt.Errorf("inferq client: unreadable model list: %w", err)
	}
	return v.Models, nil
}

// Model returns one model's configuration and live figures; an unknown
// model is ErrNotFound.
func (c *Client) Model(ctx context.Context, name string) (*Model, error) {
	if name == "" {
		return nil, localError("Model: empty model name")
	}
	a, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/models/" + pathEscape(name), repeatable: true})
	if err != nil {
		return nil, err
	}
	m := &Model{}
	if err := json.Unmarshal(a.body, m); err != nil {
		return nil, fmt.Errorf("inferq client: unreadable model %q: %w", name, err)
	}
	return m, nil
}
