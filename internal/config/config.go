// Package config is inferq's one configuration struct: loaded from a YAML
// file, then overridden by INFERQ_* environment variables, then by flags.
// Every service reads the same file and uses the parts it needs.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/inferq/inferq/internal/auth"
)

// Config is the whole configuration of an inferq deployment.
type Config struct {
	NATS      NATS        `yaml:"nats"`
	Redis     Redis       `yaml:"redis"`
	Results   Results     `yaml:"results"`
	Blobs     Blobs       `yaml:"blobs"`
	Ingress   Ingress     `yaml:"ingress"`
	Batcher   Service     `yaml:"batcher"`
	ResultSvc Service     `yaml:"resultsvc"`
	Worker    Worker      `yaml:"worker"`
	Log       Log         `yaml:"log"`
	Auth      auth.Config `yaml:"auth"`
	Webhooks  Webhooks    `yaml:"webhooks"`
	Models    []Model     `yaml:"models"`
	// Registry keeps the models in the live registry (the models bucket,
	// internal/registry): Models only bootstrap it, and models come and go
	// over the API without a restart. Off: Models are the models.
	Registry bool `yaml:"registry"`
}

// Webhooks configures signed completion webhooks (internal/webhook): the
// signing secret, which callback URLs are allowed, and the retry policy.
// Without a secret, callback URLs are refused.
type Webhooks struct {
	// Secret signs every webhook (Standard Webhooks, HMAC-SHA256), in the
	// whsec_<base64> form; SecretFile holds it instead (newline trimmed).
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// AllowPrivate lets callback URLs reach loopback, private, link-local
	// and other internal addresses; Allow lets only the listed IPs, CIDRs
	// and host names. Default neither: public addresses only.
	AllowPrivate bool     `yaml:"allow_private"`
	Allow        []string `yaml:"allow"`
	// Timeout bounds each POST (default 15s); it must stay below
	// nats.ack_wait, so a slow receiver never gets a duplicate.
	Timeout Duration `yaml:"timeout"`
	// MaxAttempts POSTs before the webhook is failed (default 8); Backoff
	// is the wait after each failed one, the last repeating (default 5s,
	// 30s, 2m, 10m, 30m, 1h, 2h).
	MaxAttempts int        `yaml:"max_attempts"`
	Backoff     []Duration `yaml:"backoff"`
	// Tenants gives a tenant a default callback URL, used when a job names
	// none, and its own signing secret.
	Tenants map[string]WebhookTenant `yaml:"tenants"`
}

// WebhookTenant is one tenant's webhook settings.
type WebhookTenant struct {
	CallbackURL string `yaml:"callback_url"`
	Secret      string `yaml:"secret"` // whsec_<base64>; default webhooks.secret
}

// Enabled reports whether webhooks can be signed, hence sent.
func (w *Webhooks) Enabled() bool {
	if w.Secret != "" || w.SecretFile != "" {
		return true
	}
	for _, t := range w.Tenants {
		if t.Secret != "" {
			return true
		}
	}
	return false
}

// validate checks what needs no webhook code; the secrets and the
// allow-list are parsed when the services start (webhook.FromConfig).
func (w *Webhooks) validate(ackWait time.Duration) []error {
	var errs []error
	// The timeout must end a POST before its message is redelivered; it
	// matters only where webhooks can be sent at all.
	if w.Timeout.D() <= 0 || (w.Enabled() && w.Timeout.D() >= ackWait) {
		errs = append(errs, fmt.Errorf("webhooks.timeout %v must be positive and below nats.ack_wait %v", w.Timeout, ackWait))
	}
	if w.MaxAttempts < 1 || w.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("webhooks.max_attempts %d must be 1..100", w.MaxAttempts))
	}
	for _, b := range w.Backoff {
		if b.D() <= 0 {
			errs = append(errs, fmt.Errorf("webhooks.backoff: %v is not positive", b))
		}
	}
	for name := range w.Tenants {
		if !NameRE.MatchString(name) {
			errs = append(errs, fmt.Errorf("webhooks.tenants: %q is not a tenant name (%s)", name, NameRE))
		}
	}
	return errs
}

