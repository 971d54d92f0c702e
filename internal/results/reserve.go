package results

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// validReserveKey keeps idempotency keys to what both backends can hold.
func validReserveKey(key string) bool {
	if key == "" || len(key) > 128 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Reservation is what an idempotency key maps to.
type Reservation struct {
	ID string // the job the key created
	// Hash is the hex SHA-256 of the normalized request that created the
	// job. It is empty for keys stored by versions that kept no hash; such
	// a key matches any request.
	Hash string
}

// encode is the stored form: "<id>" or "<id> <hash>". Ids never hold a
// space, so keys stored as a bare id by older versions read as no hash.
func (r Reservation) encode() string {
	if r.Hash == "" {
		return r.ID
	}
	return r.ID + " " + r.Hash
}

func decodeReservation(v string) Reservation {
	id, hash, _ := strings.Cut(v, " ")
	return Reservation{ID: id, Hash: hash}
}

// valid keeps a reservation to what both backends can hold and decode.
func (r Reservation) valid() bool {
	return validID(r.ID) && (r.Hash == "" || validReserveKey(r.Hash))
}

// reserveScript sets the key unless it exists and returns the id it holds.
var reserveScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
`)

// Reserve implements Store.
func (s *RedisStore) Reserve(ctx context.Context, key string, r Reservation) (Reservation, error) {
	if !validReserveKey(key) || !r.valid() {
		return Reservation{}, fmt.Errorf("%w: idempotency key, id or hash", ErrInvalid)
	}
	got, err := s.run(ctx, reserveScript, []string{s.prefix + ":idem:" + key}, r.encode(), s.retention.Milliseconds()).Text()
	if err != nil {
		return Reservation{}, fmt.Errorf("redis reserve: %w", err)
	}
	return decodeReservation(got), nil
}

// Reserve implements Store.
func (s *KVStore) Reserve(ctx context.Context, key string, r Reservation) (Reservation, error) {
	if !validReserveKey(key) || !r.valid() {
		return Reservation{}, fmt.Errorf("%w: idempotency key, id or hash", ErrInvalid)
	}
	k := "idem." + key
	for range 3 {
		_, err := s.kv.Create(ctx, k, []byte(r.encode()))
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return Reservation{}, fmt.Errorf("kv reserve: %w", err)
		}
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired between the two calls
		}
		if err != nil {
			return Reservation{}, fmt.Errorf("kv reserve: %w", err)
		}
		return decodeReservation(string(e.Value())), nil
	}
	return Reservation{}, fmt.Errorf("kv reserve: key %s keeps changing", key)
}
