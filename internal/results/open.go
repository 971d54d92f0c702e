package results

import (
	"context"

	"github.com/inferq/inferq/internal/service"
)

// StoreCheck names the store's readiness check in service.Env.Checks.
const StoreCheck = "store"

// Open opens the store a process's config names: Redis when a URL is
// configured, else the JetStream KV bucket. It is reported as the "store"
// dependency and closed when the process ends.
func Open(ctx context.Context, env *service.Env) (Store, error) {
	cfg := env.Config
	var (
		s   Store
		err error
	)
	if cfg.Redis.URL != "" {
		s, err = NewRedis(ctx, RedisConfig{URL: cfg.Redis.URL, Prefix: cfg.NATS.Prefix, Retention: cfg.Results.Retention.D()})
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
