// Package client is the Go client of inferq's HTTP API: submit inference
// jobs, read and long-poll their records, stream their progress and tokens
// over Server-Sent Events (resuming by itself after a dropped connection),
// cancel and replay jobs, and read the models and their live figures.
//
//	c, err := client.New("http://127.0.0.1:8080", client.WithToken(os.Getenv("INFERQ_TOKEN")))
//	sub, err := c.Submit(ctx, "repeat", client.Generate{Text: "hello", Parameters: map[string]any{"max_tokens": 8}})
//	job, err := c.Wait(ctx, sub.ID)
//
// Every call takes a context, which bounds the call (not the job). Errors
// the broker answers are *APIError values that match the package's
// sentinels with errors.Is (ErrQueueFull, ErrNotFound, ...); WithRetry
// makes the client wait out the answers that ask for it (429 and 503, with
// their Retry-After) instead of returning them. Tensors are pkg/tensor's.
//
// The package depends on the standard library and pkg/tensor only.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to one inferq ingress. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	hc    *http.Client
	token string
	ua    string
	retry RetryPolicy
	// reconnects is how many times in a row a stream may fail to resume.
	reconnects int
}

// Option sets up a Client in New.
type Option func(*Client) error

// DefaultUserAgent is what a Client sends as User-Agent unless told
// otherwise.
const DefaultUserAgent = "inferq-go-client"

// New returns a client of the ingress at baseURL (http:// or https://,
// e.g. "http://127.0.0.1:8080"; a path prefix is kept, for an ingress
// behind a proxy).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("inferq client: base URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("inferq client: base URL %q: want http://host[:port] or https://host[:port]", baseURL)
	}
	c := &Client{base: u, hc: http.DefaultClient, ua: DefaultUserAgent, reconnects: 5}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, fmt.Errorf("inferq client: %w", err)
		}
	}
	return c, nil
}

// WithHTTPClient makes the client send its requests with hc (for TLS
// settings, a proxy or a transport of your own). Leave hc's Timeout at
// zero if you use Wait or Stream: those requests are long by design, and
// the context bounds them.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("WithHTTPClient: nil *http.Client")
		}
		c.hc = hc
		return nil
	}
}

// WithToken sends `Authorization: Bearer <token>` with every request: a JWT
// or an API key. An empty token sends none.
func WithToken(token string) Option {
	return func(c *Client) error {
		if strings.ContainsAny(token, "\r\n") {
			return errors.New("WithToken: the token contains a line break")
		}
		c.token = token
		return nil
	}
}

// WithAPIKey is WithToken: the broker reads API keys as bearer tokens.
func WithAPIKey(key string) Option { return WithToken(key) }

// WithUserAgent sets the User-Agent header (default DefaultUserAgent).
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		if strings.ContainsAny(ua, "\r\n") {
			return errors.New("WithUserAgent: the user agent contains a line break")
		}
		c.ua = ua
		return nil
	}
}

// WithRetry makes the client try again, as p says, when the broker refuses
// a request for now (429 rate_limited, 503 queue_full, unavailable,
// not_ready): it waits the answer's Retry-After, or p's backoff when the
// answer names none. Those answers mean the request changed nothing, so
// every call may be retried; a request that may have reached the broker
// before its connection failed is tried again only when repeating it is
// harmless (reads, cancels, and submissions with an idempotency key).
func WithRetry(p RetryPolicy) Option {
	return func(c *Client) error {
		if p.Attempts < 0 || p.Backoff < 0 || p.MaxBackoff < 0 || p.MaxRetryAfter < 0 {
			return errors.New("WithRetry: negative field in the policy")
		}
		c.retry = p
		return nil
	}
}

// WithStreamReconnects sets how many times in a row Stream may fail to
// reconnect after a dropped connection before it gives up (default 5).
func WithStreamReconnects(n int) Option {
	return func(c *Client) error {
		if n < 0 {
			return errors.New("WithStreamReconnects: negative count")
		}
		c.reconnects = n
		return nil
	}
}

