// Package results keeps job records: the state clients poll, long-poll and
// stream. One interface, two backends: Redis (production) and a JetStream
// key-value bucket (the embedded default of `inferq dev`). Both apply updates
// forward-only, so redelivered or duplicated events never regress a job.
package results

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/inferq/inferq/internal/lifecycle"
)

// Status is a job's place in its life; the statuses and their forward-only
// order are the lifecycle package's.
type Status = lifecycle.Status

// The six statuses.
const (
	Queued    = lifecycle.Queued
	Running   = lifecycle.Running
	Succeeded = lifecycle.Succeeded
	Failed    = lifecycle.Failed
	Cancelled = lifecycle.Cancelled
	Expired   = lifecycle.Expired
)

// Error is the error of a failed, cancelled or expired job.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Record is a job's state, and its JSON is the API's job record.
type Record struct {
	ID         string          `json:"id"`
	Tenant     string          `json:"tenant,omitempty"`
	Model      string          `json:"model"`
	Version    string          `json:"version"`
	Status     Status          `json:"status"`
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at,omitempty"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
	Attempts   uint32          `json:"attempts"`
	JobsSeq    uint64          `json:"jobs_seq,omitempty"` // the job in INFERQ_JOBS (for replay)
	Error      *Error          `json:"error,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"` // OIP inference response
	// Webhook is the job's completion webhook, when it has a callback URL.
	Webhook *Webhook `json:"webhook,omitempty"`

	raw []byte // the record's JSON as stored, when it was read unchanged
}

// JSON is the record as the API shows it: the stored bytes when the record
// was read as JSON and not changed since, so a large result is not encoded
// again.
func (r *Record) JSON() ([]byte, error) {
	if r.raw != nil {
		return r.raw, nil
	}
	return encodeRecord(r)
}

// WithResult is a copy of r with result in place of its result (the
// ingress's, once blob references are resolved); its JSON is encoded anew.
func (r *Record) WithResult(result json.RawMessage) *Record {
	c := *r
	c.Result, c.raw = result, nil
	return &c
}

// Update moves a job forward. It is applied only if it is progress: a later
// attempt, or a higher-ranked status in the same attempt.
type Update struct {
	ID      string
	Status  Status
	Attempt uint32
	Time    time.Time
	Result  json.RawMessage // with Succeeded
	// ResultEncoded says Result was written by a JSON encoder (valid, no
	// outer whitespace), so the store need not check it again.
	ResultEncoded bool
	Error         *Error // with Failed, Cancelled, Expired
	JobsSeq       uint64 // the job's sequence in INFERQ_JOBS; 0 if unknown

	// The job's identity. The ingress writes no record when it accepts a
	// job (the job in INFERQ_JOBS proves that), so the first event about a
	// job creates its record from these. Without Model and CreatedAt an
	// update of a job with no record is ErrNotFound.
	Tenant, Model, Version string
	CreatedAt              time.Time
	// CallbackURL is where the job's end goes as a webhook; every event
	// of the job carries it, so whichever creates the record keeps it, and
	// a terminal update makes the webhook pending.
	CallbackURL string
}

// creates reports whether u carries what a new record needs.
func (u Update) creates() bool { return u.Model != "" && !u.CreatedAt.IsZero() }

// newRecord is the record u creates for a job that has none: the job as
// accepted (queued, attempt 0), to which u is then applied.
func (u Update) newRecord() *Record {
	rec := &Record{ID: u.ID, Tenant: u.Tenant, Model: u.Model, Version: u.Version, Status: Queued,
		CreatedAt: u.CreatedAt.UTC()}
	if u.CallbackURL != "" {
		rec.Webhook = &Webhook{URL: u.CallbackURL}
	}
	return rec
}

// Sentinel errors, checked with errors.Is.
var (
	ErrNotFound = errors.New("job not found")
	ErrExists   = errors.New("job already exists")
	ErrInvalid  = errors.New("invalid update")
)

