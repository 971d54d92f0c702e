package service

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/testutil"
)

// freezer is a TCP proxy to a real server that can stop passing bytes
// without closing anything, as a frozen (SIGSTOPped) server behaves.
type freezer struct {
	ln     net.Listener
	frozen atomic.Bool
	wg     sync.WaitGroup
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			pipe := func(dst, src net.Conn) {
				defer dst.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					for f.frozen.Load() {
						time.Sleep(10 * time.Millisecond) // hold the bytes: nothing passes, nothing closes
					}
					if n > 0 {
						if _, werr := dst.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}
			f.wg.Go(func() { pipe(s, c) })
			f.wg.Go(func() { pipe(c, s) })
		}
	})
	t.Cleanup(func() { f.frozen.Store(false); ln.Close() })
	return f
}

// TestFrozenServerDroppedWithinPings: a service notices a server that stops
// answering within about ping_interval × (max_pings_out + 1), instead of
// nats.go's default of minutes, so it can reconnect to another node.
func TestFrozenServerDroppedWithinPings(t *testing.T) {
	n := testutil.StartNATS(t)
	f := newFreezer(t, n.URL[len("nats://"):])
	cfg := config.Default().NATS
	cfg.URL = "nats://" + f.ln.Addr().String()
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
	f.frozen.Store(true)
	select {
	case at := <-lost:
		if d := at.Sub(frozeAt); d > 2*time.Second {
			t.Fatalf("frozen server dropped after %v, want about 0.6s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a frozen server was not dropped within 10s")
	}
}
