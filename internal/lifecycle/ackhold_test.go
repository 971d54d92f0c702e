package lifecycle_test

import (
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/testutil"
)

// TestAckHolderKeepsTheStreamFromEmptying: on a real work-queue stream, the
// newest acked message stays stored until the next Ack or the hold, and
// Flush releases it.
func TestAckHolderKeepsTheStreamFromEmptying(t *testing.T) {
	n := testutil.StartNATS(t)
	ctx := testutil.Context(t)
	s, err := n.JS.CreateStream(ctx, natsjs.StreamConfig{Name: "WQ", Subjects: []string{"wq.>"}, Retention: natsjs.WorkQueuePolicy})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateConsumer(ctx, natsjs.ConsumerConfig{Durable: "c", AckPolicy: natsjs.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := n.JS.Publish(ctx, "wq.x", []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := c.FetchNoWait(4)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []natsjs.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != 4 {
		t.Fatalf("fetched %d messages, want 4", len(msgs))
	}
	stored := func() uint64 {
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	const hold = 300 * time.Millisecond
	h := lifecycle.NewAckHolder(hold, func(m natsjs.Msg) {
		if err := m.DoubleAck(ctx); err != nil {
			t.Errorf("ack: %v", err)
		}
	})
	h.Ack(msgs[0])
	h.Ack(msgs[1]) // acks msgs[0], holds msgs[1]
	testutil.Eventually(t, 5*time.Second, func() bool { return stored() == 3 }, "the replaced message was not acked")
	if got := stored(); got != 3 {
		t.Fatalf("%d messages stored right after two Acks, want 3 (the newest held)", got)
	}
	start := time.Now()
	testutil.Eventually(t, 5*time.Second, func() bool { return stored() == 2 }, "the held message was not acked after the hold")
	if el := time.Since(start); el < hold/2 {
		t.Fatalf("held message acked after %v, before the %v hold", el, hold)
	}
	h.Ack(msgs[2])
	h.Flush()
	if got := stored(); got != 1 {
		t.Fatalf("%d messages stored after Flush, want 1", got)
	}
	h.Ack(msgs[3]) // after Flush: at once
	if got := stored(); got != 0 {
		t.Fatalf("%d messages stored after an Ack past Flush, want 0", got)
	}
}
