package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/inferq/inferq/pkg/tensor"
)

// Request is the body of a submission: Infer (tensors), Generate (the
// generate shorthand) or RawJSON (a request already in JSON).
type Request interface {
	// fields returns the request's JSON object, member by member.
	fields() (map[string]json.RawMessage, error)
}

// Infer is an Open Inference Protocol inference request.
type Infer struct {
	ID         string           // the request's id, echoed in the result's "id"; optional
	Inputs     []*tensor.Tensor // the model's inputs, batch dimension first
	Outputs    []string         // the outputs wanted; none means all
	Parameters map[string]any   // request parameters (the model's, and priority, timeout_ms, stream)
}

func (r Infer) fields() (map[string]json.RawMessage, error) {
	if len(r.Inputs) == 0 {
		return nil, localError("Infer: no inputs")
	}
	f := map[string]json.RawMessage{}
	inputs := make([]*tensor.JSON, len(r.Inputs))
	for k, t := range r.Inputs {
		if t == nil {
			return nil, localError("Infer: input %d is nil", k)
		}
		j, err := tensor.ToJSON(t)
		if err != nil {
			return nil, fmt.Errorf("%w: input %q: %w", ErrInvalid, t.Name, err)
		}
		inputs[k] = j
	}
	if err := put(f, "inputs", inputs); err != nil {
		return nil, err
	}
	if r.ID != "" {
		if err := put(f, "id", r.ID); err != nil {
			return nil, err
		}
	}
	if len(r.Outputs) > 0 {
		outs := make([]map[string]string, len(r.Outputs))
		for k, name := range r.Outputs {
			outs[k] = map[string]string{"name": name}
		}
		if err := put(f, "outputs", outs); err != nil {
			return nil, err
		}
	}
	return f, putParams(f, r.Parameters)
}

// Generate is the generate shorthand {"text_input", "parameters"}, for a
// model with one BYTES input (a generate model such as `repeat`).
type Generate struct {
	Text       string
	Parameters map[string]any // e.g. {"max_tokens": 8}
}

func (r Generate) fields() (map[string]json.RawMessage, error) {
	f := map[string]json.RawMessage{}
	if err := put(f, "text_input", r.Text); err != nil {
		return nil, err
	}
	return f, putParams(f, r.Parameters)
}

// RawJSON is a request body already in JSON (an OIP request or the
// generate shorthand), sent as it is but for the parameters that submit
// options set.
type RawJSON []byte

func (r RawJSON) fields() (map[string]json.RawMessage, error) {
	var f map[string]json.RawMessage
	if err := json.Unmarshal(r, &f); err != nil || f == nil {
		return nil, localError("request body is not a JSON object")
	}
	return f, nil
}

func put(f map[string]json.RawMessage, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
	}
	f[name] = b
	return nil
}

func putParams(f map[string]json.RawMessage, p map[string]any) error {
	if len(p) == 0 {
		return nil
	}
	return put(f, "parameters", p)
}

// SubmitOption sets something of one submission.
type SubmitOption func(*submitOpts) error

type submitOpts struct {
	version  string
	key      string
	params   map[string]any
	wait     time.Duration
	waitSet  bool
	deadline time.Time
}

// WithVersion submits to one version of the model (the path
// /v1/models/{model}/versions/{version}/jobs); the answer is 404 when the
// model has no such version.
func WithVersion(v string) SubmitOption {
	return func(o *submitOpts) error { o.version = v; return nil }
}

// WithIdempotencyKey makes the submission idempotent for the broker's
// results retention: the same key with the same request answers the
// original job and queues nothing (so such a submission is also retried
// after a dropped connection); the same key with another request is
// ErrIdempotencyKeyReused.
func WithIdempotencyKey(key string) SubmitOption {
	return func(o *submitOpts) error {
		if key == "" || len(key) > 255 || strings.ContainsAny(key, "\r\n") {
			return localError("idempotency key: want 1 to 255 characters on one line")
		}
		o.key = key
		return nil
	}
}

// WithPriority sets the job's priority: 0 (served first), 1 (the default)
// or 2.
func WithPriority(p int) SubmitOption {
	return func(o *submitOpts) error {
		if p < 0 || p > 2 {
			return localError("priority %d: want 0, 1 or 2", p)
		}
		o.param("priority", p)
		return nil
	}
}

