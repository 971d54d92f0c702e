// Package stacktest runs an in-process inferq for tests of other packages
// (end-to-end tests, the load-test tool): the chosen components against a
// test's own NATS connection, the API on a free loopback port, stopped with
// the test.
package stacktest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
)

// Start runs comps of the stack with cfg on nc until the test ends and
// returns the API's base URL (https:// when ingress.tls is set). A stack that does not start or stop within
// 20 s fails the test.
func Start(t testing.TB, cfg *config.Config, nc *nats.Conn, comps stack.Components) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		done <- stack.Run(ctx, stack.Options{Config: cfg, Conn: nc, Components: comps,
			IngressListener: ln, Log: log, Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("stack did not start: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("stack not ready after 20s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stack stopped with error: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("stack did not stop within 20s of cancel")
		}
	})
	if cfg.Ingress.TLS.Enabled() {
		return "https://" + ln.Addr().String()
	}
	return "http://" + ln.Addr().String()
}
