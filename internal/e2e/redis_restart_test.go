package e2e

import (
	"testing"
	"time"

	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/stack/stacktest"
)

// TestRedisRestartLosesNoJob: Redis (with its append-only file, as in
// production) is killed and restarted while jobs flow. Every job that was
// answered 202 still ends succeeded with its correct result: events wait in
// JetStream while the store is down and are applied when it returns.
func TestRedisRestartLosesNoJob(t *testing.T) {
	n, r, cfg := natsAndRedis(t, true)
	s := &Stack{URL: stacktest.Start(t, &cfg, n.Conn, stack.All), NATS: n, Cfg: &cfg}

	stop := make(chan struct{})
	go func() {
		time.Sleep(500 * time.Millisecond)
		r.Stop()
		time.Sleep(1500 * time.Millisecond)
		r.Start()
		time.Sleep(1 * time.Second)
		close(stop)
	}()
	good, refused := loadUntil(t, s, 8, stop)
	t.Logf("%d jobs accepted, %d refused while the fault lasted", len(good), refused)
	checkAll(t, s, good)
}
