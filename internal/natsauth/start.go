package natsauth

import (
	"context"
	"fmt"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/service"
)

// Start is the auth callout as a component, run beside the ingress (which
// holds the same auth configuration). Without nats.auth_callout's issuer
// seed it does nothing.
func Start(ctx context.Context, env *service.Env) (func(context.Context) error, error) {
	cfg := env.Config
	if cfg.NATS.AuthCallout.IssuerSeedFile == "" {
		return func(ctx context.Context) error { <-ctx.Done(); return nil }, nil
	}
	kp, err := LoadIssuer(cfg.NATS.AuthCallout.IssuerSeedFile)
	if err != nil {
		return nil, err
	}
	a, err := auth.New(ctx, cfg.Auth, env.Log)
	if err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	env.OnClose(func() { _ = a.Close() })
	c, err := NewCallout(CalloutConfig{Auth: a, Issuer: kp, Prefix: cfg.NATS.Prefix,
		SessionTTL: cfg.NATS.AuthCallout.SessionTTL.D(), Failures: auth.NewFailureLimiter(cfg.Auth.FailedAuth),
		Log: env.Log.With("component", "nats-auth-callout")})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return c.Serve(ctx, env.Conn) }, nil
}
