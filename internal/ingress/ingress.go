// Package ingress is inferq's public HTTP API (Echo): it validates a job
// against its model's schema, writes the queued record, publishes the job to
// JetStream and answers 202; it serves job records, with long-polling, from
// the results store.
package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/auth/authecho"
	"github.com/inferq/inferq/internal/blob"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/console"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/registry"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/webhook"
	"github.com/inferq/inferq/pkg/jetstream"
)

// DefaultTenant owns every job while authentication is off.
const DefaultTenant = "default"

// Options are what the ingress needs; every field is required unless noted.
type Options struct {
	Config   *config.Config
	Topology jetstream.Topology
	JS       natsjs.JetStream
	Store    results.Store
	// Blobs keeps inputs over blobs.threshold_bytes and resolves outputs
	// kept by reference; nil is the topology's bucket on JS.
	Blobs *blob.Store
	Log   *slog.Logger
	// Registry is where New registers the ingress's metrics and /metrics
	// reads them; nil keeps them where nobody reads them.
	Registry *prometheus.Registry
	// Ready is /readyz's and /v2/health/ready's check (service.Env's
	// Reachable: NATS, not the results store); nil is always ready.
	Ready   obs.Check
	Auth    *auth.Authenticator // nil: every caller is tenant "default" with all scopes
	Limiter *auth.Limiter       // nil: no rate limit
	// Webhooks checks callback URLs and holds the tenants' defaults; nil
	// parses the config's webhooks section (an invalid one refuses every
	// callback URL).
	Webhooks *webhook.Settings
	// Catalog and Models are the live model registry (internal/registry):
	// jobs resolve their model in Catalog and the admin routes write
	// Models. Nil: models come from Config alone and the routes answer 409.
	Catalog *registry.Catalog
	Models  *registry.Store
}

// Ingress serves the HTTP API.
type Ingress struct {
	opt     Options
	metrics *metrics
	echo    *echo.Echo
	now     func() time.Time
	cache   statsCache
	recent  recentBatches
	accepts acceptedJobs // queued jobs this ingress accepted lately (lookup.go)
	jobsMu  sync.Mutex
	jobs    natsjs.Stream // INFERQ_JOBS, once read
	// readStats reads a model's stats from JetStream (readStatsJS); a test
	// may wrap it to make it slow.
	readStats func(ctx context.Context, model string) (Stats, error)
	ui        *console.Console // the web console at /ui; nil when disabled
	fileStore filesStore       // the Batch API's files (openai_files.go)
	batchRecs batchStore       // the Batch API's batch records (openai_batches.go)
}

