package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"

	"github.com/inferq/inferq/pkg/jetstream"
)

// Parameter declares one request parameter a model takes. Ingress refuses a
// request with an undeclared parameter, a value of the wrong type or one out
// of [Min, Max], before anything is queued, so a bad value never reaches a
// worker; a declared Default is filled in when the request leaves it out.
type Parameter struct {
	Name string `yaml:"name" json:"name"`
	// Type is int, float, bool, string or strings (a string or a list of
	// strings, as stop sequences are given).
	Type    string   `yaml:"type" json:"type"`
	Min     *float64 `yaml:"min" json:"min,omitempty"` // int and float only; inclusive
	Max     *float64 `yaml:"max" json:"max,omitempty"` // int and float only; inclusive
	Default any      `yaml:"default" json:"default,omitempty"`

	defaultJSON json.RawMessage // Default, checked and encoded by finish
}

// Parameter types.
const (
	ParamInt     = "int"
	ParamFloat   = "float"
	ParamBool    = "bool"
	ParamString  = "string"
	ParamStrings = "strings"
)

// DefaultMaxTokensLimit bounds max_tokens of a generate model whose config
// sets no max_tokens_limit: a huge value would hold a worker for hours.
const DefaultMaxTokensLimit = 4096

// DefaultMaxTokens is the max_tokens filled in when a request to a generate
// model gives none (what the built-in runners assumed before it was filled).
const DefaultMaxTokens = 16

// BrokerParameters are read by the broker itself and accepted by every
// model: queue priority (0 highest), a deadline in milliseconds, whether
// tokens are streamed, and the completion webhook's URL. They have no Default: an absent one means the
// broker's own default (priority 1, the model's queue.default_timeout, no
// streaming), and is not added to the job.
var BrokerParameters = []Parameter{
	{Name: "priority", Type: ParamInt, Min: ptr(jetstream.MinPriority), Max: ptr(jetstream.MaxPriority)},
	{Name: "timeout_ms", Type: ParamInt, Min: ptr(0), Max: ptr(7 * 24 * 3600 * 1000)},
	{Name: "stream", Type: ParamBool},
	// callback_url: where the job's end is POSTed as a signed webhook
	// (internal/webhook); the broker keeps it out of the model's parameters.
	{Name: "callback_url", Type: ParamString},
}

func ptr(f float64) *float64 { return &f }

var paramNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,63}$`)

// IsBrokerParameter reports whether name is one of BrokerParameters.
func IsBrokerParameter(name string) bool {
	for _, p := range BrokerParameters {
		if p.Name == name {
			return true
		}
	}
	return false
}

// DefaultJSON is the declared default as JSON, nil when there is none.
func (p *Parameter) DefaultJSON() json.RawMessage { return p.defaultJSON }

// finish checks the declaration and encodes its default.
func (p *Parameter) finish() error {
	if !paramNameRE.MatchString(p.Name) {
		return fmt.Errorf("parameter %q: name must match %s", p.Name, paramNameRE)
	}
	switch p.Type {
	case ParamInt, ParamFloat:
		if p.Min != nil && p.Max != nil && *p.Min > *p.Max {
			return fmt.Errorf("parameter %q: min %s is above max %s", p.Name, num(*p.Min), num(*p.Max))
		}
	case ParamBool, ParamString, ParamStrings:
		if p.Min != nil || p.Max != nil {
			return fmt.Errorf("parameter %q: min and max apply to int and float only", p.Name)
		}
	default:
		return fmt.Errorf("parameter %q: type %q must be int, float, bool, string or strings", p.Name, p.Type)
	}
	p.defaultJSON = nil
	if p.Default != nil {
		b, err := json.Marshal(p.Default)
		if err != nil {
			return fmt.Errorf("parameter %q: default %v: %w", p.Name, p.Default, err)
		}
		if err := p.Check(b); err != nil {
			return fmt.Errorf("parameter %q: default: %w", p.Name, err)
		}
		p.defaultJSON = b
	}
	return nil
}

// Check validates one value, as JSON, against the declaration. Its errors
// say what is wrong without the parameter's name, which the caller adds.
func (p *Parameter) Check(raw json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("not valid JSON: %w", err)
	}
	switch p.Type {
	case ParamInt:
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("want an integer, got %s", quote(raw))
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if errors.Is(err, strconv.ErrRange) {
			return fmt.Errorf("%s is out of range", quote(raw))
		}
		if err != nil {
			return fmt.Errorf("want an integer, got %s", quote(raw))
		}
		return p.inRange(float64(i), raw)
	case ParamFloat:
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("want a number, got %s", quote(raw))
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsInf(f, 0) {
			return fmt.Errorf("%s is out of range", quote(raw))
		}
		return p.inRange(f, raw)
	case ParamBool:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("want true or false, got %s", quote(raw))
		}
	case ParamString:
		if _, ok := v.(string); !ok {
			return fmt.Errorf("want a string, got %s", quote(raw))
		}
	case ParamStrings:
		switch x := v.(type) {
		case string:
		case []any:
			for _, e := range x {
				if _, ok := e.(string); !ok {
					return fmt.Errorf("want a string or a list of strings, got %s", quote(raw))
				}
			}
		default:
			return fmt.Errorf("want a string or a list of strings, got %s", quote(raw))
		}
	default:
		return fmt.Errorf("unknown parameter type %q", p.Type)
	}
	return nil
}

func (p *Parameter) inRange(f float64, raw json.RawMessage) error {
	if p.Min != nil && f < *p.Min {
		return fmt.Errorf("%s is below the minimum %s", quote(raw), num(*p.Min))
	}
	if p.Max != nil && f > *p.Max {
		return fmt.Errorf("%s is above the maximum %s", quote(raw), num(*p.Max))
	}
	return nil
}

// quote shows a client's value in an error, cut short so a huge value does
// not make a huge answer.
func quote(raw json.RawMessage) string {
	const limit = 64
	if len(raw) > limit {
		return string(raw[:limit]) + "..."
	}
	return string(raw)
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// Param returns the model's declaration of a request parameter, or the
// broker's own.
func (m *Model) Param(name string) (*Parameter, bool) {
	for i := range m.Parameters {
		if m.Parameters[i].Name == name {
			return &m.Parameters[i], true
		}
	}
	for i := range BrokerParameters {
		if BrokerParameters[i].Name == name {
			return &BrokerParameters[i], true
		}
	}
	return nil, false
}

// AcceptedParams names every parameter a request to the model may give:
// the model's own in declaration order, then the broker's.
func (m *Model) AcceptedParams() []string {
	out := make([]string, 0, len(m.Parameters)+len(BrokerParameters))
	for _, p := range m.Parameters {
		out = append(out, p.Name)
	}
	for _, p := range BrokerParameters {
		out = append(out, p.Name)
	}
	return out
}

// finishParams adds the declarations every generate model and built-in test
// model has, then checks them all.
func (m *Model) finishParams(builtin []Parameter) []error {
	var errs []error
	if m.Kind == KindGenerate {
		if m.MaxTokensLimit == 0 {
			m.MaxTokensLimit = DefaultMaxTokensLimit
		}
		if m.MaxTokensLimit < 1 {
			errs = append(errs, fmt.Errorf("max_tokens_limit %d must be positive", m.MaxTokensLimit))
		}
		if i := paramIndex(m.Parameters, "max_tokens"); i >= 0 {
			p := &m.Parameters[i]
			if p.Max == nil {
				p.Max = ptr(float64(m.MaxTokensLimit))
			} else if *p.Max > float64(m.MaxTokensLimit) {
				errs = append(errs, fmt.Errorf("parameter \"max_tokens\": max %s is above max_tokens_limit %d", num(*p.Max), m.MaxTokensLimit))
			}
		} else {
			m.Parameters = append([]Parameter{{Name: "max_tokens", Type: ParamInt, Min: ptr(1),
				Max: ptr(float64(m.MaxTokensLimit)), Default: min(DefaultMaxTokens, m.MaxTokensLimit)}}, m.Parameters...)
		}
	} else if m.MaxTokensLimit != 0 {
		errs = append(errs, errors.New("max_tokens_limit applies to generate models only"))
	}
	for _, b := range builtin {
		if paramIndex(m.Parameters, b.Name) < 0 {
			m.Parameters = append(m.Parameters, b)
		}
	}
	seen := map[string]bool{}
	for i := range m.Parameters {
		p := &m.Parameters[i]
		if IsBrokerParameter(p.Name) {
			errs = append(errs, fmt.Errorf("parameter %q is the broker's own, accepted by every model; do not declare it", p.Name))
			continue
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("parameter %q: declared twice", p.Name))
		}
		seen[p.Name] = true
		if err := p.finish(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func paramIndex(ps []Parameter, name string) int {
	for i := range ps {
		if ps[i].Name == name {
			return i
		}
	}
	return -1
}
