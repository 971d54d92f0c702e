package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
)

// openaiClient is the official OpenAI Go SDK pointed at the stack's
// OpenAI-compatible face, without retries so that errors show as sent.
func openaiClient(base string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{option.WithBaseURL(base + "/openai/v1/"),
		option.WithAPIKey("unused-without-auth"), option.WithMaxRetries(0)}, opts...)...)
}

// apiError is err as the SDK's error type, failing the test otherwise.
func apiError(t *testing.T, err error, status int) *openai.Error {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *openai.Error with status %d", err, err, status)
	}
	if e.StatusCode != status {
		t.Fatalf("status %d (%s), want %d", e.StatusCode, e.RawJSON(), status)
	}
	return e
}

// chatModels adds to the default models one with its own chat template, and
// a slow one (100ms between tokens) for the disconnect test.
func chatModels(c *config.Config) {
	c.Models = append(c.Models,
		config.Model{Name: "chatty", Runner: config.Runner{Builtin: "repeat"},
			ChatTemplate: "{{range .Messages}}<{{.Role}}>{{.Content}}{{end}}>"},
		config.Model{Name: "slow", Runner: config.Runner{Builtin: "repeat"},
			Parameters: []config.Parameter{{Name: "interval_ms", Type: config.ParamInt, Default: 100}}})
}

// TestOpenAISDK drives /openai/v1 with the official OpenAI Go SDK against
// a real stack: models, completions and chat completions, plain and
// streamed, usage and finish reasons, and the errors the SDK maps; with
// either results store (tokens come from INFERQ_TOKENS or Redis).
func TestOpenAISDK(t *testing.T) {
	t.Run("kv", func(t *testing.T) { testOpenAISDK(t, false) })
	t.Run("redis", func(t *testing.T) { testOpenAISDK(t, true) })
}

