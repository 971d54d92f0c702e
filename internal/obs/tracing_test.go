package obs

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// otelVars are every variable tracesExporter reads; each case starts with
// all of them empty, whatever the environment running the test holds.
var otelVars = []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"}

func setOTelEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, k := range otelVars {
		t.Setenv(k, env[k])
	}
}

// TestTracesExporterFromEnv: the exporter exists only when the OTEL_*
// environment asks for one, and creating it needs no collector (port 1
// has no listener).
func TestTracesExporterFromEnv(t *testing.T) {
	const nowhere = "http://127.0.0.1:1"
	tests := []struct {
		name    string
		env     map[string]string
		want    bool
		wantErr string
	}{
		{name: "nothing set", env: nil, want: false},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": nowhere}, want: true},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": nowhere + "/v1/traces"}, want: true},
		{name: "exporter none wins over endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": nowhere}, want: false},
		{name: "sdk disabled", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": nowhere}, want: false},
		{name: "otlp asked for, default endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: true},
		{name: "http/protobuf", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": nowhere, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, want: true},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: "zipkin"},
		{name: "grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": nowhere, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, wantErr: "grpc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			setOTelEnv(t, tc.env)
			exp, err := tracesExporter(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := exp != nil; got != tc.want {
				t.Fatalf("exporter created: %v, want %v", got, tc.want)
			}
			if exp != nil {
				if err := exp.Shutdown(context.Background()); err != nil {
					t.Errorf("shutdown of an exporter that never exported: %v", err)
				}
			}
		})
	}
}

// TestTracerProviderExports: with an endpoint, spans reach it over
// OTLP/HTTP on flush, under the service's name unless OTEL_SERVICE_NAME
// renames it.
func TestTracerProviderExports(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)

	for _, tc := range []struct{ name, envName, want string }{
		{name: "default name", want: "batcher"},
		{name: "OTEL_SERVICE_NAME", envName: "inferq-batcher", want: "inferq-batcher"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setOTelEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_SERVICE_NAME": tc.envName})
			ctx := context.Background()
			tp, err := newTracerProvider(ctx, "batcher")
			if err != nil || tp == nil {
				t.Fatalf("provider %v, err %v", tp, err)
			}
			rec := tracetest.NewSpanRecorder()
			tp.RegisterSpanProcessor(rec)
			before := posts.Load()
			_, span := tp.Tracer("test").Start(ctx, "test span")
			span.End()
			if err := tp.ForceFlush(ctx); err != nil {
				t.Fatal(err)
			}
			if posts.Load() == before {
				t.Error("no POST /v1/traces after a flush")
			}
			if err := tp.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			ended := rec.Ended()
			if len(ended) != 1 {
				t.Fatalf("%d spans recorded, want 1", len(ended))
			}
			got, _ := ended[0].Resource().Set().Value("service.name")
			if got.AsString() != tc.want {
				t.Errorf("service.name = %q, want %q", got.AsString(), tc.want)
			}
		})
	}
}

// TestStartTracingWithoutEndpoint: the propagator is installed, the global
// provider is left alone, and shutdown is a harmless no-op.
func TestStartTracingWithoutEndpoint(t *testing.T) {
	setOTelEnv(t, nil)
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })

	shutdown, err := StartTracing(context.Background(), "ingress", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if otel.GetTracerProvider() != prevTP {
		t.Error("a tracer provider was installed with no exporter configured")
	}
	if f := otel.GetTextMapPropagator().Fields(); !strings.Contains(strings.Join(f, ","), "traceparent") {
		t.Errorf("propagator fields %v: want traceparent", f)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}
