package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/obs"
)

// recordSpans installs a TracerProvider that keeps every ended span, and
// the W3C propagator, for the rest of the test; both globals are restored
// when it ends. It must be called before the stack starts, so that the
// stack stops (its cleanup runs first) before the provider goes.
func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	// AlwaysSample: independent of any OTEL_TRACES_SAMPLER around the test.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	obs.SetupTracing()
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		_ = tp.Shutdown(context.Background())
	})
	return rec
}

func spanAttr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func linksTo(s sdktrace.ReadOnlySpan, sc trace.SpanContext) bool {
	for _, l := range s.Links() {
		if l.SpanContext.TraceID() == sc.TraceID() && l.SpanContext.SpanID() == sc.SpanID() {
			return true
		}
	}
	return false
}

// TestTracingOneTracePerJob: each job is one trace, from the ingress
// span through a "worker job" span to every "resultsvc apply" span of its
// events; the batch is a trace of its own ("batcher flush" → "worker
// execute") linked to each job's span, both ways.
func TestTracingOneTracePerJob(t *testing.T) {
	rec := recordSpans(t)
	s := startStack(t, false, func(c *config.Config) {
		// A window long enough for the three jobs to share one batch.
		m, _ := c.Model("simple")
		m.Batching.MaxBatchSize = 8
		m.Batching.PreferredBatchSizes = nil
		m.Batching.MaxQueueDelay = config.D(300 * time.Millisecond)
	})
	ones := make([]int32, 16)
	for i := range ones {
		ones[i] = 1
	}
	var ids []string
	for k := range 3 {
		a := make([]int32, 16)
		for i := range a {
			a[i] = int32(k*100 + i)
		}
		ids = append(ids, s.submit(t, "simple", simpleBody(a, ones)).ID)
	}
	for _, id := range ids {
		if r := s.wait(t, id); r.Status != "succeeded" {
			t.Fatalf("job %s: %+v", id, r)
		}
	}

	// Spans end just after the work they time: the worker's once the batch
	// is acked, resultsvc's once the event is applied. Retry briefly.
	var problems []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		problems = checkJobTraces(rec.Ended(), ids)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range problems {
		t.Error(p)
	}
	batches := 0
	for _, sp := range rec.Ended() {
		if sp.Name() == "batcher flush" {
			batches++
		}
	}
	t.Logf("%d jobs in %d batches", len(ids), batches)
	if len(problems) > 0 {
		for _, sp := range rec.Ended() {
			t.Logf("span %q trace %s span %s parent %s links %d job %q", sp.Name(), sp.SpanContext().TraceID(),
				sp.SpanContext().SpanID(), sp.Parent().SpanID(), len(sp.Links()), spanAttr(sp, "inferq.job_id"))
		}
	}
}

