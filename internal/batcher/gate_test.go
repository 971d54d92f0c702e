package batcher

import (
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/pkg/jetstream"
)

// TestGateHoldsPartialBatchesWhileDevicesAreBusy: a worker slot that waits
// while its worker computes (max_inflight 2) takes full batches, while a
// partial one waits for a worker with nothing in hand; workers that never
// say leave every waiting slot counted as free.
func TestGateHoldsPartialBatchesWhileDevicesAreBusy(t *testing.T) {
	g := newGate(1, fakeConsumer{}) // only the consumer's presence matters here
	// Old workers: no headers. One batch held, one slot waiting.
	g.notice(nats.Header{}, nil)
	g.pending, g.waiting, g.held = 0, 1, 1
	if !g.open(false) || !g.workerWaits() {
		t.Fatal("without worker headers a waiting slot must count as free")
	}
	notice := func(worker string, idle bool) {
		h := nats.Header{jetstream.HeaderWorker: []string{worker}}
		if idle {
			h.Set(jetstream.HeaderIdle, "1")
		}
		g.notice(h, nil)
	}
	notice("w1", false) // w1 took a batch; its second slot waits
	if g.open(false) || g.workerWaits() {
		t.Fatal("a partial batch went to a slot whose device is busy")
	}
	if !g.open(true) {
		t.Fatal("a full batch was held from a waiting slot")
	}
	notice("w2", true) // another worker with nothing in hand
	if !g.open(false) || !g.workerWaits() {
		t.Fatal("a partial batch was held from an idle worker")
	}
	notice("w2", false)
	if g.open(false) {
		t.Fatal("w2 took a batch but still counts as idle")
	}
	g.held = 0 // nothing in hand anywhere: open
	if !g.open(false) {
		t.Fatal("gate closed with no batch held by any worker")
	}
}

type fakeConsumer struct{ natsjs.Consumer }

// TestGateFreeSlots: continuous workers' free sequence slots are the most
// any of them reported; workers that report none leave it unknown.
func TestGateFreeSlots(t *testing.T) {
	g := newGate(1, fakeConsumer{})
	if _, ok := g.freeSlots(); ok {
		t.Fatal("free slots known before any worker said")
	}
	g.notice(nats.Header{jetstream.HeaderWorker: []string{"old"}, jetstream.HeaderIdle: []string{"1"}}, nil)
	if _, ok := g.freeSlots(); ok {
		t.Fatal("a worker without the header counted")
	}
	g.notice(nats.Header{jetstream.HeaderWorker: []string{"w1"}, jetstream.HeaderFreeSlots: []string{"3"}}, nil)
	g.notice(nats.Header{jetstream.HeaderWorker: []string{"w2"}, jetstream.HeaderFreeSlots: []string{"5"}}, nil)
	if n, ok := g.freeSlots(); !ok || n != 5 {
		t.Fatalf("free slots %d %v, want 5", n, ok)
	}
	g.notice(nats.Header{jetstream.HeaderWorker: []string{"w2"}, jetstream.HeaderFreeSlots: []string{"0"}}, nil)
	g.notice(nats.Header{jetstream.HeaderWorker: []string{"w3"}, jetstream.HeaderFreeSlots: []string{"-2"}}, nil)
	if n, _ := g.freeSlots(); n != 3 {
		t.Fatalf("free slots %d after w2 filled up, want 3", n)
	}
}

// TestGateWorkerCounts: workers that put their counts in their notices
// drive the gate without the server: a batch published and not yet taken
// closes it, the worker's notice that it took the batch and waits again
// opens it; a notice without counts (an older worker) hands the counts back
// to the server's answers.
func TestGateWorkerCounts(t *testing.T) {
	g := newGate(1, fakeConsumer{})
	notice := func(worker string, waiting, held int, took string) {
		h := nats.Header{jetstream.HeaderWorker: []string{worker},
			jetstream.HeaderWaiting: []string{strconv.Itoa(waiting)}, jetstream.HeaderHeld: []string{strconv.Itoa(held)}}
		if held == 0 {
			h.Set(jetstream.HeaderIdle, "1")
		}
		g.notice(h, []byte(took))
	}
	notice("w1", 1, 0, "") // one slot waiting, nothing in hand
	if !g.toldLocked(time.Now()) || !g.open(false) || !g.workerWaits() {
		t.Fatal("an idle worker's counts did not open the gate")
	}
	g.publishing()
	g.published(true)
	if g.open(true) {
		t.Fatal("gate open while the batch just published waits undelivered")
	}
	notice("w1", 0, 1, "b1") // took it: pending back to 0, one held, none waiting
	if g.pending != 0 || g.held != 1 || g.waiting != 0 {
		t.Fatalf("after the take: pending %d held %d waiting %d, want 0 1 0", g.pending, g.held, g.waiting)
	}
	if g.open(true) {
		t.Fatal("gate open with the only worker busy and no slot waiting")
	}
	notice("w2", 1, 0, "") // a second worker, idle
	if !g.open(false) || g.waiting != 1 || g.held != 1 {
		t.Fatalf("second worker's counts not summed: waiting %d held %d", g.waiting, g.held)
	}
	g.publishing()
	g.published(false) // not stored: not counted
	if g.pending != 0 {
		t.Fatalf("pending %d after a failed publish, want 0", g.pending)
	}
	g.notice(nats.Header{jetstream.HeaderWorker: []string{"old"}}, nil)
	if g.toldLocked(time.Now()) {
		t.Fatal("a notice without counts left the gate trusting workers' counts")
	}
	select {
	case <-g.kick:
	default:
		t.Fatal("a notice without counts asked for no refresh")
	}
}
