package results

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/inferq/inferq/internal/lifecycle"
)

// RedisConfig configures NewRedis: one node by URL, or, with Addrs, a
// Redis Cluster (its seed nodes) or, with MasterName too, the Sentinels
// that name the current master of a replicated set.
type RedisConfig struct {
	URL        string   // redis://[user:pass@]host:port/db
	Addrs      []string // Cluster seed nodes, or Sentinels with MasterName
	MasterName string   // the Sentinels' name of the master
	// Username and Password authenticate to the data nodes with Addrs
	// (the URL carries its own); Sentinels get the same password.
	Username, Password string
	Prefix             string        // key prefix; default "inferq"
	Retention          time.Duration // how long a record lives after its last change; default 24h
	// TokensRetention is how long a job's token log lives after its last
	// token; default Retention. inferq sets nats.tokens_max_age, the age
	// of INFERQ_TOKENS: a log is for streaming and resuming a job's text,
	// and the finished text stays in the record.
	TokensRetention time.Duration
	// Timeout bounds each call: dial, read and write, with no retry; a hung
	// Redis costs a caller about this long, not go-redis's defaults (3s
	// reads, 3 retries). Default DefaultRedisTimeout.
	Timeout time.Duration
}

// DefaultRedisTimeout is RedisConfig.Timeout's default.
const DefaultRedisTimeout = time.Second

// Replication wait with Sentinel: each write waits (Redis WAIT) until one
// replica has it, or this long, so a failover promotes a replica that holds
// what resultsvc was told is stored.
// When a wait times out (no replica, as right after a failover), writes
// stop waiting for sentinelWaitPause, then try again.
const (
	sentinelWaitReplicas = 1
	sentinelWaitTimeout  = time.Second
	sentinelWaitPause    = 5 * time.Second
)

// Defaults shared by both backends.
const (
	DefaultRetention   = 24 * time.Hour
	DefaultRedisPrefix = "inferq"
)

// Subscriber tuning: how long the shared subscription may sit silent before
// it is pinged (to notice dead connections), and how it backs off while the
// server is unreachable.
const (
	subHealthInterval = 30 * time.Second
	subMinBackoff     = 50 * time.Millisecond
	subMaxBackoff     = 2 * time.Second
)

// Hash fields of a record. A hash (rather than one JSON string) lets the Lua
// script change single fields and keeps the result bytes exactly as given.
const (
	fID         = "id"
	fTenant     = "tenant"
	fModel      = "model"
	fVersion    = "version"
	fStatus     = "status"
	fCreatedAt  = "created_at"
	fStartedAt  = "started_at"
	fFinishedAt = "finished_at"
	fAttempts   = "attempts"
	fErrCode    = "error_code" // present iff the record has an Error
	fErrMessage = "error_message"
	fResult     = "result" // raw JSON, absent when empty
	fJobsSeq    = "jobs_seq"
	// The webhook: its URL from the job's first event on, the rest once
	// the job has ended (see Webhook).
	fWebhookURL      = "webhook_url"
	fWebhookStatus   = "webhook_status"
	fWebhookAttempts = "webhook_attempts"
	fWebhookError    = "webhook_error"
)

// createScript sets the record only if the key is free, with its TTL, in one
// step. ARGV[1] is the TTL in ms, the rest field/value pairs.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`)

