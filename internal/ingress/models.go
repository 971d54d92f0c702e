package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/scaling"
	"github.com/inferq/inferq/pkg/jetstream"
)

// Stats are a model's live queue figures, read from JetStream.
type Stats struct {
	Queued         uint64 `json:"queued"`          // jobs not yet batched (batcher consumer pending + ack pending)
	BatchesPending uint64 `json:"batches_pending"` // batches waiting for a worker
	InFlight       uint64 `json:"in_flight"`       // batches a worker holds
	LiveWorkers    int    `json:"live_workers"`    // heartbeats in the workers bucket
	// RecentBatchSizes are the jobs in each of the model's last (up to 32)
	// batches, oldest first, as this ingress saw them published.
	RecentBatchSizes []int `json:"recent_batch_sizes"`
	// DesiredReplicas is what the shipped KEDA ScaledObject asks for
	// (internal/scaling): one worker per max_batch_size jobs waiting in the
	// busiest priority, and one while any batch waits or runs.
	DesiredReplicas uint64 `json:"desired_replicas"`
	// Generation sums a generate model's workers' heartbeat figures
	// (absent for tensor models).
	Generation *GenerationStats `json:"generation,omitempty"`
	// queuedP is Queued by priority, as the scaler's triggers see it.
	queuedP [jetstream.MaxPriority - jetstream.MinPriority + 1]uint64
}

// statsCache keeps each model's last stats so that checking max_queued
// costs no JetStream API call on most requests. Its lock is never held
// across I/O: one goroutine per model refreshes a stale entry while callers
// use the last value, so a slow JetStream (a frozen cluster node answers
// consumer-info calls after seconds) does not stall every submission.
type statsCache struct {
	mu    sync.Mutex
	ttl   time.Duration // an entry older than this is refreshed
	wait  time.Duration // how long the caller that starts a refresh waits for it
	byMod map[string]*statsEntry
}

// statsEntry is one model's last reading.
type statsEntry struct {
	s       Stats
	at      time.Time     // when s was read; zero until a read succeeds
	err     error         // the last refresh's error, nil once one succeeds
	running chan struct{} // closed when the refresh in flight ends; nil when none runs
}

// statsRefreshTimeout bounds one refresh: a refresh that hangs longer gives
// up, and the next caller starts another.
const statsRefreshTimeout = 10 * time.Second

// stats returns a model's figures, read at most once per cache period.
// A stale entry is refreshed in the background: the caller that starts the
// refresh waits for it up to the cache's short wait, every other caller
// takes the last value at once. Only while no value was ever read does a
// caller wait for the refresh (until ctx ends), so that max_queued is never
// judged on an empty reading.
func (i *Ingress) stats(ctx context.Context, model string) (Stats, error) {
	c := &i.cache
	c.mu.Lock()
	if c.byMod == nil {
		c.byMod = map[string]*statsEntry{}
	}
	e := c.byMod[model]
	if e == nil {
		e = &statsEntry{}
		c.byMod[model] = e
	}
	known := !e.at.IsZero()
	if known && time.Since(e.at) < c.ttl {
		s := e.s
		c.mu.Unlock()
		return s, nil
	}
	done, started := e.running, false
	if done == nil {
		done, started = make(chan struct{}), true
		e.running = done
		go i.refreshStats(model, e, done)
	}
	s, err := e.s, e.err
	c.mu.Unlock()
	if known && !started {
		return s, err // another caller is refreshing: the last value serves
	}
	var timeout <-chan time.Time
	if known {
		t := time.NewTimer(c.wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-done:
	case <-timeout:
		return s, err
	case <-ctx.Done():
		if known {
			return s, err
		}
		return Stats{}, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.at.IsZero() && e.err == nil {
		return Stats{}, errors.New("model stats: not read yet")
	}
	return e.s, e.err
}

// refreshStats reads a model's stats into e, without the cache's lock, and
// closes done when e holds the outcome.
func (i *Ingress) refreshStats(model string, e *statsEntry, done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), statsRefreshTimeout)
	defer cancel()
	start := time.Now()
	s, err := i.readStats(ctx, model)
	if err != nil {
		err = fmt.Errorf("model %s stats: %w", model, err)
	}
	if d := time.Since(start); d > time.Second {
		i.opt.Log.Warn("model stats slow", "model", model, "took", d, "err", err)
	}
	c := &i.cache
	c.mu.Lock()
	if err == nil {
		e.s, e.at = s, time.Now()
	}
	e.err = err
	e.running = nil
	c.mu.Unlock()
	close(done)
}

