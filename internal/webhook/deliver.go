package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// EventType is the event type of a job's end: job.<status>, as
// job.succeeded, job.failed, job.cancelled, job.expired.
func EventType(st results.Status) string { return "job." + string(st) }

// JobWebhookID is the webhook-id of attempt's end of a job: the same on
// every retry, and never containing ".", which the signed content uses
// as its separator.
func JobWebhookID(job string, attempt uint32) string {
	return strings.ReplaceAll(job, ".", "_") + "_" + strconv.FormatUint(uint64(attempt), 10)
}

// JobDelivery is the delivery of rec's end to its webhook URL.
func JobDelivery(rec *results.Record) *inferqpb.WebhookDelivery {
	d := &inferqpb.WebhookDelivery{Id: JobWebhookID(rec.ID, rec.Attempts), Tenant: rec.Tenant,
		Type: EventType(rec.Status), JobId: rec.ID, JobAttempt: rec.Attempts}
	if rec.Webhook != nil {
		d.Url = rec.Webhook.URL
	}
	if rec.FinishedAt != nil {
		d.TimeUnixNano = rec.FinishedAt.UnixNano()
	}
	return d
}

// Enqueue stores d for delivery on model's webhook subject and waits for
// the stream's acknowledgement. Its message id makes sending the same
// webhook twice within the duplicate window one delivery.
func Enqueue(ctx context.Context, js natsjs.JetStream, t jetstream.Topology, model string, d *inferqpb.WebhookDelivery) error {
	if d.Id == "" || strings.Contains(d.Id, ".") || d.Url == "" {
		return fmt.Errorf("webhook %q: needs an id without \".\" and a URL", d.Id)
	}
	if _, err := jetstream.Publish(ctx, js, t.WebhookSubject(model), d, "webhook:"+d.Id); err != nil {
		return fmt.Errorf("enqueue webhook %s: %w", d.Id, err)
	}
	return nil
}

// Options configure a Deliverer; JS, Topology, Store, Policy and Log are
// required.
type Options struct {
	JS       natsjs.JetStream
	Topology jetstream.Topology
	Store    results.Store
	Policy   *Policy
	// Secrets returns the signing secrets of a tenant, current first; none
	// fails every delivery of that tenant.
	Secrets func(tenant string) []Secret
	Log     *slog.Logger
	Metrics *Metrics // nil: registered where nobody reads them
	// Timeout bounds each POST; default 15s. Keep it below nats.ack_wait.
	Timeout time.Duration
	// MaxAttempts is how many POSTs a webhook gets before it is failed;
	// default 8.
	MaxAttempts int
	// Backoff is the wait after the n-th failed attempt (the last value
	// repeats); default 5s, 30s, 2m, 10m, 30m, 1h, 2h.
	Backoff []time.Duration
	// Concurrency is how many webhooks are in flight at once; default 16.
	Concurrency int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Record keeps the outcome of an attempt at a webhook that names no
	// job (a batch's), in its sender's record; nil keeps it nowhere.
	Record func(ctx context.Context, w *inferqpb.WebhookDelivery, st results.WebhookStatus, attempts int, lastErr string) error
}

// Defaults of Options.
var (
	DefaultTimeout     = 15 * time.Second
	DefaultMaxAttempts = 8
	DefaultBackoff     = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
		30 * time.Minute, time.Hour, 2 * time.Hour}
)

// Deliverer consumes the webhooks stream and delivers each webhook.
type Deliverer struct {
	opt    Options
	client *http.Client
}

