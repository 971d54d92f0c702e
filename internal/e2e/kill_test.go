package e2e

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
)

// TestTenThousandJobsWhileWorkersDie runs 10,000 jobs through the whole
// stack (Redis results store) while a worker is killed (connection dropped
// mid-batch, nothing acked) and replaced every 300ms. Every job ends in
// exactly one terminal status, succeeded, with its own output, and the
// results store applies exactly one terminal change per job.
func TestTenThousandJobsWhileWorkersDie(t *testing.T) {
	const jobs = 10000
	s := startComponents(t, true, brokerOnly, func(c *config.Config) {
		c.NATS.AckWait = config.D(2 * time.Second) // a dead worker's batches come back soon
		m, _ := c.Model("identity")
		m.Queue.MaxQueued = 10 * jobs
		c.Models = []config.Model{*m}
	})
	models := s.Cfg.Models

	terminal := watchTerminal(t, s, "identity")
	applied := watchApplied(t, s)

	agents := []*testAgent{startAgent(t, s, "w0", models, nil), startAgent(t, s, "w1", models, nil), startAgent(t, s, "w2", models, nil)}
	stop, killed := make(chan struct{}), make(chan int)
	go func() { // the killer: owns agents until it reports
		n := 0
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				killed <- n
				return
			case <-tick.C:
				k := n % len(agents)
				agents[k].kill()
				n++
				agents[k] = startAgent(t, s, fmt.Sprintf("w%d-%d", k, n), models, nil)
			}
		}
	}()

	ids := make([]string, jobs)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for k := int(next.Add(1) - 1); k < jobs; k = int(next.Add(1) - 1) {
				ids[k] = s.submit(t, "identity", pairBody(k)).ID
			}
		})
	}
	wg.Wait()
	time.Sleep(time.Second) // keep killing while the tail of the work runs
	close(stop)
	kills := <-killed
	if kills < 5 {
		t.Errorf("only %d workers killed", kills)
	}

	next.Store(0)
	var bad atomic.Int64
	for range 32 {
		wg.Go(func() {
			for k := int(next.Add(1) - 1); k < jobs; k = int(next.Add(1) - 1) {
				rec, err := s.waitErr(ids[k])
				if err == nil {
					err = checkPair(rec, k)
				}
				if err != nil && bad.Add(1) <= 10 {
					t.Errorf("job %d (%s): %v", k, ids[k], err)
				}
			}
		})
	}
	wg.Wait()
	settle(t, s, "identity")
	applied.waitSeen(t, ids)
	for k, id := range ids {
		if st, ok := terminal.onlySucceeded(id); !ok {
			if bad.Add(1) <= 10 {
				t.Errorf("job %d: terminal events %v, want only succeeded", k, st)
			}
		}
		if st, ok := applied.only(id, "succeeded"); !ok {
			if bad.Add(1) <= 10 {
				t.Errorf("job %d (%s): terminal changes applied %v, want exactly one succeeded", k, id, st)
			}
		}
	}
	t.Logf("%d jobs, %d workers killed, %d bad", jobs, kills, bad.Load())
}