// applyScript is Advance in Lua, so that read-decide-write is one atomic
// server-side step. The rank table and status names come from the Go
// definitions so the two cannot drift apart.
//
// ARGV: 1 status, 2 attempt, 3 time, 4 has result, 5 result, 6 has error,
// 7 error code, 8 error message, 9 TTL ms, 10 notify channel, 11 jobs_seq
// (0: unknown), 12 creates ("1": the job's identity follows, to create a
// missing record), 13 id, 14 tenant, 15 model, 16 version, 17 created_at,
// 18 callback URL (empty: none given).
// Returns false if the record is missing and not created, else
// {changed, HGETALL}.
var applyScript = redis.NewScript(luaRankTable() + fmt.Sprintf(`
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then
  if ARGV[12] ~= '1' then return false end
  redis.call('HSET', key, %[12]q, ARGV[13], %[13]q, ARGV[14], %[14]q, ARGV[15], %[15]q, ARGV[16],
    %[1]q, %[16]q, %[17]q, ARGV[17], %[2]q, '0')
  if ARGV[18] ~= '' then redis.call('HSET', key, %[18]q, ARGV[18]) end
end
local cur = redis.call('HMGET', key, %[1]q, %[2]q)
local cur_rank = rank[cur[1]] or -1
local cur_att = tonumber(cur[2]) or 0
local st = ARGV[1]
local att = tonumber(ARGV[2])
local new_rank = rank[st]
if new_rank == nil or att == nil then return redis.error_reply('ERR inferq: bad update') end
local changed = 0
if att > cur_att or (att == cur_att and new_rank > cur_rank) then
  changed = 1
  if ARGV[18] ~= '' then redis.call('HSET', key, %[18]q, ARGV[18]) end
  if att > cur_att then
    redis.call('HSET', key, %[2]q, ARGV[2])
    redis.call('HDEL', key, %[3]q, %[4]q, %[5]q, %[6]q, %[7]q, %[19]q, %[20]q, %[21]q)
  end
  redis.call('HSET', key, %[1]q, st)
  if st == %[8]q then
    redis.call('HSET', key, %[3]q, ARGV[3])
  elseif new_rank == %[10]d then
    if st == %[9]q and redis.call('HEXISTS', key, %[3]q) == 0 then
      redis.call('HSET', key, %[3]q, ARGV[3])
    end
    redis.call('HSET', key, %[4]q, ARGV[3])
    if ARGV[4] == '1' then
      redis.call('HSET', key, %[5]q, ARGV[5])
    else
      redis.call('HDEL', key, %[5]q)
    end
    if ARGV[6] == '1' then
      redis.call('HSET', key, %[6]q, ARGV[7], %[7]q, ARGV[8])
    else
      redis.call('HDEL', key, %[6]q, %[7]q)
    end
    if redis.call('HEXISTS', key, %[18]q) == 1 then
      redis.call('HSET', key, %[19]q, %[22]q, %[20]q, '0')
      redis.call('HDEL', key, %[21]q)
    end
  end
  if ARGV[11] ~= '0' then redis.call('HSET', key, %[11]q, ARGV[11]) end
  redis.call('PEXPIRE', key, ARGV[9])
  redis.call('PUBLISH', ARGV[10], st)
end
return {changed, redis.call('HGETALL', key)}
`, fStatus, fAttempts, fStartedAt, fFinishedAt, fResult, fErrCode, fErrMessage,
	Running, Succeeded, lifecycle.TerminalRank, fJobsSeq,
	fID, fTenant, fModel, fVersion, Queued, fCreatedAt,
	fWebhookURL, fWebhookStatus, fWebhookAttempts, fWebhookError, WebhookPending))

func luaRankTable() string {
	var b strings.Builder
	b.WriteString("local rank = {")
	for _, s := range lifecycle.Statuses() {
		fmt.Fprintf(&b, "[%q]=%d,", s, s.Rank())
	}
	b.WriteString("}\n")
	return b.String()
}

// RedisStore is the production Store: records are Redis hashes with a TTL,
// updates go through a Lua script, and waiters share one pattern subscription.
type RedisStore struct {
	client redis.UniversalClient
	prefix string
	// legacy: one node by URL, where records of versions before hash tags
	// may still live under <prefix>:job:<id>; Get reads them too.
	legacy bool
	// waitReplicas > 0 makes every write wait for that many replicas.
	waitReplicas int
	// unreplicated counts writes that WAIT reported on fewer replicas;
	// until waitPausedUntil (unix ns) writes do not wait.
	unreplicated    atomic.Int64
	waitPausedUntil atomic.Int64
	retention       time.Duration
	tokensRetention time.Duration
	pubsub          *redis.PubSub
	waiters         waiters

	ctx        context.Context // cancelled by Close; stops the subscriber
	cancel     context.CancelFunc
	listenDone chan struct{}
	closeOnce  sync.Once
	closeErr   error
}

