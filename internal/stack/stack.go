// Package stack assembles all of inferq's services in one process, as
// `inferq dev` and the tests run them: one results store shared by ingress
// and resultsvc, and the components the Options choose. A service binary
// does not link it: each main starts its own component through
// internal/service.
package stack

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inferq/inferq/internal/batcher"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/ingress"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/resultsvc"
	"github.com/inferq/inferq/internal/service"
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
func Topology(cfg *config.Config) jetstream.Topology { return service.Topology(cfg) }

// Policies lists what provisioning needs of each model.
func Policies(cfg *config.Config) []provision.ModelPolicy { return service.Policies(cfg) }

// OpenStore opens Redis when one is configured, else the JetStream KV store.
func OpenStore(ctx context.Context, cfg *config.Config, js natsjs.JetStream) (results.Store, error) {
	if cfg.Redis.Enabled() {
		return results.NewRedis(ctx, results.RedisConfigOf(cfg))
	}
	return results.NewKV(ctx, js, results.KVConfig{
		Bucket: Topology(cfg).ResultsBucket(), Retention: cfg.Results.Retention.D(), Replicas: cfg.NATS.Replicas})
}

// Run provisions JetStream and runs the selected components until ctx ends.
func Run(ctx context.Context, opt Options) error {
	env, err := service.NewEnv(ctx, service.Options{Config: opt.Config, Conn: opt.Conn, Log: opt.Log, Registry: opt.Registry})
	if err != nil {
		return err
	}
	defer env.Close()
	c := opt.Components
	var store results.Store
	if c.Ingress || c.ResultSvc {
		if store, err = results.Open(ctx, env); err != nil {
			return fmt.Errorf("results store: %w", err)
		}
	}
	var starts []service.Start
	if c.ResultSvc {
		starts = append(starts, resultsvc.Start(store))
	}
	if c.Batcher {
		starts = append(starts, batcher.Start)
	}
	if c.Worker {
		starts = append(starts, agent.Start)
	}
	if c.Ingress {
		starts = append(starts, ingress.Start(store, opt.IngressListener))
	}
	return env.Run(ctx, opt.Ready, starts...)
}
