package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/stack/stacktest"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
)

// TestClusterNodeLoss runs the stack on a 3-node JetStream cluster with R3
// streams, consumers and results bucket, and shuts one node down while jobs
// flow. Every job answered 202 still ends succeeded with its own result.
func TestClusterNodeLoss(t *testing.T) {
	cl := testutil.StartCluster(t, 3)
	nc, err := jetstream.Connect(strings.Join(cl.URLs, ","), "inferq-test", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.Replicas = 3
	cfg.NATS.AckWait = config.D(3 * time.Second) // messages held by the lost node come back sooner
	s := &Stack{URL: stacktest.Start(t, &cfg, nc, stack.All), Cfg: &cfg}

	stop := make(chan struct{})
	go func() {
		time.Sleep(time.Second)
		cl.Nodes[1].Shutdown()
		time.Sleep(3 * time.Second)
		close(stop)
	}()
	good, refused := loadUntil(t, s, 4, stop)
	t.Logf("%d jobs accepted, %d refused while the fault lasted", len(good), refused)
	checkAll(t, s, good)
}
