package service

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/testutil"
)

// TestFrozenServerDroppedWithinPings: a service notices a server that stops
// answering within about ping_interval × (max_pings_out + 1), instead of
// nats.go's default of minutes, so it can reconnect to another node.
func TestFrozenServerDroppedWithinPings(t *testing.T) {
	n := testutil.StartNATS(t)
	f := testutil.StartFreezer(t, n.URL)
	cfg := config.Default().NATS
	cfg.URL = f.URL
	cfg.PingInterval, cfg.MaxPingsOut = config.D(200*time.Millisecond), 2
	nc, err := ConnectNATS(cfg, "frozen-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	lost := make(chan time.Time, 1)
	nc.SetDisconnectErrHandler(func(*nats.Conn, error) {
		select {
		case lost <- time.Now():
		default:
		}
	})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	frozeAt := time.Now()
	f.Freeze(true)
	select {
	case at := <-lost:
		if d := at.Sub(frozeAt); d > 2*time.Second {
			t.Fatalf("frozen server dropped after %v, want about 0.6s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a frozen server was not dropped within 10s")
	}
}
