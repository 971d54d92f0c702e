package resultsvc

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/service"
	"github.com/inferq/inferq/internal/webhook"
)

// Start is resultsvc as a component of a process writing to store; a nil
// store opens the one the config names (cmd/resultsvc), while inferq dev
// shares one with the ingress.
func Start(store results.Store) service.Start {
	return func(ctx context.Context, env *service.Env) (func(context.Context) error, error) {
		if store == nil {
			var err error
			if store, err = results.Open(ctx, env); err != nil {
				return nil, fmt.Errorf("results store: %w", err)
			}
		}
		svc := New(Options{Topology: env.Topology, JS: env.JS, Store: store, Log: env.Log.With("component", "resultsvc"), Metrics: env.Metrics,
			Own: NewMetrics(env.Registry), EveryJob: env.Config.Log.Access == config.AccessAll})
		hooks, err := webhook.FromConfig(env.Config.Webhooks)
		if err != nil {
			return nil, fmt.Errorf("resultsvc: %w", err)
		}
		wc := env.Config.Webhooks
		backoff := make([]time.Duration, len(wc.Backoff))
		for i, b := range wc.Backoff {
			backoff[i] = b.D()
		}
		// The deliverer runs beside resultsvc: it shares its store, and
		// every deployment that ends jobs then sends their webhooks.
		hd := webhook.New(webhook.Options{JS: env.JS, Topology: env.Topology, Store: store, Policy: hooks.Policy,
			Secrets: hooks.Secrets, Log: env.Log.With("component", "webhooks"), Metrics: webhook.NewMetrics(env.Registry),
			Timeout: wc.Timeout.D(), MaxAttempts: wc.MaxAttempts, Backoff: backoff,
			Record: BatchWebhookRecorder(env.JS, env.Topology)})
		run := func(ctx context.Context) error {
			g, gctx := errgroup.WithContext(ctx)
			g.Go(func() error { return svc.Run(gctx) })
			g.Go(func() error { return hd.Run(gctx) })
			return g.Wait()
		}
		return env.WithAdmin(env.Config.ResultSvc.AdminListen, run), nil
	}
}
