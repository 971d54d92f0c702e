package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/config"
)

// Snapshot is the registry at one moment. It is immutable: readers keep
// the one they loaded for as long as they need it.
type Snapshot struct {
	entries  map[string]Entry
	versions map[string]map[string]*config.Model // model → version → config, as served (ServedName)
	served   []config.Model                      // every version with a config, draining ones too
	byServed map[string]*config.Model
	Revision uint64 // the bucket revision last applied (0 for a static catalog)
}

// Resolve is the model config a new job of model runs on: the version it
// names, else the one the model's split or default picks for jobID.
// Retired versions and deleted models take no new jobs (ErrNotFound).
func (s *Snapshot) Resolve(model, version, jobID string) (*config.Model, error) {
	e, ok := s.entries[model]
	if !ok || e.Deleted {
		return nil, fmt.Errorf("%w: model %q", ErrNotFound, model)
	}
	if version == "" {
		version = e.Pick(jobID)
	}
	m, ok := s.versions[model][version]
	if _, retired := e.Retired[version]; !ok || retired {
		return nil, fmt.Errorf("%w: model %q has no version %q", ErrNotFound, model, version)
	}
	return m, nil
}

// Entry is a model's routing entry.
func (s *Snapshot) Entry(model string) (Entry, bool) { e, ok := s.entries[model]; return e, ok }

// Served are the model versions that batchers and workers run, by served
// name: every registered version, retired ones too until they drained.
func (s *Snapshot) Served() []config.Model { return s.served }

// Lookup finds a served model version by its served name.
func (s *Snapshot) Lookup(served string) (*config.Model, bool) {
	m, ok := s.byServed[served]
	return m, ok
}

// Retired lists the (model, version) pairs that drain, with when they were
// retired.
func (s *Snapshot) Retired() []Retiring {
	var out []Retiring
	for _, model := range sortedKeys(s.entries) {
		for _, v := range sortedKeys(s.entries[model].Retired) {
			out = append(out, Retiring{Model: model, Version: v, Since: s.entries[model].Retired[v]})
		}
	}
	return out
}

// Retiring is a retired version waiting for its queues to drain.
type Retiring struct {
	Model, Version string
	Since          time.Time
}

// build makes a snapshot from the bucket's raw values (key → value).
func build(raw map[string][]byte, rev uint64, log *slog.Logger) *Snapshot {
	s := &Snapshot{entries: map[string]Entry{}, versions: map[string]map[string]*config.Model{},
		byServed: map[string]*config.Model{}, Revision: rev}
	for _, key := range sortedKeys(raw) {
		model, version := splitKey(key)
		if version == "" {
			var e Entry
			if err := json.Unmarshal(raw[key], &e); err != nil {
				log.Error("registry entry unreadable; model ignored", "model", model, "err", err)
				continue
			}
			s.entries[model] = e
			continue
		}
		m, err := config.ParseModel(raw[key])
		if err != nil {
			log.Error("registry model config invalid; version ignored", "model", model, "version", version, "err", err)
			continue
		}
		m.Name, m.Version = ServedName(model, version), version
		s.served = append(s.served, m)
	}
	for i := range s.served {
		m := &s.served[i]
		model, _, _ := cutServed(m.Name)
		if s.versions[model] == nil {
			s.versions[model] = map[string]*config.Model{}
		}
		s.versions[model][m.Version] = m
		s.byServed[m.Name] = m
	}
	return s
}

// cutServed splits a served name into model and version.
func cutServed(served string) (model, version string, versioned bool) {
	for i := range len(served) {
		if served[i] == '@' {
			return served[:i], served[i+1:], true
		}
	}
	return served, "1", false
}

// Catalog hands out the registry's current snapshot. Its zero value is not
// usable: make one with Static or Watch.
type Catalog struct {
	cur     atomic.Pointer[Snapshot]
	mu      sync.Mutex
	changed chan struct{}
}

func newCatalog(s *Snapshot) *Catalog {
	c := &Catalog{changed: make(chan struct{})}
	c.cur.Store(s)
	return c
}

// Snapshot is the current snapshot (never nil).
func (c *Catalog) Snapshot() *Snapshot { return c.cur.Load() }

// Changed is closed at the next swap of the snapshot.
func (c *Catalog) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

func (c *Catalog) swap(s *Snapshot) {
	c.cur.Store(s)
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// Static is a catalog of fixed models (the config file's, when no registry
// is used): each model's only version is its config's, served under the
// model's own name.
func Static(models []config.Model) *Catalog {
	s := &Snapshot{entries: map[string]Entry{}, versions: map[string]map[string]*config.Model{},
		byServed: map[string]*config.Model{}, served: slices.Clone(models)}
	for i := range s.served {
		m := &s.served[i]
		s.entries[m.Name] = Entry{Default: m.Version}
		s.versions[m.Name] = map[string]*config.Model{m.Version: m}
		s.byServed[m.Name] = m
	}
	return newCatalog(s)
}

// Watch reads the registry from kv and keeps the catalog current until ctx
// ends. It returns once the bucket's present content is loaded.
func Watch(ctx context.Context, kv natsjs.KeyValue, log *slog.Logger) (*Catalog, error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("registry watch: %w", err)
	}
	raw := map[string][]byte{}
	var rev uint64
	apply := func(e natsjs.KeyValueEntry) {
		rev = max(rev, e.Revision())
		if e.Operation() == natsjs.KeyValuePut {
			raw[e.Key()] = e.Value()
		} else {
			delete(raw, e.Key())
		}
	}
	for e := range w.Updates() {
		if e == nil {
			break // the present content is loaded
		}
		apply(e)
	}
	if ctx.Err() != nil {
		_ = w.Stop()
		return nil, fmt.Errorf("registry watch: %w", ctx.Err())
	}
	c := newCatalog(build(raw, rev, log))
	log.Info("model registry loaded", "models", len(c.Snapshot().entries), "versions", len(c.Snapshot().served), "revision", rev)
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				apply(e)
				// Apply what else is waiting before one rebuild.
				for more := true; more; {
					select {
					case e2, ok := <-w.Updates():
						if ok && e2 != nil {
							apply(e2)
						}
						more = ok
					default:
						more = false
					}
				}
				c.swap(build(raw, rev, log))
				log.Info("model registry changed", "revision", strconv.FormatUint(rev, 10))
			}
		}
	}()
	return c, nil
}
