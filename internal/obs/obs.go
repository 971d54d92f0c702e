// Package obs is the observability every inferq service shares: slog
// loggers, a Prometheus registry with the broker's metrics, the admin HTTP
// server (/healthz, /readyz, /metrics), and OpenTelemetry set-up.
package obs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// NewLogger builds the process logger from level and format ("text"/"json").
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: durationString}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// durationString writes durations as Go writes them ("5ms", "1m30s"): the JSON
// handler would otherwise write nanoseconds as a bare integer, which no reader
// of a log can tell from a count.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// NewRegistry returns a registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// SetupTracing installs the W3C trace-context propagator. Exporters are
// configured by the standard OTEL_* variables where a deployment sets one up;
// without one, spans are no-ops (see Tracing).
func SetupTracing() {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
}

// defaultTracerProvider is OpenTelemetry's global provider before anyone
// installs one: it hands out spans that record nothing and only carry their
// parent's context.
var defaultTracerProvider = otel.GetTracerProvider()

// Tracing reports whether spans are recorded: a TracerProvider has been
// installed (StartTracing found an exporter, or a test or an embedding
// program called otel.SetTracerProvider). Without one, the per-job paths
// start no spans and build no links or attributes (3% of the broker's CPU
// at a few thousand jobs a second); the trace context a job came with still
// travels with it, as the no-op spans would have carried it.
func Tracing() bool { return otel.GetTracerProvider() != defaultTracerProvider }

// Check is a readiness probe: nil when ready.
type Check func(ctx context.Context) error

// AdminMux serves /healthz (alive), /readyz (ready passes; nil: always
// ready) and /metrics.
func AdminMux(reg *prometheus.Registry, ready Check) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var err error
		if ready != nil {
			err = ready(r.Context())
		}
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, `{"status":"not ready","error":%q}`, err.Error())
			return
		}
		_, _ = io.WriteString(w, `{"status":"ready"}`)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// Ready runs every check with a short deadline.
func Ready(ctx context.Context, checks map[string]Check) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var errs []error
	for name, c := range checks {
		if err := c(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Serve runs h on addr until ctx ends, then shuts down gracefully.
// The listener is opened before Serve returns its first error, so a bad
// address fails at start.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	return ServeListener(ctx, ln, h, log, ServeOptions{})
}

// ServeOptions tune ServeListener; a zero field takes its default.
type ServeOptions struct {
	// WriteTimeout (default 30s) must outlast the longest answer a handler
	// may take to start writing; streaming handlers extend it per write
	// (see ExtendWrite).
	WriteTimeout time.Duration
	// Drain (default 10s) is how long requests in flight when ctx ends get
	// to finish before their connections are cut: it must outlast the
	// longest wait a handler may hold a request for.
	Drain time.Duration
}

// ServeListener is Serve on an open listener. Every timeout is set so that a
// slow or idle client cannot hold a connection. Once ctx ends it stops
// accepting and waits up to opt.Drain for the requests in flight.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger, opt ServeOptions) error {
	if opt.WriteTimeout <= 0 {
		opt.WriteTimeout = 30 * time.Second
	}
	if opt.Drain <= 0 {
		opt.Drain = 10 * time.Second
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      opt.WriteTimeout,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	log.Info("draining http requests", "addr", ln.Addr().String(), "for_at_most", opt.Drain)
	shutCtx, cancel := context.WithTimeout(context.Background(), opt.Drain)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("http requests still in flight after the drain; cutting them", "addr", ln.Addr().String(), "drain", opt.Drain)
		_ = srv.Close()
	}
	<-errc
	return nil
}

// ExtendWrite moves the connection's write deadline d into the future, for
// streaming answers (SSE) that outlive the server's write timeout: a client
// that stops reading is cut off d after the last write that got through.
func ExtendWrite(w http.ResponseWriter, d time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}

// dependencyCollector exports inferq_dependency_up: each readiness check
// run at scrape time, so that an alert can name what is unreachable.
type dependencyCollector struct {
	checks map[string]Check
	desc   *prometheus.Desc
}

// RegisterDependencies exports checks as inferq_dependency_up{dependency}
// on reg. Registering the same dependencies again is not an error.
func RegisterDependencies(reg prometheus.Registerer, checks map[string]Check) error {
	err := reg.Register(&dependencyCollector{checks: checks, desc: prometheus.NewDesc("inferq_dependency_up",
		"1 while the service reaches the dependency (nats, store), else 0.", []string{"dependency"}, nil)})
	if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
		return nil
	}
	return err
}

func (c *dependencyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *dependencyCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for name, check := range c.checks {
		up := 0.0
		if check(ctx) == nil {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, up, name)
	}
}
