package provision_test

import (
	"fmt"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
)

var models = []provision.ModelPolicy{{Name: "simple", MaxBatchSize: 32, MaxDeliver: 3}, {Name: "tiny-gpt", MaxBatchSize: 8, MaxDeliver: 2}}

func TestProvisionIsIdempotent(t *testing.T) {
	n := testutil.StartNATS(t)
	ctx := t.Context()
	topo := jetstream.DefaultTopology()
	for range 3 {
		if err := provision.All(ctx, n.JS, topo, models); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]natsjs.RetentionPolicy{
		"INFERQ_JOBS": natsjs.LimitsPolicy, "INFERQ_BATCHES": natsjs.WorkQueuePolicy,
		"INFERQ_EVENTS": natsjs.WorkQueuePolicy, "INFERQ_TOKENS": natsjs.LimitsPolicy, "INFERQ_DEAD": natsjs.LimitsPolicy,
		"INFERQ_ADVISORIES": natsjs.WorkQueuePolicy, "INFERQ_WEBHOOKS": natsjs.WorkQueuePolicy,
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
