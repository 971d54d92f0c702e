package batcher

import (
	"context"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// gate holds a ready batch back while the model's workers already have
// `limit` batches waiting undelivered in INFERQ_BATCHES (the workers
// consumer's NumPending), as Triton forms a batch when a model instance
// frees up. While held, the batch keeps growing towards max_batch_size and
// higher priorities can still overtake, instead of everything queueing in
// FIFO order in the batches stream. The gate is a throughput and priority
// optimisation, never a correctness one: when the count is unknown it opens.
//
// The count is refreshed by a consumer info request after each publish and
// whenever a worker takes a batch (its notice on TakenSubject, a core-NATS
// subscription) — never by a timer on an idle queue.
type gate struct {
	limit   int
	cons    natsjs.Consumer // nil: always open
	mu      sync.Mutex
	pending int // last known NumPending, plus batches published since
	kick    chan struct{}
	changed chan struct{}
}

func newGate(limit int, cons natsjs.Consumer) *gate {
	return &gate{limit: limit, cons: cons, kick: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
}

func (g *gate) open() bool {
	if g == nil || g.cons == nil || g.limit <= 0 {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending < g.limit
}

// published counts a batch just published.
func (g *gate) published() {
	if g == nil || g.cons == nil {
		return
	}
	g.mu.Lock()
	g.pending++
	g.mu.Unlock()
	signal(g.kick)
}

// poke asks for a refresh (a worker took a batch).
func (g *gate) poke() {
	if g != nil {
		signal(g.kick)
	}
}

// run refreshes the count whenever poked, until ctx ends.
func (g *gate) run(ctx context.Context) {
	if g == nil || g.cons == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
		}
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := g.cons.Info(ictx)
		cancel()
		g.mu.Lock()
		if err != nil {
			g.pending = 0
		} else {
			g.pending = int(info.NumPending)
		}
		g.mu.Unlock()
		signal(g.changed)
	}
}
