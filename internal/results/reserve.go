package results

import (
	"context"
	"errors"
	"fmt"

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

// reserveScript sets the key unless it exists and returns the id it holds.
var reserveScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
`)

// Reserve implements Store.
func (s *RedisStore) Reserve(ctx context.Context, key, id string) (string, error) {
	if !validReserveKey(key) || !validID(id) {
		return "", fmt.Errorf("%w: idempotency key or id", ErrInvalid)
	}
	got, err := reserveScript.Run(ctx, s.client, []string{s.prefix + ":idem:" + key}, id, s.retention.Milliseconds()).Text()
	if err != nil {
		return "", fmt.Errorf("redis reserve: %w", err)
	}
	return got, nil
}

// Reserve implements Store.
func (s *KVStore) Reserve(ctx context.Context, key, id string) (string, error) {
	if !validReserveKey(key) || !validID(id) {
		return "", fmt.Errorf("%w: idempotency key or id", ErrInvalid)
	}
	k := "idem." + key
	for range 3 {
		_, err := s.kv.Create(ctx, k, []byte(id))
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", fmt.Errorf("kv reserve: %w", err)
		}
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired between the two calls
		}
		if err != nil {
			return "", fmt.Errorf("kv reserve: %w", err)
		}
		return string(e.Value()), nil
	}
	return "", fmt.Errorf("kv reserve: key %s keeps changing", key)
}