// New builds the ingress and its routes.
func New(opt Options) *Ingress {
	if opt.Registry == nil {
		opt.Registry = prometheus.NewRegistry()
	}
	if opt.Blobs == nil && opt.JS != nil {
		opt.Blobs = blob.New(opt.JS, opt.Topology.BlobsBucket())
	}
	i := &Ingress{opt: opt, echo: echo.New(), now: time.Now, cache: statsCache{ttl: 250 * time.Millisecond, wait: 100 * time.Millisecond},
		recent: recentBatches{keep: 32}, accepts: acceptedJobs{perGen: 1 << 15}}
	i.readStats = i.readStatsJS
	if i.opt.Webhooks == nil {
		s, err := webhook.FromConfig(opt.Config.Webhooks)
		if err != nil {
			opt.Log.Error("webhooks section invalid; callback URLs are refused", "err", err)
			s = webhook.Disabled()
		}
		i.opt.Webhooks = s
	}
	// One ingress per registry: a second would count into the first's
	// metrics, so registering it twice panics as any duplicate does.
	i.metrics = newMetrics(opt.Registry)
	for _, m := range opt.Config.Models { // every model's series from the start, at zero
		i.metrics.jobsSubmitted.WithLabelValues(m.Name)
		for _, r := range rejectReasons {
			i.metrics.jobsRejected.WithLabelValues(m.Name, r)
		}
	}
	opt.Registry.MustRegister(newQueueCollector(i))
	e := i.echo
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = clientIP(opt.Config.Ingress.TrustedProxies)
	e.HTTPErrorHandler = i.handleError
	if !opt.Config.Ingress.Console.Disabled {
		i.mountConsole() // before the API's middleware: /ui has its own sessions
	}
	e.Use(i.observe)
	if opt.Auth != nil {
		e.Use(authecho.Chain(opt.Auth, opt.Limiter, opt.Log, opt.Config.Log.Access == config.AccessAll)...)
	}
	submit, read, admin := scope(opt.Auth, auth.ScopeSubmit), scope(opt.Auth, auth.ScopeRead), scope(opt.Auth, auth.ScopeAdmin)

	// Every route that takes a body runs jsonBody after the scope check:
	// one Content-Type rule for the whole API; tensorBody adds the binary
	// tensor data extension's form to it where inference requests come.
	e.POST("/v1/models/:model/jobs", i.submit, submit, tensorBody)
	e.POST("/v1/models/:model/versions/:version/jobs", i.submit, submit, tensorBody)
	e.GET("/v1/jobs/:id", i.getJob, read)
	e.DELETE("/v1/jobs/:id", i.cancel, submit)
	e.GET("/v1/jobs/:id/events", i.events, read)
	e.POST("/v1/jobs/:id/replay", i.replayJob, admin, jsonBody)
	e.POST("/v1/models/:model/replay", i.replayModel, admin, jsonBody)
	e.GET("/v1/models", i.listModels, read)
	e.GET("/v1/models/:model", i.getModel, read)
	e.PUT("/v1/models/:model", i.putModel, admin, jsonBody) // the model registry (registry.go)
	e.PUT("/v1/models/:model/versions/:version", i.putVersion, admin, jsonBody)
	e.DELETE("/v1/models/:model", i.deleteModel, admin)
	e.DELETE("/v1/models/:model/versions/:version", i.deleteVersion, admin)

	e.POST("/v2/models/:model/infer", i.infer, submit, tensorBody)
	e.POST("/v2/models/:model/versions/:version/infer", i.infer, submit, tensorBody)
	e.POST("/v2/models/:model/generate", i.generate, submit, jsonBody)
	e.POST("/v2/models/:model/versions/:version/generate", i.generate, submit, jsonBody)
	e.POST("/v2/models/:model/generate_stream", i.generateStream, submit, jsonBody)
	e.POST("/v2/models/:model/versions/:version/generate_stream", i.generateStream, submit, jsonBody)
	e.GET("/v2", i.serverMetadata, read)
	e.GET("/v2/", i.serverMetadata, read)
	e.GET("/v2/models/:model", i.modelMetadata, read)
	e.GET("/v2/models/:model/versions/:version", i.modelMetadata, read)
	e.GET("/v2/models/:model/ready", i.modelReady, read)
	e.GET("/v2/models/:model/versions/:version/ready", i.modelReady, read)
	e.GET("/v2/models/:model/config", i.modelConfig, read)
	e.GET("/v2/models/:model/versions/:version/config", i.modelConfig, read)
	i.openaiRoutes(e, submit, read) // /openai/v1 (openai.go)

	probes := obs.AdminMux(opt.Registry, opt.Ready)
	e.GET("/healthz", echo.WrapHandler(probes))
	e.GET("/readyz", echo.WrapHandler(probes))
	e.GET("/metrics", echo.WrapHandler(probes), admin) // admin scope when auth is on
	// OIP health answers 200 for true and a 4xx for false (the spec's rule;
	// Triton answers 400), unlike /readyz's 503.
	e.GET("/v2/health/live", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	e.GET("/v2/health/ready", func(c echo.Context) error {
		if opt.Ready == nil {
			return c.NoContent(http.StatusOK)
		}
		if err := opt.Ready(c.Request().Context()); err != nil {
			return apiError(http.StatusBadRequest, "not_ready", err.Error())
		}
		return c.NoContent(http.StatusOK)
	})
	return i
}

// scope requires a scope of the caller when authentication is on.
func scope(a *auth.Authenticator, s string) echo.MiddlewareFunc {
	if a == nil {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	return authecho.Require(s)
}

// clientIP is how the ingress tells who a client is (the failed-auth
// throttle keys on it): the connection's remote address, unless it is one
// of the trusted proxies, whose X-Forwarded-For is then read from the
// right, past every trusted hop. Echo's default believes the header from
// anyone, so a client could pick a fresh address for every guess.
func clientIP(trusted []string) echo.IPExtractor {
	prefixes, err := config.ParseTrustedProxies(trusted)
	if err != nil || len(prefixes) == 0 {
		return echo.ExtractIPDirect() // config.Finish refuses a bad list
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range prefixes {
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// Handler is the API as an http.Handler (for tests and embedding).
func (i *Ingress) Handler() http.Handler { return i.echo }

// Serve runs the API on ln until ctx ends, then drains in-flight requests.
func (i *Ingress) Serve(ctx context.Context, ln net.Listener) error {
	sub, err := i.watchBatches()
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := i.runBatches(ctx); err != nil && ctx.Err() == nil { // the Batch API's runner (batchrun.go)
		// Jobs do not depend on it: serve them, and say why batches wait.
		i.opt.Log.Error("the Batch API's runner did not start; batches stay validating until an ingress runs it", "err", err)
	}
	if i.ui != nil {
		go i.ui.Run(ctx) // samples the console's charts; ends with ctx
	}
	cfg := i.opt.Config.Ingress
	if cfg.TLS.Enabled() {
		if ln, err = tlsListener(ln, cfg.TLS); err != nil {
			return err
		}
	}
	i.opt.Log.Info("ingress listening", "addr", ln.Addr().String(), "tls", cfg.TLS.Enabled())
	// The write timeout outlasts the longest long-poll or synchronous wait;
	// SSE streams extend it on every event.
	return obs.ServeListener(ctx, ln, i.echo, i.opt.Log, obs.ServeOptions{
		WriteTimeout: max(cfg.MaxWait.D(), cfg.SyncTimeout.D()) + 30*time.Second,
		Drain:        DrainTimeout(cfg)})
}

// tlsListener serves ln over TLS (HTTP/2 or HTTP/1.1) with the certificate
// of ingress.tls; a plain-HTTP request to it is answered 400.
func tlsListener(ln net.Listener, c config.ServerTLS) (net.Listener, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("ingress.tls: %w", err)
	}
	return tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
		NextProtos: []string{"h2", "http/1.1"}}), nil
}

// drainMargin is the time a request that waited its longest allowed wait
// gets to read the record and write its answer.
const drainMargin = 5 * time.Second

// DrainTimeout is how long a stopping ingress lets requests in flight
// finish: the longest wait a client may ask for (GET ?wait= and
// `Prefer: wait=N` up to ingress.max_wait, the synchronous /v2 endpoints
// up to ingress.sync_timeout) plus drainMargin, so that no long-poll is cut
// short by a shutdown. SSE streams are cut after it; clients resume them
// with Last-Event-ID.
func DrainTimeout(cfg config.Ingress) time.Duration {
	return max(cfg.MaxWait.D(), cfg.SyncTimeout.D()) + drainMargin
}

// observe records latency per route template (bounded labels) and logs
// server errors.
func (i *Ingress) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		code := c.Response().Status
		i.metrics.httpDuration.WithLabelValues(c.Path(), strconv.Itoa(code)).Observe(time.Since(start).Seconds())
		if code >= 500 {
			i.opt.Log.Warn("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "status", code)
		}
		return nil
	}
}

// Error is the API's error body: {"error": {"code", "message"}}, or on the
// OIP paths (/v2...) {"error": "message", "code": "..."}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func apiError(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

func (i *Ingress) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	if isOpenAI(c.Request().URL.Path) {
		i.openaiError(c, err) // OpenAI's error shape (openai.go)
		return
	}
	var ae *Error
	var he *echo.HTTPError
	var rl *retryLater
	var authErr *auth.HTTPError
	if errors.As(err, &rl) {
		c.Response().Header().Set("Retry-After", strconv.Itoa(rl.seconds))
	}
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &authErr):
		authErr.SetHeaders(c.Response().Header()) // Retry-After, WWW-Authenticate
		ae = apiError(authErr.Status, authErr.Code, authErr.Message)
	case errors.As(err, &he):
		msg := http.StatusText(he.Code)
		if s, ok := he.Message.(string); ok {
			msg = s
		}
		ae = apiError(he.Code, codeFor(he.Code), msg)
	default:
		i.opt.Log.Error("internal error", "path", c.Request().URL.Path, "err", err)
		ae = apiError(http.StatusInternalServerError, "internal", "internal error")
	}
	if isOIP(c.Request().URL.Path) {
		_ = c.JSON(ae.Status, oipError{Error: ae.Message, Code: ae.Code})
		return
	}
	_ = c.JSON(ae.Status, map[string]*Error{"error": ae})
}

// oipError is the error body the Open Inference Protocol prescribes for its
// endpoints, {"error": <message string>}, with our code alongside so that
// a program can still tell errors apart.
type oipError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// isOIP reports whether path belongs to the Open Inference Protocol.
func isOIP(path string) bool { return path == "/v2" || strings.HasPrefix(path, "/v2/") }

func codeFor(status int) string {
	switch status {
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	}
	if status >= 500 {
		return "unavailable"
	}
	return "invalid"
}
