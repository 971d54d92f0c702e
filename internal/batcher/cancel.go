package batcher

import (
	"sync"
	"time"
)

// cancelSet remembers recently cancelled jobs so the batcher can drop them
// before packing. It is bounded: entries older than keepFor are pruned.
// A batcher that restarts forgets it; such a job may still run, but its
// record stays cancelled (statuses only move forward).
type cancelSet struct {
	mu  sync.Mutex
	ids map[string]time.Time
}

const (
	keepFor = time.Hour
	pruneAt = 10000
)

func newCancelSet() *cancelSet { return &cancelSet{ids: map[string]time.Time{}} }

func (s *cancelSet) add(id string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) >= pruneAt {
		for k, t := range s.ids {
			if now.Sub(t) > keepFor {
				delete(s.ids, k)
			}
		}
	}
	s.ids[id] = now
}

func (s *cancelSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}
