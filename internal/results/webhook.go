package results

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/inferq/inferq/internal/lifecycle"
)

// WebhookStatus is where the completion webhook of a job's attempt stands.
type WebhookStatus string

// The webhook statuses. A record gets Pending when its job ends with a
// callback URL; delivery moves it to Delivered or Failed, which are final.
const (
	WebhookPending   WebhookStatus = "pending"
	WebhookDelivered WebhookStatus = "delivered"
	WebhookFailed    WebhookStatus = "failed"
)

// rank orders the statuses for the forward-only rule; 0 is unknown.
func (s WebhookStatus) rank() int {
	switch s {
	case WebhookPending:
		return 1
	case WebhookDelivered, WebhookFailed:
		return 2
	}
	return 0
}

// Webhook is a job's completion webhook in its record: where it goes and,
// once the job has ended, how its delivery goes.
type Webhook struct {
	URL       string        `json:"url"`
	Status    WebhookStatus `json:"status,omitempty"`   // empty until the job ends
	Attempts  uint32        `json:"attempts,omitempty"` // delivery attempts made
	LastError string        `json:"last_error,omitempty"`
}

// WebhookUpdate records the outcome of a delivery attempt: it touches only
// the record's webhook, never the job's status.
type WebhookUpdate struct {
	ID string
	// Attempt is the job's attempt whose end the webhook tells; the update
	// is dropped if the job was replayed since.
	Attempt   uint32
	Status    WebhookStatus
	Attempts  uint32 // delivery attempts made so far
	LastError string // empty clears it
}

// ErrNoWebhook is SetWebhook's answer for a record with no pending or
// finished webhook of that attempt (the job has not ended, has no callback
// URL, or was replayed since).
var ErrNoWebhook = errors.New("job has no webhook to update")

// maxWebhookError bounds LastError, which quotes a receiver's answer.
const maxWebhookError = 512

// Check validates a webhook update before it reaches a backend.
func (u WebhookUpdate) Check() error {
	switch {
	case u.ID == "":
		return errors.Join(ErrInvalid, errors.New("webhook update has no job id"))
	case u.Attempt == 0:
		return errors.Join(ErrInvalid, errors.New("webhook update has attempt 0"))
	case u.Status.rank() == 0:
		return errors.Join(ErrInvalid, fmt.Errorf("webhook update has unknown status %q", u.Status))
	}
	return nil
}

func prepareWebhookUpdate(u WebhookUpdate) (WebhookUpdate, error) {
	if err := u.Check(); err != nil {
		return u, err
	}
	if len(u.LastError) > maxWebhookError {
		u.LastError = u.LastError[:maxWebhookError]
	}
	return u, nil
}

// AdvanceWebhook applies u to rec's webhook in place if it is progress, and
// reports whether it did; ErrNoWebhook if rec has no webhook of u's attempt
// to update. Both backends use this rule (Redis through the same logic in
// Lua): a final status (delivered, failed) never changes, and a pending one
// takes only more attempts or a final status.
func AdvanceWebhook(rec *Record, u WebhookUpdate) (bool, error) {
	w := rec.Webhook
	if w == nil || w.Status == "" || rec.Attempts != u.Attempt || !rec.Status.Terminal() {
		return false, ErrNoWebhook
	}
	cur, next := w.Status.rank(), u.Status.rank()
	if next < cur || cur == 2 || next == cur && u.Attempts <= w.Attempts {
		return false, nil
	}
	rec.raw = nil
	w.Status, w.LastError = u.Status, u.LastError
	w.Attempts = max(w.Attempts, u.Attempts)
	return true, nil
}

// advanceWebhookOnUpdate is what Advance does to the webhook when u moved
// the job: a new attempt forgets the last attempt's delivery, and a
// terminal status with a callback URL makes it pending.
func advanceWebhookOnUpdate(rec *Record, u Update, newAttempt bool) {
	if u.CallbackURL != "" {
		if rec.Webhook == nil {
			rec.Webhook = &Webhook{}
		}
		rec.Webhook.URL = u.CallbackURL
	}
	if rec.Webhook == nil {
		return
	}
	if newAttempt {
		rec.Webhook = &Webhook{URL: rec.Webhook.URL}
	}
	if u.Status.Terminal() && rec.Webhook.URL != "" {
		rec.Webhook = &Webhook{URL: rec.Webhook.URL, Status: WebhookPending}
	}
}

