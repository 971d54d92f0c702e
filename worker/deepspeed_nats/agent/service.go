package agent

import (
	"context"
	"slices"

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
	opt := Options{Models: servedModels(cfg), Topology: env.Topology, JS: env.JS, Name: cfg.Worker.Name,
		MaxInflight: cfg.Worker.MaxInflight, BlobThreshold: cfg.Blobs.ThresholdBytes, Log: env.Log.With("component", "worker"), Metrics: env.Metrics,
		Own: NewMetrics(env.Registry)}
	if env.Catalog != nil { // the live registry: models come and go (catalog.go)
		ca := NewCatalogAgent(opt, env.Catalog, servesFilter(cfg))
		env.Gates["model"] = ca.Ready
		return env.WithAdmin(cfg.Worker.AdminListen, ca.Run), nil
	}
	a := New(opt)
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

// servesFilter is which registry models this worker serves: those named in
// worker.models, or every model.
func servesFilter(cfg *config.Config) func(string) bool {
	if len(cfg.Worker.Models) == 0 {
		return nil
	}
	return func(model string) bool { return slices.Contains(cfg.Worker.Models, model) }
}