// New returns a Deliverer; Run starts it.
func New(opt Options) *Deliverer {
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = DefaultMaxAttempts
	}
	if len(opt.Backoff) == 0 {
		opt.Backoff = DefaultBackoff
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = 16
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Secrets == nil {
		opt.Secrets = func(string) []Secret { return nil }
	}
	if opt.Metrics == nil {
		opt.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return &Deliverer{opt: opt, client: opt.Policy.Client(opt.Timeout)}
}

// Run delivers webhooks until ctx ends and the ones in hand are settled.
func (d *Deliverer) Run(ctx context.Context) error {
	cons, err := d.opt.JS.Consumer(ctx, d.opt.Topology.WebhooksStream(), jetstream.WebhookConsumer)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a shutdown, not a failure
		}
		return fmt.Errorf("webhooks: consumer: %w", err)
	}
	iter, err := cons.Messages(natsjs.PullMaxMessages(d.opt.Concurrency))
	if err != nil {
		return fmt.Errorf("webhooks: pull: %w", err)
	}
	stop := context.AfterFunc(ctx, iter.Stop)
	defer stop()
	d.opt.Log.Info("webhook deliverer started", "concurrency", d.opt.Concurrency, "max_attempts", d.opt.MaxAttempts)
	var wg sync.WaitGroup
	for range d.opt.Concurrency {
		wg.Go(func() {
			for {
				msg, err := iter.Next()
				if err != nil {
					if errors.Is(err, natsjs.ErrMsgIteratorClosed) {
						return
					}
					d.opt.Log.Warn("webhook pull failed", "err", err)
					continue
				}
				d.handle(ctx, msg)
			}
		})
	}
	wg.Wait()
	return nil
}

// Outcomes counted in inferq_webhook_deliveries_total{result}.
const (
	resultDelivered = "delivered" // a 2xx answer
	resultRetry     = "retry"     // failed; tried again later
	resultFailed    = "failed"    // failed for the last time, or the receiver said 410 Gone
	resultSkipped   = "skipped"   // nothing to send: the job was replayed, its record expired, or it was sent already
)

