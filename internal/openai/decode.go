package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"

	"github.com/inferq/inferq/internal/config"
)

// Request is a completions or chat completions body, read and checked
// against the model it names: what a job needs, and what the answer needs.
type Request struct {
	Endpoint string        // EndpointCompletions or EndpointChatCompletions
	ModelID  string        // as the client named it; answers echo it
	Model    *config.Model // the model it names
	Prompt   string        // the text the model continues
	// Parameters are the job's model parameters: max_tokens and the
	// sampling fields the request gave, as JSON.
	Parameters   map[string]json.RawMessage
	MaxTokens    int // the max_tokens in effect, for the finish reason
	Stream       bool
	IncludeUsage bool   // stream_options.include_usage
	User         string // the end user, for logs
}

// Chat reports whether the request is a chat completion.
func (r *Request) Chat() bool { return r.Endpoint == EndpointChatCompletions }

// JobBody is the body of the inferq job the request becomes, in the form
// POST /v1/models/{model}/jobs takes: the text_input shorthand with the
// parameters, the broker's priority and stream among them.
func (r *Request) JobBody(priority int) []byte {
	params := make(map[string]json.RawMessage, len(r.Parameters)+2)
	for k, v := range r.Parameters {
		params[k] = v
	}
	params["priority"] = json.RawMessage(strconv.Itoa(priority))
	if r.Stream {
		params["stream"] = json.RawMessage("true")
	}
	b, _ := json.Marshal(struct { // strings and raw JSON already checked: cannot fail
		TextInput  string                     `json:"text_input"`
		Parameters map[string]json.RawMessage `json:"parameters"`
	}{r.Prompt, params})
	return b
}

// samplingFields pass to the model under the same name, when its config
// declares them; a model that does not take one refuses it (400), as an
// inferq job with an undeclared parameter is refused.
var samplingFields = []string{"temperature", "top_p", "seed", "stop"}

// neutral are OpenAI fields this server does not implement, accepted only
// with the value that asks for nothing (or null), so that clients that send
// their defaults still work.
var neutral = map[string][]string{
	"frequency_penalty":   {"0"},
	"presence_penalty":    {"0"},
	"logit_bias":          {"{}"},
	"logprobs":            {"false", "0"},
	"top_logprobs":        {"0"},
	"echo":                {"false"},
	"best_of":             {"1"},
	"suffix":              {`""`},
	"parallel_tool_calls": {"true", "false"},
	"tools":               {"[]"},
	"tool_choice":         {`"none"`, `"auto"`},
	"response_format":     {`{"type":"text"}`},
	"store":               {"false"},
	"metadata":            nil, // any: OpenAI keeps it with stored completions; nothing to keep here
	"service_tier":        {`"auto"`, `"default"`},
}

// fields are the fields each endpoint reads.
var fields = map[string][]string{
	EndpointCompletions: {"model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "n", "stream",
		"stream_options", "user", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "echo", "best_of", "suffix"},
	EndpointChatCompletions: {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed",
		"stop", "n", "stream", "stream_options", "user", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs",
		"top_logprobs", "parallel_tool_calls", "tools", "tool_choice", "response_format", "store", "metadata", "service_tier"},
}

