package lifecycle

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/pkg/jetstream"
)

// PubAckTimeout bounds a Publisher's wait for one PubAck. Without it a
// batch whose results can never be stored would be held (kept alive) for
// ever.
const PubAckTimeout = 30 * time.Second

// Publisher sends a batch's lifecycle messages asynchronously and waits
// for every PubAck at once, so a batch of N jobs costs one round trip, not
// N. Messages are published in the order they are sent. The first error
// (a failed publish, a negative or missing PubAck, or one given to Fail)
// stops it: later sends are dropped and Wait and Err report that error.
// It is safe for concurrent use (running events may be sent from a timer's
// goroutine while tokens are sent from the runner's).
type Publisher struct {
	js   natsjs.JetStream
	mu   sync.Mutex
	acks []natsjs.PubAckFuture
	err  error
}

// NewPublisher is a Publisher on js. Its PubAck futures are js's, so js's
// async publish limits (PublishAsyncMaxPending, its own timeout) apply.
func NewPublisher(js natsjs.JetStream) *Publisher { return &Publisher{js: js} }

// Send publishes msg without waiting for its PubAck; Wait waits for it.
// It does nothing once the publisher has stopped.
func (p *Publisher) Send(msg *nats.Msg) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return
	}
	f, err := p.js.PublishMsgAsync(msg)
	if err != nil {
		p.err = fmt.Errorf("publish to %s: %w", msg.Subject, err)
		return
	}
	p.acks = append(p.acks, f)
}

// Event sends a job event with ctx's trace context.
func (p *Publisher) Event(ctx context.Context, t jetstream.Topology, ev Event) {
	msg, err := ev.NewMsg(ctx, t)
	if err != nil {
		p.Fail(err)
		return
	}
	p.Send(msg)
}

// Token sends a job's token chunk; tenant and attempt are its job's. It
// returns Err, so a runner streaming tokens stops once publishing fails.
func (p *Publisher) Token(ctx context.Context, t jetstream.Topology, tenant string, attempt uint32, c TokenChunk) error {
	p.Send(TokenMsg(ctx, t, tenant, attempt, c))
	return p.Err()
}

// Fail stops the publisher with err unless it already stopped.
func (p *Publisher) Fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

// Err is the first error that stopped the publisher, if any.
func (p *Publisher) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Wait blocks until every message sent so far is stored, in send order,
// and returns the first error: a publish that failed, a PubAck not come
// within PubAckTimeout (both stop the publisher), or ctx's. It gives up
// when the connection closes: nats.go never fails the pending acks of a
// closed connection, only those of a disconnected one. The publisher can
// be used again after a Wait that returned nil.
func (p *Publisher) Wait(ctx context.Context) error {
	p.mu.Lock()
	acks, err := p.acks, p.err
	p.acks = nil
	p.mu.Unlock()
	if len(acks) == 0 {
		return err
	}
	fail := func(e error) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.err = e
		return e
	}
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	deadline := time.NewTimer(PubAckTimeout)
	defer deadline.Stop()
	for _, f := range acks {
		for stored := false; !stored; {
			select {
			case <-f.Ok():
				stored = true
			case err := <-f.Err():
				return fail(fmt.Errorf("publish to %s: %w", f.Msg().Subject, err))
			case <-ctx.Done():
				return ctx.Err()
			case <-deadline.C:
				return fail(fmt.Errorf("publish to %s: no PubAck within %s", f.Msg().Subject, PubAckTimeout))
			case <-poll.C:
				if p.js.Conn().IsClosed() {
					return fail(fmt.Errorf("publish to %s: %w", f.Msg().Subject, nats.ErrConnectionClosed))
				}
			}
		}
	}
	return p.Err()
}
