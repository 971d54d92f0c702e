// Package service is what every inferq service binary shares, and only that:
// flag parsing over the one config file, logging and tracing set-up, signal
// handling, the JetStream handle with provisioning, probes and the admin
// server. It imports no component, so that each binary links only the one it
// runs (cmd/ingress the ingress, the worker's main the agent...); `inferq
// dev` assembles them all in internal/stack.
package service

import (
	"bytes"
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
	"github.com/inferq/inferq/internal/version"
)

// Spec is one service binary: its name and how it starts its component.
type Spec struct {
	Name string
	// Admin is the config field --admin overrides; nil ignores the flag
	// (ingress serves its probes on its own listener).
	Admin func(*config.Config) *string
	Start Start
}

// Main is the whole main of a one-component binary (cmd/ingress,
// cmd/batcher, cmd/resultsvc, the worker agent). It returns the exit code.
func Main(spec Spec, args []string, stdout, stderr io.Writer) int {
	name := spec.Name
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
	if code, ok := ParseFlags(fs, args, stdout, stderr); !ok {
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
	if spec.Admin != nil {
		setIf(spec.Admin(&cfg), *adminAddr)
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
	defer FlushTracing(shutdownTracing, log)
	ctx, stop := SignalContext()
	defer stop()
	nc, err := ConnectNATS(cfg.NATS, "inferq-"+name)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer nc.Close()
	err = Run(ctx, Options{Config: &cfg, Conn: nc, Log: log,
		Ready: func() { log.Info("started", "nats", cfg.NATS.URL) }}, spec.Start)
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopped with error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// VersionLine is what --version prints: "<name> <version> (<go version>)".
func VersionLine(name string) string {
	return fmt.Sprintf("%s %s (%s)", name, version.String(), version.GoVersion())
}

// ParseFlags reads a command's flags. Asked for help (-h, --help), it prints
// the help on stdout and the command ends with exit 0; a bad flag prints the
// error and the help on stderr and ends it with exit 2. ok says whether to go
// on.
func ParseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		_, _ = stdout.Write(buf.Bytes())
		return 0, false
	default:
		_, _ = stderr.Write(buf.Bytes())
		return 2, false
	}
}

// SignalContext ends on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// FlushTracing sends the spans still buffered before the process exits,
// waiting at most 5s for a collector that may be gone.
func FlushTracing(shutdown func(context.Context) error, log *slog.Logger) {
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
