package agent

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/registry"
)

// CatalogAgent serves the model versions of a live registry catalog that
// this worker is configured for: one Agent per served version, started when
// the version appears, restarted when its config changes and stopped when
// it leaves the catalog (after its retired queue drained).
type CatalogAgent struct {
	opt     Options // per-version agents copy it with Models set
	catalog *registry.Catalog
	// Serves says whether this worker serves a model (by the model's name,
	// not the served name of a version); nil serves every model.
	serves func(model string) bool

	mu     sync.Mutex
	agents map[string]*Agent
}

// NewCatalogAgent serves the catalog's models that serves accepts (nil:
// all) with opt (its Models are ignored).
func NewCatalogAgent(opt Options, cat *registry.Catalog, serves func(model string) bool) *CatalogAgent {
	if opt.Own == nil {
		opt.Own = NewMetrics(prometheus.NewRegistry())
	}
	return &CatalogAgent{opt: opt, catalog: cat, serves: serves, agents: map[string]*Agent{}}
}

// Ready is ready when every served version's agent is.
func (c *CatalogAgent) Ready(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, name := range mapKeys(c.agents) {
		if err := c.agents[name].Ready(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Run follows the catalog until ctx ends, then drains every agent.
func (c *CatalogAgent) Run(ctx context.Context) error {
	type running struct {
		m      config.Model
		cancel context.CancelFunc
		done   chan struct{}
	}
	loops := map[string]*running{}
	stop := func(name string, r *running) {
		r.cancel()
		<-r.done
		c.mu.Lock()
		delete(c.agents, name)
		c.mu.Unlock()
	}
	defer func() {
		for name, r := range loops {
			stop(name, r)
		}
	}()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		changed := c.catalog.Changed()
		want := map[string]bool{}
		for _, m := range c.catalog.Snapshot().Served() {
			model, _, _ := strings.Cut(m.Name, "@")
			if c.serves != nil && !c.serves(model) {
				continue
			}
			want[m.Name] = true
			r, ok := loops[m.Name]
			if ok {
				select {
				case <-r.done:
					ok = false // ended on an error: start again
				default:
				}
			}
			if ok && reflect.DeepEqual(r.m, m) {
				continue
			}
			if ok {
				c.opt.Log.Info("model config changed; worker restarts it", "model", m.Name)
				stop(m.Name, r)
			}
			opt := c.opt
			opt.Models = []config.Model{m}
			a := New(opt)
			actx, cancel := context.WithCancel(ctx)
			r = &running{m: m, cancel: cancel, done: make(chan struct{})}
			loops[m.Name] = r
			c.mu.Lock()
			c.agents[m.Name] = a
			c.mu.Unlock()
			go func() {
				defer close(r.done)
				if err := a.Run(actx); err != nil && actx.Err() == nil {
					c.opt.Log.Error("worker for model ended; restarting", "model", m.Name, "err", err)
				}
			}()
			c.opt.Log.Info("worker picked up model from the registry", "model", m.Name, "version", m.Version)
		}
		for name, r := range loops {
			if !want[name] {
				c.opt.Log.Info("model left the registry; worker stops serving it", "model", name)
				stop(name, r)
				delete(loops, name)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
	}
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
