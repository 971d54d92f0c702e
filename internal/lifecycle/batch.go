package lifecycle

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// BatchMsg is batch b as a message for its model's batches subject,
// <prefix>.batches.<model>, with ctx's trace context (the batcher's flush
// span, which the worker's span continues). Its Nats-Msg-Id is b.Id, a
// hash of its jobs (BatchID), so the same jobs batched again after a
// batcher crash are a duplicate JetStream drops.
func BatchMsg(ctx context.Context, t jetstream.Topology, b *inferqpb.Batch) (*nats.Msg, error) {
	return jetstream.NewMsg(ctx, t.BatchSubject(b.GetModel()), b, b.GetId())
}

// DecodeBatch reads a batch from the batches stream. A batch with no jobs
// decodes without error; callers that need jobs check for them.
func DecodeBatch(data []byte) (*inferqpb.Batch, error) {
	b := &inferqpb.Batch{}
	if err := proto.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	return b, nil
}
