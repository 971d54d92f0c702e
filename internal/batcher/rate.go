package batcher

import (
	"math"
	"time"
)

// arrivals estimates how fast jobs join a batch that is already open: the
// jobs that arrive while others are buffered, over the time the buffer held
// jobs. That, not the rate of all arrivals, is what waiting can gain. A
// closed loop of one client never sends a job while its last one is
// buffered, however short its round trip, so its rate here is zero and its
// jobs never wait for company that cannot come; a burst of clients, or a
// steady stream faster than the batch closes, shows a high rate.
//
// Both sums are weighted by exp(-age/tau), age measured in buffered time,
// so the estimate follows the last few tau of batching; the rate is taken
// over at least floor of observed time, so a single early arrival does not
// read as a flood. Until the buffer has held jobs for floor in all, the
// rate is unknown (known is false) and batches wait out their delay as
// before: a batcher that has just started has seen nothing to go by.
type arrivals struct {
	tau, floor time.Duration
	n          float64       // weighted arrivals into a non-empty buffer
	open       float64       // weighted seconds the buffer held jobs
	since      time.Time     // when the buffer last became non-empty; zero while empty
	last       time.Time     // when n and open were last brought up to date
	seen       time.Duration // buffered time observed, up to floor
}

// newArrivals follows about 10 × max_queue_delay of batching, and reads
// its rate over at least one max_queue_delay.
func newArrivals(delay time.Duration) *arrivals {
	floor := max(delay, 100*time.Microsecond)
	return &arrivals{tau: 10 * floor, floor: floor}
}

// advance decays the sums for the buffered time up to now.
func (a *arrivals) advance(now time.Time) {
	if a.since.IsZero() || !now.After(a.last) {
		return
	}
	a.seen = min(a.seen+now.Sub(a.last), a.floor)
	dt := now.Sub(a.last).Seconds()
	f := math.Exp(-dt / a.tau.Seconds())
	a.n *= f
	a.open = a.open*f + a.tau.Seconds()*(1-f) // the weighted integral of 1 over dt
	a.last = now
}

// arrived records a job pushed at now into a buffer that held others
// (wasEmpty false) or none.
func (a *arrivals) arrived(now time.Time, wasEmpty bool) {
	if wasEmpty {
		a.since, a.last = now, now
		return
	}
	a.advance(now)
	a.n++
}

// emptied records that the buffer became empty at now.
func (a *arrivals) emptied(now time.Time) {
	a.advance(now)
	a.since = time.Time{}
}

// rate is the estimated arrivals per second into an open batch; known is
// false until the buffer has held jobs for floor in all.
func (a *arrivals) rate(now time.Time) (perSecond float64, known bool) {
	a.advance(now)
	return a.n / max(a.open, a.floor.Seconds()), a.seen >= a.floor
}

// closeIdle is the "idle" rule of the batching loop: a partial batch goes
// at once when a worker waits for one (workerWaits), nothing pulled is
// still on its way into the buffer (drained), the arrival rate is known
// and waiting would not pay.
func closeIdle(workerWaits, drained bool, rows, maxRows int64, rate float64, known bool, left time.Duration) bool {
	return workerWaits && drained && known && !waitPays(rows, maxRows, rate, left)
}

// waitPays is the batcher's rule for a partial batch of rows when a worker
// waits for one: waiting the left of its max_queue_delay pays only if the
// jobs expected meanwhile (rate × left) would at least double the batch or
// fill it to maxRows. Otherwise the batch goes at once ("idle"): a few more
// rows are not worth the delay of those already in hand, and the worker
// would sit idle meanwhile.
func waitPays(rows, maxRows int64, rate float64, left time.Duration) bool {
	if left <= 0 || rows >= maxRows {
		return false
	}
	expected := rate * left.Seconds()
	return expected >= float64(min(rows, maxRows-rows))
}
