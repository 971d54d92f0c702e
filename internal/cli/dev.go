package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/natsembed"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/service"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/worker/deepspeed_nats/agent"
)

// Dev runs `inferq dev`: the whole broker in one process with an embedded
// NATS server, the embedded results store (or Redis with --redis) and a local
// worker serving the models. ctx ends it; it returns the exit code.
func Dev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("dev")
	httpAddr := fs.String("http", "127.0.0.1:8080", "address of the HTTP API")
	natsPort := fs.Int("nats-port", 4222, "port of the embedded NATS server on 127.0.0.1; 0 exposes none")
	dataDir := fs.String("data", "./.inferq", "directory for JetStream's files")
	redisURL := fs.String("redis", "", "Redis URL for the results store; empty uses the embedded JetStream KV store")
	cfgPath := fs.String("config", "", "YAML config; without one the built-in test models are served")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	natsTLSCert := fs.String("nats-tls-cert", "", "PEM certificate: the embedded NATS server's clients must connect over TLS")
	natsTLSKey := fs.String("nats-tls-key", "", "PEM key of --nats-tls-cert")
	natsTLSCA := fs.String("nats-tls-ca", "", "PEM CA: NATS clients must also show a certificate it signed")
	pprofAddr := fs.String("pprof", "", "serve Go's /debug/pprof on this loopback address (profiling); empty serves none")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageErr(stderr, "dev", fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "inferq dev: %v\n", err)
		return 1
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "inferq dev: %v\n", err)
		return 2
	}
	setIf(&cfg.Redis.URL, *redisURL)
	cfg.Ingress.Listen = *httpAddr
	if *cfgPath == "" {
		// The contract: without --config, dev also serves tiny-gpt when a
		// python3 with torch is found.
		if _, err := agent.FindPython(); err == nil {
			cfg.Models = append(cfg.Models, config.TinyGPT())
		} else {
			fmt.Fprintf(stderr, "inferq dev: not serving tiny-gpt: %v\n", err)
		}
	}
	log, err := obs.NewLogger(stderr, *logLevel, cfg.Log.Format)
	if err != nil {
		return fail(err)
	}
	shutdownTracing, err := obs.StartTracing(ctx, "inferq-dev", log)
	if err != nil {
		return fail(err)
	}
	defer service.FlushTracing(shutdownTracing, log)

	if *pprofAddr != "" {
		stop, err := servePprof(*pprofAddr, log)
		if err != nil {
			return fail(err)
		}
		defer stop()
	}

	// NATS listens on loopback only. Without auth it is open, as before;
	// with auth, anonymous clients are refused, the broker connects as its
	// own user and tenants through the auth callout with their credential.
	natsCfg := natsembed.Config{Port: *natsPort, StoreDir: filepath.Join(*dataDir, "nats")}
	// nats.sync says what "accepted" means on power loss; config.Load has
	// validated it.
	if natsCfg.SyncAlways, natsCfg.SyncInterval, err = cfg.NATS.SyncPolicy(); err != nil {
		return fail(err)
	}
	if *natsTLSCert != "" || *natsTLSKey != "" || *natsTLSCA != "" {
		if *natsTLSCert == "" || *natsTLSKey == "" {
			return usageErr(stderr, "dev", "--nats-tls-cert and --nats-tls-key go together")
		}
		if natsCfg.TLS, err = natsembed.TLSFiles(*natsTLSCert, *natsTLSKey, *natsTLSCA); err != nil {
			return fail(err)
		}
	}
	var sec *devNATSAuth
	if cfg.Auth.Enabled {
		if sec, err = newDevNATSAuth(ctx, &cfg, log); err != nil {
			return fail(err)
		}
		defer sec.close()
		natsCfg.Users, natsCfg.CalloutIssuer = sec.users, sec.callout.Issuer()
	}
	srv, err := natsembed.Run(natsCfg)
	if err != nil {
		return fail(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect(sec.connectOptions()...)
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	if sec != nil {
		go func() { _ = sec.callout.Serve(ctx, nc) }()
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fail(fmt.Errorf("listen %s: %w", *httpAddr, err))
	}
	err = stack.Run(ctx, stack.Options{Config: &cfg, Conn: nc, Components: stack.All, IngressListener: ln, Log: log,
		Ready: func() {
			printBanner(stdout, &cfg, ln.Addr().String(), natsLine(srv.ClientURL(), sec != nil), srv.Sync(), *dataDir)
		}})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fail(err)
	}
	fmt.Fprintln(stdout, "inferq dev: stopped")
	return 0
}

func printBanner(w io.Writer, cfg *config.Config, httpAddr, natsURL, sync, dataDir string) {
	names := make([]string, len(cfg.Models))
	for i, m := range cfg.Models {
		names[i] = m.Name
	}
	if natsURL == "" {
		natsURL = "in-process only (--nats-port 0)"
	}
	scheme := "http"
	if cfg.Ingress.TLS.Enabled() {
		scheme = "https"
	}
	store := "embedded JetStream KV"
	if cfg.Redis.Enabled() {
		store = "Redis"
	}
	fmt.Fprintf(w, `inferq dev is running
  HTTP API  %s://%s
  NATS      %s
  sync      %s
  results   %s
  data      %s
  models    %s

Try it:
  curl -s -X POST %s://%s/v1/models/simple/jobs -H 'Content-Type: application/json' \
    -d '{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
  curl -s '%s://%s/v1/jobs/<id>?wait=10s'

Ctrl-C stops it.
`, scheme, httpAddr, natsURL, sync, store, dataDir, strings.Join(names, ", "), scheme, httpAddr, scheme, httpAddr)
}

// natsLine is the banner's NATS line: the URL (tls:// when clients must
// use TLS) and who may connect.
func natsLine(url string, authenticated bool) string {
	switch {
	case url == "":
		return ""
	case authenticated:
		return url + " (auth on: tenants connect with their API key or JWT as the token)"
	}
	return url + " (UNAUTHENTICATED, loopback only: anyone on this machine can read and write it)"
}

func setIf(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}
