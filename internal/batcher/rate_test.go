package batcher

import (
	"testing"
	"time"
)

// history replays arrivals into an estimator: each batch is `jobs` jobs
// arriving `gap` apart into an open buffer, the buffer then emptied
// `open` after its first job; batches start `every` apart.
type history struct {
	batches   int
	jobs      int
	gap, open time.Duration
	every     time.Duration
}

func (h history) replay(a *arrivals, t time.Time) time.Time {
	for range h.batches {
		for j := range h.jobs {
			a.arrived(t.Add(time.Duration(j)*h.gap), j == 0)
		}
		a.emptied(t.Add(h.open))
		t = t.Add(h.every)
	}
	return t
}

// TestCloseIdleDecision: whether a partial batch goes at once to a waiting
// worker, from synthetic arrival histories and worker states (delay 5ms,
// max_batch_size 32).
func TestCloseIdleDecision(t *testing.T) {
	const delay, maxRows = 5 * time.Millisecond, 32
	// A closed loop of one client: each job arrives into an empty buffer
	// and is gone 100µs later; its next one comes 3ms later.
	closedLoop1 := []history{{batches: 200, jobs: 1, open: 100 * time.Microsecond, every: 3 * time.Millisecond}}
	// 32 clients whose answers return together: 32 jobs 50µs apart.
	burst32 := []history{{batches: 20, jobs: 32, gap: 50 * time.Microsecond, open: 1600 * time.Microsecond, every: 10 * time.Millisecond}}
	// An open loop at 50 jobs/s, each job batched alone within 200µs.
	open50 := []history{{batches: 150, jobs: 1, open: 200 * time.Microsecond, every: 20 * time.Millisecond}}
	// 2,000 jobs/s while batches stay open 4ms (8 jobs each).
	stream2000 := []history{{batches: 100, jobs: 8, gap: 500 * time.Microsecond, open: 4 * time.Millisecond, every: 4 * time.Millisecond}}
	// The burst load ends; 40 lone jobs then each waited out the delay.
	burstThenLone := append(append([]history(nil), burst32...),
		history{batches: 40, jobs: 1, open: delay, every: 50 * time.Millisecond})

	cases := []struct {
		name        string
		past        []history
		workerWaits bool
		drained     bool
		rows        int64
		left        time.Duration
		want        bool // close now ("idle")
	}{
		{"first job ever: nothing known, it waits", nil, true, true, 1, delay, false},
		{"one job seen, batched at once: still nothing known", []history{{batches: 1, jobs: 1, open: time.Millisecond, every: time.Millisecond}}, true, true, 1, delay, false},
		{"one job that waited out its delay, worker waits", []history{{batches: 1, jobs: 1, open: delay, every: delay}}, true, true, 1, delay, true},
		{"one job that waited out its delay, no worker waits", []history{{batches: 1, jobs: 1, open: delay, every: delay}}, false, true, 1, delay, false},
		{"closed loop c=1, worker waits", closedLoop1, true, true, 1, delay, true},
		{"closed loop c=1, more already pulled", closedLoop1, true, false, 1, delay, false},
		{"open loop 50/s, worker waits", open50, true, true, 1, delay, true},
		{"burst of 32 clients: the first job waits for the rest", burst32, true, true, 1, delay, false},
		{"burst of 32 clients: no worker waits", burst32, false, true, 1, delay, false},
		{"2000/s: a lone job waits for company", stream2000, true, true, 1, delay, false},
		{"2000/s: 16 rows with 1ms left go", stream2000, true, true, 16, time.Millisecond, true},
		{"2000/s: 26 rows wait while the rest would fill the batch", stream2000, true, true, 26, 4 * time.Millisecond, false},
		{"burst load over, lone jobs again", burstThenLone, true, true, 1, delay, true},
		{"full batch", burst32, true, true, maxRows, delay, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newArrivals(delay)
			now := time.Unix(1000, 0)
			for _, h := range c.past {
				now = h.replay(a, now)
			}
			rate, known := a.rate(now)
			if got := closeIdle(c.workerWaits, c.drained, c.rows, maxRows, rate, known, c.left); got != c.want {
				t.Errorf("closeIdle = %v, want %v (rate %.0f jobs/s, %.2f expected in %v)", got, c.want, rate, rate*c.left.Seconds(), c.left)
			}
		})
	}
}

// TestArrivalsRate: the estimate matches the rate at which jobs join open
// batches, not the rate of all arrivals.
func TestArrivalsRate(t *testing.T) {
	const delay = 5 * time.Millisecond
	cases := []struct {
		name     string
		h        history
		min, max float64
	}{
		{"lone jobs", history{batches: 500, jobs: 1, open: time.Millisecond, every: 2 * time.Millisecond}, 0, 0},
		{"10 jobs 200µs apart per batch", history{batches: 200, jobs: 10, gap: 200 * time.Microsecond, open: 2 * time.Millisecond, every: 3 * time.Millisecond}, 4000, 5000},
		{"2 jobs 1ms apart, batches open 5ms", history{batches: 200, jobs: 2, gap: time.Millisecond, open: 5 * time.Millisecond, every: 20 * time.Millisecond}, 150, 250},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newArrivals(delay)
			now := c.h.replay(a, time.Unix(1000, 0))
			if r, _ := a.rate(now); r < c.min || r > c.max {
				t.Errorf("rate %.1f/s, want %.0f to %.0f", r, c.min, c.max)
			}
		})
	}
}

func TestWaitPays(t *testing.T) {
	cases := []struct {
		rows, max int64
		rate      float64
		left      time.Duration
		want      bool
	}{
		{1, 32, 0, 5 * time.Millisecond, false},
		{1, 32, 199, 5 * time.Millisecond, false}, // 0.995 expected: not one more job
		{1, 32, 200, 5 * time.Millisecond, true},  // one more: the batch doubles
		{8, 32, 1000, 5 * time.Millisecond, false},
		{8, 32, 1600, 5 * time.Millisecond, true},
		{24, 32, 1600, 5 * time.Millisecond, true}, // 8 more fill it
		{24, 32, 1000, 5 * time.Millisecond, false},
		{32, 32, 1e9, 5 * time.Millisecond, false}, // full
		{1, 32, 1e9, 0, false},                     // the delay is over
	}
	for _, c := range cases {
		if got := waitPays(c.rows, c.max, c.rate, c.left); got != c.want {
			t.Errorf("waitPays(%d of %d, %.0f/s, %v) = %v, want %v", c.rows, c.max, c.rate, c.left, got, c.want)
		}
	}
}
