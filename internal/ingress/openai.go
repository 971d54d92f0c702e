package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/openai"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/pkg/jetstream"
)

// The OpenAI-compatible face: an unchanged OpenAI SDK pointed at
// /openai/v1 lists the generate models and asks for completions and chat
// completions. Each request becomes an ordinary job through acceptJob, so
// idempotency, priorities, batching, cancel, replay, metrics and traces
// apply; the handlers here wait for it (or stream its tokens) and answer in
// OpenAI's shapes, errors included. The wire itself is internal/openai.

// OpenAIPrefix is where the OpenAI-compatible face is served.
const OpenAIPrefix = "/openai/v1"

// PriorityHeader sets the queue priority of an OpenAI request (0 highest,
// 2 lowest; default 1), which OpenAI's bodies have no field for.
const PriorityHeader = "X-Inferq-Priority"

// JobIDHeader names the job an OpenAI answer comes from, so that a client
// can read, cancel or replay it through /v1/jobs.
const JobIDHeader = "X-Inferq-Job-Id"

// openaiCreated is the "created" time of every model in GET /models: models
// come from the config, so they exist since the process started.
var openaiCreated = time.Now().Unix()

func (i *Ingress) openaiRoutes(e *echo.Echo, submit, read echo.MiddlewareFunc) {
	e.GET(OpenAIPrefix+"/models", i.openaiModels, read)
	e.GET(OpenAIPrefix+"/models/:id", i.openaiModel, read)
	e.POST(OpenAIPrefix+"/completions", func(c echo.Context) error { return i.openaiComplete(c, openai.EndpointCompletions) }, submit, jsonBody)
	e.POST(OpenAIPrefix+"/chat/completions", func(c echo.Context) error { return i.openaiComplete(c, openai.EndpointChatCompletions) }, submit, jsonBody)
	// The Batch API (openai_files.go, openai_batches.go).
	e.POST(OpenAIPrefix+"/files", i.openaiUploadFile, submit)
	e.GET(OpenAIPrefix+"/files", i.openaiListFiles, read)
	e.GET(OpenAIPrefix+"/files/:id", i.openaiGetFile, read)
	e.GET(OpenAIPrefix+"/files/:id/content", i.openaiFileContent, read)
	e.DELETE(OpenAIPrefix+"/files/:id", i.openaiDeleteFile, submit)
	e.POST(OpenAIPrefix+"/batches", i.openaiCreateBatch, submit, jsonBody)
	e.GET(OpenAIPrefix+"/batches", i.openaiListBatches, read)
	e.GET(OpenAIPrefix+"/batches/:id", i.openaiGetBatch, read)
	e.POST(OpenAIPrefix+"/batches/:id/cancel", i.openaiCancelBatch, submit)
}

// isOpenAI reports whether path belongs to the OpenAI-compatible face.
func isOpenAI(path string) bool {
	return path == OpenAIPrefix || strings.HasPrefix(path, OpenAIPrefix+"/")
}

// openaiModelList lists every generate model by name (the version it
// serves by default) and each of its versions that take jobs as
// name@version.
func (i *Ingress) openaiModelList() []openai.Model {
	var out []openai.Model
	add := func(id string) {
		out = append(out, openai.Model{ID: id, Object: "model", Created: openaiCreated, OwnedBy: "inferq"})
	}
	for _, l := range i.listedModels() {
		name := modelOf(l.m.Name)
		if l.m.Kind == config.KindGenerate {
			add(name)
		}
		for _, m := range l.live {
			if m.Kind == config.KindGenerate {
				add(openai.ModelID(name, m.Version))
			}
		}
	}
	return out
}

// openaiModels handles GET /openai/v1/models.
func (i *Ingress) openaiModels(c echo.Context) error {
	data := i.openaiModelList()
	if data == nil {
		data = []openai.Model{}
	}
	return c.JSON(http.StatusOK, openai.ModelList{Object: "list", Data: data})
}

// openaiModel handles GET /openai/v1/models/{id}.
func (i *Ingress) openaiModel(c echo.Context) error {
	id := c.Param("id")
	for _, m := range i.openaiModelList() {
		if m.ID == id {
			return c.JSON(http.StatusOK, m)
		}
	}
	return openai.ModelNotFound(id)
}

