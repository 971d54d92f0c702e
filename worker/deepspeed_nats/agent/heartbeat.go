package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/pkg/jetstream"
)

// Heartbeat is a worker's entry in the workers bucket (inferq_workers),
// under HeartbeatKey: rewritten every WorkerTTL/3 while the worker serves
// the model, deleted when it stops, and expired by the bucket's TTL when it
// dies, so the bucket's keys are the live workers.
type Heartbeat struct {
	Model  string `json:"model"`
	Worker string `json:"worker"`
	// Device is where the runner executes: "cuda:N" when it reported CUDA,
	// else "cpu"; empty while the runner is still loading (Ready false).
	Device      string    `json:"device"`
	Ready       bool      `json:"ready"`
	Error       string    `json:"error,omitempty"` // why the model did not load, while not ready
	Capacity    int       `json:"capacity"`        // largest batch it takes
	MaxInflight int       `json:"max_inflight"`    // batches it holds at once
	InFlight    int       `json:"in_flight"`
	Batches     uint64    `json:"batches"` // settled since it started
	Time        time.Time `json:"time"`
	// Generation is set for generate models (nil for tensor models).
	Generation *Generation `json:"generation,omitempty"`
}

// Generation is a generate model's figures in a heartbeat; the rates and
// means are over the period since the worker's previous heartbeat.
type Generation struct {
	Continuous      bool    `json:"continuous"`   // batching.continuous
	RunningSeqs     int     `json:"running_seqs"` // sequences in hand (continuous)
	FreeSlots       int     `json:"free_slots"`   // sequence slots free (continuous)
	TokensPerSecond float64 `json:"tokens_per_second"`
	TTFTMillis      float64 `json:"ttft_ms"`        // mean time from acceptance to first token
	InterTokenMs    float64 `json:"inter_token_ms"` // mean time between tokens
}

// HeartbeatKey is a worker's key in the workers bucket: <model>.<worker>,
// with characters a key cannot hold replaced by '_'.
func HeartbeatKey(model, worker string) string {
	return jetstream.WorkerKeyModel(model) + "." + sanitizeKey(worker)
}

// heartbeat keeps the agent's entry for m alive until ctx ends. It checks
// the runner often while it loads, so the entry says ready (and on which
// device) as soon as the model is loaded, not a whole period later.
func (a *Agent) heartbeat(ctx context.Context, m *config.Model, r Runner) error {
	kv, err := a.opt.JS.KeyValue(ctx, a.opt.Topology.WorkersBucket())
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a shutdown, not a failure
		}
		return fmt.Errorf("worker %s: workers bucket: %w", m.Name, err)
	}
	key := HeartbeatKey(m.Name, a.opt.Name)
	every := a.opt.Topology.WorkerTTL / 3
	if every <= 0 {
		every = 5 * time.Second
	}
	poll := min(every, 250*time.Millisecond)
	var last time.Time
	ready, failure := false, ""
	win := &genWindow{at: time.Now()}
	for {
		hb := a.describe(m, r)
		if hb.Generation != nil {
			if time.Since(last) >= every {
				win.fill(a.stats[m.Name])
			}
			hb.Generation.TokensPerSecond, hb.Generation.TTFTMillis, hb.Generation.InterTokenMs = win.rate, win.ttftMs, win.ms
		}
		if hb.Ready != ready || hb.Error != failure || time.Since(last) >= every {
			v, err := json.Marshal(hb)
			if err != nil {
				return fmt.Errorf("worker %s: heartbeat: %w", m.Name, err)
			}
			if _, err := kv.Put(ctx, key, v); err != nil {
				if ctx.Err() == nil {
					a.opt.Log.Warn("heartbeat failed", "model", m.Name, "worker", a.opt.Name, "err", err)
				}
			} else {
				last, ready, failure = time.Now(), hb.Ready, hb.Error
			}
		}
		if !sleep(ctx, poll) {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = kv.Delete(dctx, key)
			return nil
		}
	}
}

// describe is the agent's current heartbeat for m.
func (a *Agent) describe(m *config.Model, r Runner) Heartbeat {
	info := RunnerInfo{Ready: true, Device: "cpu"}
	if d, ok := r.(Describer); ok {
		info = d.Describe()
	}
	capacity := m.Batching.MaxBatchSize
	if info.Capacity > 0 {
		capacity = min(capacity, info.Capacity)
	}
	device := ""
	if info.Ready {
		device = DeviceName(info.Device)
	}
	st := a.Stats(m.Name)
	hb := Heartbeat{Model: m.Name, Worker: a.opt.Name, Device: device, Ready: info.Ready, Capacity: capacity, Error: info.Error,
		MaxInflight: a.inflight(r), InFlight: st.InFlight, Batches: st.Batches, Time: a.now().UTC()}
	if m.Kind == config.KindGenerate {
		hb.Generation = &Generation{}
		if js, ok := r.(JobStreamer); ok && js.Continuous() && a.slots[m.Name] != nil {
			sl := a.slots[m.Name]
			hb.Capacity, hb.MaxInflight = sl.max, sl.max
			hb.Generation.Continuous, hb.Generation.RunningSeqs, hb.Generation.FreeSlots = true, sl.running(), sl.free()
		}
	}
	return hb
}

// genWindow turns the model's running totals into per-heartbeat figures.
type genWindow struct {
	at               time.Time
	tokens           uint64
	ttft, itl        time.Duration
	ttftN, itlN      int64
	rate, ttftMs, ms float64
}

// fill computes the rate and means over the time since the last fill (the
// last means stand while nothing new was observed).
func (w *genWindow) fill(c *counters) {
	now := time.Now()
	tokens := c.tokens.Load()
	ttft, ttftN := c.ttft.load()
	itl, itlN := c.itl.load()
	if dt := now.Sub(w.at).Seconds(); dt > 0 {
		w.rate = float64(tokens-w.tokens) / dt
	}
	if ttftN > w.ttftN {
		w.ttftMs = float64(ttft-w.ttft) / float64(ttftN-w.ttftN) / 1e6
	}
	if itlN > w.itlN {
		w.ms = float64(itl-w.itl) / float64(itlN-w.itlN) / 1e6
	}
	w.at, w.tokens, w.ttft, w.ttftN, w.itl, w.itlN = now, tokens, ttft, ttftN, itl, itlN
}

// DeviceName is the heartbeat's form of a runner's device: "cuda:N" for a
// CUDA device (torch names the default one plain "cuda"), else "cpu".
func DeviceName(d string) string {
	d = strings.ToLower(strings.TrimSpace(d))
	switch {
	case d == "cuda":
		return "cuda:0"
	case strings.HasPrefix(d, "cuda:"):
		return d
	}
	return "cpu"
}

func sanitizeKey(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
