// Package cli holds what inferq's binaries share: flag parsing over the one
// config file, logging set-up, signal handling and the run loop.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/pkg/jetstream"
)

// RunService is the whole main of a one-component binary (cmd/ingress,
// cmd/batcher, cmd/resultsvc, the worker agent). It returns the exit code.
func RunService(name string, comps stack.Components, args []string, stderr io.Writer) int {
	return runService(name, comps, args, os.Stdout, stderr)
}

// runService is RunService with the output that --version and -h write.
func runService(name string, comps stack.Components, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s: run inferq's %s alone, configured from one YAML file with INFERQ_* environment and flag overrides\n\nusage: %s [flags]\n\nflags:\n", name, name, name)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", os.Getenv("INFERQ_CONFIG"), "YAML config file (env INFERQ_CONFIG); without one the built-in test models are served")
	natsURL := fs.String("nats", "", "NATS URL (overrides nats.url and INFERQ_NATS_URL)")
	redisURL := fs.String("redis", "", "Redis URL for the results store (overrides redis.url); empty uses JetStream KV")
	listen := fs.String("listen", "", "ingress listen address (overrides ingress.listen)")
	adminAddr := fs.String("admin", "", "address for /healthz, /readyz and /metrics (back-end services)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *showVersion {
		fmt.Fprintln(stdout, VersionLine(name))
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	setIf(&cfg.NATS.URL, *natsURL)
	setIf(&cfg.Redis.URL, *redisURL)
	setIf(&cfg.Ingress.Listen, *listen)
	switch {
	case comps.Batcher:
		setIf(&cfg.Batcher.AdminListen, *adminAddr)
	case comps.ResultSvc:
		setIf(&cfg.ResultSvc.AdminListen, *adminAddr)
	case comps.Worker:
		setIf(&cfg.Worker.AdminListen, *adminAddr)
	}
	log, err := obs.NewLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	log = log.With("service", name)
	shutdownTracing, err := obs.StartTracing(context.Background(), name, log)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	defer flushTracing(shutdownTracing, log)
	ctx, stop := SignalContext()
	defer stop()
	nc, err := jetstream.Connect(cfg.NATS.URL, "inferq-"+name, cfg.NATS.CredsFile)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer nc.Close()
	err = stack.Run(ctx, stack.Options{Config: &cfg, Conn: nc, Components: comps, Log: log,
		Ready: func() { log.Info("started", "nats", cfg.NATS.URL) }})
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopped with error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// SignalContext ends on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// flushTracing sends the spans still buffered before the process exits,
// waiting at most 5s for a collector that may be gone.
func flushTracing(shutdown func(context.Context) error, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		log.Warn("spans not flushed", "err", err)
	}
}

func setIf(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}