// WithJobTimeout ends the job `expired` if no batch has taken it within d
// (the timeout_ms parameter; at most 7 days). Without it the model's
// queue.default_timeout applies.
func WithJobTimeout(d time.Duration) SubmitOption {
	return func(o *submitOpts) error {
		if d < time.Millisecond || d > 7*24*time.Hour {
			return localError("job timeout %v: want 1ms to 168h", d)
		}
		o.param("timeout_ms", d.Milliseconds())
		return nil
	}
}

// WithDeadline is WithJobTimeout counted to a point in time: a job not
// batched by t ends `expired`. A deadline already past is refused here.
// The timeout is counted when Submit is called, so submitting again with
// the same idempotency key is another request (ErrIdempotencyKeyReused);
// use WithJobTimeout for submissions you may repeat. (Submit's own
// retries send the same request.)
func WithDeadline(t time.Time) SubmitOption {
	return func(o *submitOpts) error {
		if t.IsZero() {
			return localError("deadline: zero time")
		}
		o.deadline = t
		return nil
	}
}

// WithPreferWait asks the broker (`Prefer: wait=N`, whole seconds, capped
// at its ingress.max_wait) to hold the answer until the job ends, up to d:
// then Submitted.Job is the ended job's record, saving a Wait.
func WithPreferWait(d time.Duration) SubmitOption {
	return func(o *submitOpts) error {
		if d < 0 {
			return localError("prefer wait %v: negative", d)
		}
		o.wait, o.waitSet = d, true
		return nil
	}
}

func (o *submitOpts) param(name string, v any) {
	if o.params == nil {
		o.params = map[string]any{}
	}
	o.params[name] = v
}

// Links point at a job's resources, as paths of the API.
type Links struct {
	Self   string `json:"self"`
	Events string `json:"events"`
}

// Submitted is the broker's answer to a submission.
type Submitted struct {
	ID            string    `json:"id"`
	Model         string    `json:"model"`
	Version       string    `json:"version"`
	Status        Status    `json:"status"`
	CreatedAt     time.Time `json:"created_at"`
	Links         Links     `json:"links"`
	StreamSubject string    `json:"stream_subject"` // the NATS subject of the job's tokens
	// Job is the job's record when the broker held the answer until the
	// job ended (WithPreferWait); nil otherwise.
	Job *Job `json:"-"`
	// Raw is the answer's body as the broker sent it.
	Raw json.RawMessage `json:"-"`
}

// Status is a job's place in its life.
type Status string

// The statuses of a job, in their forward-only order.
const (
	Queued    Status = "queued"
	Running   Status = "running"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Cancelled Status = "cancelled"
	Expired   Status = "expired"
)

// Terminal reports whether the job has ended (it may still be replayed).
func (s Status) Terminal() bool {
	return s == Succeeded || s == Failed || s == Cancelled || s == Expired
}

// Job is a job's record (GET /v1/jobs/{id}).
type Job struct {
	ID         string     `json:"id"`
	Tenant     string     `json:"tenant"`
	Model      string     `json:"model"`
	Version    string     `json:"version"`
	Status     Status     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Attempts   int        `json:"attempts"`
	Error      *JobError  `json:"error"`  // a failed, cancelled or expired job's error
	Result     *Result    `json:"result"` // a succeeded job's result
	// Raw is the record as the broker sent it.
	Raw json.RawMessage `json:"-"`
}

// JobError is why a job failed, was cancelled or expired.
type JobError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *JobError) Error() string { return e.Code + ": " + e.Message }

// Result is a succeeded job's OIP inference response.
type Result struct {
	ModelName    string           `json:"model_name"`
	ModelVersion string           `json:"model_version"`
	ID           string           `json:"id"` // the request's id, when it gave one
	Outputs      []*tensor.Tensor `json:"-"`
	Parameters   map[string]any   `json:"parameters"`
}

