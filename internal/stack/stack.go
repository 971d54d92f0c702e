// Package stack assembles inferq's services from one Config: it opens the
// results store, provisions JetStream and runs the chosen components until
// the context ends. Each cmd/ binary runs one component; `inferq dev` runs
// them all in one process.
package stack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/batcher"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/ingress"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/resultsvc"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/worker/deepspeed_nats/agent"
)

// Components selects what a process runs.
type Components struct {
	Ingress, Batcher, Worker, ResultSvc bool
}

// All is every component, as `inferq dev` runs them.
var All = Components{Ingress: true, Batcher: true, Worker: true, ResultSvc: true}

// Options are a process's inputs.
type Options struct {
	Config     *config.Config
	Conn       *nats.Conn // connected; owned by the caller
	Components Components
	// IngressListener serves the API; nil means listen on Config.Ingress.Listen.
	IngressListener net.Listener
	Log             *slog.Logger
	// Registry collects metrics; nil makes a new one.
	Registry *prometheus.Registry
	// Ready, if set, is called once everything is provisioned and serving.
	Ready func()
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
	return t
}

// Policies lists what provisioning needs of each model.
func Policies(cfg *config.Config) []jetstream.ModelPolicy {
	out := make([]jetstream.ModelPolicy, len(cfg.Models))
	for i, m := range cfg.Models {
		out[i] = jetstream.ModelPolicy{Name: m.Name, MaxBatchSize: m.Batching.MaxBatchSize, MaxDeliver: m.Queue.MaxDeliver}
	}
	return out
}

// OpenStore opens Redis when a URL is configured, else the JetStream KV store.
func OpenStore(ctx context.Context, cfg *config.Config, js natsjs.JetStream) (results.Store, error) {
	if cfg.Redis.URL != "" {
		return results.NewRedis(ctx, results.RedisConfig{URL: cfg.Redis.URL, Prefix: cfg.NATS.Prefix, Retention: cfg.Results.Retention.D()})
	}
	return results.NewKV(ctx, js, results.KVConfig{
		Bucket: Topology(cfg).ResultsBucket(), Retention: cfg.Results.Retention.D(), Replicas: cfg.NATS.Replicas})
}

// Run provisions JetStream and runs the selected components until ctx ends.
func Run(ctx context.Context, opt Options) error {
	cfg := opt.Config
	log := opt.Log
	reg := opt.Registry
	if reg == nil {
		reg = obs.NewRegistry()
	}
	metrics := obs.NewMetrics(reg)
	if err := batcher.RegisterMetrics(reg); err != nil {
		return fmt.Errorf("batcher metrics: %w", err)
	}
	// An async publish whose ack is lost (a cluster node going away) would
	// otherwise wait forever; failing it lets the caller retry or nak.
	js, err := natsjs.New(opt.Conn, natsjs.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	topo := Topology(cfg)
	if err := provision(ctx, js, topo, cfg, log); err != nil {
		return err
	}
	checks := map[string]obs.Check{"nats": func(context.Context) error {
		if !opt.Conn.IsConnected() {
			return fmt.Errorf("not connected (%s)", opt.Conn.Status())
		}
		return nil
	}}
	var store results.Store
	if opt.Components.Ingress || opt.Components.ResultSvc {
		if store, err = OpenStore(ctx, cfg, js); err != nil {
			return fmt.Errorf("results store: %w", err)
		}
		defer store.Close()
		checks["store"] = store.Ping
	}
	if err := obs.RegisterDependencies(reg, checks); err != nil {
		return fmt.Errorf("dependency metrics: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	c := opt.Components
	if c.ResultSvc {
		svc := resultsvc.New(resultsvc.Options{Topology: topo, JS: js, Store: store, Log: log.With("component", "resultsvc"), Metrics: metrics})
		g.Go(func() error { return svc.Run(gctx) })
		admin(g, gctx, cfg.ResultSvc.AdminListen, reg, checks, log)
	}
	if c.Batcher {
		b := batcher.New(batcher.Options{Models: cfg.Models, Topology: topo, JS: js,
			MaxPayload: int(opt.Conn.MaxPayload()), Log: log.With("component", "batcher"), Metrics: metrics})
		g.Go(func() error { return b.Run(gctx) })
		admin(g, gctx, cfg.Batcher.AdminListen, reg, checks, log)
	}
	if c.Worker {
		for _, name := range cfg.Unserved() {
			log.Warn("worker.models leaves out a configured model: no worker here serves it, and its jobs wait until one that does joins",
				"model", name)
		}
		a := agent.New(agent.Options{Models: workerModels(cfg), Topology: topo, JS: js, Name: cfg.Worker.Name,
			MaxInflight: cfg.Worker.MaxInflight, Log: log.With("component", "worker"), Metrics: metrics})
		g.Go(func() error { return a.Run(gctx) })
		admin(g, gctx, cfg.Worker.AdminListen, reg, checks, log)
	}
	if c.Ingress {
		ln := opt.IngressListener
		if ln == nil {
			if ln, err = net.Listen("tcp", cfg.Ingress.Listen); err != nil {
				return fmt.Errorf("ingress: listen %s: %w", cfg.Ingress.Listen, err)
			}
		}
		authn, err := auth.New(ctx, cfg.Auth, log.With("component", "auth"))
		if err != nil {
			return fmt.Errorf("ingress: %w", err)
		}
		defer authn.Close()
		in := ingress.New(ingress.Options{Config: cfg, Topology: topo, JS: js, Store: store,
			Log: log.With("component", "ingress"), Metrics: metrics, Registry: reg, Checks: checks,
			Auth: authn, Limiter: auth.NewLimiter(cfg.Auth.RateLimit)})
		g.Go(func() error { return in.Serve(gctx, ln) })
	}
	if opt.Ready != nil {
		opt.Ready()
	}
	return g.Wait()
}

// workerModels are the models this worker serves: those named in
// worker.models, or every configured model.
func workerModels(cfg *config.Config) []config.Model {
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

// admin serves /healthz, /readyz and /metrics for a back-end service.
func admin(g *errgroup.Group, ctx context.Context, addr string, reg *prometheus.Registry, checks map[string]obs.Check, log *slog.Logger) {
	if addr == "" {
		return
	}
	g.Go(func() error { return obs.Serve(ctx, addr, obs.AdminMux(reg, checks), log) })
}

// provision runs jetstream.Provision, retrying for up to 30 s: a service
// started beside a NATS cluster that is still forming is refused placement
// ("no suitable peers") for a moment, and should wait rather than exit.
func provision(ctx context.Context, js natsjs.JetStream, topo jetstream.Topology, cfg *config.Config, log *slog.Logger) error {
	deadline := time.Now().Add(30 * time.Second)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		err := jetstream.Provision(ctx, js, topo, Policies(cfg))
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