// NATS says where JetStream is and how inferq's streams are shaped.
type NATS struct {
	URL             string   `yaml:"url"`              // default nats://127.0.0.1:4222
	Prefix          string   `yaml:"prefix"`           // subject prefix and stream-name prefix; default inferq
	Replicas        int      `yaml:"replicas"`         // stream replicas: 1, or 3 on a cluster
	JobsMaxAge      Duration `yaml:"jobs_max_age"`     // how long INFERQ_JOBS keeps jobs for replay; default 24h
	TokensMaxAge    Duration `yaml:"tokens_max_age"`   // default 15m
	DuplicateWindow Duration `yaml:"duplicate_window"` // Nats-Msg-Id dedupe window; default 2m
	AckWait         Duration `yaml:"ack_wait"`         // consumers' AckWait; default 30s
	// PingInterval and MaxPingsOut decide how soon a service gives up on a
	// server that stopped answering (a frozen node) and reconnects to
	// another: after about PingInterval × (MaxPingsOut + 1). Defaults 2s and
	// 2; nats.go's own (2 minutes) kept requests hanging on a frozen node.
	PingInterval Duration `yaml:"ping_interval"`
	MaxPingsOut  int      `yaml:"max_pings_out"`
	// Sync is when the embedded nats-server (`inferq dev`) flushes
	// JetStream's files to disk: "always" (before every acknowledgement,
	// so an accepted job survives power loss) or a Go duration (a
	// background fsync every interval; an acknowledged write may be lost
	// with the machine's power within it). Default always. A standalone
	// nats-server takes jetstream { sync_interval } from its own config.
	Sync string `yaml:"sync"`
	// How the services authenticate to NATS: a creds file (JWT + nkey), a
	// user and password, or an nkey seed file; at most one.
	CredsFile    string `yaml:"creds_file"`
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"` // trailing newline trimmed
	NKeySeedFile string `yaml:"nkey_seed_file"`
	// AuthCallout, when its issuer seed is set, makes the ingress answer
	// nats-server's auth callout: tenants connect to NATS with their API
	// key or JWT as the token (internal/natsauth).
	AuthCallout AuthCallout `yaml:"auth_callout"`
	// TLS is how the services reach a nats-server that requires TLS.
	TLS ClientTLS `yaml:"tls"`
}