// openaiComplete handles POST /openai/v1/completions and
// /openai/v1/chat/completions.
func (i *Ingress) openaiComplete(c echo.Context, endpoint string) error {
	hr := c.Request()
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), hr.Body, i.opt.Config.Ingress.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &openai.Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
				Message: fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit)}
		}
		return &openai.Error{Status: http.StatusBadRequest, Code: "invalid_body", Message: "request body unreadable: " + err.Error()}
	}
	req, err := openai.Decode(endpoint, body, i.opt.Config)
	if err != nil {
		return err
	}
	prio, err := openaiPriority(hr.Header.Get(PriorityHeader))
	if err != nil {
		return err
	}
	acc, _, err := i.acceptJob(hr.Context(), submission{
		Model: req.Model.Name, Version: req.Model.Version, Body: bytes.NewReader(req.JobBody(prio)), Tenant: tenantOf(c),
		IdempotencyKey: hr.Header.Get("Idempotency-Key"), Header: hr.Header, Method: hr.Method, Route: c.Path()})
	if err != nil {
		return err
	}
	c.Response().Header().Set(JobIDHeader, acc.ID)
	i.opt.Log.Debug("openai request queued", "job", acc.ID, "endpoint", endpoint, "model", req.ModelID, "stream", req.Stream, "user", req.User)
	if req.Stream {
		return i.openaiStream(c, req, acc)
	}
	return i.openaiWait(c, req, acc)
}

// openaiPriority reads the priority header: absent is openai.DefaultPriority.
func openaiPriority(h string) (int, error) {
	if h == "" {
		return openai.DefaultPriority, nil
	}
	p, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || p < jetstream.MinPriority || p > jetstream.MaxPriority {
		return 0, &openai.Error{Status: http.StatusBadRequest, Code: "invalid_priority", Message: fmt.Sprintf(
			"%s: want an integer from %d (highest) to %d, got %q", PriorityHeader, jetstream.MinPriority, jetstream.MaxPriority, h)}
	}
	return p, nil
}

// cancelAbandoned cancels a job whose client went away before it ended,
// so no worker keeps generating for nobody. The request's context is gone:
// this runs on its own short one.
func (i *Ingress) cancelAbandoned(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, err := i.record(ctx, id)
	if err != nil || rec.Status.Terminal() {
		return
	}
	if err := i.cancelJob(ctx, rec); err != nil {
		i.opt.Log.Warn("abandoned job not cancelled", "job", id, "err", err)
		return
	}
	i.opt.Log.Info("client went away: job cancelled", "job", id, "model", rec.Model)
}

// openaiWait waits for the job to end (up to ingress.sync_timeout) and
// answers with the whole completion. A client that goes away, and a wait
// that runs out, cancel the job: OpenAI clients retry a timed-out request,
// and the retry should not find the first one still generating.
func (i *Ingress) openaiWait(c echo.Context, req *openai.Request, acc *Accepted) error {
	ctx := c.Request().Context()
	wctx, cancel := context.WithTimeout(ctx, i.opt.Config.Ingress.SyncTimeout.D())
	defer cancel()
	rec, err := i.wait(wctx, acc.ID, func(r *results.Record) bool { return r.Status.Terminal() })
	if ctx.Err() != nil {
		i.cancelAbandoned(acc.ID)
		return nil // nobody to answer
	}
	if err != nil {
		return i.unavailable(acc.Model, "store", err)
	}
	if !rec.Status.Terminal() {
		i.cancelAbandoned(acc.ID)
		return &openai.Error{Status: http.StatusGatewayTimeout, Type: openai.TypeServer, Code: "timeout", Message: fmt.Sprintf(
			"job %s did not end within %s (ingress.sync_timeout) and was cancelled; use stream: true for long generations",
			acc.ID, i.opt.Config.Ingress.SyncTimeout.D())}
	}
	if err := jobFailure(rec); err != nil {
		return err
	}
	if rec, err = i.resolved(ctx, rec); err != nil {
		return err
	}
	text := textOutput(rec)
	n := i.tokenCount(ctx, rec)
	finish := openai.FinishReason(n, req.MaxTokens)
	created := rec.CreatedAt.Unix()
	if req.Chat() {
		return c.JSON(http.StatusOK, openai.ChatCompletion{ID: "chatcmpl-" + rec.ID, Object: "chat.completion", Created: created,
			Model: req.ModelID, Usage: openai.NewUsage(n), Choices: []openai.ChatChoice{{
				Message: openai.AnswerMessage{Role: "assistant", Content: text}, FinishReason: finish}}})
	}
	return c.JSON(http.StatusOK, openai.Completion{ID: "cmpl-" + rec.ID, Object: "text_completion", Created: created,
		Model: req.ModelID, Usage: openai.NewUsage(n), Choices: []openai.CompletionChoice{{Text: text, FinishReason: &finish}}})
}

