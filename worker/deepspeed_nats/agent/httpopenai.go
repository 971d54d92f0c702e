package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/wire"
	"github.com/inferq/inferq/pkg/tensor"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// The openai protocol: each job of a batch is one streamed completion
// (POST {url}/v1/completions, stream: true), all of them at once within the
// concurrency limit. Its text arrives as Server-Sent Events and goes out on
// the job's token subject as it comes, as the Python runner's tokens do.

// openaiParams are the job parameters passed on to the completion under
// the same name; the broker's own (priority, stream, ...) are not.
var openaiParams = []string{"max_tokens", "temperature", "top_p", "top_k", "seed", "stop"}

// maxSSELine bounds one line of the event stream.
const maxSSELine = 4 << 20

// runOpenAI runs every job of b as its own completion. One job refused
// (4xx) ends alone as backend_rejected; one that meets a 5xx or a timeout
// fails the batch, which the agent retries through the queue.
func (r *httpRunner) runOpenAI(ctx context.Context, b *inferqpb.Batch, emit func(*inferqpb.TokenChunk) error) (*inferqpb.BatchResult, error) {
	if len(b.Inputs) == 0 {
		return nil, &PermanentError{Err: fmt.Errorf("batch %s has no prompt input", b.Id)}
	}
	prompts, err := tensor.Split(wire.FromProto(b.Inputs[0]), rangesOf(b))
	if err != nil {
		return nil, &PermanentError{Err: fmt.Errorf("batch %s: prompts: %w", b.Id, err)}
	}
	var mu sync.Mutex // the agent's emit is not safe for concurrent use
	safeEmit := func(c *inferqpb.TokenChunk) error {
		mu.Lock()
		defer mu.Unlock()
		return emit(c)
	}
	res := &inferqpb.BatchResult{BatchId: b.Id, Jobs: make([]*inferqpb.JobResult, len(b.Jobs))}
	g, gctx := errgroup.WithContext(ctx)
	for i, j := range b.Jobs {
		g.Go(func() error {
			jr, err := r.complete(gctx, j, firstString(prompts[i].Data), safeEmit)
			res.Jobs[i] = jr
			return err
		})
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	return res, nil
}

// completionBody is the completion request of job j.
func (r *httpRunner) completionBody(j *inferqpb.BatchJob, prompt string) ([]byte, error) {
	body := map[string]json.RawMessage{}
	if len(j.ParametersJson) > 0 {
		var params map[string]json.RawMessage
		if err := json.Unmarshal(j.ParametersJson, &params); err != nil {
			return nil, fmt.Errorf("job %s: parameters: %w", j.Id, err)
		}
		for _, k := range openaiParams {
			if v, ok := params[k]; ok {
				body[k] = v
			}
		}
	}
	for k, v := range map[string]any{"model": r.cfg.Model, "prompt": prompt, "stream": true} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		body[k] = b
	}
	return json.Marshal(body)
}

