package ingress

import (
	"context"
	"errors"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inferq/inferq/pkg/jetstream"
)

// queueCollector exports each model's live queue figures at scrape time,
// from the same cached JetStream stats that GET /v1/models shows, so that
// alerts and autoscalers see what clients see.
type queueCollector struct {
	i                          *Ingress
	queued, workers, oldestAge *prometheus.Desc
}

func newQueueCollector(i *Ingress) *queueCollector {
	return &queueCollector{i: i,
		queued: prometheus.NewDesc("inferq_queue_jobs", "Jobs of the model not yet batched (queued).", []string{"model"}, nil),
		workers: prometheus.NewDesc("inferq_workers_live",
			"Workers with a live heartbeat serving the model.", []string{"model"}, nil),
		oldestAge: prometheus.NewDesc("inferq_queue_oldest_job_age_seconds",
			"Age of the model's oldest job not yet running (0 when none waits).", []string{"model"}, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queued
	ch <- c.workers
	ch <- c.oldestAge
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, m := range c.i.servedModels() {
		s, err := c.i.stats(ctx, m.Name)
		if err != nil {
			continue // unknown is absent, not zero
		}
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(s.Queued), m.Name)
		ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(s.LiveWorkers), m.Name)
		if age, err := c.i.oldestWaiting(ctx, m.Name, s); err == nil {
			ch <- prometheus.MustNewConstMetric(c.oldestAge, prometheus.GaugeValue, age.Seconds(), m.Name)
		}
	}
}

// oldestWaiting is the age of the model's oldest job that no worker runs
// yet: the first unacknowledged job of each priority consumer, and the first
// batch still waiting for a worker (a lower bound for its jobs).
func (i *Ingress) oldestWaiting(ctx context.Context, model string, s Stats) (time.Duration, error) {
	if s.Queued == 0 && s.BatchesPending == 0 {
		return 0, nil
	}
	t := i.opt.Topology
	var oldest time.Time
	first := func(stream, consumer, subject string) error {
		cons, err := i.opt.JS.Consumer(ctx, stream, consumer)
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil || info.NumPending+uint64(info.NumAckPending) == 0 {
			return err
		}
		st, err := i.opt.JS.Stream(ctx, stream)
		if err != nil {
			return err
		}
		msg, err := st.GetMsg(ctx, info.AckFloor.Stream+1, natsjs.WithGetMsgSubject(subject))
		if errors.Is(err, natsjs.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if oldest.IsZero() || msg.Time.Before(oldest) {
			oldest = msg.Time
		}
		return nil
	}
	for p := jetstream.MinPriority; p <= jetstream.MaxPriority; p++ {
		if err := first(t.JobsStream(), jetstream.BatcherPriorityConsumer(model, p), t.PriorityFilter(model, p)+".*"); err != nil {
			return 0, err
		}
	}
	if err := first(t.BatchesStream(), jetstream.WorkerConsumer(model), t.BatchSubject(model)); err != nil {
		return 0, err
	}
	if oldest.IsZero() {
		return 0, nil
	}
	return max(i.now().Sub(oldest), 0), nil
}