// SetWebhook implements Store for the KV store: AdvanceWebhook in Go,
// written back by compare-and-set.
func (s *KVStore) SetWebhook(ctx context.Context, u WebhookUpdate) (*Record, bool, error) {
	u, err := prepareWebhookUpdate(u)
	if err != nil {
		return nil, false, err
	}
	for {
		rec, rev, err := s.get(ctx, u.ID)
		if err != nil {
			return nil, false, fmt.Errorf("webhook of job %q: %w", u.ID, err)
		}
		changed, err := AdvanceWebhook(rec, u)
		if err != nil {
			return rec, false, fmt.Errorf("webhook of job %s: %w", u.ID, err)
		}
		if !changed {
			return rec, false, nil
		}
		data, err := encodeRecord(rec)
		if err != nil {
			return nil, false, fmt.Errorf("webhook of job %s: %w", u.ID, err)
		}
		if _, err = s.kv.Update(ctx, u.ID, data, rev); err == nil {
			s.changed(rec, data)
			return rec, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, false, fmt.Errorf("webhook of job %s: %w", u.ID, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, false, fmt.Errorf("webhook of job %s: %w", u.ID, err)
		}
	}
}

// setWebhookScript is AdvanceWebhook in Lua. ARGV: 1 job attempt, 2 status,
// 3 delivery attempts, 4 last error (empty: none), 5 TTL ms, 6 notify
// channel. Returns false if the record is missing, else {code, HGETALL}
// where code is 1 changed, 0 unchanged, -1 no webhook of that attempt.
var setWebhookScript = redis.NewScript(luaRankTable() + fmt.Sprintf(`
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return false end
local cur = redis.call('HMGET', key, %[1]q, %[2]q, %[3]q, %[4]q)
local wrank = {[%[6]q]=1, [%[7]q]=2, [%[8]q]=2}
local code = 0
if cur[3] == false or tonumber(cur[2]) ~= tonumber(ARGV[1]) or rank[cur[1]] ~= %[9]d then
  code = -1
else
  local cr, nr = wrank[cur[3]] or 0, wrank[ARGV[2]]
  local ca, na = tonumber(cur[4]) or 0, tonumber(ARGV[3])
  if nr == nil or na == nil then return redis.error_reply('ERR inferq: bad webhook update') end
  if not (nr < cr or cr == 2 or (nr == cr and na <= ca)) then
    code = 1
    redis.call('HSET', key, %[3]q, ARGV[2], %[4]q, tostring(math.max(ca, na)))
    if ARGV[4] == '' then
      redis.call('HDEL', key, %[5]q)
    else
      redis.call('HSET', key, %[5]q, ARGV[4])
    end
    redis.call('PEXPIRE', key, ARGV[5])
    redis.call('PUBLISH', ARGV[6], cur[1])
  end
end
return {code, redis.call('HGETALL', key)}
`, fStatus, fAttempts, fWebhookStatus, fWebhookAttempts, fWebhookError,
	WebhookPending, WebhookDelivered, WebhookFailed, lifecycle.TerminalRank))

// SetWebhook implements Store.
func (s *RedisStore) SetWebhook(ctx context.Context, u WebhookUpdate) (*Record, bool, error) {
	u, err := prepareWebhookUpdate(u)
	if err != nil {
		return nil, false, err
	}
	if !validID(u.ID) {
		return nil, false, fmt.Errorf("webhook of job %q: %w", u.ID, ErrNotFound)
	}
	reply, err := s.run(ctx, setWebhookScript, []string{s.key(u.ID)},
		u.Attempt, string(u.Status), u.Attempts, u.LastError, s.retention.Milliseconds(), s.channel(u.ID)).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, false, fmt.Errorf("webhook of job %s: %w", u.ID, ErrNotFound)
	}
	if err != nil {
		return nil, false, fmt.Errorf("webhook of job %s: %w", u.ID, err)
	}
	if len(reply) != 2 {
		return nil, false, fmt.Errorf("webhook of job %s: %w: reply has %d elements", u.ID, errCorrupt, len(reply))
	}
	code, ok := reply[0].(int64)
	if !ok {
		return nil, false, fmt.Errorf("webhook of job %s: %w: malformed reply", u.ID, errCorrupt)
	}
	_, rec, err := decodeApplyReply([]any{int64(0), reply[1]})
	if err != nil {
		return nil, false, fmt.Errorf("webhook of job %s: %w", u.ID, err)
	}
	if code < 0 {
		return rec, false, fmt.Errorf("webhook of job %s: %w", u.ID, ErrNoWebhook)
	}
	return rec, code == 1, nil
}

// WithoutWebhook is a copy of r without its webhook: the job as its
// completion webhook tells it, the same bytes on every delivery attempt.
func (r *Record) WithoutWebhook() *Record {
	c := *r
	c.Webhook, c.raw = nil, nil
	return &c
}
