package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/inferq/inferq/internal/config"
)

// ConnectNATS connects a service as its own NATS user: nats.creds_file,
// nats.user with a password, or nats.nkey_seed_file (none: anonymous,
// which a server configured as inferq ships refuses), over TLS when
// nats.tls is set.
func ConnectNATS(n config.NATS, name string) (*nats.Conn, error) {
	opts, err := NATSOptions(n)
	if err != nil {
		return nil, err
	}
	opts = append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.PingInterval(n.PingInterval.D()), nats.MaxPingsOutstanding(n.MaxPingsOut)}, opts...)
	// Connection events go to the structured log, not to nats.go's default
	// of printing on stderr.
	log := slog.Default().With("nats_client", name)
	opts = append(opts,
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("nats asynchronous error", "subject", sub.Subject, "err", err)
				return
			}
			log.Warn("nats asynchronous error", "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "server", c.ConnectedUrlRedacted()) }))
	nc, err := nats.Connect(n.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", n.URL, err)
	}
	return nc, nil
}

// NATSOptions turns the nats section's credentials and TLS settings into
// connect options.
func NATSOptions(n config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case n.CredsFile != "":
		opts = append(opts, nats.UserCredentials(n.CredsFile))
	case n.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(n.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_seed_file: %w", err)
		}
		opts = append(opts, o)
	case n.User != "":
		pw := n.Password
		if n.PasswordFile != "" {
			b, err := os.ReadFile(n.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("nats.password_file: %w", err)
			}
			pw = strings.TrimRight(string(b), "\r\n")
		}
		if pw == "" {
			return nil, errors.New("nats.user is set but its password is empty")
		}
		opts = append(opts, nats.UserInfo(n.User, pw))
	}
	// TLS: the server is verified against ca_file (or the system's roots)
	// and, where it verifies clients, this service shows its certificate.
	if n.TLS.Enabled() {
		opts = append(opts, nats.Secure())
		if n.TLS.CAFile != "" {
			opts = append(opts, nats.RootCAs(n.TLS.CAFile))
		}
		if n.TLS.CertFile != "" {
			opts = append(opts, nats.ClientCert(n.TLS.CertFile, n.TLS.KeyFile))
		}
	}
	return opts, nil
}

// Join runs several components as one, as the ingress binary runs the
// ingress and the NATS auth callout.
func Join(starts ...Start) Start {
	return func(ctx context.Context, env *Env) (func(context.Context) error, error) {
		runs := make([]func(context.Context) error, 0, len(starts))
		for _, s := range starts {
			run, err := s(ctx, env)
			if err != nil {
				return nil, err
			}
			runs = append(runs, run)
		}
		return func(ctx context.Context) error {
			g, gctx := errgroup.WithContext(ctx)
			for _, run := range runs {
				g.Go(func() error { return run(gctx) })
			}
			return g.Wait()
		}, nil
	}
}
