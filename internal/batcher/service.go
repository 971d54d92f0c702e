package batcher

import (
	"context"

	"github.com/inferq/inferq/internal/service"
)

// Start is the batcher as a component of a process (cmd/batcher, inferq dev).
func Start(_ context.Context, env *service.Env) (func(context.Context) error, error) {
	b := New(Options{Models: env.Config.Models, Topology: env.Topology, JS: env.JS,
		MaxPayload: int(env.Conn.MaxPayload()), Log: env.Log.With("component", "batcher"), Metrics: env.Metrics,
		Own: NewMetrics(env.Registry), Catalog: env.Catalog, Registry: env.Models})
	return env.WithAdmin(env.Config.Batcher.AdminListen, b.Run), nil
}
