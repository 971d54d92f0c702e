package lifecycle_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

func sampleBatch() *inferqpb.Batch {
	jobs := []*inferqpb.BatchJob{
		{Id: "j0", Tenant: "t1", RowStart: 0, RowEnd: 1, DeadlineUnixNano: 42, ParametersJson: []byte(`{"n":2}`),
			Stream: true, Attempt: 1, RequestId: "r0", Outputs: []string{"out"}, JobsSeq: 7,
			InputShapes:  []*inferqpb.Shape{{Dims: []int64{1, 3}}},
			TraceContext: map[string]string{"traceparent": "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"}},
		{Id: "j1", Tenant: "t2", RowStart: 1, RowEnd: 3, Attempt: 2, JobsSeq: 9,
			InputShapes: []*inferqpb.Shape{{Dims: []int64{2, 3}}}},
	}
	return &inferqpb.Batch{Id: lifecycle.BatchID(jobs), Model: "simple", Version: "1", CreatedUnixNano: 1700000000000000000, Jobs: jobs,
		Inputs: []*inferqpb.Tensor{{Name: "x", Datatype: "FP32", Shape: []int64{3, 3}, Data: make([]byte, 36)}},
		Masks:  []*inferqpb.Tensor{{Name: "x_mask", Datatype: "BOOL", Shape: []int64{3, 3}, Data: make([]byte, 9)}}}
}

// TestBatchMsgWireUnchanged pins BatchMsg to the batcher's construction
// before it moved here: same subject, same headers, same bytes.
func TestBatchMsgWireUnchanged(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), sc)
	topo := jetstream.DefaultTopology()
	b := sampleBatch()

	got, err := lifecycle.BatchMsg(ctx, topo, b)
	if err != nil {
		t.Fatal(err)
	}
	// The batcher's publish as it was: jetstream.Publish(ctx, js, BatchSubject(model), batch, batch.Id).
	old, err := jetstream.NewMsg(ctx, topo.BatchSubject("simple"), b, b.Id)
	if err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "inferq.batches.simple" || got.Subject != old.Subject {
		t.Errorf("subject %q, want %q", got.Subject, old.Subject)
	}
	if !bytes.Equal(got.Data, old.Data) || !bytes.Equal(got.Data, data) {
		t.Errorf("data differs from the batcher's old encoding")
	}
	if got.Header.Get(nats.MsgIdHdr) != b.Id || got.Header.Get("traceparent") == "" {
		t.Errorf("headers %v: want Nats-Msg-Id %s and a traceparent", got.Header, b.Id)
	}
	if len(got.Header) != len(old.Header) {
		t.Errorf("headers %v, old %v", got.Header, old.Header)
	}
	for k := range old.Header {
		if got.Header.Get(k) != old.Header.Get(k) {
			t.Errorf("header %s = %q, old %q", k, got.Header.Get(k), old.Header.Get(k))
		}
	}

	back, err := lifecycle.DecodeBatch(got.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back, b) {
		t.Errorf("round trip changed the batch:\n got %v\nwant %v", back, b)
	}
}

func TestDecodeBatchRejectsGarbage(t *testing.T) {
	for _, data := range [][]byte{{0xff}, {0x0a, 0x05, 'a'}, []byte("not a batch")} {
		if b, err := lifecycle.DecodeBatch(data); err == nil {
			t.Errorf("DecodeBatch(%q) = %v, want an error", data, b)
		}
	}
	if b, err := lifecycle.DecodeBatch(nil); err != nil || len(b.GetJobs()) != 0 {
		t.Errorf("DecodeBatch(nil) = %v, %v: an empty batch decodes, its callers check for jobs", b, err)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	seed, err := proto.Marshal(sampleBatch())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Add(seed[:len(seed)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := lifecycle.DecodeBatch(data)
		if err != nil {
			if b != nil {
				t.Fatalf("batch %v with error %v", b, err)
			}
			return
		}
		if _, err := proto.Marshal(b); err != nil {
			t.Fatalf("a decoded batch does not marshal: %v", err)
		}
	})
}
