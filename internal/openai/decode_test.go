package openai

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/inferq/inferq/internal/config"
)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load("") // the test models
	if err != nil {
		t.Fatal(err)
	}
	cfg.Models = append(cfg.Models, config.TinyGPT())
	return &cfg
}

// TestDecodeToJob: a request becomes the job body POST /v1/.../jobs takes,
// the way a Batch API line will.
func TestDecodeToJob(t *testing.T) {
	cfg := testConfig(t)
	cases := []struct {
		name, endpoint, body, job string
		maxTokens                 int
	}{
		{"completion", EndpointCompletions, `{"model":"repeat","prompt":"abc","max_tokens":5}`,
			`{"text_input":"abc","parameters":{"max_tokens":5,"priority":1}}`, 5},
		{"default max_tokens, one-prompt list, version", EndpointCompletions, `{"model":"repeat@1","prompt":["x"],"n":1,"logprobs":null,"echo":false}`,
			`{"text_input":"x","parameters":{"max_tokens":16,"priority":1}}`, 16},
		{"sampling fields the model declares", EndpointCompletions,
			`{"model":"tiny-gpt","prompt":"p","temperature":0.5,"top_p":0.9,"seed":7,"stop":["\n"],"stream":true,"stream_options":{"include_usage":true}}`,
			`{"text_input":"p","parameters":{"max_tokens":16,"priority":1,"seed":7,"stop":["\n"],"stream":true,"temperature":0.5,"top_p":0.9}}`, 16},
		{"chat through the default template", EndpointChatCompletions,
			`{"model":"repeat","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"max_tokens":3,"max_completion_tokens":4}`,
			`{"text_input":"system: be brief\nuser: a\nb\nassistant:","parameters":{"max_tokens":4,"priority":1}}`, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Decode(c.endpoint, []byte(c.body), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var got, want any
			_ = json.Unmarshal(r.JobBody(DefaultPriority), &got)
			_ = json.Unmarshal([]byte(c.job), &want)
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			if string(g) != string(w) || r.MaxTokens != c.maxTokens {
				t.Errorf("job %s (max_tokens %d), want %s (%d)", g, r.MaxTokens, w, c.maxTokens)
			}
		})
	}
}

// TestDecodeErrors: each refusal is OpenAI's error with the field at fault.
func TestDecodeErrors(t *testing.T) {
	cfg := testConfig(t)
	cases := []struct {
		name, endpoint, body string
		status               int
		param, msg           string
	}{
		{"not an object", EndpointCompletions, `[1]`, 400, "", "JSON object"},
		{"no model", EndpointCompletions, `{"prompt":"x"}`, 400, "model", "required"},
		{"unknown model", EndpointCompletions, `{"model":"gpt-4o","prompt":"x"}`, 404, "model", "does not exist"},
		{"tensor model", EndpointCompletions, `{"model":"simple","prompt":"x"}`, 404, "model", "does not exist"},
		{"unknown version", EndpointCompletions, `{"model":"repeat@9","prompt":"x"}`, 404, "model", "does not exist"},
		{"unknown field", EndpointCompletions, `{"model":"repeat","prompt":"x","frobnicate":1}`, 400, "frobnicate", "Unrecognized"},
		{"chat field on completions", EndpointCompletions, `{"model":"repeat","prompt":"x","messages":[]}`, 400, "messages", "Unrecognized"},
		{"penalty", EndpointCompletions, `{"model":"repeat","prompt":"x","presence_penalty":0.5}`, 400, "presence_penalty", "not supported"},
		{"n", EndpointCompletions, `{"model":"repeat","prompt":"x","n":3}`, 400, "n", "n must be 1"},
		{"undeclared temperature", EndpointCompletions, `{"model":"repeat","prompt":"x","temperature":1}`, 400, "temperature", "does not take it"},
		{"temperature out of range", EndpointCompletions, `{"model":"tiny-gpt","prompt":"x","temperature":-1}`, 400, "temperature", "below the minimum"},
		{"max_tokens zero", EndpointCompletions, `{"model":"repeat","prompt":"x","max_tokens":0}`, 400, "max_tokens", "below the minimum"},
		{"max_completion_tokens huge", EndpointChatCompletions, `{"model":"repeat","messages":[{"role":"user","content":"x"}],"max_completion_tokens":99999}`, 400, "max_completion_tokens", "above the maximum"},
		{"stream_options without stream", EndpointCompletions, `{"model":"repeat","prompt":"x","stream_options":{"include_usage":true}}`, 400, "stream_options", "stream: true"},
		{"no prompt", EndpointCompletions, `{"model":"repeat"}`, 400, "prompt", "required"},
		{"token prompt", EndpointCompletions, `{"model":"repeat","prompt":[1,2]}`, 400, "prompt", "token ids"},
		{"two prompts", EndpointCompletions, `{"model":"repeat","prompt":["a","b"]}`, 400, "prompt", "one prompt per request"},
		{"no messages", EndpointChatCompletions, `{"model":"repeat","messages":[]}`, 400, "messages", "at least one"},
		{"bad role", EndpointChatCompletions, `{"model":"repeat","messages":[{"role":"robot","content":"x"}]}`, 400, "messages[0].role", "robot"},
		{"image part", EndpointChatCompletions, `{"model":"repeat","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "messages[0].content", "image_url"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.endpoint, []byte(c.body), cfg)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v, want *Error", err)
			}
			if e.Status != c.status || e.Param != c.param || !strings.Contains(e.Message, c.msg) {
				t.Errorf("got %d param %q %q, want %d param %q containing %q", e.Status, e.Param, e.Message, c.status, c.param, c.msg)
			}
		})
	}
}

// TestErrorBody: param and code are null when unknown, as OpenAI sends them.
func TestErrorBody(t *testing.T) {
	b, _ := json.Marshal((&Error{Status: 401, Type: TypeFor(401), Message: "no"}).Body())
	if string(b) != `{"error":{"message":"no","type":"authentication_error","param":null,"code":null}}` {
		t.Errorf("body %s", b)
	}
}
