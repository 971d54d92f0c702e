package batcher

import (
	"testing"

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
	g.notice(nats.Header{})
	g.pending, g.waiting, g.held = 0, 1, 1
	if !g.open(false) || !g.workerWaits() {
		t.Fatal("without worker headers a waiting slot must count as free")
	}
	notice := func(worker string, idle bool) {
		h := nats.Header{jetstream.HeaderWorker: []string{worker}}
		if idle {
			h.Set(jetstream.HeaderIdle, "1")
		}
		g.notice(h)
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
	g.notice(nats.Header{jetstream.HeaderWorker: []string{"old"}, jetstream.HeaderIdle: []string{"1"}})
	if _, ok := g.freeSlots(); ok {
		t.Fatal("a worker without the header counted")
	}
	g.notice(nats.Header{jetstream.HeaderWorker: []string{"w1"}, jetstream.HeaderFreeSlots: []string{"3"}})
	g.notice(nats.Header{jetstream.HeaderWorker: []string{"w2"}, jetstream.HeaderFreeSlots: []string{"5"}})
	if n, ok := g.freeSlots(); !ok || n != 5 {
		t.Fatalf("free slots %d %v, want 5", n, ok)
	}
	g.notice(nats.Header{jetstream.HeaderWorker: []string{"w2"}, jetstream.HeaderFreeSlots: []string{"0"}})
	g.notice(nats.Header{jetstream.HeaderWorker: []string{"w3"}, jetstream.HeaderFreeSlots: []string{"-2"}})
	if n, _ := g.freeSlots(); n != 3 {
		t.Fatalf("free slots %d after w2 filled up, want 3", n)
	}
}