var _ Store = (*RedisStore)(nil)

// NewRedis connects to Redis, checks it answers, and starts the shared
// notification subscriber. Close releases both.
func NewRedis(ctx context.Context, cfg RedisConfig) (*RedisStore, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultRedisPrefix
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.TokensRetention == 0 {
		cfg.TokensRetention = cfg.Retention
	}
	if cfg.Retention < time.Millisecond || cfg.TokensRetention < time.Millisecond {
		return nil, fmt.Errorf("redis results store: retention %v or tokens retention %v is too short", cfg.Retention, cfg.TokensRetention)
	}
	client, where, err := newRedisClient(cfg)
	if err != nil {
		return nil, err
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis results store: ping %s: %w", where, err)
	}
	s := &RedisStore{
		client:          client,
		prefix:          cfg.Prefix,
		legacy:          cfg.URL != "",
		retention:       cfg.Retention,
		tokensRetention: cfg.TokensRetention,
		waiters:         newWaiters(),
		listenDone:      make(chan struct{}),
	}
	if cfg.MasterName != "" {
		s.waitReplicas = sentinelWaitReplicas
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	// One pattern subscription serves every waiter of this store. Wait for
	// its confirmation so that a Wait right after NewRedis cannot miss a
	// notification. On a Cluster it is held on one node (the master of the
	// pattern's slot) and still sees every job: the scripts notify with
	// PUBLISH, which Redis Cluster forwards to every node.
	s.pubsub = client.PSubscribe(ctx, s.pattern())
	msg, err := s.pubsub.Receive(ctx)
	if err == nil {
		if sub, ok := msg.(*redis.Subscription); !ok || sub.Kind != "psubscribe" {
			err = fmt.Errorf("unexpected reply %v", msg)
		}
	}
	if err != nil {
		s.cancel()
		_ = s.pubsub.Close()
		_ = client.Close()
		return nil, fmt.Errorf("redis results store: subscribe %s: %w", s.pattern(), err)
	}
	go s.listen()
	return s, nil
}

// newRedisClient builds the client cfg names and says where it points.
func newRedisClient(cfg RedisConfig) (redis.UniversalClient, string, error) {
	switch {
	case cfg.URL != "" && len(cfg.Addrs) > 0:
		return nil, "", errors.New("redis results store: set url or addrs, not both")
	case cfg.URL != "":
		opt, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, "", fmt.Errorf("redis results store: parse url: %w", err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = timeouts(cfg)
		opt.MaxRetries, opt.ContextTimeoutEnabled = -1, true
		return redis.NewClient(opt), opt.Addr, nil
	case len(cfg.Addrs) == 0:
		return nil, "", errors.New("redis results store: no url and no addrs")
	}
	opt := &redis.UniversalOptions{Addrs: cfg.Addrs, MasterName: cfg.MasterName, Username: cfg.Username, Password: cfg.Password,
		MaxRetries: -1, ContextTimeoutEnabled: true}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = timeouts(cfg)
	if cfg.MasterName != "" {
		opt.SentinelPassword = cfg.Password
		return redis.NewUniversalClient(opt), fmt.Sprintf("master %q via sentinels %v", cfg.MasterName, cfg.Addrs), nil
	}
	// Addrs without a master name are a Cluster's seeds, even just one.
	opt.IsClusterMode = true
	return redis.NewUniversalClient(opt), fmt.Sprintf("cluster %v", cfg.Addrs), nil
}

// timeouts are the client's dial, read, write and pool timeouts for cfg.
// A read under Sentinel also covers the WAIT for a replica.
func timeouts(cfg RedisConfig) (dial, read, write, pool time.Duration) {
	t := cfg.Timeout
	if t <= 0 {
		t = DefaultRedisTimeout
	}
	read = t
	if cfg.MasterName != "" {
		read += sentinelWaitTimeout
	}
	return t, read, t, t
}

// Keys and channels of a job carry its id as a hash tag ({id}), so a
// Cluster keeps them in one slot and each script touches one slot only.
func (s *RedisStore) key(id string) string       { return s.prefix + ":job:{" + id + "}" }
func (s *RedisStore) legacyKey(id string) string { return s.prefix + ":job:" + id }
func (s *RedisStore) channel(id string) string   { return s.key(id) + ":notify" }

// pattern matches every job's notify channel; the prefix is escaped so glob
// characters in it are taken literally.
func (s *RedisStore) pattern() string {
	var b strings.Builder
	for _, r := range s.prefix {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String() + ":job:*:notify"
}

// jobOfChannel extracts the waiters key from a notify channel name:
// <prefix>:job:{<id>}:notify is the record of id, <prefix>:job:{<id>}:tokens:notify
// its tokens (id:tokens). The form without braces is what versions before
// hash tags publish, read during an upgrade.
func (s *RedisStore) jobOfChannel(ch string) (string, bool) {
	rest, ok := strings.CutPrefix(ch, s.prefix+":job:")
	if !ok {
		return "", false
	}
	rest, ok = strings.CutSuffix(rest, ":notify")
	if !ok {
		return "", false
	}
	if tagged, ok := strings.CutPrefix(rest, "{"); ok {
		id, tail, ok := strings.Cut(tagged, "}")
		return id + tail, ok
	}
	return rest, true
}

// listen fans notifications out to waiters until Close. go-redis reconnects
// and re-subscribes on the next Receive after an error; each confirmation of
// a re-subscription wakes every waiter, since notifications published while
// the connection was down are lost and waiters must re-read.
func (s *RedisStore) listen() {
	defer close(s.listenDone)
	backoff := subMinBackoff
	for {
		msg, err := s.pubsub.ReceiveTimeout(s.ctx, subHealthInterval)
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet line: ping so a dead connection shows up as an error.
				if err = s.pubsub.Ping(s.ctx); err == nil {
					continue
				}
			}
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, subMaxBackoff)
			continue
		}
		backoff = subMinBackoff
		switch m := msg.(type) {
		case *redis.Message:
			if id, ok := s.jobOfChannel(m.Channel); ok {
				s.waiters.wake(id, nil)
			}
		case *redis.Subscription:
			if m.Kind == "psubscribe" {
				s.waiters.wakeAll()
			}
		}
	}
}

