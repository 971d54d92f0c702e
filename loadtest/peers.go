package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The -compare peers carry the same request bodies as inferq and their
// workers run peerAnswer, which decodes the OIP request, runs the test model
// and encodes an OIP response, so the peers differ from inferq only in how
// a job travels and where its result waits. They have no batching (one job
// is one task or message), but jetstream-stages-http, which has inferq's
// stages.

// simGPU is the peers' stand-in for inferq's simgpu test model: the same
// cost per call, a + b·rows, on devices that each run one call at a time.
// The peers do not batch, so every job is a call of one row. A pipeline has
// -peer-gpus of them (1, as `inferq dev` has one simgpu worker); its
// -peer-workers handlers queue for them as tasks would for a real GPU.
type simGPU struct {
	devices chan struct{} // a token per free device
	a, b    time.Duration
}

func newSimGPU(o options) *simGPU {
	return &simGPU{devices: make(chan struct{}, o.peerGPUs), a: o.simgpuA, b: o.simgpuB}
}

// call holds a device for one call of rows rows.
func (g *simGPU) call(ctx context.Context, rows int) error {
	select {
	case g.devices <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-g.devices }()
	t := time.NewTimer(g.a + time.Duration(rows)*g.b)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// peerRun is the peers' worker: simgpu's device time when the model is
// simgpu, then the model's answer.
func peerRun(ctx context.Context, gpu *simGPU, model string, body []byte) ([]byte, error) {
	if model == "simgpu" {
		if err := gpu.call(ctx, 1); err != nil {
			return nil, fmt.Errorf("simgpu: %w", err)
		}
	}
	return peerAnswer(model, body)
}

// peerAnswer computes the test model on one job (simgpu's answer is
// identity's; its cost is peerRun's).
func peerAnswer(model string, body []byte) ([]byte, error) {
	var req struct {
		Inputs []tensorJSON `json:"inputs"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%s: decode request: %w", model, err)
	}
	var outputs []tensorJSON
	switch model {
	case "simple":
		a, errA := int32Input(req.Inputs, "INPUT0")
		b, errB := int32Input(req.Inputs, "INPUT1")
		if errA != nil || errB != nil || len(a) != len(b) {
			return nil, fmt.Errorf("simple: want INPUT0 and INPUT1, INT32 of one shape (%v, %v)", errA, errB)
		}
		outputs = simpleOutputs(a, b)
	case "identity", "simgpu":
		i := slices.IndexFunc(req.Inputs, func(t tensorJSON) bool { return t.Name == "INPUT0" })
		if i < 0 {
			return nil, fmt.Errorf("identity: no INPUT0")
		}
		out := req.Inputs[i]
		out.Name = "OUTPUT0"
		outputs = []tensorJSON{out}
	default:
		return nil, fmt.Errorf("peers have no model %q", model)
	}
	return json.Marshal(map[string]any{"model_name": model, "outputs": outputs})
}

func int32Input(inputs []tensorJSON, name string) ([]int32, error) {
	i := slices.IndexFunc(inputs, func(t tensorJSON) bool { return t.Name == name })
	if i < 0 || inputs[i].Datatype != "INT32" {
		return nil, fmt.Errorf("no INT32 %s", name)
	}
	var v []int32
	if err := json.Unmarshal(inputs[i].Data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// checkPeerAnswer verifies a peer's response exactly as inferq's.
func checkPeerAnswer(j job, id string, answer []byte, done time.Time, submit time.Duration) outcome {
	var resp struct {
		Outputs []tensorJSON `json:"outputs"`
	}
	if err := json.Unmarshal(answer, &resp); err != nil {
		return outcome{kind: errWrongResult, detail: fmt.Sprintf("job %s: answer %.60q: %v", id, answer, err)}
	}
	if err := verifyAnswer(j, resp.Outputs); err != nil {
		return outcome{kind: errWrongResult, detail: "job " + id + ": " + err.Error()}
	}
	return outcome{done: done, submit: submit}
}

// waiters hands each job's completion notice to the goroutine waiting for
// it: one subscription per peer serves every job, as inferq's long-poll is
// served by one notification path.
type waiters struct {
	mu sync.Mutex
	m  map[string]chan []byte
}

func newWaiters() *waiters { return &waiters{m: map[string]chan []byte{}} }

// add registers id before its job is sent, so the notice cannot be missed.
func (w *waiters) add(id string) <-chan []byte {
	ch := make(chan []byte, 1)
	w.mu.Lock()
	w.m[id] = ch
	w.mu.Unlock()
	return ch
}

func (w *waiters) remove(id string) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

// deliver passes data to id's waiter; a duplicate or late notice is dropped.
func (w *waiters) deliver(id string, data []byte) {
	w.mu.Lock()
	ch := w.m[id]
	w.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- data:
	default:
	}
}

// jobIDs makes ids unique to this process run, so a reused -redis or a
// restarted peer never confuses one run's jobs with another's.
type jobIDs struct {
	prefix string
	n      atomic.Int64
}

func newJobIDs(system string) *jobIDs {
	return &jobIDs{prefix: system + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"}
}

func (g *jobIDs) next() string { return g.prefix + strconv.FormatInt(g.n.Add(1), 10) }

// A peer is one -compare baseline. Whether it goes through HTTP is part of
// its row in the table: inferq's client pays two HTTP requests per job, and
// a peer reached without HTTP does not.
type peer struct {
	name    string
	http    bool   // its client reaches it over an HTTP API, as inferq's does
	batches bool   // it runs jobs in batches, as inferq does
	kept    string // where a finished job's result waits for the client
	start   func(context.Context, options) (target, error)
}

// comparePeers are the -compare baselines, in the order they run.
var comparePeers = []peer{
	{name: "asynq", kept: "task result in Redis (ResultWriter)", start: startAsynq},
	{name: "asynq-http", http: true, kept: "task result in Redis (ResultWriter)", start: startAsynqHTTP},
	{name: "jetstream", kept: "not stored (core NATS reply)", start: startJetStream},
	{name: "jetstream-http", http: true, kept: "in the HTTP front door's memory until read", start: startJetStreamHTTP},
	{name: "jetstream-kv-http", http: true, kept: "in a JetStream KV bucket (file storage), and in memory until read", start: startJetStreamKVHTTP},
	{name: "jetstream-stages-http", http: true, batches: true, kept: "in a JetStream KV bucket (file storage) after a batch and an events stream, and in memory until read", start: startJetStreamStagesHTTP},
}

// peerNames lists the -compare baselines for flag help and errors.
func peerNames() []string {
	names := make([]string, len(comparePeers))
	for i, p := range comparePeers {
		names[i] = p.name
	}
	return names
}
