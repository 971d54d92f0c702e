package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// The calls of this file write the live model registry (a broker started
// with `registry: true`; docs/models.md, "Registry"). They need the admin
// scope when auth is on (ErrForbidden without it); a broker whose registry
// is off answers ErrConflict. A model config is JSON with the config file's
// field names: a map, a struct with those JSON tags, or a json.RawMessage.

// Registered is the broker's answer to a registry write.
type Registered struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"` // the version registered or retired ("" for a whole model)
	Status  string `json:"status,omitempty"`  // "draining" after a delete
	// Raw is the answer's JSON as the broker sent it.
	Raw json.RawMessage `json:"-"`
}

// Routing is a model's choice of version for jobs that name none.
type Routing struct {
	// DefaultVersion becomes the model's default; "" keeps the present one.
	DefaultVersion string
	// Split weighs versions (e.g. {"2": 95, "3": 5}); nil keeps the present
	// split unless ClearSplit.
	Split map[string]int
	// ClearSplit removes the split: jobs go to the default version.
	ClearSplit bool
}

// PutModel registers a model config as the version its "version" field
// names (default "1"). The first version of a model becomes its default.
// The body may also carry the model's "default_version" and "split".
func (c *Client) PutModel(ctx context.Context, name string, config any) (*Registered, error) {
	if name == "" {
		return nil, localError("PutModel: empty model name")
	}
	body, err := configBody("PutModel", config)
	if err != nil {
		return nil, err
	}
	return c.registryCall(ctx, http.MethodPut, "/v1/models/"+pathEscape(name), body)
}

// PutVersion registers (or replaces) a version of a model: a new batching
// or queue setting of an existing version is a PutVersion with the new
// config. A retired version put again takes jobs again.
func (c *Client) PutVersion(ctx context.Context, name, version string, config any) (*Registered, error) {
	if name == "" || version == "" {
		return nil, localError("PutVersion: empty model name or version")
	}
	body, err := configBody("PutVersion", config)
	if err != nil {
		return nil, err
	}
	return c.registryCall(ctx, http.MethodPut, "/v1/models/"+pathEscape(name)+"/versions/"+pathEscape(version), body)
}

// SetRouting sets a model's default version and split (a canary). Every
// version it names must be registered and not retired (else ErrInvalid).
func (c *Client) SetRouting(ctx context.Context, name string, r Routing) error {
	if name == "" {
		return localError("SetRouting: empty model name")
	}
	doc := map[string]any{}
	if r.DefaultVersion != "" {
		doc["default_version"] = r.DefaultVersion
	}
	switch {
	case r.ClearSplit && r.Split != nil:
		return localError("SetRouting: a split and ClearSplit both given")
	case r.ClearSplit:
		doc["split"] = nil
	case r.Split != nil:
		doc["split"] = r.Split
	}
	if len(doc) == 0 {
		return localError("SetRouting: nothing to set")
	}
	body, _ := json.Marshal(doc) // strings and ints: cannot fail
	_, err := c.registryCall(ctx, http.MethodPut, "/v1/models/"+pathEscape(name), body)
	return err
}

// DeleteModel retires every version of a model. The broker answers at
// once; the versions take no new jobs and drain (their queued jobs still
// run) before their consumers and keys go.
func (c *Client) DeleteModel(ctx context.Context, name string) (*Registered, error) {
	if name == "" {
		return nil, localError("DeleteModel: empty model name")
	}
	return c.registryCall(ctx, http.MethodDelete, "/v1/models/"+pathEscape(name), nil)
}

// DeleteVersion retires one version of a model, which drains as
// DeleteModel's do. The default version of a model with other live
// versions is refused (ErrConflict): make another version the default
// first.
func (c *Client) DeleteVersion(ctx context.Context, name, version string) (*Registered, error) {
	if name == "" || version == "" {
		return nil, localError("DeleteVersion: empty model name or version")
	}
	return c.registryCall(ctx, http.MethodDelete, "/v1/models/"+pathEscape(name)+"/versions/"+pathEscape(version), nil)
}

// configBody encodes a model config and checks that it is a JSON object.
func configBody(call string, config any) ([]byte, error) {
	var body []byte
	switch v := config.(type) {
	case nil:
		return nil, localError("%s: no model config", call)
	case json.RawMessage:
		body = v
	case []byte:
		body = v
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, localError("%s: model config: %v", call, err)
		}
		body = b
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, localError("%s: model config is not a JSON object: %v", call, err)
	}
	return body, nil
}

// registryCall sends one registry write. Writes are idempotent (the same
// PUT or DELETE again leaves the same state), so they may be retried.
func (c *Client) registryCall(ctx context.Context, method, path string, body []byte) (*Registered, error) {
	a, err := c.do(ctx, call{method: method, path: path, body: body, repeatable: true})
	if err != nil {
		return nil, err
	}
	r := &Registered{Raw: append(json.RawMessage(nil), a.body...)}
	if err := json.Unmarshal(a.body, r); err != nil {
		return nil, fmt.Errorf("inferq client: unreadable answer of %s %s: %w", method, path, err)
	}
	return r, nil
}
