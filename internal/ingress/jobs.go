package ingress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/jobid"
	"github.com/inferq/inferq/internal/jsonstr"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/wire"
	"github.com/inferq/inferq/pkg/tensor"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// Accepted is the 202 answer to a submission.
type Accepted struct {
	ID            string    `json:"id"`
	Model         string    `json:"model"`
	Version       string    `json:"version"`
	Status        string    `json:"status"`
	CreatedAt     time.Time `json:"created_at"`
	Links         Links     `json:"links"`
	StreamSubject string    `json:"stream_subject"`

	wish outputWish // the outputs the request asked for as binary data
}

// write answers with a's JSON, the bytes c.JSON would send (encoding/json
// and a newline) without reflection: this answer goes out once per job.
func (a *Accepted) write(c echo.Context, code int) error {
	return c.JSONBlob(code, a.appendJSON(make([]byte, 0, 320)))
}

// appendJSON appends a as encoding/json encodes it, and a newline.
func (a *Accepted) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = jsonstr.Append(b, a.ID)
	b = append(b, `,"model":`...)
	b = jsonstr.Append(b, a.Model)
	b = append(b, `,"version":`...)
	b = jsonstr.Append(b, a.Version)
	b = append(b, `,"status":`...)
	b = jsonstr.Append(b, a.Status)
	b = append(b, `,"created_at":"`...)
	b = a.CreatedAt.AppendFormat(b, time.RFC3339Nano) // a year in 0..9999, as MarshalJSON requires
	b = append(b, `","links":{"self":`...)
	b = jsonstr.Append(b, a.Links.Self)
	b = append(b, `,"events":`...)
	b = jsonstr.Append(b, a.Links.Events)
	b = append(b, `},"stream_subject":`...)
	b = jsonstr.Append(b, a.StreamSubject)
	return append(b, "}\n"...)
}

// Links point at a job's resources.
type Links struct {
	Self   string `json:"self"`
	Events string `json:"events"`
}

// tracer is looked up per span, not kept from package init: spans follow
// whichever provider is installed now (a test may install its own).
func tracer() trace.Tracer { return otel.Tracer("github.com/inferq/inferq/internal/ingress") }

// submit handles POST /v1/models/{model}[/versions/{version}]/jobs. With
// `Prefer: wait=N` (RFC 7240) it waits up to N seconds (capped at
// ingress.max_wait) for the job to end and then answers 200 with its record,
// saving the client the GET; a job still running gets the usual 202.
func (i *Ingress) submit(c echo.Context) error {
	wait, prefer := preferWait(c.Request().Header.Values("Prefer"), i.opt.Config.Ingress.MaxWait.D())
	acc, replayed, err := i.accept(c)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(echo.HeaderLocation, acc.Links.Self)
	if !prefer {
		if replayed {
			return acc.write(c, http.StatusOK)
		}
		return acc.write(c, http.StatusAccepted)
	}
	h.Set("Preference-Applied", "wait="+strconv.FormatInt(int64(wait/time.Second), 10))
	ctx := c.Request().Context()
	var rec *results.Record
	if wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		rec, err = i.wait(wctx, acc.ID, func(r *results.Record) bool { return r.Status.Terminal() })
	} else {
		rec, err = i.record(ctx, acc.ID) // wait=0: a replayed job may have ended
	}
	if err == nil && rec.Status.Terminal() {
		return i.answerResult(c, http.StatusOK, rec, true, acc.wish.withAccept(c.Request().Header))
	}
	if err != nil && ctx.Err() == nil {
		// The job is queued: a failed read while waiting is no reason to
		// answer an error the client would retry (queueing it twice).
		i.opt.Log.Warn("prefer wait: job record unreadable", "job", acc.ID, "err", err)
	}
	return acc.write(c, http.StatusAccepted)
}