// handle delivers one message's webhook, or schedules its retry.
func (d *Deliverer) handle(ctx context.Context, msg natsjs.Msg) {
	var w inferqpb.WebhookDelivery
	if err := proto.Unmarshal(msg.Data(), &w); err != nil {
		d.opt.Log.Error("undecodable webhook dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	attempt := 1
	if md, err := msg.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	log := d.opt.Log.With("webhook_id", w.Id, "tenant", w.Tenant, "type", w.Type)
	if w.JobId != "" {
		log = log.With("job", w.JobId, "attempt", w.JobAttempt)
	}
	// The store calls outlive shutdown: a POST that was made is recorded.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	body, skip, err := d.body(sctx, &w)
	switch {
	case err != nil:
		log.Warn("webhook body not read; will retry", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	case skip != "":
		d.opt.Metrics.Deliveries.WithLabelValues(resultSkipped).Inc()
		log.Info("webhook not sent", "why", skip)
		_ = msg.Ack()
		return
	}
	start := d.opt.Now()
	status, retryAfter, perr := d.post(ctx, &w, body)
	d.opt.Metrics.Duration.Observe(time.Since(start).Seconds())
	if perr != nil && ctx.Err() != nil {
		// Shutting down: this attempt does not count; the next process
		// sends it again.
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if perr == nil {
		d.record(sctx, &w, results.WebhookDelivered, attempt, "", log)
		d.opt.Metrics.Deliveries.WithLabelValues(resultDelivered).Inc()
		log.Info("webhook delivered", "url_host", hostOf(w.Url), "status", status, "delivery_attempt", attempt)
		_ = msg.Ack()
		return
	}
	if attempt >= d.opt.MaxAttempts || status == http.StatusGone {
		d.record(sctx, &w, results.WebhookFailed, attempt, perr.Error(), log)
		d.opt.Metrics.Deliveries.WithLabelValues(resultFailed).Inc()
		log.Warn("webhook failed; giving up", "url_host", hostOf(w.Url), "delivery_attempt", attempt, "err", perr)
		_ = msg.Term()
		return
	}
	delay := d.opt.Backoff[min(attempt, len(d.opt.Backoff))-1]
	if retryAfter > delay && retryAfter <= time.Hour {
		delay = retryAfter
	}
	d.record(sctx, &w, results.WebhookPending, attempt, perr.Error(), log)
	d.opt.Metrics.Deliveries.WithLabelValues(resultRetry).Inc()
	log.Info("webhook failed; will retry", "url_host", hostOf(w.Url), "delivery_attempt", attempt, "in", delay, "err", perr)
	_ = msg.NakWithDelay(delay)
}

// envelope is the body: the Standard Webhooks payload structure.
type envelope struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// body is w's request body, or why there is none to send. A job's data is
// its record as the API shows it, without the webhook's own state (which
// changes between attempts): the same bytes on every retry.
func (d *Deliverer) body(ctx context.Context, w *inferqpb.WebhookDelivery) ([]byte, string, error) {
	data := json.RawMessage(w.Payload)
	if w.JobId != "" {
		rec, err := d.opt.Store.Get(ctx, w.JobId)
		if errors.Is(err, results.ErrNotFound) {
			return nil, "the job's record expired", nil
		}
		if err != nil {
			return nil, "", err
		}
		switch {
		case rec.Attempts != w.JobAttempt:
			return nil, "the job was replayed", nil
		case rec.Webhook == nil || rec.Webhook.Status == "":
			return nil, "the job's record has no pending webhook", nil
		case rec.Webhook.Status != results.WebhookPending:
			return nil, "already " + string(rec.Webhook.Status), nil
		}
		if data, err = rec.WithoutWebhook().JSON(); err != nil {
			return nil, "", err
		}
	}
	if !json.Valid(data) {
		return nil, "its payload is not JSON", nil
	}
	b, err := json.Marshal(envelope{Type: w.Type, Timestamp: time.Unix(0, w.TimeUnixNano).UTC(), Data: data})
	if err != nil {
		return nil, "", fmt.Errorf("encode webhook body: %w", err)
	}
	return b, "", nil
}

// post sends one attempt. It returns the answer's status (0 without one),
// the Retry-After the receiver asked for, and an error unless it was 2xx.
func (d *Deliverer) post(ctx context.Context, w *inferqpb.WebhookDelivery, body []byte) (int, time.Duration, error) {
	secrets := d.opt.Secrets(w.Tenant)
	if len(secrets) == 0 {
		return 0, 0, errors.New("no signing secret is configured for the tenant")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.Url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, fmt.Errorf("request: %w", err)
	}
	now := d.opt.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "inferq-webhooks")
	req.Header.Set(HeaderID, w.Id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, Signature(w.Id, now, body, secrets...))
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("POST: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, nil
	}
	var after time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		after = time.Duration(s) * time.Second
	}
	return resp.StatusCode, after, fmt.Errorf("HTTP %d", resp.StatusCode)
}

// record writes an attempt's outcome into the job record, when the
// webhook is a job's, else through Options.Record. A failed write is logged: the delivery itself has
// happened (or not) either way.
func (d *Deliverer) record(ctx context.Context, w *inferqpb.WebhookDelivery, st results.WebhookStatus, attempts int, lastErr string, log *slog.Logger) {
	if w.JobId == "" {
		if d.opt.Record != nil {
			if err := d.opt.Record(ctx, w, st, attempts, lastErr); err != nil {
				log.Warn("webhook state not recorded", "webhook_status", st, "err", err)
			}
		}
		return
	}
	_, _, err := d.opt.Store.SetWebhook(ctx, results.WebhookUpdate{ID: w.JobId, Attempt: w.JobAttempt, Status: st,
		Attempts: uint32(attempts), LastError: lastErr})
	if err != nil {
		log.Warn("webhook state not recorded", "webhook_status", st, "err", err)
	}
}

// hostOf is the host of a URL, for logs: the path and query may carry a
// tenant's tokens.
func hostOf(raw string) string {
	if u, err := CheckSyntax(raw); err == nil {
		return u.Host
	}
	return ""
}