// Decode reads the body of a completions or chat completions request for
// endpoint and checks it against the model it names in cfg. Every error is
// an *Error: 400 naming the field at fault, or 404 for an unknown model.
func Decode(endpoint string, body []byte, cfg *config.Config) (*Request, error) {
	known, ok := fields[endpoint]
	if !ok {
		return nil, &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: "unknown_url",
			Message: fmt.Sprintf("endpoint %q: want %s or %s", endpoint, EndpointCompletions, EndpointChatCompletions)}
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		msg := "the body must be a JSON object"
		if err != nil {
			msg += ": " + err.Error()
		}
		return nil, &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Code: "invalid_json", Message: msg}
	}
	names := make([]string, 0, len(raw))
	for k, v := range raw {
		if isNull(v) {
			delete(raw, k) // null is absent, as OpenAI reads it
			continue
		}
		names = append(names, k)
	}
	slices.Sort(names) // the same request always names the same field first
	for _, k := range names {
		if !slices.Contains(known, k) {
			return nil, badParam(k, "Unrecognized request argument supplied: %s", k)
		}
		if allowed, ok := neutral[k]; ok && allowed != nil && !slices.Contains(allowed, compact(raw[k])) {
			return nil, badParam(k, "%s is not supported by this server; leave it out (accepted: %s)", k, strings.Join(allowed, " or "))
		}
	}

	r := &Request{Endpoint: endpoint, Parameters: map[string]json.RawMessage{}}
	if err := str(raw, "model", &r.ModelID); err != nil {
		return nil, err
	}
	if r.ModelID == "" {
		return nil, badParam("model", "model: required (GET /openai/v1/models lists them)")
	}
	name, version := SplitModelID(r.ModelID)
	m, ok := cfg.Model(name)
	if !ok || m.Kind != config.KindGenerate || version != "" && version != m.Version {
		return nil, ModelNotFound(r.ModelID)
	}
	r.Model = m
	if err := str(raw, "user", &r.User); err != nil {
		return nil, err
	}
	if v, ok := raw["n"]; ok {
		if n, err := strconv.Atoi(compact(v)); err != nil || n != 1 {
			return nil, badParam("n", "n: this server generates one choice per request; n must be 1 (send n requests instead), got %s", compact(v))
		}
	}
	if v, ok := raw["stream"]; ok {
		if err := json.Unmarshal(v, &r.Stream); err != nil {
			return nil, badParam("stream", "stream: want true or false, got %s", compact(v))
		}
	}
	if v, ok := raw["stream_options"]; ok {
		var so struct {
			IncludeUsage *bool `json:"include_usage"`
		}
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&so); err != nil {
			return nil, badParam("stream_options", "stream_options: %v", err)
		}
		if !r.Stream {
			return nil, badParam("stream_options", "stream_options: only allowed with stream: true")
		}
		r.IncludeUsage = so.IncludeUsage != nil && *so.IncludeUsage
	}
	if err := r.maxTokens(raw); err != nil {
		return nil, err
	}
	for _, f := range samplingFields {
		v, ok := raw[f]
		if !ok {
			continue
		}
		decl, ok := m.Param(f)
		if !ok {
			return nil, badParam(f, "%s: model %q does not take it; it takes %s", f, r.ModelID, strings.Join(m.AcceptedParams(), ", "))
		}
		if err := decl.Check(v); err != nil {
			return nil, badParam(f, "%s: %v", f, err)
		}
		r.Parameters[f] = v
	}
	var err error
	if r.Chat() {
		r.Prompt, err = chatPrompt(raw["messages"], m)
	} else {
		r.Prompt, err = completionPrompt(raw["prompt"])
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// maxTokens reads max_tokens (or, for chat, max_completion_tokens, which
// replaced it there and wins) against the model's limit, and fills in the
// model's default when the request gives none.
func (r *Request) maxTokens(raw map[string]json.RawMessage) error {
	field := "max_tokens"
	v, ok := raw[field]
	if mc, given := raw["max_completion_tokens"]; given {
		field, v, ok = "max_completion_tokens", mc, true
	}
	decl, declared := r.Model.Param("max_tokens") // every generate model declares it
	if !ok {
		if !declared || decl.DefaultJSON() == nil {
			r.MaxTokens = config.DefaultMaxTokens
			r.Parameters["max_tokens"] = json.RawMessage(strconv.Itoa(r.MaxTokens))
			return nil
		}
		v = decl.DefaultJSON()
	} else if declared {
		if err := decl.Check(v); err != nil {
			return badParam(field, "%s: %v", field, err)
		}
	}
	n, err := strconv.Atoi(compact(v))
	if err != nil {
		return badParam(field, "%s: want an integer, got %s", field, compact(v))
	}
	r.MaxTokens = n
	r.Parameters["max_tokens"] = json.RawMessage(strconv.Itoa(n))
	return nil
}

// completionPrompt reads prompt: a string, or a list holding one.
func completionPrompt(v json.RawMessage) (string, error) {
	if v == nil {
		return "", badParam("prompt", "prompt: required")
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s, nil
	}
	var list []string
	if json.Unmarshal(v, &list) == nil {
		if len(list) == 1 {
			return list[0], nil
		}
		return "", badParam("prompt", "prompt: this server takes one prompt per request, got %d; send one request per prompt or use the Batch API", len(list))
	}
	return "", badParam("prompt", "prompt: want a string (token ids are not accepted: the broker does not know the model's tokenizer)")
}

// message is a chat message as clients send it; fields other than these
// (tool calls, audio) are not read.
type message struct {
	Role    string          `json:"role"`
	Name    string          `json:"name"`
	Content json.RawMessage `json:"content"`
}

var roles = []string{"system", "developer", "user", "assistant", "tool"}

// chatPrompt renders the messages through the model's chat template.
func chatPrompt(v json.RawMessage, m *config.Model) (string, error) {
	var msgs []message
	if v == nil {
		return "", badParam("messages", "messages: required")
	}
	if err := json.Unmarshal(v, &msgs); err != nil {
		return "", badParam("messages", "messages: want a list of {role, content}: %v", err)
	}
	if len(msgs) == 0 {
		return "", badParam("messages", "messages: at least one message is required")
	}
	data := config.ChatTemplateData{Model: m.Name, Messages: make([]config.ChatMessage, len(msgs))}
	for k, msg := range msgs {
		param := "messages[" + strconv.Itoa(k) + "]"
		if !slices.Contains(roles, msg.Role) {
			return "", badParam(param+".role", "%s.role: want one of %s, got %q", param, strings.Join(roles, ", "), msg.Role)
		}
		text, err := content(msg.Content)
		if err != nil {
			return "", badParam(param+".content", "%s.content: %v", param, err)
		}
		data.Messages[k] = config.ChatMessage{Role: msg.Role, Name: msg.Name, Content: text}
	}
	t, err := chatTemplate(m)
	if err != nil {
		return "", &Error{Status: http.StatusInternalServerError, Type: TypeServer, Code: "chat_template", Message: err.Error()}
	}
	var out strings.Builder
	if err := t.Execute(&out, data); err != nil {
		return "", badParam("messages", "messages: model %q's chat_template cannot render them: %v", m.Name, err)
	}
	return out.String(), nil
}

// content reads a message's content: a string, null, or a list of text
// parts (joined with newlines).
func content(v json.RawMessage) (string, error) {
	if isNull(v) {
		return "", nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(v, &parts); err != nil {
		return "", fmt.Errorf("want a string or a list of text parts")
	}
	texts := make([]string, 0, len(parts))
	for k, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", fmt.Errorf("part %d: only {\"type\":\"text\",\"text\":...} parts are accepted, got type %q", k, p.Type)
		}
		texts = append(texts, *p.Text)
	}
	return strings.Join(texts, "\n"), nil
}

// templates caches each model's parsed chat template, by its source.
var templates sync.Map // model name + "\x00" + source → *template.Template

func chatTemplate(m *config.Model) (*template.Template, error) {
	key := m.Name + "\x00" + m.ChatTemplate
	if t, ok := templates.Load(key); ok {
		return t.(*template.Template), nil
	}
	t, err := m.ParseChatTemplate()
	if err != nil {
		return nil, err
	}
	templates.Store(key, t)
	return t, nil
}

// str reads an optional string field.
func str(raw map[string]json.RawMessage, name string, out *string) error {
	v, ok := raw[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(v, out); err != nil {
		return badParam(name, "%s: want a string, got %s", name, compact(v))
	}
	return nil
}

func isNull(v json.RawMessage) bool { return len(v) == 0 || string(bytes.TrimSpace(v)) == "null" }

// compact is v without insignificant whitespace, for comparisons and
// messages.
func compact(v json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return string(v)
	}
	return b.String()
}