// UnmarshalJSON decodes the outputs into tensors.
func (r *Result) UnmarshalJSON(b []byte) error {
	type plain Result
	var v struct {
		plain
		Outputs []*tensor.JSON `json:"outputs"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Result(v.plain)
	for _, j := range v.Outputs {
		t, err := tensor.FromJSON(j)
		if err != nil {
			return fmt.Errorf("output: %w", err)
		}
		r.Outputs = append(r.Outputs, t)
	}
	return nil
}

// Output returns the output tensor called name, or nil.
func (r *Result) Output(name string) *tensor.Tensor {
	for _, t := range r.Outputs {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Text is a generate job's text_output, or "" when it has none.
func (r *Result) Text() string {
	t := r.Output("text_output")
	if t == nil || t.Datatype != tensor.Bytes || len(t.Data) < 4 {
		return ""
	}
	var out strings.Builder
	for d := t.Data; len(d) >= 4; {
		n := int(uint32(d[0]) | uint32(d[1])<<8 | uint32(d[2])<<16 | uint32(d[3])<<24)
		if n > len(d)-4 {
			break
		}
		out.Write(d[4 : 4+n])
		d = d[4+n:]
	}
	return out.String()
}

// Submit submits a job to model and returns the broker's answer. The job
// runs on even if ctx ends after the broker accepted it.
func (c *Client) Submit(ctx context.Context, model string, req Request, opts ...SubmitOption) (*Submitted, error) {
	if model == "" {
		return nil, localError("Submit: empty model name")
	}
	if req == nil {
		return nil, localError("Submit: nil request")
	}
	var o submitOpts
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	f, err := req.fields()
	if err != nil {
		return nil, err
	}
	if !o.deadline.IsZero() {
		left := time.Until(o.deadline)
		if left < time.Millisecond {
			return nil, localError("deadline %s has passed", o.deadline.Format(time.RFC3339Nano))
		}
		o.param("timeout_ms", min(left, 7*24*time.Hour).Milliseconds())
	}
	if len(o.params) > 0 {
		params := map[string]json.RawMessage{}
		if raw, ok := f["parameters"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			if err := json.Unmarshal(raw, &params); err != nil {
				return nil, localError("parameters: not a JSON object")
			}
		}
		for k, v := range o.params {
			b, _ := json.Marshal(v) // ints only
			params[k] = b
		}
		if err := put(f, "parameters", params); err != nil {
			return nil, err
		}
	}
	body, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("inferq client: encoding the request: %w", err)
	}
	path := "/v1/models/" + pathEscape(model)
	if o.version != "" {
		path += "/versions/" + pathEscape(o.version)
	}
	k := call{method: http.MethodPost, path: path + "/jobs", body: body, header: http.Header{}, repeatable: o.key != ""}
	if o.key != "" {
		k.header.Set("Idempotency-Key", o.key)
	}
	if o.waitSet {
		k.header.Set("Prefer", "wait="+strconv.FormatInt(int64(o.wait/time.Second), 10))
	}
	a, err := c.do(ctx, k)
	if err != nil {
		return nil, err
	}
	s := &Submitted{Raw: a.body}
	if err := json.Unmarshal(a.body, s); err != nil {
		return nil, fmt.Errorf("inferq client: unreadable answer to the submission: %w", err)
	}
	if o.waitSet && a.status == http.StatusOK && s.Status.Terminal() {
		// The answer is the ended job's record, not the accepted body.
		job, err := decodeJob(a.body)
		if err != nil {
			return nil, err
		}
		s.Job = job
		s.Links = Links{Self: "/v1/jobs/" + job.ID, Events: "/v1/jobs/" + job.ID + "/events"}
	}
	return s, nil
}

func decodeJob(b []byte) (*Job, error) {
	j := &Job{Raw: b}
	if err := json.Unmarshal(b, j); err != nil {
		return nil, fmt.Errorf("inferq client: unreadable job record: %w", err)
	}
	return j, nil
}

// Get returns the job's record as it is now.
func (c *Client) Get(ctx context.Context, id string) (*Job, error) {
	return c.get(ctx, id, 0)
}

func (c *Client) get(ctx context.Context, id string, wait time.Duration) (*Job, error) {
	if id == "" {
		return nil, localError("empty job id")
	}
	k := call{method: http.MethodGet, path: "/v1/jobs/" + pathEscape(id), repeatable: true}
	if wait > 0 {
		k.query = url.Values{"wait": {wait.Round(time.Millisecond).String()}}
	}
	a, err := c.do(ctx, k)
	if err != nil {
		return nil, err
	}
	return decodeJob(a.body)
}

// pollMargin is how much earlier than ctx's deadline a long-poll asks the
// broker to answer, so that the last answer arrives before ctx ends.
const pollMargin = 250 * time.Millisecond

// maxPoll is the longest wait one long-poll asks for; the broker caps it at
// its ingress.max_wait anyway.
const maxPoll = 60 * time.Second

// Wait long-polls the job (GET /v1/jobs/{id}?wait=) until it has ended and
// returns its record, whatever its status: a failed job is not an error of
// Wait. When ctx ends first, Wait returns the last record it read (nil if
// none) together with ctx's error.
func (c *Client) Wait(ctx context.Context, id string) (*Job, error) {
	var last *Job
	for {
		wait := maxPoll
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl)-pollMargin)
			if wait <= 0 {
				if err := ctx.Err(); err != nil {
					return last, err
				}
				return last, context.DeadlineExceeded
			}
		}
		j, err := c.get(ctx, id, wait)
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			return last, err
		}
		last = j
		if j.Status.Terminal() {
			return j, nil
		}
	}
}

// Cancel asks the broker to cancel the job: it ends `cancelled` (a batcher
// drops it, a generating worker stops between tokens). A job that has
// already ended is ErrConflict.
func (c *Client) Cancel(ctx context.Context, id string) error {
	if id == "" {
		return localError("empty job id")
	}
	_, err := c.do(ctx, call{method: http.MethodDelete, path: "/v1/jobs/" + pathEscape(id), repeatable: true})
	return err
}

// Replayed is the answer to ReplayJob: the job's new attempt.
type Replayed struct {
	ID      string `json:"id"`
	Attempt int    `json:"attempt"`
	Status  Status `json:"status"`
	// Raw is the answer's body as the broker sent it.
	Raw json.RawMessage `json:"-"`
}

// ReplayJob runs an ended job again under its id as a new attempt (scope
// admin). A job still running is ErrConflict; one that never reached a
// batcher or is older than the jobs stream is ErrNotReplayable.
func (c *Client) ReplayJob(ctx context.Context, id string) (*Replayed, error) {
	if id == "" {
		return nil, localError("empty job id")
	}
	a, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/jobs/" + pathEscape(id) + "/replay"})
	if err != nil {
		return nil, err
	}
	r := &Replayed{Raw: a.body}
	if err := json.Unmarshal(a.body, r); err != nil {
		return nil, fmt.Errorf("inferq client: unreadable answer to the replay: %w", err)
	}
	return r, nil
}

// ReplayFilter chooses the failed jobs ReplayModel runs again.
type ReplayFilter struct {
	Since time.Time // only jobs failed since then; zero: any time
	Limit int       // at most this many jobs (1 to 10000); 0: the broker's default, 100
}

// ReplayModel runs the caller's failed jobs of model again (their dead
// letters; scope admin) and returns how many went again.
func (c *Client) ReplayModel(ctx context.Context, model string, f ReplayFilter) (int, error) {
	if model == "" {
		return 0, localError("ReplayModel: empty model name")
	}
	if f.Limit < 0 || f.Limit > 10000 {
		return 0, localError("ReplayModel: limit %d: want 1 to 10000", f.Limit)
	}
	req := map[string]any{"status": "failed"}
	if !f.Since.IsZero() {
		req["since"] = f.Since
	}
	if f.Limit > 0 {
		req["limit"] = f.Limit
	}
	body, err := json.Marshal(req)
	if err != nil {
		return 0, fmt.Errorf("inferq client: encoding the replay: %w", err)
	}
	a, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/models/" + pathEscape(model) + "/replay", body: body})
	if err != nil {
		return 0, err
	}
	var v struct {
		Count *int `json:"count"`
	}
	if err := json.Unmarshal(a.body, &v); err != nil || v.Count == nil {
		return 0, errors.New("inferq client: unreadable answer to the model replay: " + strings.TrimSpace(string(a.body)))
	}
	return *v.Count, nil
}