// readStatsJS reads a model's figures from JetStream: its batcher
// consumers, its worker consumer and the workers' heartbeat bucket.
func (i *Ingress) readStatsJS(ctx context.Context, model string) (Stats, error) {
	var s Stats
	t := i.opt.Topology
	for p, name := range jetstream.BatcherConsumers(model) { // one per priority
		b, err := i.opt.JS.Consumer(ctx, t.JobsStream(), name)
		if err != nil {
			return s, err
		}
		bi, err := b.Info(ctx)
		if err != nil {
			return s, err
		}
		s.queuedP[p] = bi.NumPending + uint64(bi.NumAckPending)
		s.Queued += s.queuedP[p]
	}
	w, err := i.opt.JS.Consumer(ctx, t.BatchesStream(), jetstream.WorkerConsumer(model))
	if err != nil {
		return s, err
	}
	wi, err := w.Info(ctx)
	if err != nil {
		return s, err
	}
	s.BatchesPending, s.InFlight = wi.NumPending, uint64(wi.NumAckPending)
	if kv, err := i.opt.JS.KeyValue(ctx, t.WorkersBucket()); err == nil {
		if keys, err := kv.ListKeysFiltered(ctx, jetstream.WorkerKeyModel(model)+".>"); err == nil {
			var beats [][]byte
			for k := range keys.Keys() {
				s.LiveWorkers++
				if e, err := kv.Get(ctx, k); err == nil {
					beats = append(beats, e.Value())
				}
			}
			s.Generation = sumGeneration(beats)
		}
	}
	maxBatch := 1
	if m, ok := i.servedModel(model); ok {
		maxBatch = m.Batching.MaxBatchSize
	}
	s.DesiredReplicas = scaling.DesiredReplicas(maxBatch, s.queuedP, s.BatchesPending+s.InFlight)
	return s, nil
}

// GenerationStats are a generate model's figures summed over its live
// workers' heartbeats (the agent's Heartbeat.generation; the ingress keeps
// its own copy of the shape, as it does not link the agent).
type GenerationStats struct {
	Continuous      bool    `json:"continuous"`
	RunningSeqs     int     `json:"running_seqs"`
	FreeSlots       int     `json:"free_slots"`
	TokensPerSecond float64 `json:"tokens_per_second"`
	TTFTMillis      float64 `json:"ttft_ms"`        // mean over the workers that saw a first token
	InterTokenMs    float64 `json:"inter_token_ms"` // mean over the workers that saw tokens
}

// sumGeneration adds up the generation figures of heartbeats (JSON); nil
// when none has any.
func sumGeneration(beats [][]byte) *GenerationStats {
	var out *GenerationStats
	var ttftN, itlN int
	for _, b := range beats {
		var hb struct {
			Generation *GenerationStats `json:"generation"`
		}
		if json.Unmarshal(b, &hb) != nil || hb.Generation == nil {
			continue
		}
		g := hb.Generation
		if out == nil {
			out = &GenerationStats{}
		}
		out.Continuous = out.Continuous || g.Continuous
		out.RunningSeqs += g.RunningSeqs
		out.FreeSlots += g.FreeSlots
		out.TokensPerSecond += g.TokensPerSecond
		if g.TTFTMillis > 0 {
			out.TTFTMillis += g.TTFTMillis
			ttftN++
		}
		if g.InterTokenMs > 0 {
			out.InterTokenMs += g.InterTokenMs
			itlN++
		}
	}
	if out != nil && ttftN > 0 {
		out.TTFTMillis /= float64(ttftN)
	}
	if out != nil && itlN > 0 {
		out.InterTokenMs /= float64(itlN)
	}
	return out
}

// checkQueue refuses a job (503 + Retry-After) when the model already has
// max_queued jobs waiting. It is checked against the model's consumers, not
// the stream: INFERQ_JOBS also keeps finished jobs for replay.
func (i *Ingress) checkQueue(ctx context.Context, m *config.Model) error {
	s, err := i.stats(ctx, m.Name)
	if err != nil {
		// Publishing will tell whether JetStream is really down.
		i.opt.Log.Warn("queue depth unknown", "model", m.Name, "err", err)
		return nil
	}
	if s.Queued >= uint64(m.Queue.MaxQueued) {
		i.metrics.jobsRejected.WithLabelValues(m.Name, "queue_full").Inc()
		return &retryLater{apiError(http.StatusServiceUnavailable, "queue_full",
			"model "+strconv.Quote(m.Name)+" has "+strconv.FormatUint(s.Queued, 10)+" jobs queued (max_queued "+strconv.Itoa(m.Queue.MaxQueued)+"); retry later"), 1}
	}
	return nil
}