// Create implements Store.
func (s *RedisStore) Create(ctx context.Context, rec *Record) error {
	r, err := prepareRecord(rec)
	if err != nil {
		return err
	}
	args := append([]any{s.retention.Milliseconds()}, encodeHash(r)...)
	n, err := s.run(ctx, createScript, []string{s.key(r.ID)}, args...).Int()
	if err != nil {
		return fmt.Errorf("create job %s: %w", r.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("create job %s: %w", r.ID, ErrExists)
	}
	return nil
}

// Get implements Store.
func (s *RedisStore) Get(ctx context.Context, id string) (*Record, error) {
	if !validID(id) {
		return nil, fmt.Errorf("get job %q: %w", id, ErrNotFound)
	}
	h, err := s.hgetall(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("get job %s: %w", id, ErrNotFound)
	}
	rec, err := decodeHash(h)
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return rec, nil
}

// Apply implements Store.
func (s *RedisStore) Apply(ctx context.Context, u Update) (*Record, bool, error) {
	u, err := prepareUpdate(u)
	if err != nil {
		return nil, false, err
	}
	if !validID(u.ID) {
		return nil, false, fmt.Errorf("apply to job %q: %w", u.ID, ErrNotFound)
	}
	hasResult, hasErr, code, msg := "0", "0", "", ""
	if len(u.Result) > 0 {
		hasResult = "1"
	}
	if u.Error != nil {
		hasErr, code, msg = "1", u.Error.Code, u.Error.Message
	}
	creates := "0"
	if u.creates() {
		creates = "1"
	}
	reply, err := s.run(ctx, applyScript, []string{s.key(u.ID)},
		string(u.Status), u.Attempt, u.Time.Format(time.RFC3339Nano),
		hasResult, []byte(u.Result), hasErr, code, msg,
		s.retention.Milliseconds(), s.channel(u.ID), strconv.FormatUint(u.JobsSeq, 10),
		creates, u.ID, u.Tenant, u.Model, u.Version, u.CreatedAt.UTC().Format(time.RFC3339Nano), u.CallbackURL).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, false, fmt.Errorf("apply to job %s: %w", u.ID, ErrNotFound)
	}
	if err != nil {
		return nil, false, fmt.Errorf("apply to job %s: %w", u.ID, err)
	}
	changed, rec, err := decodeApplyReply(reply)
	if err != nil {
		return nil, false, fmt.Errorf("apply to job %s: %w", u.ID, err)
	}
	return rec, changed, nil
}