// ClientTLS is a TLS client's trust and identity: the CA that signed the
// server's certificate (empty: the system's roots) and, for servers that
// verify clients, this client's certificate and key. Any of them set turns
// TLS on.
type ClientTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether any TLS setting is made.
func (t ClientTLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// ServerTLS is a TLS server's certificate and key (PEM files); both empty
// serves plain text.
type ServerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether TLS is configured.
func (t ServerTLS) Enabled() bool { return t.CertFile != "" }

// AuthCallout configures the NATS auth callout service.
type AuthCallout struct {
	// IssuerSeedFile holds the account nkey seed (SA...) that signs the
	// callout's answers; nats.conf's auth_callout.issuer is its public key.
	IssuerSeedFile string `yaml:"issuer_seed_file"`
	// SessionTTL is the longest a tenant's NATS session lives before the
	// server closes it and the client must authenticate again, so a
	// revoked API key loses NATS within it (a JWT's session ends at its exp
	// when that comes first). Default 5m.
	SessionTTL Duration `yaml:"session_ttl"`
}

// Redis is the results store: one node by URL, a Redis Cluster by its seed
// addrs, or a Sentinel-watched master by master_name and the Sentinels'
// addrs. None set means the JetStream KV store.
type Redis struct {
	URL        string   `yaml:"url"`
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	// Username and Password authenticate to the nodes named by addrs (a
	// URL carries its own); Sentinels get the same password.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Timeout bounds every Redis call (dial, read, write, no retry), so a
	// hung Redis gets a 503 in about this long instead of stalling
	// requests for go-redis's defaults (up to about 10s). Default 1s.
	Timeout Duration `yaml:"timeout"`
}

// Enabled reports whether results go to Redis rather than JetStream KV.
func (r Redis) Enabled() bool { return r.URL != "" || len(r.Addrs) > 0 }

// Results configures job records.
type Results struct {
	Retention Duration `yaml:"retention"` // default 24h
}

// Blobs configures the inferq_blobs object store, where tensors too large to
// travel inside a NATS message go (its TTL is results.retention, so a blob
// never outlives its job record).
type Blobs struct {
	// ThresholdBytes: an input or output tensor with more raw bytes than
	// this is stored in the bucket and its message carries a reference.
	// Default 256 KiB: well under NATS's 1 MB max payload, so that a job or
	// batch message with several tensors still fits.
	ThresholdBytes int64 `yaml:"threshold_bytes"`
}

// Ingress is the public HTTP API.
type Ingress struct {
	Listen       string   `yaml:"listen"`         // default 127.0.0.1:8080
	MaxWait      Duration `yaml:"max_wait"`       // longest ?wait= honoured; default 60s
	MaxBodyBytes int64    `yaml:"max_body_bytes"` // default 64 MiB; above it 413 too_large
	SyncTimeout  Duration `yaml:"sync_timeout"`   // longest wait of the synchronous /v2 endpoints; default 60s
	// TLS, when set, serves the API over HTTPS only.
	TLS ServerTLS `yaml:"tls"`
	// TrustedProxies are the addresses (IPs or CIDRs) of the load balancers
	// whose X-Forwarded-For the ingress believes when it
	// throttles failed authentications per client address. Default none:
	// the connection's own remote address, so no client can pick its own.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Console is the web console the ingress serves at /ui.
	Console Console `yaml:"console"`
	// OpenAI configures the Batch API of the OpenAI-compatible face.
	OpenAI OpenAI `yaml:"openai"`
}

// OpenAI configures the Batch API under /openai/v1 (docs/openai.md).
type OpenAI struct {
	MaxFileBytes int64 `yaml:"max_file_bytes"` // largest upload to POST /files; default 200 MB
	// BatchWindow is how many lines of one batch are queued and not yet
	// finished at a time; default 2048.
	BatchWindow int `yaml:"batch_window"`
	// BatchLease is how long a batch whose runner went silent (a killed
	// process) waits before another runner resumes it; default 15s.
	BatchLease Duration `yaml:"batch_lease"`
}

// Console configures the web console at /ui (docs/console.md).
type Console struct {
	Disabled bool `yaml:"disabled"` // true: no /ui
	// TraceURL links a job's trace id to a tracing UI: "{trace_id}" in it
	// is replaced by the id (e.g. http://jaeger:16686/trace/{trace_id});
	// empty shows the id without a link.
	TraceURL string `yaml:"trace_url"`
}

// Service is a back-end service with only an admin port (/healthz, /readyz, /metrics).
type Service struct {
	AdminListen string `yaml:"admin_listen"` // empty: no admin server
}

// Worker is a worker agent.
type Worker struct {
	AdminListen string   `yaml:"admin_listen"`
	Name        string   `yaml:"name"`   // default hostname-pid
	Models      []string `yaml:"models"` // models served; empty means every configured model with a runner
	// MaxInflight is how many batches of a model the agent holds at once;
	// default 2, so the next batch is fetched and decoded, and the last
	// one's results published, while one runs. Runners that compute one
	// batch at a time (the Python runner, simgpu) still run them in turn.
	MaxInflight int `yaml:"max_inflight"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error; default info
	Format string `yaml:"format"` // text or json; default text
	// Access says which API requests get an access-log line at info, and
	// which finished jobs a line from resultsvc: AccessErrors (the
	// default) requests answered 4xx or 5xx and jobs that did not succeed,
	// AccessAll every one. The others log at debug.
	Access string `yaml:"access"`
}

// Log.Access values.
const (
	AccessErrors = "errors"
	AccessAll    = "all"
)

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		NATS: NATS{
			URL: "nats://127.0.0.1:4222", Prefix: "inferq", Replicas: 1,
			JobsMaxAge: D(24 * time.Hour), TokensMaxAge: D(15 * time.Minute),
			DuplicateWindow: D(2 * time.Minute), AckWait: D(30 * time.Second),
			PingInterval: D(2 * time.Second), MaxPingsOut: 2,
			Sync: SyncAlways,
		},
		Redis:   Redis{Timeout: D(time.Second)},
		Results: Results{Retention: D(24 * time.Hour)},
		Blobs:   Blobs{ThresholdBytes: 256 << 10},
		Ingress: Ingress{Listen: "127.0.0.1:8080", MaxWait: D(60 * time.Second), MaxBodyBytes: 64 << 20, SyncTimeout: D(60 * time.Second),
			OpenAI: OpenAI{MaxFileBytes: 200 << 20, BatchWindow: 2048, BatchLease: D(15 * time.Second)}},
		Worker: Worker{MaxInflight: 2},
		Webhooks: Webhooks{Timeout: D(15 * time.Second), MaxAttempts: 8,
			Backoff: []Duration{D(5 * time.Second), D(30 * time.Second), D(2 * time.Minute), D(10 * time.Minute),
				D(30 * time.Minute), D(time.Hour), D(2 * time.Hour)}},
		Log: Log{Level: "info", Format: "text", Access: AccessErrors},
	}
}

// Load reads path (if not empty) over the defaults, applies the environment
// and validates. Without a file the built-in test models are served.
func Load(path string) (Config, error) {
	cfg := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := Parse(b, &cfg); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	} else {
		cfg.Models = TestModels()
	}
	if err := cfg.ApplyEnv(os.LookupEnv); err != nil {
		return cfg, err
	}
	return cfg, cfg.Finish()
}

// Parse decodes YAML into cfg, rejecting unknown fields so typos are caught.
func Parse(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// ApplyEnv overrides fields from INFERQ_* variables.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	str := map[string]*string{
		"INFERQ_NATS_URL":        &c.NATS.URL,
		"INFERQ_NATS_PREFIX":     &c.NATS.Prefix,
		"INFERQ_NATS_CREDS":      &c.NATS.CredsFile,
		"INFERQ_NATS_USER":       &c.NATS.User,
		"INFERQ_NATS_PASSWORD":   &c.NATS.Password,
		"INFERQ_NATS_NKEY_SEED":  &c.NATS.NKeySeedFile,
		"INFERQ_NATS_TLS_CA":     &c.NATS.TLS.CAFile,
		"INFERQ_NATS_TLS_CERT":   &c.NATS.TLS.CertFile,
		"INFERQ_NATS_TLS_KEY":    &c.NATS.TLS.KeyFile,
		"INFERQ_NATS_SYNC":       &c.NATS.Sync,
		"INFERQ_REDIS_URL":       &c.Redis.URL,
		"INFERQ_REDIS_MASTER":    &c.Redis.MasterName,
		"INFERQ_REDIS_PASSWORD":  &c.Redis.Password,
		"INFERQ_INGRESS_LISTEN":  &c.Ingress.Listen,
		"INFERQ_BATCHER_ADMIN":   &c.Batcher.AdminListen,
		"INFERQ_RESULTSVC_ADMIN": &c.ResultSvc.AdminListen,
		"INFERQ_WORKER_ADMIN":    &c.Worker.AdminListen,
		"INFERQ_WORKER_NAME":     &c.Worker.Name,
		"INFERQ_LOG_LEVEL":       &c.Log.Level,
		"INFERQ_LOG_FORMAT":      &c.Log.Format,
		"INFERQ_LOG_ACCESS":      &c.Log.Access,
	}
	for k, p := range str {
		if v, ok := lookup(k); ok {
			*p = v
		}
	}
	dur := map[string]*Duration{
		"INFERQ_RESULTS_RETENTION": &c.Results.Retention,
		"INFERQ_NATS_ACK_WAIT":     &c.NATS.AckWait,
		"INFERQ_JOBS_MAX_AGE":      &c.NATS.JobsMaxAge,
	}
	for k, p := range dur {
		if v, ok := lookup(k); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("config: %s=%q: %w", k, v, err)
			}
			*p = D(d)
		}
	}
	if v, ok := lookup("INFERQ_NATS_REPLICAS"); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("config: INFERQ_NATS_REPLICAS=%q: %w", v, err)
		}
		c.NATS.Replicas = n
	}
	if v, ok := lookup("INFERQ_REDIS_ADDRS"); ok {
		c.Redis.Addrs = splitList(v)
	}
	if v, ok := lookup("INFERQ_WORKER_MODELS"); ok {
		c.Worker.Models = splitList(v)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// NameRE is the contract's pattern for model and tenant names.
var NameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Finish fills per-model defaults and validates the whole configuration.
func (c *Config) Finish() error {
	var errs []error
	if !NameRE.MatchString(c.NATS.Prefix) {
		errs = append(errs, fmt.Errorf("nats.prefix %q must match %s", c.NATS.Prefix, NameRE))
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		errs = append(errs, fmt.Errorf("nats.replicas %d must be 1..5", c.NATS.Replicas))
	}
	if c.NATS.AckWait.D() <= 0 {
		errs = append(errs, errors.New("nats.ack_wait must be positive"))
	}
	if c.NATS.PingInterval.D() <= 0 || c.NATS.MaxPingsOut < 1 {
		errs = append(errs, fmt.Errorf("nats.ping_interval (%v) must be positive and nats.max_pings_out (%d) at least 1",
			c.NATS.PingInterval, c.NATS.MaxPingsOut))
	}
	if _, _, err := c.NATS.SyncPolicy(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.NATS.validateAuth()...)
	if c.Redis.URL != "" && len(c.Redis.Addrs) > 0 {
		errs = append(errs, errors.New("redis: set url (one node) or addrs (cluster or sentinels), not both"))
	}
	if c.Log.Access != AccessErrors && c.Log.Access != AccessAll {
		errs = append(errs, fmt.Errorf("log.access %q: want errors or all", c.Log.Access))
	}
	if c.Blobs.ThresholdBytes <= 0 {
		errs = append(errs, fmt.Errorf("blobs.threshold_bytes %d must be positive", c.Blobs.ThresholdBytes))
	}
	if c.Redis.Timeout.D() <= 0 {
		errs = append(errs, errors.New("redis.timeout must be positive"))
	}
	if c.Redis.MasterName != "" && len(c.Redis.Addrs) == 0 {
		errs = append(errs, errors.New("redis.master_name needs addrs: the Sentinels"))
	}
	errs = append(errs, c.validateTLS()...)
	errs = append(errs, c.Webhooks.validate(c.NATS.AckWait.D())...)
	// Auth is off unless credentials are configured (as `inferq dev` runs).
	if len(c.Auth.APIKeys) > 0 || c.Auth.JWT.HS256Secret != "" || c.Auth.JWT.HS256SecretFile != "" ||
		c.Auth.JWT.JWKSFile != "" || c.Auth.JWT.JWKSURL != "" {
		c.Auth.Enabled = true
	}
	if c.NATS.AuthCallout.IssuerSeedFile != "" && !c.Auth.Enabled {
		// Without credentials to check, the callout would admit anyone.
		errs = append(errs, errors.New("nats.auth_callout needs auth enabled (api_keys or a jwt key source)"))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("auth: %w", err))
	}
	if c.Worker.MaxInflight < 1 {
		c.Worker.MaxInflight = 1
	}
	seen := map[string]bool{}
	for i := range c.Models {
		m := &c.Models[i]
		if err := m.finish(); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[m.Name] {
			errs = append(errs, fmt.Errorf("model %q: defined twice", m.Name))
		}
		seen[m.Name] = true
	}
	for _, name := range c.Worker.Models {
		if !seen[name] {
			errs = append(errs, fmt.Errorf("worker.models: %q is not a configured model", name))
		}
	}
	return errors.Join(errs...)
}

// SyncAlways is the nats.sync value that fsyncs before every acknowledgement.
const SyncAlways = "always"

// SyncPolicy reads nats.sync: always (also when empty, the default), or
// the positive interval between background fsyncs.
func (n *NATS) SyncPolicy() (always bool, interval time.Duration, err error) {
	if s := strings.TrimSpace(n.Sync); s == "" || strings.EqualFold(s, SyncAlways) {
		return true, 0, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(n.Sync))
	if err != nil || d <= 0 {
		return false, 0, fmt.Errorf("nats.sync %q: want %q or a positive duration such as 1s or 2m", n.Sync, SyncAlways)
	}
	return false, d, nil
}

// validateAuth checks the NATS credentials: one kind at most, a password
// with a user, and a positive callout session TTL.
func (n *NATS) validateAuth() []error {
	var errs []error
	kinds := 0
	for _, set := range []bool{n.CredsFile != "", n.User != "", n.NKeySeedFile != ""} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		errs = append(errs, errors.New("nats: set only one of creds_file, user and nkey_seed_file"))
	}
	if n.Password != "" && n.PasswordFile != "" {
		errs = append(errs, errors.New("nats: set only one of password and password_file"))
	}
	if (n.Password != "" || n.PasswordFile != "") && n.User == "" {
		errs = append(errs, errors.New("nats: password needs user"))
	}
	if n.AuthCallout.SessionTTL < 0 {
		errs = append(errs, errors.New("nats.auth_callout.session_ttl must not be negative"))
	}
	return errs
}

// validateTLS checks that certificates come with their keys and that the
// trusted proxies parse.
func (c *Config) validateTLS() []error {
	var errs []error
	if (c.NATS.TLS.CertFile == "") != (c.NATS.TLS.KeyFile == "") {
		errs = append(errs, errors.New("nats.tls: cert_file and key_file go together"))
	}
	if (c.Ingress.TLS.CertFile == "") != (c.Ingress.TLS.KeyFile == "") {
		errs = append(errs, errors.New("ingress.tls: cert_file and key_file go together"))
	}
	if _, err := ParseTrustedProxies(c.Ingress.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("ingress.trusted_proxies: %w", err))
	}
	return errs
}

// ParseTrustedProxies reads IPs and CIDRs (an IP is a one-address range).
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP nor a CIDR", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Unserved lists the configured models that worker.models leaves out: a
// worker started with this config does not serve them, so their jobs wait
// in the queue until some other worker that does joins.
func (c *Config) Unserved() []string {
	if len(c.Worker.Models) == 0 {
		return nil
	}
	var out []string
	for _, m := range c.Models {
		if !slices.Contains(c.Worker.Models, m.Name) {
			out = append(out, m.Name)
		}
	}
	return out
}

// Model returns the named model's config.
func (c *Config) Model(name string) (*Model, bool) {
	for i := range c.Models {
		if c.Models[i].Name == name {
			return &c.Models[i], true
		}
	}
	return nil, false
}

// Duration is a time.Duration written as "5ms" in YAML.
type Duration time.Duration

// D converts a time.Duration.
func D(d time.Duration) Duration { return Duration(d) }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts Go duration strings ("250ms", "1m30s").
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
