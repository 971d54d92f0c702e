// Package natsauth gives tenants the same identity on NATS as over HTTP,
// and the services their own NATS users.
//
// Tenants connect to NATS with their API key or JWT as the connect token
// (nats.Token(key), `nats sub --token KEY`). nats-server hands every client
// that is not one of its configured service users to the auth callout
// (`authorization { auth_callout { ... } }`), which sends the connect
// options to $SYS.REQ.USER.AUTH; [Callout] answers there. It checks the
// token with the ingress's [auth.Authenticator] and answers with a user JWT,
// signed by the callout issuer's account key, that may subscribe to
// `<prefix>.tokens.<tenant>.>` and nothing else, and publish nothing.
//
// A session ends when the user JWT expires: at the credential JWT's exp, and
// at the latest after the session TTL, when the server closes the
// connection and the client must authenticate again. That is how revoking
// an API key (removing it from the configuration) reaches NATS sessions
// already open.
package natsauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/inferq/inferq/internal/auth"
)

// CalloutSubject is where nats-server sends authorization requests.
const CalloutSubject = "$SYS.REQ.USER.AUTH"

// DefaultSessionTTL bounds a tenant's NATS session when none is configured.
const DefaultSessionTTL = 5 * time.Minute

// queueGroup lets several ingress replicas share the callout: each request
// is answered once.
const queueGroup = "inferq-auth-callout"

// GlobalAccount is nats-server's default account, where inferq's streams
// live when the configuration has no accounts block.
const GlobalAccount = "$G"

