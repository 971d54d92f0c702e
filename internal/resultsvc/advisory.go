package resultsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// watchAdvisories ends the jobs of every batch that exhausted max_deliver
// without a worker saying so: a worker that crashes on every delivery of a
// batch never reaches its own last-delivery dead-lettering, and JetStream
// then stops delivering the batch and sends an advisory instead. Each job
// still pending ends failed with a dead letter, and the batch is removed.
func (s *Service) watchAdvisories(ctx context.Context, iter natsjs.MessagesContext) {
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, natsjs.ErrMsgIteratorClosed) {
				return
			}
			s.opt.Log.Warn("advisory pull failed", "err", err)
			continue
		}
		if err := s.maxDelivered(context.WithoutCancel(ctx), msg.Data()); err != nil {
			s.opt.Log.Warn("advisory not handled; will retry", "err", err)
			_ = msg.NakWithDelay(time.Second)
			continue
		}
		_ = msg.Ack()
	}
}

// maxDelivered handles one max-deliveries advisory.
func (s *Service) maxDelivered(ctx context.Context, data []byte) error {
	var adv jetstream.MaxDeliveriesAdvisory
	if err := json.Unmarshal(data, &adv); err != nil || adv.StreamSeq == 0 {
		s.opt.Log.Error("undecodable advisory dropped", "err", err)
		return nil
	}
	stream, err := s.opt.JS.Stream(ctx, s.opt.Topology.BatchesStream())
	if err != nil {
		return fmt.Errorf("batches stream: %w", err)
	}
	raw, err := stream.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return nil // a worker acked or terminated it after all
	}
	if err != nil {
		return fmt.Errorf("get batch %d: %w", adv.StreamSeq, err)
	}
	batch, err := lifecycle.DecodeBatch(raw.Data)
	if err != nil {
		s.opt.Log.Error("undecodable batch removed after max_deliver", "seq", adv.StreamSeq, "err", err)
		return stream.DeleteMsg(ctx, adv.StreamSeq)
	}
	why := "max_deliver: the batch was delivered " + strconv.FormatUint(adv.Deliveries, 10) +
		" times and no worker finished it (a worker crashed or hung on it every time)"
	for _, j := range batch.Jobs {
		if rec, err := s.opt.Store.Get(ctx, j.Id); err == nil && (rec.Status.Terminal() || rec.Attempts > j.Attempt) {
			continue // finished, or replayed since: this attempt's end is moot
		}
		if err := s.failJob(ctx, batch, j, adv.Deliveries, why); err != nil {
			return err
		}
	}
	s.opt.Metrics.JobsDropped.WithLabelValues(batch.Model, "max_deliver").Add(float64(len(batch.Jobs)))
	s.opt.Log.Warn("batch exhausted max_deliver; its jobs failed", "batch", batch.Id, "model", batch.Model, "jobs", len(batch.Jobs))
	if err := stream.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, natsjs.ErrMsgNotFound) {
		return fmt.Errorf("remove batch %d: %w", adv.StreamSeq, err)
	}
	return nil
}

// failJob dead-letters one job and publishes its failed event, with the
// same message ids a worker uses, so that either side's copy is a duplicate.
func (s *Service) failJob(ctx context.Context, b *inferqpb.Batch, j *inferqpb.BatchJob, deliveries uint64, why string) error {
	now := time.Now()
	msg, err := lifecycle.DeadLetterMsg(s.opt.Topology, b, j, deliveries, why, now)
	if err != nil {
		return err
	}
	if _, err := s.opt.JS.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("dead letter for %s: %w", j.Id, err)
	}
	s.opt.Metrics.DeadLetters.WithLabelValues(b.Model, "max_deliver").Inc()
	ev := lifecycle.FailedEvent(b, j, "", now, &inferqpb.Error{Code: lifecycle.CodeMaxDeliver, Message: why})
	if _, err := ev.Publish(ctx, s.opt.JS, s.opt.Topology); err != nil {
		return fmt.Errorf("failed event for %s: %w", j.Id, err)
	}
	return nil
}