// complete runs job j's completion and streams its text through emit. A
// nil error with a result that carries an error ends the job alone; an
// error fails the batch.
func (r *httpRunner) complete(ctx context.Context, j *inferqpb.BatchJob, prompt string, emit func(*inferqpb.TokenChunk) error) (*inferqpb.JobResult, error) {
	jctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.cancels.Store(j.Id, cancel)
	defer r.cancels.Delete(j.Id)
	body, err := r.completionBody(j, prompt)
	if err != nil {
		return &inferqpb.JobResult{JobId: j.Id, Error: &inferqpb.Error{Code: "invalid_parameters", Message: err.Error()}}, nil
	}
	release, err := r.acquire(jctx)
	if err != nil {
		return r.jobEnd(ctx, j, err)
	}
	defer release()
	// The timeout covers the wait for the answer and each gap between two
	// events, not the whole generation, which may rightly take long.
	idle := time.AfterFunc(r.cfg.Timeout.D(), func() { cancel(errRequestTimeout) })
	defer idle.Stop()
	req, err := http.NewRequestWithContext(jctx, http.MethodPost, r.cfg.URL+"/v1/completions", bytes.NewReader(body))
	if err != nil {
		return nil, &PermanentError{Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if err := r.authorize(req); err != nil {
		return nil, r.unavailable("%v", err)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return r.jobEnd(ctx, j, r.requestError(ctx, jctx, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		err := r.answerError(resp)
		var rej *rejectedError
		if errors.As(err, &rej) {
			return &inferqpb.JobResult{JobId: j.Id, Error: rej.jobError(r.cfg.Protocol)}, nil
		}
		return nil, err
	}
	s := sseStream{job: j.Id, emit: emit}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	var data []string // the data lines of the event being read
	for sc.Scan() {
		idle.Reset(r.cfg.Timeout.D())
		line := sc.Text()
		if line != "" {
			if v, ok := strings.CutPrefix(line, "data:"); ok {
				data = append(data, strings.TrimPrefix(v, " "))
			}
			continue // comments (": keepalive") and other fields
		}
		if len(data) == 0 {
			continue
		}
		err := s.event(strings.Join(data, "\n"))
		data = data[:0]
		if err != nil {
			return r.streamEnd(ctx, j, err)
		}
		if s.done {
			break
		}
	}
	if !s.done && len(data) > 0 { // a last event without its blank line
		if err := s.event(strings.Join(data, "\n")); err != nil {
			return r.streamEnd(ctx, j, err)
		}
	}
	if err := sc.Err(); err != nil && !s.done {
		return r.jobEnd(ctx, j, r.requestError(ctx, jctx, err))
	}
	if !s.done && !s.finished {
		return nil, r.unavailable("the stream of job %s ended before its end (no finish_reason, no [DONE])", j.Id)
	}
	if err := s.flush(); err != nil {
		return nil, err
	}
	text := s.text.String()
	name := "text_output"
	if len(r.model.Outputs) > 0 {
		name = r.model.Outputs[0].Name
	}
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(text)))
	return &inferqpb.JobResult{JobId: j.Id, Outputs: []*inferqpb.Tensor{
		{Name: name, Datatype: "BYTES", Shape: []int64{1, 1}, Data: append(out, text...)},
	}}, nil
}

// jobEnd turns a cancelled job's error into its cancelled result; other
// errors fail the batch.
func (r *httpRunner) jobEnd(ctx context.Context, j *inferqpb.BatchJob, err error) (*inferqpb.JobResult, error) {
	if ctx.Err() == nil && errors.Is(err, errJobCancelled) {
		return &inferqpb.JobResult{JobId: j.Id, Error: &inferqpb.Error{Code: lifecycle.CodeCancelled, Message: "cancelled while generating"}}, nil
	}
	return nil, err
}

// streamEnd sorts an error met in the stream: an error event the backend
// calls the request's fault ends the job rejected, the rest fail the batch.
func (r *httpRunner) streamEnd(ctx context.Context, j *inferqpb.BatchJob, err error) (*inferqpb.JobResult, error) {
	var rej *rejectedError
	if errors.As(err, &rej) {
		return &inferqpb.JobResult{JobId: j.Id, Error: rej.jobError(r.cfg.Protocol)}, nil
	}
	var se *streamError
	if errors.As(err, &se) {
		return nil, r.unavailable("job %s: %v", j.Id, err)
	}
	return r.jobEnd(ctx, j, err)
}

// streamError is an error event in a completion stream.
type streamError struct{ msg string }

func (e *streamError) Error() string { return "error in the stream: " + e.msg }

// sseStream turns one completion's events into token chunks. A chunk is
// held until the next arrives, so that the last one goes out with Final
// set, as the Python runner marks its last token.
type sseStream struct {
	job      string
	emit     func(*inferqpb.TokenChunk) error
	seq      uint64
	pending  *inferqpb.TokenChunk
	text     strings.Builder
	finished bool // a choice carried a finish_reason
	done     bool // [DONE]
}

// completionChunk is what is read of an OpenAI completion stream chunk.
type completionChunk struct {
	Choices []struct {
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Error *struct {
		Message string `json:"message"`
		Type    string `json:"type"`
	} `json:"error"`
}

func (s *sseStream) event(data string) error {
	if strings.TrimSpace(data) == "[DONE]" {
		s.done = true
		return nil
	}
	var c completionChunk
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		return &streamError{msg: fmt.Sprintf("unreadable event %.200q: %v", data, err)}
	}
	if c.Error != nil {
		if c.Error.Type == "invalid_request_error" {
			return &rejectedError{status: "an error event", msg: c.Error.Message}
		}
		return &streamError{msg: c.Error.Message}
	}
	for _, ch := range c.Choices {
		if ch.Text != "" {
			if err := s.flush(); err != nil {
				return err
			}
			s.seq++
			s.pending = &inferqpb.TokenChunk{JobId: s.job, Seq: s.seq, Text: ch.Text}
			s.text.WriteString(ch.Text)
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			s.finished = true
		}
	}
	if s.finished {
		return s.flush()
	}
	return nil
}

// flush sends the chunk held back, final once the stream has ended.
func (s *sseStream) flush() error {
	if s.pending == nil {
		return nil
	}
	c := s.pending
	s.pending = nil
	c.Final = s.finished || s.done
	return s.emit(c)
}