// preferWait reads RFC 7240's wait preference from the Prefer header
// fields: "wait=N" with N in whole seconds, capped at max. Every other
// preference, and a wait whose value is not such a number, is ignored, as
// the RFC asks of preferences a server does not understand. The first
// valid wait counts.
func preferWait(fields []string, max time.Duration) (time.Duration, bool) {
	for _, f := range fields {
		for _, pref := range splitUnquoted(f, ',') {
			token := splitUnquoted(pref, ';')[0] // drop the preference's parameters
			name, val, ok := strings.Cut(token, "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			val = strings.TrimSpace(val)
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			if val == "" || strings.TrimLeft(val, "0123456789") != "" || len(val) > 9 {
				continue // delta-seconds is digits only; 9 digits is 31 years
			}
			n, _ := strconv.Atoi(val)
			return min(time.Duration(n)*time.Second, max), true
		}
	}
	return 0, false
}

// splitUnquoted splits s at every sep outside a double-quoted string.
func splitUnquoted(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for k := 0; k < len(s); k++ {
		switch {
		case s[k] == '\\' && quoted:
			k++ // the escaped character
		case s[k] == '"':
			quoted = !quoted
		case s[k] == sep && !quoted:
			out = append(out, s[start:k])
			start = k + 1
		}
	}
	return append(out, s[start:])
}

// accept validates the submission of the request in c (the model and
// version in its path, the /v1 job body) and queues it (acceptJob).
func (i *Ingress) accept(c echo.Context) (acc *Accepted, replayed bool, err error) {
	hr := c.Request()
	return i.acceptJob(hr.Context(), submission{
		Model: c.Param("model"), Version: c.Param("version"), Tenant: tenantOf(c),
		Body:           http.MaxBytesReader(c.Response(), hr.Body, i.opt.Config.Ingress.MaxBodyBytes),
		IdempotencyKey: hr.Header.Get("Idempotency-Key"), Header: hr.Header, ContentLength: hr.ContentLength,
		Method: hr.Method, Route: c.Path()})
}

// submission is one job request in the form POST /v1/models/{model}/jobs
// takes, from whichever face received it (the /v1 and /v2 routes, the
// OpenAI-compatible face), so that every job is checked and queued by the
// one path below.
type submission struct {
	Model, Version string    // version "": the model's
	Body           io.Reader // the job body (an OIP request or the text_input shorthand), bounded by the caller
	Tenant         string
	IdempotencyKey string      // "" for none
	Header         http.Header // the trace context and the binary extension's header are read from it; may be nil
	ContentLength  int64       // of the HTTP body, -1 if unknown (sizes a binary-extension body)
	Method, Route  string      // of the HTTP request, for the span
	// ID, when set, is the job's id instead of a fresh one: the Batch API
	// derives it from the batch and line, so a line is queued once.
	ID string
}

// acceptJob validates a submission and publishes the job; no record is
// written. With an Idempotency-Key already used by the tenant it returns
// the original job instead (replayed true) and queues nothing.
func (i *Ingress) acceptJob(ctx context.Context, s submission) (acc *Accepted, replayed bool, err error) {
	// The job's trace starts here, or continues the client's traceparent;
	// its message to the batcher carries this span's context.
	ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(s.Header))
	span := trace.SpanFromContext(ctx) // without tracing: the client's context, or none
	if obs.Tracing() {
		ctx, span = tracer().Start(ctx, "ingress submit", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", s.Method), attribute.String("http.route", s.Route)))
	}
	defer func() {
		var ae *Error
		if errors.As(err, &ae) && ae.Status >= 500 {
			span.SetStatus(codes.Error, ae.Code)
		}
		span.End()
	}()
	name := s.Model
	now := i.now().UTC()
	id := jobid.At(now) // before the model: a version split picks by it
	if s.ID != "" {
		id = s.ID // fixed by the caller (a Batch API line)
	}
	m, err := i.resolve(name, s.Version, id)
	if err != nil {
		return nil, false, err
	}
	// raw keeps the body, for the idempotency hash: the JSON object (and
	// space after it) once decoding succeeded; tail the binary inputs' bytes.
	var raw bytes.Buffer
	var tail []byte
	var req *inferRequest
	var inputs []*tensor.Tensor
	var params jobParams
	if hl := s.Header.Get(headerInferLen); hl != "" {
		size := min(s.ContentLength, i.opt.Config.Ingress.MaxBodyBytes) // never more than the limit
		req, inputs, params, tail, err = readBinary(s.Body, hl, size, &raw, m)
	} else {
		if s.ContentLength > 0 {
			// Never more than the limit; MinRead more, so ReadFrom needs no
			// second buffer to see the end.
			raw.Grow(int(min(s.ContentLength, i.opt.Config.Ingress.MaxBodyBytes)) + bytes.MinRead)
		}
		if err = readBody(&raw, s.Body); err == nil {
			req, inputs, params, err = decode(raw.Bytes(), nil, false, m)
		}
	}
	if err != nil {
		i.metrics.jobsRejected.WithLabelValues(m.Name, "invalid").Inc()
		return nil, false, err
	}
	tenant := s.Tenant
	callback, err := i.opt.Webhooks.CallbackURL(ctx, tenant, params.callbackURL)
	if err != nil {
		i.metrics.jobsRejected.WithLabelValues(m.Name, "invalid").Inc()
		return nil, false, invalid("%v", err)
	}
	if key := s.IdempotencyKey; key != "" {
		if len(key) > 255 {
			return nil, false, invalid("Idempotency-Key: longer than 255 characters")
		}
		hash, err := requestHash(modelOf(m.Name), i.hashVersion(name, s.Version, m), raw.Bytes(), tail)
		if err != nil {
			return nil, false, invalid("request body: %v", err)
		}
		sum := sha256.Sum256([]byte(tenant + "\x00" + key))
		owner, err := i.opt.Store.Reserve(ctx, hex.EncodeToString(sum[:]), results.Reservation{ID: id, Hash: hash})
		if err != nil {
			return nil, false, i.unavailable(m.Name, "store", err)
		}
		if owner.ID != id {
			// A key stored by an older version has no hash and matches any
			// request of its model.
			if owner.Hash != "" && owner.Hash != hash {
				return nil, false, keyReused()
			}
			rec, err := i.record(ctx, owner.ID)
			if err == nil {
				if modelOf(rec.Model) != modelOf(m.Name) {
					return nil, false, keyReused()
				}
				acc := i.accepted(rec.ID, rec.Tenant, rec.Model, rec.Version, string(rec.Status), rec.CreatedAt)
				acc.wish = req.wish
				return acc, true, nil
			}
			if !errors.Is(err, results.ErrNotFound) {
				return nil, false, i.unavailable(m.Name, "store", err)
			}
			// The first attempt reserved the key and stopped before its job
			// was stored: finish it under the same id (and Nats-Msg-Id).
			id = owner.ID
			if m, err = i.resolve(name, s.Version, id); err != nil { // the version the first attempt picked
				return nil, false, err
			}
		}
	}
	if err := i.checkQueue(ctx, m); err != nil {
		return nil, false, err
	}

	job := &inferqpb.Job{
		Id: id, Tenant: tenant, Model: m.Name, Version: m.Version,
		Priority: int32(params.priority), CreatedUnixNano: now.UnixNano(),
		Stream: params.stream, Attempt: 1, RequestId: req.ID, CallbackUrl: callback,
	}
	timeout := time.Duration(params.timeoutMS) * time.Millisecond
	if timeout == 0 {
		timeout = m.Queue.DefaultTimeout.D()
	}
	if timeout > 0 {
		job.DeadlineUnixNano = now.Add(timeout).UnixNano()
	}
	for _, t := range inputs {
		job.Inputs = append(job.Inputs, wire.ToProto(t))
	}
	for _, o := range req.Outputs {
		job.Outputs = append(job.Outputs, o.Name)
	}
	if len(req.Parameters) > 0 {
		job.ParametersJson, _ = json.Marshal(req.Parameters) // re-encoding decoded JSON cannot fail
	}
	subject := i.opt.Topology.JobSubject(m.Name, params.priority, id)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("inferq.job_id", job.Id), attribute.String("inferq.model", m.Name),
			attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", subject))
	}

	// Inputs over blobs.threshold_bytes go to the blobs bucket first, so
	// that the job message fits NATS's max payload; a failed put is
	// transient (503) and leaves no job.
	blobs, err := i.offloadInputs(ctx, job)
	if err != nil {
		return nil, false, i.unavailable(m.Name, "blob", err)
	}
	// No record is written: the job stored in INFERQ_JOBS is the proof of
	// acceptance, and its first event creates the record (lookup.go).
	seq, err := i.publishJob(ctx, subject, job)
	if errors.Is(err, nats.ErrMaxPayload) {
		// Permanent: a retry would be refused the same way, so not a 503.
		// Large tensors travel by reference; what is left is many small
		// ones (each at most blobs.threshold_bytes) that together do not fit.
		i.dropBlobs(blobs)
		i.metrics.jobsRejected.WithLabelValues(m.Name, "too_large").Inc()
		return nil, false, apiError(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf(
			"the job is %d bytes as stored, with tensors over %d bytes kept apart; the broker takes at most %d bytes per job message (NATS max_payload)",
			proto.Size(job), i.threshold(), i.opt.JS.Conn().MaxPayload()))
	}
	if err != nil {
		// Not dropped: a publish whose outcome is unknown may have stored
		// the job, which then needs its blobs (the bucket's TTL removes them
		// otherwise).
		return nil, false, i.unavailable(m.Name, "publish", err)
	}
	i.accepts.add(queuedRecord(job, seq))
	i.metrics.jobsSubmitted.WithLabelValues(m.Name).Inc()
	i.opt.Log.Debug("job queued", "job", job.Id, "model", m.Name, "priority", params.priority)
	acc = i.accepted(job.Id, tenant, m.Name, m.Version, string(results.Queued), now)
	acc.wish = req.wish
	return acc, false, nil
}

