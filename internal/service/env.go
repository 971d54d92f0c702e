package service

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/registry"
	"github.com/inferq/inferq/pkg/jetstream"
)

// Start builds one component from env; the run it returns serves until ctx
// ends. Building and running are apart so that a process is ready (its
// listeners bound, its store open) before any component runs.
type Start func(ctx context.Context, env *Env) (run func(context.Context) error, err error)

// Options are a process's inputs.
type Options struct {
	Config *config.Config
	Conn   *nats.Conn // connected; owned by the caller
	Log    *slog.Logger
	// Registry collects metrics; nil makes a new one.
	Registry *prometheus.Registry
	// Ready, if set, is called once everything is provisioned and serving.
	Ready func()
}

// Env is what every component of a process shares.
type Env struct {
	Config   *config.Config
	Conn     *nats.Conn
	JS       natsjs.JetStream
	Topology jetstream.Topology
	Log      *slog.Logger
	Registry *prometheus.Registry
	Metrics  *obs.Metrics
	// Checks are the dependencies inferq_dependency_up reports; /readyz
	// fails while one fails, unless Optional names it. A component adds
	// its own (the results store) while it starts.
	Checks map[string]obs.Check
	// Optional names the dependencies the process keeps serving without,
	// answering 503 + Retry-After for what needs them (the ingress without
	// its results store): a Service keeps routing to it.
	Optional map[string]bool
	// Gates are what a pod needs besides its dependencies before it can
	// serve (a worker's model loaded): /readyz fails while one fails. They
	// are not dependencies, so inferq_dependency_up leaves them out.
	Gates map[string]obs.Check
	// Catalog and Models are the live model registry when the config turns
	// it on (registry.go); nil otherwise.
	Catalog *registry.Catalog
	Models  *registry.Store
	closers []func()
}

// Ready is the admin port's /readyz check: every dependency that is not
// Optional, and every gate, read when called (components add theirs while
// starting).
func (e *Env) Ready(ctx context.Context) error { return e.ready(ctx, true) }

// Reachable is Ready without the gates: the ingress's readiness, which
// does not depend on a model loading in the same process (inferq dev).
func (e *Env) Reachable(ctx context.Context) error { return e.ready(ctx, false) }

func (e *Env) ready(ctx context.Context, gates bool) error {
	checks := make(map[string]obs.Check, len(e.Checks)+len(e.Gates))
	for name, c := range e.Checks {
		if !e.Optional[name] {
			checks[name] = c
		}
	}
	if gates {
		for name, c := range e.Gates {
			checks[name] = c
		}
	}
	return obs.Ready(ctx, checks)
}

// NewEnv opens the JetStream handle and provisions every stream, consumer
// and bucket the config names. Close releases what components added.
func NewEnv(ctx context.Context, opt Options) (*Env, error) {
	reg := opt.Registry
	if reg == nil {
		reg = obs.NewRegistry()
	}
	env := &Env{Config: opt.Config, Conn: opt.Conn, Topology: Topology(opt.Config), Log: opt.Log,
		Registry: reg, Metrics: obs.NewMetrics(reg)}
	names := make([]string, len(opt.Config.Models))
	for i, m := range opt.Config.Models {
		names[i] = m.Name
	}
	env.Metrics.ForModels(names)
	// An async publish whose ack is lost (a cluster node going away) would
	// otherwise wait forever; failing it lets the caller retry or nak.
	js, err := natsjs.New(opt.Conn, natsjs.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	env.JS = js
	if err := provisionRetrying(ctx, js, env.Topology, opt.Config, opt.Log); err != nil {
		return nil, err
	}
	if err := env.openRegistry(ctx); err != nil {
		return nil, err
	}
	env.Optional, env.Gates = map[string]bool{}, map[string]obs.Check{}
	env.Checks = map[string]obs.Check{"nats": func(context.Context) error {
		if !opt.Conn.IsConnected() {
			return fmt.Errorf("not connected (%s)", opt.Conn.Status())
		}
		return nil
	}}
	return env, nil
}

// OnClose runs f when the process ends, after every component has stopped
// (last added, first run).
func (e *Env) OnClose(f func()) { e.closers = append(e.closers, f) }

// Close runs the OnClose functions.
func (e *Env) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}

// Run builds each component in order, then runs them all until ctx ends or
// one fails; ready is called in between.
func (e *Env) Run(ctx context.Context, ready func(), starts ...Start) error {
	runs := make([]func(context.Context) error, 0, len(starts))
	for _, start := range starts {
		run, err := start(ctx, e)
		if err != nil {
			return err
		}
		runs = append(runs, run)
	}
	if err := obs.RegisterDependencies(e.Registry, e.Checks); err != nil {
		return fmt.Errorf("dependency metrics: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, run := range runs {
		g.Go(func() error { return run(gctx) })
	}
	if ready != nil {
		ready()
	}
	return g.Wait()
}

// Run is a process of the given components: NewEnv, Env.Run, Close.
func Run(ctx context.Context, opt Options, starts ...Start) error {
	env, err := NewEnv(ctx, opt)
	if err != nil {
		return err
	}
	defer env.Close()
	return env.Run(ctx, opt.Ready, starts...)
}

// WithAdmin runs run beside /healthz, /readyz and /metrics on addr, when
// addr is set (back-end services have no other listener).
func (e *Env) WithAdmin(addr string, run func(context.Context) error) func(context.Context) error {
	if addr == "" {
		return run
	}
	return func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return run(gctx) })
		g.Go(func() error { return obs.Serve(gctx, addr, obs.AdminMux(e.Registry, e.Ready), e.Log) })
		return g.Wait()
	}
}

// Topology turns the config's NATS section into the JetStream topology.
func Topology(cfg *config.Config) jetstream.Topology {
	t := jetstream.DefaultTopology()
	t.Prefix = cfg.NATS.Prefix
	t.Replicas = cfg.NATS.Replicas
	t.JobsMaxAge = cfg.NATS.JobsMaxAge.D()
	t.TokensMaxAge = cfg.NATS.TokensMaxAge.D()
	t.DuplicateWindow = cfg.NATS.DuplicateWindow.D()
	t.AckWait = cfg.NATS.AckWait.D()
	t.BlobsTTL = cfg.Results.Retention.D() // a blob never outlives its job record
	return t
}

// Policies lists what provisioning needs of each model.
func Policies(cfg *config.Config) []provision.ModelPolicy {
	out := make([]provision.ModelPolicy, len(cfg.Models))
	for i, m := range cfg.Models {
		out[i] = provision.ModelPolicy{Name: m.Name, MaxBatchSize: m.Batching.MaxBatchSize, MaxDeliver: m.Queue.MaxDeliver}
	}
	return out
}

// provisionRetrying runs provision.All, retrying for up to 30 s: a service
// started beside a NATS cluster that is still forming is refused placement
// ("no suitable peers") for a moment, and should wait rather than exit.
func provisionRetrying(ctx context.Context, js natsjs.JetStream, topo jetstream.Topology, cfg *config.Config, log *slog.Logger) error {
	deadline := time.Now().Add(30 * time.Second)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		err := provision.All(ctx, js, topo, Policies(cfg))
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		log.Warn("provisioning failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
