package ingress

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/inferq/inferq/pkg/jetstream"
)

// recentBatches keeps the sizes of the last batches of each model, fed by
// the batchers' notices on the batched subject. They are a live view, not
// a record: an ingress started after a batch does not know it.
type recentBatches struct {
	mu    sync.Mutex
	sizes map[string][]int // per model, oldest first, at most keep
	keep  int
}

func (r *recentBatches) add(model string, jobs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sizes == nil {
		r.sizes = map[string][]int{}
	}
	s := r.sizes[model]
	if len(s) == r.keep {
		s = append(s[:0], s[1:]...)
	}
	r.sizes[model] = append(s, jobs)
}

// get returns a copy of the model's recent sizes, oldest first.
func (r *recentBatches) get(model string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int{}, r.sizes[model]...)
}

// watchBatches feeds i.recent until the returned subscription is dropped.
func (i *Ingress) watchBatches() (*nats.Subscription, error) {
	known := map[string]bool{}
	for _, m := range i.opt.Config.Models {
		known[m.Name] = true
	}
	sub, err := i.opt.JS.Conn().Subscribe(i.opt.Topology.BatchedFilter(), func(msg *nats.Msg) {
		var n jetstream.BatchNotice
		if json.Unmarshal(msg.Data, &n) != nil || n.Jobs <= 0 {
			return
		}
		if _, served := i.servedModel(n.Model); !known[n.Model] && !served {
			return // bounded: only served models are kept
		}
		i.recent.add(n.Model, n.Jobs)
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to batch notices: %w", err)
	}
	return sub, nil
}