// keyReused is the answer to an Idempotency-Key sent again with another
// request: 422, as Stripe and the IETF Idempotency-Key draft answer.
func keyReused() error {
	return apiError(http.StatusUnprocessableEntity, "idempotency_key_reused",
		"Idempotency-Key was already used with a different request; use a new key for a new request")
}

// requestHash is the hex SHA-256 of the normalized request: model, version
// and the body re-encoded canonically (object keys sorted, no whitespace,
// numbers as written), so that a retry that reorders keys or reformats the
// body still matches, and any change of content does not. tail is a binary
// request's tensor bytes after its JSON (nil for a JSON request, whose hash
// is then what it always was).
func requestHash(model, version string, body, tail []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", err
	}
	canon, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(model + "\x00" + version + "\x00"))
	h.Write(canon)
	if len(tail) > 0 {
		h.Write([]byte("\x00binary\x00"))
		h.Write(tail)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (i *Ingress) accepted(id, tenant, model, version, status string, created time.Time) *Accepted {
	self := "/v1/jobs/" + id
	return &Accepted{ID: id, Model: model, Version: version, Status: status, CreatedAt: created,
		Links:         Links{Self: self, Events: self + "/events"},
		StreamSubject: i.opt.Topology.TokenSubject(tenant, id)}
}

func (i *Ingress) unavailable(model, reason string, err error) error {
	i.metrics.jobsRejected.WithLabelValues(model, reason).Inc()
	i.opt.Log.Error("job not accepted", "model", model, "reason", reason, "err", err)
	return &retryLater{apiError(http.StatusServiceUnavailable, "unavailable", "the broker cannot accept jobs right now; retry later"), 1}
}

// retryLater is an error answered with a Retry-After header.
type retryLater struct {
	err     *Error
	seconds int
}

func (r *retryLater) Error() string { return r.err.Error() }
func (r *retryLater) Unwrap() error { return r.err }

// getJob handles GET /v1/jobs/{id}[?wait=30s].
func (i *Ingress) getJob(c echo.Context) error {
	id := c.Param("id")
	notFound := apiError(http.StatusNotFound, "not_found", "job "+strconv.Quote(id)+" not found")
	if !jobid.Valid(id) {
		return notFound
	}
	wait, err := parseWait(c.QueryParam("wait"), i.opt.Config.Ingress.MaxWait.D())
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var rec *results.Record
	if wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		// Another tenant's job ends the wait at once (404 below), so
		// its timing does not reveal that the job exists and still runs.
		tenant := tenantOf(c)
		rec, err = i.wait(wctx, id, func(r *results.Record) bool { return r.Tenant != tenant || r.Status.Terminal() })
	} else {
		rec, err = i.record(ctx, id)
	}
	switch {
	case errors.Is(err, results.ErrNotFound):
		return notFound
	case err != nil:
		return i.unavailable("", "store", err)
	case rec.Tenant != tenantOf(c):
		return notFound
	}
	return i.answerResult(c, http.StatusOK, rec, true, outputWish{}.withAccept(c.Request().Header))
}

// recordJSON answers with rec as the API shows it, outputs kept by
// reference resolved: the bytes as stored when the store handed them over
// unchanged and there was nothing to resolve.
func (i *Ingress) recordJSON(c echo.Context, code int, rec *results.Record) error {
	rec, err := i.resolved(c.Request().Context(), rec)
	if err != nil {
		return err
	}
	return writeRecord(c, code, rec)
}

// writeRecord answers with rec's JSON as it is (references not resolved).
func writeRecord(c echo.Context, code int, rec *results.Record) error {
	b, err := rec.JSON()
	if err != nil {
		return err
	}
	return c.JSONBlob(code, b)
}

// parseWait reads ?wait= as a Go duration ("30s") or seconds ("30"),
// capped at max.
func parseWait(s string, max time.Duration) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseFloat(s, 64)
		if nerr != nil || n < 0 || n > 1e6 {
			return 0, invalid("wait: want a duration like 30s, got %q", s)
		}
		d = time.Duration(n * float64(time.Second))
	}
	if d < 0 {
		return 0, invalid("wait: must not be negative")
	}
	return min(d, max), nil
}
