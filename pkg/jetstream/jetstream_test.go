package jetstream_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

var models = []provision.ModelPolicy{{Name: "simple", MaxBatchSize: 32, MaxDeliver: 3}, {Name: "tiny-gpt", MaxBatchSize: 8, MaxDeliver: 2}}

func TestPublishDedupesByMsgID(t *testing.T) {
	n := testutil.StartNATS(t)
	ctx := t.Context()
	topo := jetstream.DefaultTopology()
	if err := provision.All(ctx, n.JS, topo, models); err != nil {
		t.Fatal(err)
	}
	job := &inferqpb.Job{Id: "j1", Model: "simple"}
	first, err := jetstream.Publish(ctx, n.JS, topo.JobSubject("simple", 1, job.Id), job, job.Id)
	if err != nil {
		t.Fatal(err)
	}
	again, err := jetstream.Publish(ctx, n.JS, topo.JobSubject("simple", 1, job.Id), job, job.Id)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !again.Duplicate || again.Sequence != first.Sequence {
		t.Errorf("first %+v, again %+v: the second publish should be a duplicate", first, again)
	}
}

func TestTraceContextRidesInHeaders(t *testing.T) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "ingress submit")
	defer span.End()

	msg, err := jetstream.NewMsg(ctx, "inferq.jobs.simple.p1", &inferqpb.Job{Id: "j"}, "j")
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("traceparent") == "" || msg.Header.Get(nats.MsgIdHdr) != "j" {
		t.Fatalf("headers %v", msg.Header)
	}
	got := trace.SpanContextFromContext(jetstream.ExtractTrace(context.Background(), msg.Header))
	if got.TraceID() != span.SpanContext().TraceID() {
		t.Errorf("trace id %v, want %v", got.TraceID(), span.SpanContext().TraceID())
	}
}

func TestSubjects(t *testing.T) {
	topo := jetstream.DefaultTopology()
	topo.Prefix = "acme"
	for got, want := range map[string]string{
		topo.JobSubject("m", 0, "j"):      "acme.jobs.m.p0.j",
		topo.JobLookupSubject("j"):        "acme.jobs.*.*.j",
		topo.BatchSubject("m"):            "acme.batches.m",
		topo.EventSubject("m", "running"): "acme.events.m.running",
		topo.TokenSubject("t", "j"):       "acme.tokens.t.j",
		topo.JobsStream():                 "ACME_JOBS",
		topo.ResultsBucket():              "acme_results",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
