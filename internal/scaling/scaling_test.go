package scaling

import (
	"testing"

	"github.com/inferq/inferq/pkg/jetstream"
)

// TestDesiredReplicas: one replica per max_batch_size jobs in the busiest
// priority, one while only batches wait or run, none when idle.
func TestDesiredReplicas(t *testing.T) {
	type q = [3]uint64
	for _, c := range []struct {
		name    string
		batch   int
		queued  q
		batches uint64
		want    uint64
	}{
		{"idle", 32, q{}, 0, 0},
		{"a batch runs, nothing queued", 32, q{}, 1, 1},
		{"many batches held, nothing queued", 32, q{}, 9, 1},
		{"one job queued", 32, q{0, 1, 0}, 0, 1},
		{"one full batch queued", 32, q{0, 32, 0}, 3, 1},
		{"a full batch and one more job", 32, q{0, 33, 0}, 3, 2},
		{"452 jobs", 32, q{0, 452, 0}, 3, 15},
		{"busiest priority wins", 8, q{16, 40, 8}, 2, 5},
		{"max_batch_size 1", 1, q{2, 3, 0}, 0, 3},
	} {
		if got := DesiredReplicas(c.batch, c.queued, c.batches); got != c.want {
			t.Errorf("%s: %d replicas, want %d", c.name, got, c.want)
		}
	}
}

// TestTriggers: three batcher consumers sized by max_batch_size and the
// workers consumer that only wakes, every one active from a lag of 1.
func TestTriggers(t *testing.T) {
	topo := jetstream.DefaultTopology()
	tr := Triggers(topo, "m", 16)
	if len(tr) != 4 {
		t.Fatalf("%d triggers, want 4", len(tr))
	}
	for k, c := range jetstream.BatcherConsumers("m") {
		if tr[k].Stream != topo.JobsStream() || tr[k].Consumer != c || tr[k].LagThreshold != 16 {
			t.Errorf("trigger %d: %+v", k, tr[k])
		}
	}
	w := tr[3]
	if w.Stream != topo.BatchesStream() || w.Consumer != jetstream.WorkerConsumer("m") || w.LagThreshold != WakeLagThreshold {
		t.Errorf("wake trigger: %+v", w)
	}
	for _, x := range tr {
		if x.Active(0) || !x.Active(1) {
			t.Errorf("%s: active at lag 0 or not at lag 1", x.Consumer)
		}
	}
	if md := w.Metadata(); md["lagThreshold"] != "1000000" || md["activationLagThreshold"] != "0" || md["consumer"] != "workers-m" {
		t.Errorf("metadata %v", md)
	}
}