// Store holds job records for a configured retention.
type Store interface {
	// Create writes a new record; ErrExists if the id is taken.
	Create(ctx context.Context, rec *Record) error
	// Get returns the record; ErrNotFound if there is none.
	Get(ctx context.Context, id string) (*Record, error)
	// Apply applies u atomically if it moves the job forward (see Advance)
	// and wakes waiters. It returns the record after the call and whether u
	// changed it. A job with no record gets one if u carries its identity
	// (Update.Model, CreatedAt); otherwise that is ErrNotFound.
	Apply(ctx context.Context, u Update) (*Record, bool, error)
	// Wait blocks until done(record) holds or ctx ends, and returns the last
	// record seen. Ending ctx is not an error: the caller gets the current
	// record. Waiters are woken by notifications, not by polling. While the
	// job has no record, it is what orElse returns (nil: ErrNotFound).
	Wait(ctx context.Context, id string, done func(*Record) bool, orElse Fallback) (*Record, error)
	// Reserve maps an idempotency key to r (a job id and the hash of the
	// request that created it) for the retention, unless the key is taken:
	// then it returns what the key already maps to, so the caller can tell
	// a retry (same hash) from a reuse of the key for another request.
	// key is an opaque token of [a-f0-9] (callers hash tenant and key).
	Reserve(ctx context.Context, key string, r Reservation) (Reservation, error)
	// SetWebhook records a delivery attempt of the job's completion
	// webhook (see AdvanceWebhook) and touches nothing else of the record.
	// It returns the record after the call and whether u changed it;
	// ErrNotFound without a record, ErrNoWebhook without a webhook of
	// u.Attempt.
	SetWebhook(ctx context.Context, u WebhookUpdate) (*Record, bool, error)
	// Ping checks the backend is reachable.
	Ping(ctx context.Context) error
	Close() error
}

// FromWaiter is a Store that can start a Wait from a record the caller
// already holds (the ingress that accepted a job knows it is queued), and
// skip the first read while it has heard of no change of the job. The KV
// store can, since it hears of every change; Redis cannot.
type FromWaiter interface {
	WaitFrom(ctx context.Context, id string, done func(*Record) bool, start *Record) (*Record, error)
}

// Advance applies u to rec in place if u is progress, and reports whether it
// did. Both backends use this rule (Redis through the same logic in Lua).
//
//   - u.Attempt < rec.Attempts: stale, ignored.
//   - u.Attempt > rec.Attempts: a new attempt (replay); taken whatever the status.
//   - same attempt: taken only if u.Status ranks higher than rec.Status.
func Advance(rec *Record, u Update) bool {
	switch {
	case u.Attempt < rec.Attempts:
		return false
	case u.Attempt == rec.Attempts && u.Status.Rank() <= rec.Status.Rank():
		return false
	}
	rec.raw = nil
	advanceWebhookOnUpdate(rec, u, u.Attempt > rec.Attempts)
	if u.Attempt > rec.Attempts {
		rec.Attempts = u.Attempt
		rec.StartedAt, rec.FinishedAt, rec.Error, rec.Result = nil, nil, nil, nil
	}
	rec.Status = u.Status
	if u.JobsSeq != 0 {
		rec.JobsSeq = u.JobsSeq
	}
	t := u.Time.UTC()
	switch {
	case u.Status == Running:
		rec.StartedAt = &t
	case u.Status.Terminal():
		if rec.StartedAt == nil && u.Status == Succeeded {
			rec.StartedAt = &t
		}
		rec.FinishedAt = &t
		rec.Result = u.Result
		rec.Error = u.Error
	}
	return true
}

// Check validates an update before it reaches a backend.
func (u Update) Check() error {
	switch {
	case u.ID == "":
		return errors.Join(ErrInvalid, errors.New("update has no job id"))
	case !u.Status.Valid():
		return errors.Join(ErrInvalid, errors.New("update has unknown status "+string(u.Status)))
	case u.Attempt == 0:
		return errors.Join(ErrInvalid, errors.New("update has attempt 0"))
	}
	return nil
}
