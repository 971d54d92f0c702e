// Package openai is the wire of inferq's OpenAI-compatible face: the request
// and response bodies of /openai/v1 (models, completions, chat completions
// and their stream chunks), the error shape, and Decode, which turns a
// completions or chat completions body into the prompt and parameters of an
// ordinary inferq job. It knows nothing of HTTP or NATS, so that the ingress
// serves it and the Batch API can turn each line of a batch file into a job
// the same way.
package openai

import (
	"fmt"
	"net/http"
	"strings"
)

// Endpoints, as the Batch API names the body of a line.
const (
	EndpointCompletions     = "/v1/completions"
	EndpointChatCompletions = "/v1/chat/completions"
)

// DefaultPriority is the queue priority of a request that names none: the
// same as a /v1 job's.
const DefaultPriority = 1

// Error types, as OpenAI's SDKs and clients read them.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
)

// Error is an answer in OpenAI's error shape, with its HTTP status.
type Error struct {
	Status  int
	Type    string
	Param   string // the request field at fault; "" is null
	Code    string // a stable code (model_not_found, queue_full...); "" is null
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Body is the JSON answer: {"error":{"message","type","param","code"}}.
func (e *Error) Body() ErrorBody {
	b := ErrorBody{}
	b.Error.Message, b.Error.Type = e.Message, e.Type
	if e.Param != "" {
		b.Error.Param = &e.Param
	}
	if e.Code != "" {
		b.Error.Code = &e.Code
	}
	return b
}

// ErrorBody is OpenAI's error object; param and code are null when unknown.
type ErrorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// TypeFor is the error type OpenAI answers with a status.
func TypeFor(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return TypeAuthentication
	case status == http.StatusForbidden:
		return TypePermission
	case status == http.StatusNotFound:
		return TypeNotFound
	case status == http.StatusTooManyRequests:
		return TypeRateLimit
	case status >= 500:
		return TypeServer
	}
	return TypeInvalidRequest
}

// badParam is a 400 about one request field.
func badParam(param, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Param: param, Code: "invalid_value",
		Message: fmt.Sprintf(format, args...)}
}

// ModelNotFound is the 404 for a model id the server does not serve.
func ModelNotFound(id string) *Error {
	return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Param: "model", Code: "model_not_found",
		Message: fmt.Sprintf("The model %q does not exist: GET /openai/v1/models lists the generate models served", id)}
}

// SplitModelID reads a model id: "name" (the served version) or
// "name@version".
func SplitModelID(id string) (name, version string) {
	name, version, _ = strings.Cut(id, "@")
	return name, version
}

// ModelID is the id of a model's version.
func ModelID(name, version string) string { return name + "@" + version }

// Model is one entry of GET /models.
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "model"
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// ModelList is the answer of GET /models.
type ModelList struct {
	Object string  `json:"object"` // "list"
	Data   []Model `json:"data"`
}

// Usage counts the tokens of one answer. The broker does not tokenize
// prompts, so PromptTokens is 0; CompletionTokens counts the token chunks
// the worker streamed.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// NewUsage is the usage of an answer of n generated tokens.
func NewUsage(n int) *Usage { return &Usage{CompletionTokens: n, TotalTokens: n} }

// Finish reasons.
const (
	FinishStop   = "stop"   // the model ended (end of sequence or a stop string)
	FinishLength = "length" // max_tokens was reached
)

// FinishReason says why a generation of n tokens ended under a max_tokens
// limit: a worker that stopped short of the limit stopped by itself.
func FinishReason(n, maxTokens int) string {
	if maxTokens > 0 && n >= maxTokens {
		return FinishLength
	}
	return FinishStop
}

// Completion is the answer of POST /completions.
type Completion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"` // "text_completion"
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []CompletionChoice `json:"choices"`
	Usage   *Usage             `json:"usage,omitempty"`
}

// CompletionChoice is one generated text; in a stream chunk, the text added.
type CompletionChoice struct {
	Index        int     `json:"index"`
	Text         string  `json:"text"`
	Logprobs     any     `json:"logprobs"`      // always null
	FinishReason *string `json:"finish_reason"` // null until the last chunk
}

// ChatCompletion is the answer of POST /chat/completions.
type ChatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"` // "chat.completion"
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   *Usage       `json:"usage,omitempty"`
}

// ChatChoice is one generated message.
type ChatChoice struct {
	Index        int           `json:"index"`
	Message      AnswerMessage `json:"message"`
	Logprobs     any           `json:"logprobs"`
	FinishReason string        `json:"finish_reason"`
}

// AnswerMessage is the assistant's message.
type AnswerMessage struct {
	Role    string  `json:"role"` // "assistant"
	Content string  `json:"content"`
	Refusal *string `json:"refusal"` // always null
}

// ChatChunk is one event of a streamed chat completion.
type ChatChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"` // "chat.completion.chunk"
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []ChatChunkChoice `json:"choices"`
	// Usage is set on the last, choice-less chunk when the request asked
	// for stream_options.include_usage.
	Usage *Usage `json:"usage,omitempty"`
}

// ChatChunkChoice is the part of the message a chunk adds.
type ChatChunkChoice struct {
	Index        int     `json:"index"`
	Delta        Delta   `json:"delta"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

// Delta is what a chunk adds to the assistant's message.
type Delta struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content,omitempty"`
}

// CompletionChunk is one event of a streamed completion (the same object as
// the whole answer, with the text added).
type CompletionChunk = Completion
