package batcher

import (
	"context"
	"reflect"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/registry"
)

// runCatalog keeps one batching loop per model version the catalog serves:
// it provisions and starts a new version's loop, restarts a loop whose
// config changed (a batching change takes effect without a restart), stops
// the loop of a version that left the catalog, and finishes the drain of
// retired versions (registry.Drain).
func (b *Batcher) runCatalog(ctx context.Context) error {
	type running struct {
		m      config.Model
		cancel context.CancelFunc
		done   chan struct{}
	}
	loops := map[string]*running{}
	stop := func(r *running) { r.cancel(); <-r.done }
	defer func() {
		for _, r := range loops {
			stop(r)
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		changed := b.opt.Catalog.Changed()
		snap := b.opt.Catalog.Snapshot()
		want := map[string]bool{}
		for _, m := range snap.Served() {
			want[m.Name] = true
			r, ok := loops[m.Name]
			if ok {
				select {
				case <-r.done: // ended on an error: start again
					ok = false
				default:
				}
			}
			if ok && reflect.DeepEqual(r.m, m) {
				continue
			}
			if ok {
				b.opt.Log.Info("model config changed; restarting its batcher", "model", m.Name)
				stop(r)
			}
			if err := registry.Provision(ctx, b.opt.JS, b.opt.Topology, &m); err != nil {
				b.opt.Log.Warn("model consumers not provisioned; retrying", "model", m.Name, "err", err)
				delete(loops, m.Name)
				continue
			}
			lctx, cancel := context.WithCancel(ctx)
			r = &running{m: m, cancel: cancel, done: make(chan struct{})}
			loops[m.Name] = r
			go func() {
				defer close(r.done)
				if err := b.runModel(lctx, &r.m); err != nil && lctx.Err() == nil {
					b.opt.Log.Error("batcher loop ended; restarting", "model", r.m.Name, "err", err)
				}
			}()
		}
		for name, r := range loops {
			if !want[name] {
				b.opt.Log.Info("model left the registry; its batcher stops", "model", name)
				stop(r)
				delete(loops, name)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
			if b.opt.Registry != nil && len(snap.Retired()) > 0 {
				registry.Drain(ctx, b.opt.JS, b.opt.Topology, b.opt.Registry, snap, b.now(), b.opt.Log)
			}
		}
	}
}
