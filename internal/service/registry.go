package service

import (
	"context"
	"fmt"

	"github.com/inferq/inferq/internal/registry"
)

// openRegistry bootstraps the live model registry from the config file's
// models (those the bucket does not hold yet: once written, the bucket
// wins) and starts watching it for the process's lifetime.
func (e *Env) openRegistry(ctx context.Context) error {
	if !e.Config.Registry {
		return nil
	}
	kv, err := e.JS.KeyValue(ctx, e.Topology.ModelsBucket())
	if err != nil {
		return fmt.Errorf("model registry: %w", err)
	}
	e.Models = registry.NewStore(kv)
	written, err := e.Models.Bootstrap(ctx, e.Config.Models)
	if err != nil {
		return err
	}
	if len(written) > 0 {
		e.Log.Info("model registry bootstrapped from the config file", "models", written)
	}
	wctx, cancel := context.WithCancel(context.Background())
	cat, err := registry.Watch(wctx, kv, e.Log.With("component", "registry"))
	if err != nil {
		cancel()
		return err
	}
	e.Catalog = cat
	e.OnClose(cancel)
	return nil
}