// hgetall reads a record's hash; on one node by URL it also reads the key
// of versions before hash tags, in the same round trip, and takes it when
// the new key is missing (a job in flight across the upgrade).
func (s *RedisStore) hgetall(ctx context.Context, id string) (map[string]string, error) {
	if !s.legacy {
		return s.client.HGetAll(ctx, s.key(id)).Result()
	}
	pipe := s.client.Pipeline()
	cur, old := pipe.HGetAll(ctx, s.key(id)), pipe.HGetAll(ctx, s.legacyKey(id))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	if h := cur.Val(); len(h) > 0 {
		return h, nil
	}
	return old.Val(), nil
}

// run runs a write script. With waitReplicas it sends WAIT on the same
// connection right after it, so the write is on a replica (or the wait
// timed out, counted in unreplicated) before the caller is told it is
// stored.
func (s *RedisStore) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	if s.waitReplicas == 0 || time.Now().UnixNano() < s.waitPausedUntil.Load() {
		return sc.Run(ctx, s.client, keys, args...)
	}
	for loaded := false; ; loaded = true {
		pipe := s.client.Pipeline()
		cmd := sc.EvalSha(ctx, pipe, keys, args...)
		wait := pipe.Do(ctx, "WAIT", s.waitReplicas, sentinelWaitTimeout.Milliseconds())
		_, _ = pipe.Exec(ctx)
		if err := cmd.Err(); err != nil && !loaded && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// A new master (after a failover) has not cached the script yet.
			if err := sc.Load(ctx, s.client).Err(); err != nil {
				return cmd
			}
			continue
		}
		if n, err := wait.Int(); cmd.Err() == nil && (err != nil || n < s.waitReplicas) {
			s.unreplicated.Add(1)
			s.waitPausedUntil.Store(time.Now().Add(sentinelWaitPause).UnixNano())
		}
		return cmd
	}
}

// Unreplicated is how many writes were stored on the master without a
// replica confirming them within the wait (Sentinel only): those are the
// writes a failover at that moment could lose.
func (s *RedisStore) Unreplicated() int64 { return s.unreplicated.Load() }

// Wait implements Store. The waiter registers with the shared subscriber
// before reading, so a change between the read and the registration cannot
// be missed.
func (s *RedisStore) Wait(ctx context.Context, id string, done func(*Record) bool, orElse Fallback) (*Record, error) {
	if !validID(id) {
		return nil, fmt.Errorf("wait for job %q: %w", id, ErrNotFound)
	}
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	return s.waiters.wait(ctx, id, done, s.Get, orElse, s.ctx.Done(), nil)
}

