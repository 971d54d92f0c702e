package results

import (
	"context"

	"github.com/inferq/inferq/internal/config"

	"github.com/inferq/inferq/internal/service"
)

// StoreCheck names the store's readiness check in service.Env.Checks.
const StoreCheck = "store"

// RedisConfigOf is the Redis store's configuration from inferq's: one node
// by redis.url, or redis.addrs (with redis.master_name for Sentinel).
func RedisConfigOf(cfg *config.Config) RedisConfig {
	r := cfg.Redis
	return RedisConfig{URL: r.URL, Addrs: r.Addrs, MasterName: r.MasterName, Username: r.Username, Password: r.Password,
		Prefix: cfg.NATS.Prefix, Retention: cfg.Results.Retention.D(), TokensRetention: cfg.NATS.TokensMaxAge.D(),
		Timeout: r.Timeout.D()}
}

// Open opens the store a process's config names: Redis when a URL is
// configured, else the JetStream KV bucket. It is reported as the "store"
// dependency and closed when the process ends.
func Open(ctx context.Context, env *service.Env) (Store, error) {
	cfg := env.Config
	var (
		s   Store
		err error
	)
	if cfg.Redis.Enabled() {
		s, err = NewRedis(ctx, RedisConfigOf(cfg))
	} else {
		s, err = NewKV(ctx, env.JS, KVConfig{
			Bucket: env.Topology.ResultsBucket(), Retention: cfg.Results.Retention.D(), Replicas: cfg.NATS.Replicas})
	}
	if err != nil {
		return nil, err
	}
	env.Checks[StoreCheck] = s.Ping
	env.OnClose(func() { _ = s.Close() })
	return s, nil
}
