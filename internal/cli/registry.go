package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/inferq/inferq/internal/config"
	apiclient "github.com/inferq/inferq/pkg/client"
)

// routingFields are the keys of a models file's entry that set the model's
// routing rather than the version's config (PUT /v1/models/{m} takes both).
var routingFields = []string{"default_version", "split"}

// modelDoc is one entry of a models file, ready to PUT.
type modelDoc struct {
	name string
	body []byte // JSON: the entry as written, routing fields included
}

// readModels reads a models file: a config file (its `models:` list; the
// other sections are ignored, so the broker's own config file works), a
// YAML list of model configs, or one model config. Every entry is checked
// as the broker checks it, so a file with one bad entry registers nothing.
func readModels(src string, b []byte) ([]modelDoc, error) {
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	var entries []any
	switch d := doc.(type) {
	case []any:
		entries = d
	case map[string]any:
		if list, ok := d["models"]; ok {
			l, isList := list.([]any)
			if !isList {
				return nil, fmt.Errorf("%s: models: want a list of model configs", src)
			}
			entries = l
		} else {
			entries = []any{d}
		}
	case nil:
		return nil, fmt.Errorf("%s: no model config in the file", src)
	default:
		return nil, fmt.Errorf("%s: want a model config, a list of them, or a `models:` list", src)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%s: no model config in the file", src)
	}
	out := make([]modelDoc, 0, len(entries))
	for k, e := range entries {
		where := fmt.Sprintf("%s: models[%d]", src, k)
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: want a model config (a mapping)", where)
		}
		body, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		cfg := make(map[string]any, len(m))
		for key, v := range m {
			cfg[key] = v
		}
		for _, f := range routingFields {
			delete(cfg, f)
		}
		cfgJSON, _ := json.Marshal(cfg) // a part of what encoded above
		parsed, err := config.ParseModel(cfgJSON)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if parsed.Name == "" {
			return nil, fmt.Errorf("%s: name: a model name is required", where)
		}
		out = append(out, modelDoc{name: parsed.Name, body: body})
	}
	return out, nil
}

// apply registers the models of a file, in order, and prints the broker's
// answer to each. It stops at the first refusal; the models before it stay
// registered, and it says which.
func (c *client) apply(ctx context.Context, file string) int {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		fmt.Fprintf(c.errw, "inferq: %v\n", err)
		return ExitUsage
	}
	docs, err := readModels(file, b)
	if err != nil {
		fmt.Fprintf(c.errw, "inferq models apply: %v\n", err)
		return ExitUsage
	}
	var done []string
	for _, d := range docs {
		r, err := c.api.PutModel(ctx, d.name, json.RawMessage(d.body))
		if err != nil {
			if len(done) > 0 {
				fmt.Fprintf(c.errw, "inferq models apply: registered before the failure: %s\n", strings.Join(done, ", "))
			}
			return c.fail(fmt.Errorf("model %q: %w", d.name, err))
		}
		done = append(done, d.name)
		fmt.Fprintln(c.out, string(bytes.TrimSpace(r.Raw)))
	}
	return ExitOK
}

// rm retires MODEL or MODEL@VERSION and prints the broker's answer.
func (c *client) rm(ctx context.Context, arg string) int {
	model, version, versioned := strings.Cut(arg, "@")
	if model == "" || versioned && version == "" {
		return usageErr(c.errw, "models rm", fmt.Sprintf("%q: want MODEL or MODEL@VERSION", arg))
	}
	var r *apiclient.Registered
	var err error
	if versioned {
		r, err = c.api.DeleteVersion(ctx, model, version)
	} else {
		r, err = c.api.DeleteModel(ctx, model)
	}
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintln(c.out, string(bytes.TrimSpace(r.Raw)))
	return ExitOK
}