// checkJobTraces returns what is wrong with the spans of jobs ids, or
// nothing when each job's trace has the expected shape.
func checkJobTraces(spans []sdktrace.ReadOnlySpan, ids []string) (problems []string) {
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, sp := range spans {
		byName[sp.Name()] = append(byName[sp.Name()], sp)
	}
	flushes := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, f := range byName["batcher flush"] {
		flushes[f.SpanContext().SpanID()] = f
	}
	for _, id := range ids {
		var in sdktrace.ReadOnlySpan
		for _, sp := range byName["ingress submit"] {
			if spanAttr(sp, "inferq.job_id") == id {
				in = sp
			}
		}
		if in == nil {
			bad("job %s: no ingress span", id)
			continue
		}
		job := in.SpanContext()
		if in.SpanKind() != trace.SpanKindServer || spanAttr(in, "inferq.model") != "simple" ||
			spanAttr(in, "messaging.system") != "nats" || !strings.HasPrefix(spanAttr(in, "messaging.destination.name"), "inferq.jobs.simple.") {
			bad("job %s: ingress span kind %v, attributes %v", id, in.SpanKind(), in.Attributes())
		}

		// The batch: a flush span linked to the job, in a trace of its own,
		// and the worker's batch span its child, linked to the job too.
		var flush sdktrace.ReadOnlySpan
		for _, f := range flushes {
			if linksTo(f, job) {
				flush = f
			}
		}
		if flush == nil {
			bad("job %s: no batcher flush span links to its ingress span", id)
			continue
		}
		if flush.SpanContext().TraceID() == job.TraceID() || flush.Parent().IsValid() {
			bad("job %s: the flush span is not the root of a trace of its own", id)
		}
		for _, k := range []string{"inferq.batch_id", "inferq.batch_size", "messaging.system", "messaging.destination.name"} {
			if spanAttr(flush, k) == "" {
				bad("flush span: no %s in %v", k, flush.Attributes())
			}
		}
		var exec sdktrace.ReadOnlySpan
		for _, w := range byName["worker execute"] {
			if w.Parent().SpanID() == flush.SpanContext().SpanID() {
				exec = w
			}
		}
		switch {
		case exec == nil:
			bad("job %s: no worker execute span is a child of flush span %s", id, flush.SpanContext().SpanID())
			continue
		case exec.SpanContext().TraceID() != flush.SpanContext().TraceID():
			bad("job %s: worker execute span not in the flush span's trace", id)
		case !linksTo(exec, job):
			bad("job %s: worker execute span does not link to the job", id)
		case spanAttr(exec, "inferq.batch_id") != spanAttr(flush, "inferq.batch_id"):
			bad("job %s: worker batch_id %q, flush %q", id, spanAttr(exec, "inferq.batch_id"), spanAttr(flush, "inferq.batch_id"))
		}

		// The job's own trace goes on in the worker and in resultsvc.
		var run sdktrace.ReadOnlySpan
		for _, sp := range byName["worker job"] {
			if spanAttr(sp, "inferq.job_id") == id {
				run = sp
			}
		}
		switch {
		case run == nil:
			bad("job %s: no worker job span", id)
			continue
		case run.SpanContext().TraceID() != job.TraceID() || run.Parent().SpanID() != job.SpanID():
			bad("job %s: worker job span is not a child of the ingress span", id)
		case !linksTo(run, exec.SpanContext()):
			bad("job %s: worker job span does not link to its batch's span", id)
		}
		statuses := map[string]bool{}
		for _, sp := range byName["resultsvc apply"] {
			if spanAttr(sp, "inferq.job_id") != id {
				continue
			}
			if sp.SpanContext().TraceID() != job.TraceID() || sp.Parent().SpanID() != run.SpanContext().SpanID() {
				bad("job %s: resultsvc span for %s is not a child of the worker job span", id, spanAttr(sp, "inferq.status"))
			}
			statuses[spanAttr(sp, "inferq.status")] = true
		}
		// A batch this short is not reported running (see worker
		// Options.RunningAfter): its jobs go straight to succeeded.
		if !statuses["STATUS_SUCCEEDED"] {
			bad("job %s: resultsvc spans for %v, want succeeded", id, statuses)
		}
		// Nothing else of the job's strays into another trace.
		for _, sp := range spans {
			if spanAttr(sp, "inferq.job_id") == id && sp.SpanContext().TraceID() != job.TraceID() {
				bad("job %s: span %q in trace %s, not the job's", id, sp.Name(), sp.SpanContext().TraceID())
			}
		}
	}
	return problems
}

// TestTraceContextWithoutTracing: with no TracerProvider installed the
// broker makes no spans (obs.Tracing is false), yet a job's trace context
// still travels with it, as the no-op spans used to carry it: the client's
// traceparent reaches the job's token messages through the batch.
func TestTraceContextWithoutTracing(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	obs.SetupTracing() // as every inferq process does
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
	if obs.Tracing() {
		t.Fatal("a TracerProvider is installed: this test is about running without one")
	}
	s := startStack(t, false, nil)
	sub, err := s.NATS.Conn.SubscribeSync("inferq.tokens.default.>")
	if err != nil {
		t.Fatal(err)
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, err := http.NewRequest("POST", s.URL+"/v1/models/repeat/jobs",
		strings.NewReader(`{"text_input":"ab","parameters":{"max_tokens":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("submit: %s", resp.Status)
	}
	for i := range 2 {
		msg, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("token %d: %v", i+1, err)
		}
		if tp := msg.Header.Get("traceparent"); !strings.Contains(tp, traceID) {
			t.Errorf("token %d: traceparent %q, want trace %s", i+1, tp, traceID)
		}
	}
}
