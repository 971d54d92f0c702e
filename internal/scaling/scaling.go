// Package scaling says how many workers a model needs, the way the shipped
// KEDA ScaledObject computes it, so that GET /v1/models' desired_replicas,
// the manifests and the tests agree on one rule.
//
// The backlog a worker pool must follow is the jobs waiting upstream, in the
// batcher's per-priority consumers batcher-<model>-p0..p2 of INFERQ_JOBS:
// the batcher's gate keeps at most about one batch waiting in INFERQ_BATCHES,
// so the workers-<model> consumer's lag follows the replica count, not the
// load. That consumer is only used to wake the pool from zero and to keep one
// worker while a batch waits or runs.
//
// KEDA's nats-jetstream scaler reads, per trigger, lag = NumPending +
// NumAckPending of one consumer from the server's /jsz; the HPA then wants
// ceil(lag / lagThreshold) replicas per trigger (metric type AverageValue)
// and takes the largest. With lagThreshold = max_batch_size on each batcher
// consumer, the pool grows by one worker per full batch waiting: each
// replica has at most one batch's worth of jobs queued behind the one it
// runs. The batches trigger's threshold (WakeLagThreshold) is above any lag
// that consumer can have, so it asks for exactly one replica whenever a
// batch waits or runs, and for none otherwise.
package scaling

import (
	"strconv"

	"github.com/inferq/inferq/pkg/jetstream"
)

// WakeLagThreshold is the lagThreshold of the workers-<model> trigger. Its
// lag is at most MaxWaitingBatches (1) plus the batches every worker holds
// (replicas × max_inflight), far below this, so ceil(lag/threshold) is 1
// while any batch waits or runs and 0 otherwise: it wakes the pool and never
// sizes it.
const WakeLagThreshold = 1000000

// Trigger is one nats-jetstream trigger of a model's ScaledObject: the
// consumer whose NumPending + NumAckPending KEDA reads, and its thresholds.
type Trigger struct {
	Stream, Consumer string
	LagThreshold     int64
	// ActivationLagThreshold: the trigger is active (wakes the pool from
	// zero) while lag exceeds it.
	ActivationLagThreshold int64
}

// Triggers are the KEDA triggers of a model with the given max_batch_size:
// one per batcher priority consumer (lagThreshold max_batch_size) and the
// workers consumer (WakeLagThreshold), every one active from a lag of 1.
func Triggers(topo jetstream.Topology, model string, maxBatchSize int) []Trigger {
	out := make([]Trigger, 0, jetstream.MaxPriority-jetstream.MinPriority+2)
	for _, c := range jetstream.BatcherConsumers(model) {
		out = append(out, Trigger{Stream: topo.JobsStream(), Consumer: c, LagThreshold: int64(max(maxBatchSize, 1))})
	}
	return append(out, Trigger{Stream: topo.BatchesStream(), Consumer: jetstream.WorkerConsumer(model), LagThreshold: WakeLagThreshold})
}

// Metadata is t as nats-jetstream trigger metadata (strings, as KEDA reads
// them), without the endpoint and account.
func (t Trigger) Metadata() map[string]string {
	return map[string]string{"stream": t.Stream, "consumer": t.Consumer,
		"lagThreshold":           strconv.FormatInt(t.LagThreshold, 10),
		"activationLagThreshold": strconv.FormatInt(t.ActivationLagThreshold, 10)}
}

// Replicas is what the HPA asks of one trigger for a lag: ceil(lag /
// lagThreshold), the AverageValue target KEDA sets.
func (t Trigger) Replicas(lag uint64) uint64 {
	th := uint64(max(t.LagThreshold, 1))
	return (lag + th - 1) / th
}

// Active reports whether the trigger wakes the pool at this lag.
func (t Trigger) Active(lag uint64) bool { return int64(lag) > t.ActivationLagThreshold }

// Desired is the replica count the ScaledObject asks for, given each
// trigger's lag (in Triggers' order, by consumer name): 0 while no trigger
// is active, else the largest per-trigger count, at least 1.
func Desired(triggers []Trigger, lag map[string]uint64) uint64 {
	var want uint64
	active := false
	for _, t := range triggers {
		l := lag[t.Consumer]
		active = active || t.Active(l)
		want = max(want, t.Replicas(l))
	}
	if !active {
		return 0
	}
	return max(want, 1)
}

// DesiredReplicas is Desired for a model from its consumers' figures:
// queued[p] is NumPending + NumAckPending of batcher-<model>-p<p>, batches
// that of workers-<model>.
func DesiredReplicas(maxBatchSize int, queued [jetstream.MaxPriority - jetstream.MinPriority + 1]uint64, batches uint64) uint64 {
	lag := make(map[string]uint64, len(queued)+1)
	for k, c := range jetstream.BatcherConsumers("m") {
		lag[c] = queued[k]
	}
	lag[jetstream.WorkerConsumer("m")] = batches
	return Desired(Triggers(jetstream.Topology{}, "m", maxBatchSize), lag)
}
