package agent

// The HTTP runner: the model runs on an inference server that is already
// there (Triton, KServe, vLLM, TGI, llama.cpp, Ollama, another inferq), and
// inferq puts its queue, batching, retries and replay in front of it. How a
// batch travels depends on runner.http.protocol: kserve-v2 sends the batch
// as one batched Open Inference Protocol request (httpkserve.go); openai
// sends each job as one streamed completion (httpopenai.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// CodeBackendRejected is the error code of a job the backend refused with a
// 4xx answer: the request is wrong for the backend, so no retry is made.
const CodeBackendRejected = "backend_rejected"

// errBodyLimit bounds how much of an error answer is read for its message.
const errBodyLimit = 4 << 10

// httpRunner is a Runner that sends batches to an HTTP inference server.
type httpRunner struct {
	model  *config.Model
	cfg    *config.HTTPBackend
	log    *slog.Logger
	client *http.Client
	sem    chan struct{} // one slot per request at the backend (concurrency)

	ready    atomic.Bool // the backend's last health check passed
	stop     context.CancelFunc
	wg       sync.WaitGroup // the health loop
	cancels  sync.Map       // job id → context.CancelCauseFunc (openai)
	closeOne sync.Once
}

// newHTTPRunner prepares the runner of model m and starts watching its
// backend's health; nothing is sent until a batch comes.
func newHTTPRunner(m *config.Model, log *slog.Logger) (*httpRunner, error) {
	h := m.Runner.HTTP
	if h == nil || h.Concurrency < 1 || h.Timeout <= 0 || h.HealthInterval <= 0 {
		return nil, fmt.Errorf("model %q: runner.http is not filled in (config not finished)", m.Name)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = h.Concurrency
	r := &httpRunner{model: m, cfg: h, client: &http.Client{Transport: tr},
		sem: make(chan struct{}, h.Concurrency),
		log: log.With("model", m.Name, "backend", h.URL, "protocol", h.Protocol)}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.wg.Go(func() { r.watchHealth(ctx) })
	return r, nil
}

// Describe says whether the backend answered its last health check: a
// backend that is down keeps the worker not ready and its heartbeat too.
func (r *httpRunner) Describe() RunnerInfo {
	return RunnerInfo{Ready: r.ready.Load(), Device: "cpu"}
}

// MaxConcurrentBatches lets the agent hold as many batches as there are
// request slots: a kserve-v2 batch is one request, and openai jobs share
// the slots.
func (r *httpRunner) MaxConcurrentBatches() int { return r.cfg.Concurrency }

// Cancel stops a job's streamed completion (openai); it ends cancelled.
func (r *httpRunner) Cancel(jobID string) {
	if c, ok := r.cancels.Load(jobID); ok {
		c.(context.CancelCauseFunc)(errJobCancelled)
	}
}

// Close stops the health checks and drops idle connections.
func (r *httpRunner) Close() error {
	r.closeOne.Do(func() {
		r.stop()
		r.wg.Wait()
		r.client.CloseIdleConnections()
	})
	return nil
}

// Run sends the batch by the backend's protocol.
func (r *httpRunner) Run(ctx context.Context, b *inferqpb.Batch, emit func(*inferqpb.TokenChunk) error) (*inferqpb.BatchResult, error) {
	if r.cfg.Protocol == config.ProtocolOpenAI {
		return r.runOpenAI(ctx, b, emit)
	}
	return r.runKServe(ctx, b)
}

// healthPath is where the backend says it is ready.
func (r *httpRunner) healthPath() string {
	if r.cfg.Protocol == config.ProtocolOpenAI {
		return "/v1/models"
	}
	return "/v2/health/ready"
}

// watchHealth checks the backend at once, then every health_interval (every
// second while it is not ready, so that a backend coming up is noticed
// soon), until ctx ends.
func (r *httpRunner) watchHealth(ctx context.Context) {
	for {
		err := r.checkHealth(ctx)
		if ctx.Err() != nil {
			return
		}
		was := r.ready.Swap(err == nil)
		switch {
		case err == nil && !was:
			r.log.Info("http backend ready")
		case err != nil && was:
			r.log.Warn("http backend not ready", "err", err)
		case err != nil:
			r.log.Debug("http backend still not ready", "err", err)
		}
		every := r.cfg.HealthInterval.D()
		if err != nil {
			every = min(every, time.Second)
		}
		if !sleep(ctx, every) {
			return
		}
	}
}

func (r *httpRunner) checkHealth(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(r.cfg.Timeout.D(), 10*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URL+r.healthPath(), nil)
	if err != nil {
		return err
	}
	if err := r.authorize(req); err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s", r.healthPath(), resp.Status)
	}
	return nil
}