// CalloutConfig configures a Callout.
type CalloutConfig struct {
	// Auth checks the tokens; it must be enabled.
	Auth *auth.Authenticator
	// Issuer is the account key pair whose public key is nats.conf's
	// auth_callout.issuer; it signs every answer.
	Issuer nkeys.KeyPair
	// Prefix is nats.prefix: tenants may read <prefix>.tokens.<tenant>.>.
	Prefix string
	// Account is where tenants are placed; default $G.
	Account string
	// SessionTTL bounds a session; default DefaultSessionTTL.
	SessionTTL time.Duration
	// Failures throttles an address whose credentials keep failing; nil
	// does not throttle.
	Failures *auth.FailureLimiter
	Log      *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Callout answers nats-server's auth callout requests.
type Callout struct {
	cfg    CalloutConfig
	issuer string // public key of cfg.Issuer
	authn  atomic.Pointer[auth.Authenticator]
}

// NewCallout checks cfg and builds a Callout.
func NewCallout(cfg CalloutConfig) (*Callout, error) {
	if cfg.Auth == nil || !cfg.Auth.Enabled() {
		return nil, errors.New("natsauth: the auth callout needs auth enabled; it would admit anyone")
	}
	if cfg.Issuer == nil {
		return nil, errors.New("natsauth: no issuer key")
	}
	pub, err := cfg.Issuer.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("natsauth: issuer key: %w", err)
	}
	if !nkeys.IsValidPublicAccountKey(pub) {
		return nil, errors.New("natsauth: the issuer must be an account nkey (seed SA..., public key A...)")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "inferq"
	}
	if cfg.Account == "" {
		cfg.Account = GlobalAccount
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Callout{cfg: cfg, issuer: pub}
	c.authn.Store(cfg.Auth)
	return c, nil
}

// SetAuth swaps the authenticator, as a configuration reload would: from
// then on a removed key is refused, and its open sessions end when their
// user JWT expires (at most the session TTL later).
func (c *Callout) SetAuth(a *auth.Authenticator) error {
	if a == nil || !a.Enabled() {
		return errors.New("natsauth: the auth callout needs auth enabled")
	}
	c.authn.Store(a)
	return nil
}

// Issuer is the public account key nats.conf's auth_callout.issuer names.
func (c *Callout) Issuer() string { return c.issuer }

// LoadIssuer reads an account nkey seed (SA...) from path.
func LoadIssuer(path string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("natsauth: issuer seed: %w", err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		return nil, fmt.Errorf("natsauth: issuer seed %s: %w", path, err)
	}
	return kp, nil
}

// Serve answers requests on nc until ctx ends. nc must be a user the
// server lists in auth_callout.auth_users.
func (c *Callout) Serve(ctx context.Context, nc *nats.Conn) error {
	sub, err := nc.QueueSubscribe(CalloutSubject, queueGroup, c.handle)
	if err != nil {
		return fmt.Errorf("natsauth: subscribe %s: %w", CalloutSubject, err)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("natsauth: subscribe %s: %w", CalloutSubject, err)
	}
	c.cfg.Log.Info("nats auth callout serving", "issuer", c.issuer, "session_ttl", c.cfg.SessionTTL)
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return ctx.Err()
}

func (c *Callout) handle(m *nats.Msg) {
	resp, err := c.Answer(m.Data)
	if err != nil {
		// Not a request the server signed for us; there is no one to answer.
		c.cfg.Log.Warn("nats auth callout: bad request", "err", err)
		return
	}
	if err := m.Respond(resp); err != nil {
		c.cfg.Log.Warn("nats auth callout: respond", "err", err)
	}
}

// Answer turns one authorization request (a JWT the server sends) into the
// signed response: a user JWT for an accepted token, or an error for any
// other. The error carries a fixed reason, never the token.
func (c *Callout) Answer(request []byte) ([]byte, error) {
	req, err := jwt.DecodeAuthorizationRequestClaims(string(request))
	if err != nil {
		return nil, fmt.Errorf("decode authorization request: %w", err)
	}
	if req.UserNkey == "" || req.Server.ID == "" {
		return nil, errors.New("authorization request without user nkey or server id")
	}
	host := req.ClientInformation.Host
	user, reason := c.authorize(req, host)
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	if reason != "" {
		resp.Error = reason
	} else {
		resp.Jwt = user
	}
	out, err := resp.Encode(c.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("sign authorization response: %w", err)
	}
	return []byte(out), nil
}

// authorize returns the signed user JWT, or a refusal reason.
func (c *Callout) authorize(req *jwt.AuthorizationRequestClaims, host string) (userJWT, reason string) {
	now := c.cfg.Now()
	if ok, _ := c.cfg.Failures.Allow(host, now); !ok {
		c.cfg.Log.Info("nats auth refused", "host", host, "reason", "too many failed authentications")
		return "", "too many failed authentications"
	}
	p, err := c.authn.Load().AuthenticateCredential(req.ConnectOptions.Token)
	if err != nil {
		c.cfg.Failures.Fail(host, now)
		c.cfg.Log.Info("nats auth refused", "host", host, "reason", err.Error())
		return "", "authentication failed"
	}
	if !p.Has(auth.ScopeRead) {
		c.cfg.Log.Info("nats auth refused", "host", host, "tenant", p.Tenant, "reason", "no read scope")
		return "", "credential lacks the read scope"
	}
	exp := now.Add(c.cfg.SessionTTL)
	if !p.Expires.IsZero() && p.Expires.Before(exp) {
		exp = p.Expires
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Audience = c.cfg.Account // the account the user is placed in (non-operator mode)
	uc.Name = "tenant:" + p.Tenant
	uc.Expires = exp.Unix()
	uc.Permissions = TenantPermissions(c.cfg.Prefix, p.Tenant)
	out, err := uc.Encode(c.cfg.Issuer)
	if err != nil {
		c.cfg.Log.Error("nats auth: sign user", "err", err)
		return "", "internal error"
	}
	c.cfg.Log.Info("nats auth accepted", "host", host, "tenant", p.Tenant, "method", p.Method, "expires", exp.UTC())
	return out, ""
}

// TenantPermissions is what a tenant's NATS session may do: subscribe to
// its own token subjects, publish nothing (so no $JS.API, no jobs, no KV).
func TenantPermissions(prefix, tenant string) jwt.Permissions {
	var p jwt.Permissions
	p.Sub.Allow.Add(prefix + ".tokens." + tenant + ".>")
	p.Pub.Deny.Add(">")
	return p
}
