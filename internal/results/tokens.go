package results

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/inferq/inferq/internal/lifecycle"
)

// Token is one generated chunk of a job's text, numbered from 1 within an
// attempt: the token chunk of the wire, kept in the job's token log (whose
// key is the job, so Job may be left empty).
type Token = lifecycle.TokenChunk

// ErrTokenGap is returned by AppendToken for a token whose predecessor is
// not stored yet: the caller retries it later, and readers never see a gap.
var ErrTokenGap = errors.New("token sequence gap")

// TokenLog keeps each job's tokens in sequence, so that any number of
// ingress replicas can stream them with resumption. Only the Redis store has
// one; with the KV store, ingress reads tokens straight from JetStream.
type TokenLog interface {
	// AppendToken stores t as the next token of the job's attempt. It
	// reports false for a duplicate (already stored, or of an older
	// attempt) and ErrTokenGap when t.Seq skips ahead.
	AppendToken(ctx context.Context, id string, attempt uint32, t Token) (bool, error)
	// WaitTokens returns the attempt's tokens after seq `after`, in order,
	// waiting (woken by notification) until there is at least one or ctx
	// ends; then it returns none and no error.
	WaitTokens(ctx context.Context, id string, attempt uint32, after uint64) ([]Token, error)
}

var _ TokenLog = (*RedisStore)(nil)

// appendTokenScript adds a token to the job's stream under the entry id
// <attempt>-<seq>, which Redis keeps strictly increasing: a duplicate or an
// older attempt is refused (0), a gap is refused (-1), and a stored token
// refreshes the stream's expiry and notifies the job's token waiters (1).
//
// KEYS: 1 stream, 2 notify channel. ARGV: 1 attempt, 2 seq, 3 text,
// 4 token id, 5 final (0/1), 6 TTL ms.
var appendTokenScript = redis.NewScript(`
local a, s = tonumber(ARGV[1]), tonumber(ARGV[2])
local la, ls = 0, 0
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local id = last[1][1]
  local dash = string.find(id, '-', 1, true)
  la, ls = tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
if a < la or (a == la and s <= ls) then return 0 end
if (a == la and s ~= ls + 1) or (a > la and s ~= 1) then return -1 end
redis.call('XADD', KEYS[1], ARGV[1] .. '-' .. ARGV[2], 't', ARGV[3], 'i', ARGV[4], 'f', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', KEYS[2], '')
return 1
`)

func (s *RedisStore) tokensKey(id string) string { return s.key(id) + ":tokens" }

// tokensChannel notifies a job's token waiters: <prefix>:job:{<id>}:tokens:notify,
// in the job's slot, matches the store's pattern and maps to tokenWaiters(id).
func (s *RedisStore) tokensChannel(id string) string { return s.tokensKey(id) + ":notify" }

// tokenWaiters is the waiters key of a job's tokens.
func tokenWaiters(id string) string { return id + ":tokens" }

// AppendToken implements TokenLog.
func (s *RedisStore) AppendToken(ctx context.Context, id string, attempt uint32, t Token) (bool, error) {
	if !validID(id) || t.Seq == 0 || attempt == 0 {
		return false, fmt.Errorf("append token %d of job %q attempt %d: invalid", t.Seq, id, attempt)
	}
	final := "0"
	if t.Final {
		final = "1"
	}
	n, err := s.run(ctx, appendTokenScript, []string{s.tokensKey(id), s.tokensChannel(id)},
		attempt, t.Seq, t.Text, t.TokenID, final, s.tokensRetention.Milliseconds()).Int()
	switch {
	case err != nil:
		return false, fmt.Errorf("append token %d of job %s: %w", t.Seq, id, err)
	case n < 0:
		return false, fmt.Errorf("token %d of job %s attempt %d: %w", t.Seq, id, attempt, ErrTokenGap)
	}
	return n == 1, nil
}

// WaitTokens implements TokenLog.
func (s *RedisStore) WaitTokens(ctx context.Context, id string, attempt uint32, after uint64) ([]Token, error) {
	if !validID(id) {
		return nil, fmt.Errorf("tokens of job %q: %w", id, ErrNotFound)
	}
	wake, unregister := s.waiters.add(tokenWaiters(id))
	defer unregister()
	a := strconv.FormatUint(uint64(attempt), 10)
	for {
		entries, err := s.client.XRangeN(ctx, s.tokensKey(id), a+"-"+strconv.FormatUint(after+1, 10), a+"-18446744073709551615", 512).Result()
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil
			}
			return nil, fmt.Errorf("tokens of job %s: %w", id, err)
		}
		if len(entries) > 0 {
			out := make([]Token, 0, len(entries))
			for _, e := range entries {
				t, err := decodeToken(e)
				if err != nil {
					return out, fmt.Errorf("tokens of job %s: %w", id, err)
				}
				out = append(out, t)
			}
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-s.ctx.Done():
			return nil, ErrClosed
		case <-wake:
		}
	}
}

func decodeToken(e redis.XMessage) (Token, error) {
	_, seq, ok := cutDash(e.ID)
	if !ok {
		return Token{}, fmt.Errorf("bad token entry id %q", e.ID)
	}
	t := Token{Seq: seq}
	t.Text, _ = e.Values["t"].(string)
	if v, _ := e.Values["i"].(string); v != "" {
		t.TokenID, _ = strconv.ParseInt(v, 10, 64)
	}
	t.Final = e.Values["f"] == "1"
	return t, nil
}

// cutDash splits a stream entry id "<a>-<b>".
func cutDash(id string) (a, b uint64, ok bool) {
	for i := range len(id) {
		if id[i] == '-' {
			x, err1 := strconv.ParseUint(id[:i], 10, 64)
			y, err2 := strconv.ParseUint(id[i+1:], 10, 64)
			return x, y, err1 == nil && err2 == nil
		}
	}
	return 0, 0, false
}
