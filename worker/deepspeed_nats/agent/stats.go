package agent

import (
	"sync/atomic"
	"time"
)

// Stats counts what an agent did with one model since it started. Tests and
// operators read it to see how work spread over a pool of workers.
type Stats struct {
	Batches     uint64 // batches settled: every job ended, then the batch was acked (or terminated)
	Released    uint64 // deliveries handed back (Nak) for a retry, or at shutdown
	Succeeded   uint64 // jobs that ended succeeded
	Failed      uint64 // jobs that ended failed, poison jobs included
	Poisoned    uint64 // jobs that failed alone after their batch was split
	Splits      uint64 // batches split to isolate a failing job
	InFlight    int    // batches held now
	MaxInFlight int    // the most batches held at once
}

// Stats returns the model's counters; the zero Stats for a model the agent
// does not serve.
func (a *Agent) Stats(model string) Stats {
	c := a.stats[model]
	if c == nil {
		return Stats{}
	}
	return Stats{
		Batches: c.batches.Load(), Released: c.released.Load(),
		Succeeded: c.succeeded.Load(), Failed: c.failed.Load(), Poisoned: c.poisoned.Load(),
		Splits: c.splits.Load(), InFlight: int(c.inflight.Load()), MaxInFlight: int(c.peak.Load()),
	}
}

type counters struct {
	batches, released, succeeded, failed, poisoned, splits atomic.Uint64
	inflight, peak                                         atomic.Int64
	// pulls is how many pull requests for the model are out (static
	// batching), told to batchers with every notice.
	pulls atomic.Int64
	// Generate models: tokens published, and time to first token and
	// between tokens, for the heartbeat's per-window figures.
	tokens    atomic.Uint64
	ttft, itl durations
}

// durations sums observed durations, for a mean over a window.
type durations struct{ sum, n atomic.Int64 }

func (d *durations) add(v time.Duration) { d.sum.Add(int64(v)); d.n.Add(1) }

// load is the sum and the count so far.
func (d *durations) load() (time.Duration, int64) { return time.Duration(d.sum.Load()), d.n.Load() }

func (c *counters) enter() {
	n := c.inflight.Add(1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (c *counters) leave() { c.inflight.Add(-1) }
