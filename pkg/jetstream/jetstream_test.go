package jetstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

var models = []jetstream.ModelPolicy{{Name: "simple", MaxBatchSize: 32, MaxDeliver: 3}, {Name: "tiny-gpt", MaxBatchSize: 8, MaxDeliver: 2}}

func TestProvisionIsIdempotent(t *testing.T) {
	n := testutil.StartNATS(t)
	ctx := t.Context()
	topo := jetstream.DefaultTopology()
	for range 3 {
		if err := jetstream.Provision(ctx, n.JS, topo, models); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]natsjs.RetentionPolicy{
		"INFERQ_JOBS": natsjs.LimitsPolicy, "INFERQ_BATCHES": natsjs.WorkQueuePolicy,
		"INFERQ_EVENTS": natsjs.WorkQueuePolicy, "INFERQ_TOKENS": natsjs.LimitsPolicy, "INFERQ_DEAD": natsjs.LimitsPolicy,
		"INFERQ_ADVISORIES": natsjs.WorkQueuePolicy,
	}
	for name, ret := range want {
		s, err := n.JS.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if c := s.CachedInfo().Config; c.Retention != ret || c.Duplicates < 2*time.Minute {
			t.Errorf("stream %s: retention %v, duplicates %v", name, c.Retention, c.Duplicates)
		}
	}
	jobs, _ := n.JS.Stream(ctx, "INFERQ_JOBS")
	if c := jobs.CachedInfo().Config; c.MaxAge != 24*time.Hour || c.Discard != natsjs.DiscardNew {
		t.Errorf("INFERQ_JOBS: max age %v, discard %v", c.MaxAge, c.Discard)
	}
	w, err := n.JS.Consumer(ctx, "INFERQ_BATCHES", "workers-tiny-gpt")
	if err != nil {
		t.Fatal(err)
	}
	if c := w.CachedInfo().Config; c.Durable != "workers-tiny-gpt" || c.MaxDeliver != 2 || c.FilterSubject != "inferq.batches.tiny-gpt" || c.AckPolicy != natsjs.AckExplicitPolicy {
		t.Errorf("workers consumer %+v", c)
	}
	for p, name := range jetstream.BatcherConsumers("simple") {
		b, err := n.JS.Consumer(ctx, "INFERQ_JOBS", name)
		if err != nil {
			t.Fatal(err)
		}
		if c := b.CachedInfo().Config; c.MaxAckPending <= 2*32 || c.FilterSubject != fmt.Sprintf("inferq.jobs.simple.p%d.*", p) {
			t.Errorf("batcher consumer %s: %+v", name, c)
		}
	}
	for _, bucket := range []string{"inferq_models", "inferq_workers"} {
		if _, err := n.JS.KeyValue(ctx, bucket); err != nil {
			t.Errorf("bucket %s: %v", bucket, err)
		}
	}
}

func TestPublishDedupesByMsgID(t *testing.T) {
	n := testutil.StartNATS(t)
	ctx := t.Context()
	topo := jetstream.DefaultTopology()
	if err := jetstream.Provision(ctx, n.JS, topo, models); err != nil {
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
