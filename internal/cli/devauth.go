package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/natsauth"
	"github.com/inferq/inferq/internal/natsembed"
)

// devUser is the NATS user `inferq dev`'s own components connect as.
const devUser = "inferq-dev"

// devNATSAuth is what `inferq dev` with auth configured adds to its embedded
// NATS server: one user for the broker itself (a fresh random password, in
// process only) and the auth callout, with a fresh issuer key, for tenants.
type devNATSAuth struct {
	users    []natsembed.User
	password string
	authn    *auth.Authenticator
	callout  *natsauth.Callout
}

func newDevNATSAuth(ctx context.Context, cfg *config.Config, log *slog.Logger) (*devNATSAuth, error) {
	issuer, err := nkeys.CreateAccount()
	if err != nil {
		return nil, fmt.Errorf("nats auth: issuer key: %w", err)
	}
	a, err := auth.New(ctx, cfg.Auth, log)
	if err != nil {
		return nil, err
	}
	c, err := natsauth.NewCallout(natsauth.CalloutConfig{Auth: a, Issuer: issuer, Prefix: cfg.NATS.Prefix,
		SessionTTL: cfg.NATS.AuthCallout.SessionTTL.D(), Failures: auth.NewFailureLimiter(cfg.Auth.FailedAuth),
		Log: log.With("component", "nats-auth-callout")})
	if err != nil {
		_ = a.Close()
		return nil, err
	}
	pw := rand.Text()
	return &devNATSAuth{users: []natsembed.User{{Name: devUser, Password: pw}}, password: pw, authn: a, callout: c}, nil
}

// connectOptions are the broker's own; none without auth.
func (d *devNATSAuth) connectOptions() []nats.Option {
	if d == nil {
		return nil
	}
	return []nats.Option{nats.UserInfo(devUser, d.password)}
}

func (d *devNATSAuth) close() { _ = d.authn.Close() }
