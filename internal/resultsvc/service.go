package resultsvc

import (
	"context"
	"fmt"

	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/service"
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
			Own: NewMetrics(env.Registry)})
		return env.WithAdmin(env.Config.ResultSvc.AdminListen, svc.Run), nil
	}
}
