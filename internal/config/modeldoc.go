package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"
)

// ParseModel decodes one model config (YAML, or JSON, which is YAML) and
// validates it exactly as a model of the config file is: unknown fields are
// refused and the defaults are filled. The registry (internal/registry)
// takes models through it, so a model is the same whether it came from the
// file or over the API.
func ParseModel(b []byte) (Model, error) {
	var m Model
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return m, errors.New("model config is empty")
		}
		return m, fmt.Errorf("model config: %w", err)
	}
	if err := m.finish(); err != nil {
		return m, err
	}
	return m, nil
}

// Validate fills the model's defaults and checks it, as Finish does for the
// models of the file.
func (m *Model) Validate() error { return m.finish() }
