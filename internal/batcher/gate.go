package batcher

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/pkg/jetstream"
)

// gate holds a ready batch back while the model's workers have no free
// slot for it, as Triton forms a batch when a model instance frees up: a
// batch is let go when nothing waits undelivered in INFERQ_BATCHES
// (NumPending below the limit) and some worker is waiting for one (the
// workers consumer has an outstanding pull request, NumWaiting > 0). While
// held, the batch keeps growing towards max_batch_size and higher
// priorities can still overtake, instead of small batches queueing in FIFO
// order ahead of the device: in a closed loop they would stay small, each
// paying the model's fixed cost per batch. With no worker at all (nothing
// waiting, nothing held) only the NumPending limit applies, so jobs still
// reach the durable batches stream for a worker to come. The gate is a
// throughput and priority optimisation, never a correctness one: before the
// first count it opens; a count that cannot be refreshed keeps the last one.
//
// Workers send a notice on TakenSubject (core NATS) when they take a batch
// and when a slot of theirs starts waiting for the next. Current workers put
// their own counts in it (jetstream.HeaderWaiting, HeaderHeld): while every
// worker heard from lately does, the gate sums those, counts the batches it
// published less the ones taken, and asks the server (a consumer info
// request, the costliest message of a job's path) only while it holds a
// batch back, at most every refreshEvery, to correct what lost notices or
// other batchers' batches put out of step. Notices without counts (older
// workers) fall back to a consumer info request after each publish and each
// notice, as before. Never a timer on an idle queue.
//
// A waiting slot is not always a free device: a worker with max_inflight 2
// keeps a pull request out while its device computes, to fetch the next
// batch meanwhile. Workers therefore say, in their notices, whether they
// have nothing of the model in hand (jetstream.HeaderIdle). A full batch
// (or one of a preferred size) goes to any waiting slot; a partial one goes
// only to an idle worker, and otherwise keeps growing until a device frees
// up, as with max_inflight 1. Notices without the headers (older workers)
// leave every waiting slot counted as idle.
type gate struct {
	limit   int
	cons    natsjs.Consumer // nil: always open
	mu      sync.Mutex
	pending int // last known NumPending, plus batches published since
	waiting int // last known NumWaiting: workers' outstanding pull requests
	held    int // last known NumAckPending: batches workers hold
	// idle holds the workers whose last notice said they have nothing in
	// hand, with when it came; known says any notice named its worker.
	idle  map[string]time.Time
	known bool
	// free holds continuous workers' free sequence slots, by worker.
	free map[string]slotsNote
	// counts holds the last counts each worker told, by worker; legacy is
	// when a worker last sent a notice without them.
	counts    map[string]countsNote
	legacy    time.Time
	refreshed time.Time // the last consumer info answer
	kick      chan struct{}
	changed   chan struct{}
}

// idleFor is how long an idle notice counts without a newer one from the
// same worker: a worker that died idle stops counting.
const idleFor = 30 * time.Second

// refreshEvery bounds how often a gate that knows its workers' counts from
// their notices asks the server while it holds a batch back.
const refreshEvery = 50 * time.Millisecond

// countsNote is a worker's pull requests out and batches held, as its last
// notice said, and when.
type countsNote struct {
	waiting, held int
	at            time.Time
}

// slotsNote is a worker's free sequence slots and when it said so.
type slotsNote struct {
	n  int
	at time.Time
}

