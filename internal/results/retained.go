package results

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Retainer is a store that can say how much it keeps, for the gauge
// inferq_results_retained_entries and capacity planning: memory and disk
// grow with it until retention expires entries (sizes per entry:
// docs/capacity.md).
type Retainer interface {
	// Retained is the number of entries the store holds now: job records
	// and idempotency keys; on Redis every key of its database, so token
	// logs too (give inferq a database of its own).
	Retained(ctx context.Context) (int64, error)
}

var (
	_ Retainer = (*KVStore)(nil)
	_ Retainer = (*RedisStore)(nil)
)

// Retained implements Retainer: the bucket's stored values (one per key,
// as the bucket keeps no history).
func (s *KVStore) Retained(ctx context.Context) (int64, error) {
	st, err := s.kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("kv retained: %w", err)
	}
	return int64(st.Values()), nil
}

// Retained implements Retainer: DBSIZE, summed over the masters of a
// Cluster.
func (s *RedisStore) Retained(ctx context.Context) (int64, error) {
	if c, ok := s.client.(*redis.ClusterClient); ok {
		var total atomic.Int64
		err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			n, err := m.DBSize(ctx).Result()
			total.Add(n)
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("redis retained: %w", err)
		}
		return total.Load(), nil
	}
	n, err := s.client.DBSize(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("redis retained: %w", err)
	}
	return n, nil
}