// jobFailure is the OpenAI error of a job that did not succeed.
func jobFailure(rec *results.Record) *openai.Error {
	switch rec.Status {
	case results.Succeeded:
		return nil
	case results.Expired:
		return &openai.Error{Status: http.StatusGatewayTimeout, Type: openai.TypeServer, Code: "expired",
			Message: "job " + rec.ID + ": its timeout passed before it ran"}
	}
	e := rec.Error
	if e == nil {
		e = &results.Error{Code: string(rec.Status), Message: "the job " + string(rec.Status)}
	}
	status := http.StatusInternalServerError
	if e.Code == "invalid_input" { // the model refused the request (a prompt too long for it)
		status = http.StatusBadRequest
	}
	return &openai.Error{Status: status, Code: e.Code, Message: "job " + rec.ID + ": " + e.Message}
}

// textOutput is the generated text of a succeeded generate job: the first
// string of its outputs.
func textOutput(rec *results.Record) string {
	var res struct {
		Outputs []struct {
			Data json.RawMessage `json:"data"`
		} `json:"outputs"`
	}
	_ = json.Unmarshal(rec.Result, &res)
	for _, o := range res.Outputs {
		var texts []string
		if json.Unmarshal(o.Data, &texts) == nil && len(texts) > 0 {
			return texts[0]
		}
	}
	return ""
}

// tokenCount is how many tokens the worker produced for the job's latest
// attempt: the sequence number of its last token chunk in INFERQ_TOKENS
// (every chunk is stored there before the job's result).
func (i *Ingress) tokenCount(ctx context.Context, rec *results.Record) int {
	stream, err := i.opt.JS.Stream(ctx, i.opt.Topology.TokensStream())
	if err != nil {
		return 0
	}
	last, err := stream.GetLastMsgForSubject(ctx, i.opt.Topology.TokenSubject(rec.Tenant, rec.ID))
	if err != nil {
		return 0 // no token at all
	}
	if a := lifecycle.TokenAttempt(last.Header); a != 0 && rec.Attempts != 0 && a != rec.Attempts {
		return 0 // the last tokens are an older attempt's: this one made none
	}
	n, _ := lifecycle.TokenSeq(last.Header)
	return int(n)
}

// openaiStream answers with the job's tokens as OpenAI's stream chunks
// (Server-Sent Events `data: {...}`, ending with `data: [DONE]`). The
// deltas concatenate to the job's result: text the token stream did not
// deliver is sent before the last chunk. A client that disconnects
// cancels the job.
func (i *Ingress) openaiStream(c echo.Context, req *openai.Request, acc *Accepted) error {
	reqCtx := c.Request().Context()
	ctx, cancel := context.WithCancel(reqCtx)
	defer cancel()
	rec, err := i.record(ctx, acc.ID)
	if err != nil {
		i.cancelAbandoned(acc.ID)
		return i.unavailable(acc.Model, "store", err)
	}
	subject := i.opt.Topology.TokenSubject(rec.Tenant, rec.ID)
	toks, err := i.watchTokens(ctx, rec, subject, 0)
	if err != nil {
		i.cancelAbandoned(acc.ID)
		return i.unavailable(acc.Model, "tokens", err)
	}
	recs := i.watchRecord(ctx, rec)
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()

	s := openaiStreamer{w: w, req: req, id: rec.ID, created: rec.CreatedAt.Unix()}
	if req.Chat() {
		s.chunk(openai.Delta{Role: "assistant"}, nil) // OpenAI's first chat chunk names the role
	}
	cur := cursor{rank: -1}
	send := func(event string, next cursor, data any) error {
		cur = next
		if event == "token" {
			s.text(data.(map[string]any)["text"].(string))
		}
		return s.err
	}
	f := &follower{i: i, rec: rec, recs: recs, toks: toks, subject: subject}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for s.err == nil {
		if f.rec.Status.Terminal() {
			f.drain(ctx, &cur, send)
			if oe := jobFailure(f.rec); oe != nil {
				s.write(oe.Body())
				return nil
			}
			final, err := i.resolved(ctx, f.rec)
			if err != nil {
				final = f.rec // the text held by reference cannot be read: only what was streamed
			}
			if rest, ok := strings.CutPrefix(textOutput(final), s.sent.String()); ok {
				s.text(rest)
			} else {
				i.opt.Log.Warn("openai stream: streamed tokens differ from the result", "job", rec.ID)
			}
			n := i.tokenCount(ctx, f.rec)
			finish := openai.FinishReason(n, req.MaxTokens)
			s.chunk(openai.Delta{}, &finish)
			if req.IncludeUsage {
				s.usage(openai.NewUsage(n))
			}
			s.raw("[DONE]")
			return nil
		}
		switch f.next(ctx, &cur, send, keepalive.C) {
		case stepEnd:
			if reqCtx.Err() == nil && s.err == nil {
				s.write((&openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "unavailable",
					Message: "the job's record is unreadable; its result stays at /v1/jobs/" + rec.ID}).Body())
				return nil
			}
			i.cancelAbandoned(rec.ID)
			return nil
		case stepTick:
			s.comment("keepalive")
		}
	}
	// A write failed: the client is gone.
	i.cancelAbandoned(rec.ID)
	return nil
}

