package ingress

import (
	"context"
	"fmt"
	"net"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/service"
	"github.com/inferq/inferq/internal/webhook"
)

// Start is the ingress as a component of a process, serving on ln (nil
// listens on ingress.listen) from store (nil opens the one the config
// names; inferq dev shares one with resultsvc).
func Start(store results.Store, ln net.Listener) service.Start {
	return func(ctx context.Context, env *service.Env) (func(context.Context) error, error) {
		cfg := env.Config
		if store == nil {
			var err error
			if store, err = results.Open(ctx, env); err != nil {
				return nil, fmt.Errorf("results store: %w", err)
			}
		}
		// Without its store the ingress still answers, 503 + Retry-After
		// for what needs it, so it stays in its Service: a Redis restart
		// must not turn every client's request into a refused connection.
		env.Optional[results.StoreCheck] = true
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", cfg.Ingress.Listen); err != nil {
				return nil, fmt.Errorf("ingress: listen %s: %w", cfg.Ingress.Listen, err)
			}
		}
		authn, err := auth.New(ctx, cfg.Auth, env.Log.With("component", "auth"))
		if err != nil {
			return nil, fmt.Errorf("ingress: %w", err)
		}
		env.OnClose(func() { _ = authn.Close() })
		hooks, err := webhook.FromConfig(cfg.Webhooks)
		if err != nil {
			return nil, fmt.Errorf("ingress: %w", err)
		}
		in := New(Options{Config: cfg, Topology: env.Topology, JS: env.JS, Store: store,
			Log: env.Log.With("component", "ingress"), Registry: env.Registry, Ready: env.Reachable,
			Auth: authn, Limiter: auth.NewLimiter(cfg.Auth.RateLimit), Webhooks: hooks,
			Catalog: env.Catalog, Models: env.Models})
		return func(ctx context.Context) error { return in.Serve(ctx, ln) }, nil
	}
}