func testOpenAISDK(t *testing.T, withRedis bool) {
	s := startStack(t, withRedis, chatModels)
	client := openaiClient(s.URL)
	ctx := t.Context()

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, m := range page.Data {
			ids[m.ID] = true
			if m.Object != "model" || m.OwnedBy != "inferq" {
				t.Errorf("model %+v", m)
			}
		}
		for _, want := range []string{"repeat", "repeat@1", "chatty", "chatty@1"} {
			if !ids[want] {
				t.Errorf("models %v lack %s", ids, want)
			}
		}
		if ids["simple"] || ids["identity"] {
			t.Errorf("models %v list tensor models", ids)
		}
		if m, err := client.Models.Get(ctx, "repeat@1"); err != nil || m.ID != "repeat@1" {
			t.Errorf("get repeat@1: %+v %v", m, err)
		}
		_, err = client.Models.Get(ctx, "nope")
		if e := apiError(t, err, 404); e.Type != "invalid_request_error" || e.Code != "model_not_found" {
			t.Errorf("unknown model: %s", e.RawJSON())
		}
	})

	t.Run("completion", func(t *testing.T) {
		var resp *http.Response
		c, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: "repeat",
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("abc")}, MaxTokens: openai.Int(5)},
			option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Choices) != 1 || c.Choices[0].Text != "abcab" || c.Choices[0].FinishReason != "length" || c.Model != "repeat" {
			t.Fatalf("completion %s", c.RawJSON())
		}
		if c.Usage.CompletionTokens != 5 || c.Usage.TotalTokens != 5 || c.Object != "text_completion" {
			t.Errorf("usage %s", c.RawJSON())
		}
		id := resp.Header.Get("X-Inferq-Job-Id")
		if c.ID != "cmpl-"+id {
			t.Errorf("id %q, job %q", c.ID, id)
		}
		if rec := s.wait(t, id); rec.Status != "succeeded" { // an ordinary job
			t.Errorf("job %s: %+v", id, rec)
		}
		// A model that ends before max_tokens stopped by itself.
		c, err = client.Completions.New(ctx, openai.CompletionNewParams{Model: "repeat@1",
			Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfStrings: []string{""}}, MaxTokens: openai.Int(5)})
		if err != nil || c.Choices[0].Text != "" || c.Choices[0].FinishReason != "stop" || c.Usage.CompletionTokens != 0 {
			t.Errorf("empty prompt: %v %s", err, c.RawJSON())
		}
	})

	t.Run("completion stream", func(t *testing.T) {
		stream := client.Completions.NewStreaming(ctx, openai.CompletionNewParams{Model: "repeat",
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hello")}, MaxTokens: openai.Int(12),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
		var text strings.Builder
		var finish string
		var usage int64 = -1
		for stream.Next() {
			c := stream.Current()
			for _, ch := range c.Choices {
				text.WriteString(ch.Text)
				if ch.FinishReason != "" {
					finish = string(ch.FinishReason)
				}
			}
			if len(c.Choices) == 0 {
				usage = c.Usage.CompletionTokens
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != "hellohellohe" || finish != "length" || usage != 12 {
			t.Errorf("streamed %q, finish %q, usage %d", text.String(), finish, usage)
		}
	})

	t.Run("chat", func(t *testing.T) {
		params := openai.ChatCompletionNewParams{Model: "repeat", MaxCompletionTokens: openai.Int(40),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("hi")}}
		c, err := client.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		// The default template, echoed by the repeat model, cycled to 40.
		prompt := "system: be brief\nuser: hi\nassistant:"
		want := (prompt + prompt)[:40]
		if len(c.Choices) != 1 || c.Choices[0].Message.Content != want || c.Choices[0].Message.Role != "assistant" ||
			c.Choices[0].FinishReason != "length" || c.Usage.CompletionTokens != 40 || c.Object != "chat.completion" {
			t.Fatalf("chat %s, want content %q", c.RawJSON(), want)
		}
		params.StreamOptions.IncludeUsage = openai.Bool(true)
		stream := client.Chat.Completions.NewStreaming(ctx, params)
		var content strings.Builder
		var firstRole, finish string
		var usage int64 = -1
		for stream.Next() {
			ch := stream.Current()
			for _, c := range ch.Choices {
				if firstRole == "" {
					firstRole = c.Delta.Role
				}
				content.WriteString(c.Delta.Content)
				if c.FinishReason != "" {
					finish = c.FinishReason
				}
			}
			if len(ch.Choices) == 0 {
				usage = ch.Usage.CompletionTokens
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if content.String() != c.Choices[0].Message.Content || finish != "length" || usage != 40 || firstRole != "assistant" {
			t.Errorf("streamed chat %q (first role %q, finish %q, usage %d), want the plain answer %q", content.String(), firstRole, finish, usage, want)
		}
		// A model's own chat_template.
		c, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chatty", MaxCompletionTokens: openai.Int(14),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi"), openai.AssistantMessage("yo")}})
		if err != nil || c.Choices[0].Message.Content != "<user>hi<assis" {
			t.Errorf("chatty: %v %s", err, c.RawJSON())
		}
	})

	t.Run("errors", func(t *testing.T) {
		abc := openai.CompletionNewParamsPromptUnion{OfString: openai.String("abc")}
		_, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: "gpt-4o", Prompt: abc})
		if e := apiError(t, err, 404); e.Code != "model_not_found" || e.Param != "model" {
			t.Errorf("unknown model: %s", e.RawJSON())
		}
		_, err = client.Completions.New(ctx, openai.CompletionNewParams{Model: "simple", Prompt: abc})
		apiError(t, err, 404) // a tensor model is no completion model
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "nope",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		for stream.Next() {
		}
		apiError(t, stream.Err(), 404)
		for _, c := range []struct {
			name   string
			params openai.CompletionNewParams
			param  string
		}{
			{"n", openai.CompletionNewParams{Model: "repeat", Prompt: abc, N: openai.Int(2)}, "n"},
			{"undeclared sampling field", openai.CompletionNewParams{Model: "repeat", Prompt: abc, Temperature: openai.Float(0.5)}, "temperature"},
			{"max_tokens above the limit", openai.CompletionNewParams{Model: "repeat", Prompt: abc, MaxTokens: openai.Int(1 << 20)}, "max_tokens"},
			{"two prompts", openai.CompletionNewParams{Model: "repeat", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfStrings: []string{"a", "b"}}}, "prompt"},
			{"token prompt", openai.CompletionNewParams{Model: "repeat", Prompt: openai.CompletionNewParamsPromptUnion{OfArrayOfTokens: []int64{1, 2}}}, "prompt"},
			{"logprobs", openai.CompletionNewParams{Model: "repeat", Prompt: abc, Logprobs: openai.Int(3)}, "logprobs"},
		} {
			_, err := client.Completions.New(ctx, c.params)
			if e := apiError(t, err, 400); e.Type != "invalid_request_error" || e.Param != c.param || e.Message == "" {
				t.Errorf("%s: %s", c.name, e.RawJSON())
			}
		}
		_, err = client.Completions.New(ctx, openai.CompletionNewParams{Model: "repeat", Prompt: abc}, option.WithHeader("X-Inferq-Priority", "7"))
		apiError(t, err, 400)
		_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "repeat", Messages: nil})
		if e := apiError(t, err, 400); e.Param != "messages" {
			t.Errorf("no messages: %s", e.RawJSON())
		}
		// Priority 0 is accepted and the job is an ordinary one.
		if _, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: "repeat", Prompt: abc, MaxTokens: openai.Int(2)},
			option.WithHeader("X-Inferq-Priority", "0")); err != nil {
			t.Errorf("priority 0: %v", err)
		}
	})

	t.Run("disconnect cancels", func(t *testing.T) {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream := client.Completions.NewStreaming(sctx, openai.CompletionNewParams{Model: "slow",
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("xyz")}, MaxTokens: openai.Int(300)})
		var id string
		for n := 0; n < 2 && stream.Next(); n++ {
			id = strings.TrimPrefix(stream.Current().ID, "cmpl-")
		}
		if id == "" {
			t.Fatalf("no chunk: %v", stream.Err())
		}
		cancel() // the client goes away after two tokens of 300 (30 s)
		_ = stream.Close()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var rec jobRecord
			if code, _ := do(t, "GET", s.URL+"/v1/jobs/"+id, nil, &rec); code == 200 && rec.Status == "cancelled" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s was not cancelled after its client went away", id)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestOpenAIAuth: the face takes the API's bearer credentials and scopes;
// the SDK sees 401 and 403 as its error type.
func TestOpenAIAuth(t *testing.T) {
	keys := map[string]string{"rw": "openai-rw-secret-1", "ro": "openai-ro-secret-2"}
	s := startStack(t, false, func(c *config.Config) {
		c.Auth.APIKeys = []auth.APIKey{
			{Name: "rw", SHA256: auth.HashKey(keys["rw"]), Tenant: "acme", Scopes: []string{"submit", "read"}},
			{Name: "ro", SHA256: auth.HashKey(keys["ro"]), Tenant: "acme", Scopes: []string{"read"}},
		}
	})
	ctx := t.Context()
	prompt := openai.CompletionNewParams{Model: "repeat", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("ok")}, MaxTokens: openai.Int(3)}

	wrong := openaiClient(s.URL, option.WithAPIKey("wrong-key"))
	_, err := wrong.Completions.New(ctx, prompt)
	if e := apiError(t, err, 401); e.Type != "authentication_error" || strings.Contains(e.RawJSON(), "wrong-key") {
		t.Errorf("bad key: %s", e.RawJSON())
	}
	_, err = wrong.Models.List(ctx)
	apiError(t, err, 401)
	ro := openaiClient(s.URL, option.WithAPIKey(keys["ro"]))
	if _, err := ro.Models.List(ctx); err != nil {
		t.Errorf("read scope lists models: %v", err)
	}
	_, err = ro.Completions.New(ctx, prompt)
	if e := apiError(t, err, 403); e.Type != "permission_error" {
		t.Errorf("read scope completes: %s", e.RawJSON())
	}
	rw := openaiClient(s.URL, option.WithAPIKey(keys["rw"]))
	c, err := rw.Completions.New(ctx, prompt)
	if err != nil || c.Choices[0].Text != "oko" {
		t.Fatalf("submit scope: %v %s", err, c.RawJSON())
	}
	// The job is the tenant's, readable through /v1 with the same key.
	call := bearerCaller(t, s.URL)
	if code, _, body := call("GET", "/v1/jobs/"+strings.TrimPrefix(c.ID, "cmpl-"), keys["ro"], ""); code != 200 || !strings.Contains(body, `"tenant":"acme"`) {
		t.Errorf("the job through /v1: %d %s", code, body)
	}
}

// TestOpenAIQueueFull: a full queue is 429 with Retry-After (the SDKs back
// off on it), and nothing more is queued.
func TestOpenAIQueueFull(t *testing.T) {
	s := startComponents(t, false, stack.Components{Ingress: true, ResultSvc: true}, func(c *config.Config) {
		m, _ := c.Model("repeat")
		m.Queue.MaxQueued = 1
	})
	s.submit(t, "repeat", map[string]any{"text_input": "a"})
	time.Sleep(300 * time.Millisecond) // the queue depth is cached for 250ms
	client := openaiClient(s.URL)
	_, err := client.Completions.New(t.Context(), openai.CompletionNewParams{Model: "repeat",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("abc")}})
	e := apiError(t, err, 429)
	if e.Code != "queue_full" || e.Type != "rate_limit_error" || e.Response.Header.Get("Retry-After") == "" {
		t.Errorf("queue full: %s, Retry-After %q", e.RawJSON(), e.Response.Header.Get("Retry-After"))
	}
	info, _ := s.NATS.JS.Stream(t.Context(), "INFERQ_JOBS")
	if n := info.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("INFERQ_JOBS holds %d jobs, want 1", n)
	}
}