// openaiStreamer writes one OpenAI stream; after the first failed write it
// writes nothing more and err says why.
type openaiStreamer struct {
	w       *echo.Response
	req     *openai.Request
	id      string
	created int64
	sent    strings.Builder // the text sent so far
	err     error
}

// text sends a piece of generated text (nothing for an empty one).
func (s *openaiStreamer) text(t string) {
	if t == "" {
		return
	}
	s.sent.WriteString(t)
	s.chunk(openai.Delta{Content: t}, nil)
}

// chunk sends one chunk of the request's kind.
func (s *openaiStreamer) chunk(d openai.Delta, finish *string) {
	if s.req.Chat() {
		s.write(openai.ChatChunk{ID: "chatcmpl-" + s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.req.ModelID,
			Choices: []openai.ChatChunkChoice{{Delta: d, FinishReason: finish}}})
		return
	}
	s.write(openai.CompletionChunk{ID: "cmpl-" + s.id, Object: "text_completion", Created: s.created, Model: s.req.ModelID,
		Choices: []openai.CompletionChoice{{Text: d.Content, FinishReason: finish}}})
}

// usage sends the last chunk of a stream with include_usage: no choices.
func (s *openaiStreamer) usage(u *openai.Usage) {
	if s.req.Chat() {
		s.write(openai.ChatChunk{ID: "chatcmpl-" + s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.req.ModelID,
			Choices: []openai.ChatChunkChoice{}, Usage: u})
		return
	}
	s.write(openai.CompletionChunk{ID: "cmpl-" + s.id, Object: "text_completion", Created: s.created, Model: s.req.ModelID,
		Choices: []openai.CompletionChoice{}, Usage: u})
}

func (s *openaiStreamer) write(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.err = err
		return
	}
	s.raw(string(b))
}

func (s *openaiStreamer) raw(data string) { s.emit("data: " + data + "\n\n") }

func (s *openaiStreamer) comment(text string) { s.emit(": " + text + "\n\n") }

func (s *openaiStreamer) emit(text string) {
	if s.err != nil {
		return
	}
	obs.ExtendWrite(s.w, sseWriteTimeout)
	if _, err := io.WriteString(s.w, text); err != nil {
		s.err = err
		return
	}
	s.w.Flush()
}

// openaiError answers err in OpenAI's error shape, for every request under
// OpenAIPrefix (the handlers' errors and the middleware's alike). A full
// queue is 429 rather than the API's 503: OpenAI's SDKs back off and retry
// on 429 with Retry-After.
func (i *Ingress) openaiError(c echo.Context, err error) {
	var oe *openai.Error
	var ae *Error
	var he *echo.HTTPError
	var authErr *auth.HTTPError
	h := c.Response().Header()
	switch {
	case errors.As(err, &oe):
		e := *oe
		oe = &e
	case errors.As(err, &authErr):
		authErr.SetHeaders(h) // Retry-After, WWW-Authenticate
		oe = &openai.Error{Status: authErr.Status, Code: authErr.Code, Message: authErr.Message}
	case errors.As(err, &ae):
		oe = &openai.Error{Status: ae.Status, Code: ae.Code, Message: ae.Message}
	case errors.As(err, &he):
		msg := http.StatusText(he.Code)
		if s, ok := he.Message.(string); ok {
			msg = s
		}
		code := codeFor(he.Code)
		if he.Code == http.StatusNotFound {
			code = "unknown_url"
		}
		oe = &openai.Error{Status: he.Code, Code: code, Message: msg}
	default:
		i.opt.Log.Error("internal error", "path", c.Request().URL.Path, "err", err)
		oe = &openai.Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	var rl *retryLater
	if errors.As(err, &rl) {
		h.Set("Retry-After", strconv.Itoa(rl.seconds))
	}
	if oe.Code == "queue_full" {
		oe.Status = http.StatusTooManyRequests
	}
	if oe.Type == "" {
		oe.Type = openai.TypeFor(oe.Status)
	}
	_ = c.JSON(oe.Status, oe.Body())
}
