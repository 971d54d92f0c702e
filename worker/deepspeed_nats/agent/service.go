package agent

import (
	"context"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/service"
)

// Start is the worker agent as a component of a process (the worker's main,
// inferq dev).
func Start(_ context.Context, env *service.Env) (func(context.Context) error, error) {
	cfg := env.Config
	for _, name := range cfg.Unserved() {
		env.Log.Warn("worker.models leaves out a configured model: no worker here serves it, and its jobs wait until one that does joins",
			"model", name)
	}
	a := New(Options{Models: servedModels(cfg), Topology: env.Topology, JS: env.JS, Name: cfg.Worker.Name,
		MaxInflight: cfg.Worker.MaxInflight, BlobThreshold: cfg.Blobs.ThresholdBytes, Log: env.Log.With("component", "worker"), Metrics: env.Metrics,
		Own: NewMetrics(env.Registry)})
	env.Gates["model"] = a.Ready
	return env.WithAdmin(cfg.Worker.AdminListen, a.Run), nil
}

// servedModels are the models this worker serves: those named in
// worker.models, or every configured model.
func servedModels(cfg *config.Config) []config.Model {
	if len(cfg.Worker.Models) == 0 {
		return cfg.Models
	}
	var out []config.Model
	for _, name := range cfg.Worker.Models {
		if m, ok := cfg.Model(name); ok {
			out = append(out, *m)
		}
	}
	return out
}
