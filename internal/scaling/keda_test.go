package scaling_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/natsembed"
	"github.com/inferq/inferq/internal/scaling"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/stack/stacktest"
	"github.com/inferq/inferq/pkg/jetstream"
)

// jsz is the part of nats-server's /jsz answer that KEDA's nats-jetstream
// scaler decodes (pkg/scalers/nats_jetstream_scaler.go).
type jsz struct {
	Accounts []struct {
		Name    string `json:"name"`
		Streams []struct {
			Name  string `json:"name"`
			State struct {
				LastSequence int64 `json:"last_seq"`
			} `json:"state"`
			Consumers []struct {
				Name          string `json:"name"`
				NumAckPending int    `json:"num_ack_pending"`
				NumPending    int    `json:"num_pending"`
			} `json:"consumer_detail"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

// kedaLag reads one trigger's lag as KEDA does: GET /jsz?acc=<account>
// &consumers=true&config=true on the monitoring endpoint, then the
// consumer's NumPending + NumAckPending in the stream, or the stream's last
// sequence when the consumer is missing (KEDA's getMaxMsgLag).
func kedaLag(t *testing.T, monitor, account string, tr scaling.Trigger) uint64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s/jsz?acc=%s&consumers=true&config=true", monitor, account))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var j jsz
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
		t.Fatalf("decode /jsz: %v", err)
	}
	for _, a := range j.Accounts {
		if a.Name != account {
			continue
		}
		for _, s := range a.Streams {
			if s.Name != tr.Stream {
				continue
			}
			for _, c := range s.Consumers {
				if c.Name == tr.Consumer {
					return uint64(c.NumPending + c.NumAckPending)
				}
			}
			return uint64(s.State.LastSequence)
		}
	}
	t.Fatalf("stream %s not in /jsz of account %s", tr.Stream, account)
	return 0
}

// reading is one poll of the scaler: the new triggers' replicas, the old
// single trigger's (workers-<model>, lagThreshold 4) and the ingress's
// desired_replicas.
type reading struct {
	queued           uint64 // lag of the three batcher consumers together
	desired, old     uint64
	ingress, workers uint64
}

// TestKEDAFollowsBacklog reproduces KEDA's nats-jetstream computation
// against a real backlog: an embedded NATS with its monitoring port, the
// ingress and batcher, and two workers of a simulated GPU that takes 2 s a
// batch of 8. Jobs are submitted in three waves; after each, the replicas
// the ScaledObject's triggers ask for (scaling.Triggers, read from /jsz
// exactly as KEDA reads them) rise with the backlog, the ingress's
// desired_replicas agrees, while the old trigger on workers-<model> stays
// at one or two replicas whatever the backlog (its lag counts the batches
// the workers hold, plus at most one whose ack a worker holds back).
func TestKEDAFollowsBacklog(t *testing.T) {
	srv, err := natsembed.Run(natsembed.Config{Port: -1, MonitorPort: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	monitor := srv.Server.MonitorAddr().String()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	const model, batch = "simgpu", 8
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL = srv.ClientURL()
	for k := range cfg.Models {
		if m := &cfg.Models[k]; m.Name == model {
			m.Runner.Params = map[string]any{"a": "2s", "b": "0s"}
			m.Batching.MaxBatchSize = batch
			m.Queue.DefaultTimeout = config.D(10 * time.Minute)
		}
	}
	cfg.Worker.Models = []string{model}
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	w2 := cfg
	cfg.Worker.Name, w2.Worker.Name = "gpu-1", "gpu-2"
	url := stacktest.Start(t, &cfg, nc, stack.Components{Ingress: true, Batcher: true, ResultSvc: true, Worker: true})
	stacktest.Start(t, &w2, nc, stack.Components{Worker: true})

	topo := jetstream.DefaultTopology()
	topo.Prefix = cfg.NATS.Prefix
	triggers := scaling.Triggers(topo, model, batch)
	old := scaling.Trigger{Stream: topo.BatchesStream(), Consumer: jetstream.WorkerConsumer(model), LagThreshold: 4}

	read := func() reading {
		var r reading
		lags := map[string]uint64{}
		for _, tr := range triggers {
			lags[tr.Consumer] = kedaLag(t, monitor, "$G", tr)
			if tr.Stream == topo.JobsStream() {
				r.queued += lags[tr.Consumer]
			}
		}
		r.desired = scaling.Desired(triggers, lags)
		r.old = old.Replicas(kedaLag(t, monitor, "$G", old))
		var info struct {
			Workers int `json:"workers"`
			Stats   struct {
				Desired uint64 `json:"desired_replicas"`
			} `json:"stats"`
		}
		resp, err := http.Get(url + "/v1/models/" + model)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
			t.Fatal(err)
		}
		r.ingress, r.workers = info.Stats.Desired, uint64(info.Workers)
		return r
	}
	if r := read(); r.desired != 0 || r.queued != 0 {
		t.Fatalf("idle: desired %d, queued %d; want 0 (the pool may go to zero)", r.desired, r.queued)
	}

	submit := func(n int) {
		var wg sync.WaitGroup
		jobs := make(chan struct{}, n)
		for range n {
			jobs <- struct{}{}
		}
		close(jobs)
		for range 8 {
			wg.Go(func() {
				for range jobs {
					resp, err := http.Post(url+"/v1/models/"+model+"/jobs", "application/json",
						strings.NewReader(`{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP32","data":[1]}]}`))
					if err != nil {
						t.Error(err)
						return
					}
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						t.Errorf("submit: %d", resp.StatusCode)
					}
				}
			})
		}
		wg.Wait()
	}
	var last reading
	for wave, n := range []int{40, 160, 240} {
		submit(n)
		time.Sleep(300 * time.Millisecond) // the ingress's stats cache (250 ms) catches up
		r := read()
		t.Logf("after wave %d (+%d jobs): batcher consumers' lag %d, desired %d replicas (ingress says %d), old trigger %d, live workers %d",
			wave+1, n, r.queued, r.desired, r.ingress, r.old, r.workers)
		if want := (r.queued + batch - 1) / batch; r.desired != want {
			t.Errorf("wave %d: desired %d for %d queued jobs; want ceil(queued/max_batch_size) = %d", wave+1, r.desired, r.queued, want)
		}
		if r.desired <= last.desired {
			t.Errorf("wave %d: desired %d did not rise from %d with the backlog (%d -> %d jobs)", wave+1, r.desired, last.desired, last.queued, r.queued)
		}
		// The two readings are a few milliseconds apart while the
		// workers take 8 jobs per 2 s each: at most one batch apart.
		if diff := int64(r.ingress) - int64(r.desired); diff < -1 || diff > 1 {
			t.Errorf("wave %d: /v1/models desired_replicas %d, KEDA's computation %d", wave+1, r.ingress, r.desired)
		}
		if r.old > 2 {
			t.Errorf("wave %d: the workers-consumer trigger asks for %d; it was expected to stay at 1 or 2 (the gate keeps its lag small)", wave+1, r.old)
		}
		last = r
	}
	if last.desired < 40 {
		t.Errorf("with %d jobs queued the scaler asks for only %d replicas", last.queued, last.desired)
	}
}
