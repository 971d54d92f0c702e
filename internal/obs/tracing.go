package obs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// StartTracing sets up OpenTelemetry for the process named service (ingress,
// batcher, resultsvc, worker, inferq-dev). It always installs the W3C
// propagator, so trace context keeps flowing through NATS headers. It
// installs a TracerProvider exporting over OTLP/HTTP only when the standard
// OTEL_* environment asks for one (see tracesExporter): without it nothing
// is exported and nothing dials out. Export errors go to log.
//
// shutdown flushes the spans still buffered; call it once, on exit.
func StartTracing(ctx context.Context, service string, log *slog.Logger) (shutdown func(context.Context) error, err error) {
	SetupTracing()
	tp, err := newTracerProvider(ctx, service)
	if err != nil {
		return nil, err
	}
	if tp == nil {
		return func(context.Context) error { return nil }, nil
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// newTracerProvider is the SDK provider for service, batching spans to the
// OTLP exporter; nil when the environment configures no exporter. The
// sampler (OTEL_TRACES_SAMPLER, default parentbased_always_on) and the batch
// processor (OTEL_BSP_*) read their own variables.
func newTracerProvider(ctx context.Context, service string) (*sdktrace.TracerProvider, error) {
	exp, err := tracesExporter(ctx)
	if err != nil || exp == nil {
		return nil, err
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the name
	// given here: a deployment may call its ingress "inferq-ingress".
	res, err := resource.New(ctx, resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", service), attribute.String("service.namespace", "inferq")),
		resource.WithFromEnv())
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// tracesExporter builds the span exporter the OTEL_* environment asks for,
// or nil for none:
//   - OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none: none;
//   - OTEL_TRACES_EXPORTER=otlp: OTLP/HTTP, to the configured endpoint or
//     the default http://localhost:4318;
//   - OTEL_TRACES_EXPORTER unset: OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT
//     or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, else none, so a process
//     nobody configured never dials a collector.
//
// The exporter reads the other OTEL_EXPORTER_OTLP_* variables itself
// (headers, timeout, compression, certificates). Creating it opens no
// connection.
func tracesExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	want := false
	switch v := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))); v {
	case "none":
		return nil, nil
	case "otlp":
		want = true
	case "":
		want = os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: inferq exports traces with otlp or none", v)
	}
	if !want {
		return nil, nil
	}
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if proto != "" && proto != "http/protobuf" {
		return nil, fmt.Errorf("OTLP protocol %q: inferq exports traces over http/protobuf (port 4318)", proto)
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	return exp, nil
}
