package batcher

import (
	"context"
	"fmt"

	"github.com/inferq/inferq/internal/service"
)

// Start is the batcher as a component of a process (cmd/batcher, inferq dev).
func Start(_ context.Context, env *service.Env) (func(context.Context) error, error) {
	if err := RegisterMetrics(env.Registry); err != nil {
		return nil, fmt.Errorf("batcher metrics: %w", err)
	}
	b := New(Options{Models: env.Config.Models, Topology: env.Topology, JS: env.JS,
		MaxPayload: int(env.Conn.MaxPayload()), Log: env.Log.With("component", "batcher"), Metrics: env.Metrics})
	return env.WithAdmin(env.Config.Batcher.AdminListen, b.Run), nil
}