// headerLine is a "Name: value" line in an auth header file.
var headerLine = regexp.MustCompile(`^([A-Za-z0-9!#$%&'*+.^_|~-]+):\s*(.*)$`)

// authorize adds the header of auth_header_file, read again for each
// request so that a rotated secret takes effect without a restart.
func (r *httpRunner) authorize(req *http.Request) error {
	if r.cfg.AuthHeaderFile == "" {
		return nil
	}
	b, err := os.ReadFile(r.cfg.AuthHeaderFile)
	if err != nil {
		return fmt.Errorf("auth_header_file: %w", err)
	}
	line := strings.TrimSpace(string(b))
	if i := strings.IndexAny(line, "\r\n"); i >= 0 {
		return fmt.Errorf("auth_header_file %s: want one line, got several", r.cfg.AuthHeaderFile)
	}
	if line == "" {
		return fmt.Errorf("auth_header_file %s is empty", r.cfg.AuthHeaderFile)
	}
	if m := headerLine.FindStringSubmatch(line); m != nil {
		req.Header.Set(m[1], m[2])
		return nil
	}
	req.Header.Set("Authorization", line)
	return nil
}

// acquire takes a request slot, waiting while concurrency requests are out.
func (r *httpRunner) acquire(ctx context.Context) (release func(), err error) {
	select {
	case r.sem <- struct{}{}:
		return func() { <-r.sem }, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// rejectedError is a 4xx answer: the backend refuses the request, and the
// same request would be refused again.
type rejectedError struct {
	status string
	msg    string
}

func (e *rejectedError) Error() string {
	return fmt.Sprintf("the backend answered %s: %s", e.status, e.msg)
}

// jobError is the job's error for a rejection.
func (e *rejectedError) jobError(protocol string) *inferqpb.Error {
	return &inferqpb.Error{Code: CodeBackendRejected, Message: fmt.Sprintf("%s backend answered %s: %s", protocol, e.status, e.msg)}
}

// errJobCancelled is the cause of a job's request context when the job is
// cancelled.
var errJobCancelled = errors.New("job cancelled")

// errRequestTimeout is the cause of a request context past runner.http.timeout.
var errRequestTimeout = errors.New("request timed out")

// unavailable wraps a failure that is the backend's, not the batch's: the
// agent retries the batch through the queue (max_deliver, backoff) and does
// not split it to look for a bad job.
func (r *httpRunner) unavailable(format string, args ...any) error {
	return fmt.Errorf("%w: %s backend %s: %s", ErrRunnerUnavailable, r.cfg.Protocol, r.cfg.URL, fmt.Sprintf(format, args...))
}

// answerError sorts a non-2xx answer: 4xx (but 408 and 429, which say
// "later") rejects, anything else is the backend's failure.
func (r *httpRunner) answerError(resp *http.Response) error {
	msg := errorMessage(io.LimitReader(resp.Body, errBodyLimit))
	if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return &rejectedError{status: resp.Status, msg: msg}
	}
	return r.unavailable("%s: %s", resp.Status, msg)
}

// errorMessage reads an error answer's message: the OIP {"error": "..."},
// OpenAI's {"error": {"message": "..."}}, a {"message": "..."}, or the text.
func errorMessage(body io.Reader) string {
	b, _ := io.ReadAll(body)
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(b, &v) == nil {
		var s string
		var o struct {
			Message string `json:"message"`
		}
		switch {
		case json.Unmarshal(v.Error, &s) == nil && s != "":
			return s
		case json.Unmarshal(v.Error, &o) == nil && o.Message != "":
			return o.Message
		case v.Message != "":
			return v.Message
		case json.Unmarshal(v.Detail, &s) == nil && s != "":
			return s
		}
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
	if s == "" {
		return "(no message)"
	}
	if len(s) > 512 {
		s = s[:512] + "…"
	}
	return s
}

// requestError sorts a failed round trip: the batch's own context ending
// is returned as it is (shutdown, handled by the agent), a cancelled job
// as errJobCancelled, anything else (refused connection, timeout) is the
// backend's failure.
func (r *httpRunner) requestError(parent, reqCtx context.Context, err error) error {
	switch {
	case parent.Err() != nil:
		return context.Cause(parent)
	case errors.Is(context.Cause(reqCtx), errJobCancelled):
		return errJobCancelled
	case errors.Is(context.Cause(reqCtx), errRequestTimeout):
		return r.unavailable("no answer within %s", r.cfg.Timeout.D())
	}
	return r.unavailable("%v", err)
}