// RetryPolicy says how often and how long a client retries. Its zero value
// tries once.
type RetryPolicy struct {
	// Attempts is how many times a call is tried in all; 0 and 1 mean once.
	Attempts int
	// Backoff is the wait before the first retry when the answer has no
	// Retry-After (default 200ms); it doubles each retry up to MaxBackoff
	// (default 5s).
	Backoff, MaxBackoff time.Duration
	// MaxRetryAfter caps the wait the client accepts from a Retry-After
	// (default 30s): an answer asking for longer is returned as it is.
	MaxRetryAfter time.Duration
}

// delay is how long to wait before retry number n (1 for the first), or
// false when the policy says to give up.
func (p RetryPolicy) delay(n int, err error) (time.Duration, bool) {
	if n >= p.Attempts {
		return 0, false
	}
	back := p.Backoff
	if back == 0 {
		back = 200 * time.Millisecond
	}
	maxBack := p.MaxBackoff
	if maxBack == 0 {
		maxBack = 5 * time.Second
	}
	for k := 1; k < n && back < maxBack; k++ {
		back *= 2
	}
	back = min(back, maxBack)
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		limit := p.MaxRetryAfter
		if limit == 0 {
			limit = 30 * time.Second
		}
		if ae.RetryAfter > limit {
			return 0, false
		}
		return ae.RetryAfter, true
	}
	return back, true
}

// call is one API request: the body is kept so that it can be sent again.
type call struct {
	method, path string
	query        url.Values
	body         []byte
	header       http.Header
	// repeatable: sending the request twice does no harm, so it may be
	// retried after a transport error too.
	repeatable bool
}

// answer is a successful answer of the broker.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// do sends c with the retry policy and returns a 2xx answer, or an error:
// an *APIError for an error answer, else the transport's error wrapped.
func (c *Client) do(ctx context.Context, k call) (*answer, error) {
	for n := 1; ; n++ {
		a, err := c.once(ctx, k)
		if err == nil {
			return a, nil
		}
		var ae *APIError
		retryable := errors.As(err, &ae) && ae.Temporary() || ae == nil && k.repeatable && ctx.Err() == nil
		if !retryable {
			return nil, err
		}
		d, ok := c.retry.delay(n, err)
		if !ok {
			return nil, err
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (while waiting to retry after: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// once sends k once.
func (c *Client) once(ctx context.Context, k call) (*answer, error) {
	resp, err := c.send(ctx, k)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("inferq client: %s %s: reading the answer: %w", k.method, k.path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, apiError(resp, body)
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// send builds and sends the request; the caller closes the body.
func (c *Client) send(ctx context.Context, k call) (*http.Response, error) {
	// k.path has its segments escaped already (pathEscape).
	target := c.base.String() + k.path
	if len(k.query) > 0 {
		target += "?" + k.query.Encode()
	}
	var body io.Reader
	if k.body != nil {
		body = bytes.NewReader(k.body)
	}
	req, err := http.NewRequestWithContext(ctx, k.method, target, body)
	if err != nil {
		return nil, fmt.Errorf("inferq client: %s %s: %w", k.method, k.path, err)
	}
	for name, vs := range k.header {
		req.Header[name] = vs
	}
	if k.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", c.ua)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("inferq client: %s %s: %w", k.method, k.path, err)
	}
	return resp, nil
}

// apiError reads an error answer: {"error": {"code", "message"}} on /v1,
// or a body this client does not know, kept as the message.
func apiError(resp *http.Response, body []byte) *APIError {
	e := &APIError{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id"),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var v1 struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &v1) == nil && v1.Error.Code != "" {
		e.Code, e.Message = v1.Error.Code, v1.Error.Message
		return e
	}
	var v2 struct{ Error, Code string } // the OIP form
	if json.Unmarshal(body, &v2) == nil && v2.Code != "" {
		e.Code, e.Message = v2.Code, v2.Error
		return e
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	e.Message = msg
	return e
}

// pathEscape escapes one path segment (a model name or a job id).
func pathEscape(s string) string { return url.PathEscape(s) }