func newGate(limit int, cons natsjs.Consumer) *gate {
	return &gate{limit: limit, cons: cons, idle: map[string]time.Time{}, free: map[string]slotsNote{},
		counts: map[string]countsNote{}, kick: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
}

// freeSlots is the most free sequence slots a continuous worker reported
// lately; false when none reported any (a nil gate, tensor models).
func (g *gate) freeSlots() (int, bool) {
	if g == nil {
		return 0, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now, most, known := time.Now(), 0, false
	for w, f := range g.free {
		if now.Sub(f.at) >= idleFor {
			delete(g.free, w)
			continue
		}
		most, known = max(most, f.n), true
	}
	return most, known
}

// open reports whether a ready batch may go now; full says it is full (or
// of a preferred size), so a slot that prefetches while its device
// computes may take it.
func (g *gate) open(full bool) bool {
	if g == nil || g.cons == nil || g.limit <= 0 {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending < g.limit && (g.held == 0 || (g.waiting > 0 && (full || g.deviceIdleLocked())))
}

// deviceIdleLocked reports whether some worker said it has nothing in hand
// (always true when no worker's notices say).
func (g *gate) deviceIdleLocked() bool {
	if !g.known {
		return true
	}
	now := time.Now()
	for w, at := range g.idle {
		if now.Sub(at) < idleFor {
			return true
		}
		delete(g.idle, w)
	}
	return false
}

// workerWaits reports whether a batch published now would be taken at
// once: the gate is open and some worker has a pull request out. False when
// the counts are unknown or there is no gate, so a batch then waits out its
// max_queue_delay as it always did.
func (g *gate) workerWaits() bool {
	if g == nil || g.cons == nil || g.limit <= 0 {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending < g.limit && g.waiting > 0 && g.deviceIdleLocked()
}

// changes is signalled after each refresh of the counts (nil without a gate).
func (g *gate) changes() <-chan struct{} {
	if g == nil {
		return nil
	}
	return g.changed
}

// publishing counts a batch about to be published: before the publish, so
// that a worker's notice that it took the batch, which can come before the
// publish returns, always finds it counted.
func (g *gate) publishing() {
	if g == nil || g.cons == nil {
		return
	}
	g.mu.Lock()
	g.pending++
	g.mu.Unlock()
}

// published ends publishing: ok says the batch was stored.
func (g *gate) published(ok bool) {
	if g == nil || g.cons == nil {
		return
	}
	g.mu.Lock()
	if !ok && g.pending > 0 {
		g.pending--
	}
	told := g.toldLocked(time.Now())
	g.mu.Unlock()
	if !told {
		signal(g.kick)
	}
}

// poke asks for a refresh (a batch is held back, or a worker took one).
func (g *gate) poke() {
	if g != nil {
		signal(g.kick)
	}
}

// toldLocked reports whether the workers' own counts stand in for the
// server's: some fresh notice carried them and none without them came
// within idleFor.
func (g *gate) toldLocked(now time.Time) bool {
	return len(g.counts) > 0 && now.Sub(g.legacy) >= idleFor
}

// notice takes a worker's notice on TakenSubject (body: the id of the batch
// it took, or empty when a slot starts waiting): it records whether the
// worker is idle and its counts, or asks for a refresh when it gave none.
func (g *gate) notice(h nats.Header, body []byte) {
	if g == nil {
		return
	}
	w := h.Get(jetstream.HeaderWorker)
	if w == "" {
		g.poke()
		return
	}
	now := time.Now()
	g.mu.Lock()
	g.known = true
	if h.Get(jetstream.HeaderIdle) == "1" {
		g.idle[w] = now
	} else {
		delete(g.idle, w)
	}
	if n, err := strconv.Atoi(h.Get(jetstream.HeaderFreeSlots)); err == nil && n >= 0 {
		g.free[w] = slotsNote{n: n, at: now}
	}
	waiting, werr := strconv.Atoi(h.Get(jetstream.HeaderWaiting))
	held, herr := strconv.Atoi(h.Get(jetstream.HeaderHeld))
	if werr != nil || herr != nil || waiting < 0 || held < 0 {
		delete(g.counts, w)
		g.legacy = now
		g.mu.Unlock()
		g.poke()
		return
	}
	g.counts[w] = countsNote{waiting: waiting, held: held, at: now}
	if len(body) > 0 && g.pending > 0 {
		g.pending-- // one fewer batch waits undelivered
	}
	if g.toldLocked(now) {
		g.waiting, g.held = 0, 0
		for k, c := range g.counts {
			if now.Sub(c.at) >= idleFor {
				delete(g.counts, k) // a worker gone quiet holds nothing we know of
				continue
			}
			g.waiting += c.waiting
			g.held += c.held
		}
		g.mu.Unlock()
		signal(g.changed)
		return
	}
	g.mu.Unlock()
	g.poke()
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
		g.mu.Lock()
		now := time.Now()
		wait := time.Duration(0)
		if g.toldLocked(now) {
			wait = refreshEvery - now.Sub(g.refreshed)
		}
		g.mu.Unlock()
		if wait > 0 {
			// Told by the workers: a held batch asks again within 100ms, so
			// a skipped refresh is only put off.
			continue
		}
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := g.cons.Info(ictx)
		cancel()
		if err != nil {
			// The last counts stand: a held batch pokes again within 100ms,
			// so one slow answer (a busy or failing-over server) neither
			// opens the gate on a guess nor closes it for long. Opening on
			// a guess sent a batch to a model with no free worker, where
			// its jobs' deadlines could no longer expire them.
			continue
		}
		g.mu.Lock()
		g.pending = int(info.NumPending)
		if g.refreshed = time.Now(); !g.toldLocked(g.refreshed) {
			// Told by the workers, their own counts are newer than an
			// answer that may have left the server before their notice.
			g.waiting, g.held = info.NumWaiting, info.NumAckPending
		}
		g.mu.Unlock()
		signal(g.changed)
	}
}