// ModelInfo is a model's config and live stats, for GET /v1/models.
type ModelInfo struct {
	Name     string          `json:"name"`
	Version  string          `json:"version"`
	Kind     string          `json:"kind"`
	Test     bool            `json:"test_model"` // a built-in test model, not real inference
	Inputs   []config.Tensor `json:"inputs"`
	Outputs  []config.Tensor `json:"outputs"`
	Batching map[string]any  `json:"batching"`
	Queue    map[string]any  `json:"queue"`
	// Parameters are the request parameters the model takes besides the
	// broker's priority, timeout_ms and stream; any other is refused.
	Parameters []config.Parameter `json:"parameters"`
	// Workers is how many workers serving the model are alive (the same
	// count as stats.live_workers), always present: 0 says its jobs wait.
	Workers int    `json:"workers"`
	Stats   *Stats `json:"stats"`
	// Versions are the model's versions in the live registry, draining
	// ones too; absent when the registry is off. The fields above are the
	// default version's.
	Versions []VersionInfo `json:"versions,omitempty"`
}

func (i *Ingress) modelInfo(ctx context.Context, m *config.Model) ModelInfo {
	info := ModelInfo{Name: modelOf(m.Name), Version: m.Version, Kind: m.Kind, Test: m.Runner.Builtin != "",
		Inputs: m.Inputs, Outputs: m.Outputs,
		Batching: map[string]any{"max_batch_size": m.Batching.MaxBatchSize, "preferred_batch_sizes": m.Batching.PreferredBatchSizes,
			"max_queue_delay": m.Batching.MaxQueueDelay.String(), "ragged": m.Batching.Ragged},
		Queue: map[string]any{"max_queued": m.Queue.MaxQueued, "default_timeout": m.Queue.DefaultTimeout.String(),
			"max_deliver": m.Queue.MaxDeliver},
		Parameters: m.Parameters}
	if info.Parameters == nil {
		info.Parameters = []config.Parameter{}
	}
	if s, err := i.stats(ctx, m.Name); err == nil {
		s.RecentBatchSizes = i.recent.get(m.Name)
		info.Stats = &s
		info.Workers = s.LiveWorkers
	}
	return info
}

// listModels handles GET /v1/models.
func (i *Ingress) listModels(c echo.Context) error {
	listed := i.listedModels()
	out := make([]ModelInfo, 0, len(listed))
	for _, l := range listed {
		out = append(out, i.listedInfo(c.Request().Context(), l))
	}
	return c.JSON(http.StatusOK, map[string]any{"models": out})
}

// listedInfo is a listed model's info, with its versions' live figures.
func (i *Ingress) listedInfo(ctx context.Context, l listedModel) ModelInfo {
	info := i.modelInfo(ctx, l.m)
	for _, v := range l.versions {
		if s, err := i.stats(ctx, v.Served); err == nil {
			s.RecentBatchSizes = i.recent.get(v.Served)
			v.Stats, v.Workers = &s, s.LiveWorkers
		}
		info.Versions = append(info.Versions, v)
	}
	return info
}

// getModel handles GET /v1/models/{model}.
func (i *Ingress) getModel(c echo.Context) error {
	name := c.Param("model")
	for _, l := range i.listedModels() {
		if modelOf(l.m.Name) == name {
			return c.JSON(http.StatusOK, i.listedInfo(c.Request().Context(), l))
		}
	}
	return apiError(http.StatusNotFound, "not_found", "model "+strconv.Quote(name)+" not found")
}

// model is the config of the path's model and version (the default one
// when the path names none).
func (i *Ingress) model(c echo.Context) (*config.Model, error) {
	return i.findModel(c.Param("model"), c.Param("version"))
}

// oipTensor is a tensor's metadata in the OIP model metadata response.
type oipTensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func oipTensors(ts []config.Tensor) []oipTensor {
	out := make([]oipTensor, len(ts))
	for k, t := range ts {
		dt := t.Datatype
		if dt == "" {
			dt = "ANY" // the test models accept every datatype
		}
		out[k] = oipTensor{Name: t.Name, Datatype: dt, Shape: append([]int64{-1}, t.Dims...)}
	}
	return out
}

// modelMetadata handles GET /v2/models/{model}[/versions/{v}] (OIP).
func (i *Ingress) modelMetadata(c echo.Context) error {
	m, err := i.model(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"name": modelOf(m.Name), "versions": i.liveVersions(modelOf(m.Name)),
		"platform": platform(m), "inputs": oipTensors(m.Inputs), "outputs": oipTensors(m.Outputs)})
}

// platform names the model's framework in OIP metadata and Triton config.
func platform(m *config.Model) string { return "inferq_" + strings.ReplaceAll(m.Kind, "-", "_") }

// modelReady handles GET /v2/models/{model}[/versions/{v}]/ready: ready
// while at least one worker for it is alive. Not ready is 400, as the OIP
// health rule (200 true, 4xx false) and Triton have it.
func (i *Ingress) modelReady(c echo.Context) error {
	m, err := i.model(c)
	if err != nil {
		return err
	}
	s, err := i.stats(c.Request().Context(), m.Name)
	ready := err == nil && s.LiveWorkers > 0
	status := http.StatusOK
	if !ready {
		status = http.StatusBadRequest
	}
	return c.JSON(status, map[string]any{"name": modelOf(m.Name), "ready": ready})
}