// Ping implements Store.
func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// Close stops the subscriber, wakes blocked waiters with ErrClosed and closes
// the connections. It is safe to call more than once.
func (s *RedisStore) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		// Closing the subscription interrupts a blocked Receive.
		perr := s.pubsub.Close()
		<-s.listenDone
		s.closeErr = errors.Join(perr, s.client.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("close redis results store: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// encodeHash flattens rec into HSET field/value pairs.
func encodeHash(r *Record) []any {
	kv := []any{
		fID, r.ID, fTenant, r.Tenant, fModel, r.Model, fVersion, r.Version,
		fStatus, string(r.Status), fCreatedAt, r.CreatedAt.Format(time.RFC3339Nano),
		fAttempts, strconv.FormatUint(uint64(r.Attempts), 10),
	}
	if r.StartedAt != nil {
		kv = append(kv, fStartedAt, r.StartedAt.Format(time.RFC3339Nano))
	}
	if r.FinishedAt != nil {
		kv = append(kv, fFinishedAt, r.FinishedAt.Format(time.RFC3339Nano))
	}
	if r.Error != nil {
		kv = append(kv, fErrCode, r.Error.Code, fErrMessage, r.Error.Message)
	}
	if len(r.Result) > 0 {
		kv = append(kv, fResult, []byte(r.Result))
	}
	if r.JobsSeq != 0 {
		kv = append(kv, fJobsSeq, strconv.FormatUint(r.JobsSeq, 10))
	}
	if w := r.Webhook; w != nil {
		kv = append(kv, fWebhookURL, w.URL)
		if w.Status != "" {
			kv = append(kv, fWebhookStatus, string(w.Status), fWebhookAttempts, strconv.FormatUint(uint64(w.Attempts), 10))
		}
		if w.LastError != "" {
			kv = append(kv, fWebhookError, w.LastError)
		}
	}
	return kv
}

// errCorrupt marks a stored value that does not decode as a record.
var errCorrupt = errors.New("corrupt job record")

// decodeHash rebuilds a record from its hash fields.
func decodeHash(h map[string]string) (*Record, error) {
	rec := &Record{
		ID: h[fID], Tenant: h[fTenant], Model: h[fModel], Version: h[fVersion],
		Status: Status(h[fStatus]),
	}
	if !rec.Status.Valid() {
		return nil, fmt.Errorf("%w: status %q", errCorrupt, h[fStatus])
	}
	n, err := strconv.ParseUint(h[fAttempts], 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: attempts: %w", errCorrupt, err)
	}
	rec.Attempts = uint32(n)
	if rec.CreatedAt, err = time.Parse(time.RFC3339Nano, h[fCreatedAt]); err != nil {
		return nil, fmt.Errorf("%w: created_at: %w", errCorrupt, err)
	}
	if rec.StartedAt, err = optTime(h, fStartedAt); err != nil {
		return nil, err
	}
	if rec.FinishedAt, err = optTime(h, fFinishedAt); err != nil {
		return nil, err
	}
	if code, ok := h[fErrCode]; ok {
		rec.Error = &Error{Code: code, Message: h[fErrMessage]}
	}
	if r := h[fResult]; r != "" {
		rec.Result = []byte(r)
	}
	if q, ok := h[fJobsSeq]; ok {
		if rec.JobsSeq, err = strconv.ParseUint(q, 10, 64); err != nil {
			return nil, fmt.Errorf("%w: jobs_seq: %w", errCorrupt, err)
		}
	}
	if u, ok := h[fWebhookURL]; ok {
		rec.Webhook = &Webhook{URL: u, Status: WebhookStatus(h[fWebhookStatus]), LastError: h[fWebhookError]}
		if a, ok := h[fWebhookAttempts]; ok {
			n, err := strconv.ParseUint(a, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: webhook_attempts: %w", errCorrupt, err)
			}
			rec.Webhook.Attempts = uint32(n)
		}
	}
	return rec, nil
}

func optTime(h map[string]string, field string) (*time.Time, error) {
	v, ok := h[field]
	if !ok {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errCorrupt, field, err)
	}
	t = t.UTC()
	return &t, nil
}

// decodeApplyReply decodes applyScript's {changed, HGETALL} reply.
func decodeApplyReply(reply []any) (bool, *Record, error) {
	if len(reply) != 2 {
		return false, nil, fmt.Errorf("%w: apply reply has %d elements", errCorrupt, len(reply))
	}
	changed, ok := reply[0].(int64)
	flat, ok2 := reply[1].([]any)
	if !ok || !ok2 || len(flat)%2 != 0 {
		return false, nil, fmt.Errorf("%w: malformed apply reply", errCorrupt)
	}
	h := make(map[string]string, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		k, ok := flat[i].(string)
		v, ok2 := flat[i+1].(string)
		if !ok || !ok2 {
			return false, nil, fmt.Errorf("%w: malformed apply reply", errCorrupt)
		}
		h[k] = v
	}
	rec, err := decodeHash(h)
	if err != nil {
		return false, nil, err
	}
	return changed == 1, rec, nil
}
