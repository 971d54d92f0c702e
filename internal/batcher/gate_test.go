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
