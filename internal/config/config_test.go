package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultsServeTestModels(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range cfg.Models {
		names = append(names, m.Name)
	}
	if got := strings.Join(names, ","); got != "identity,simple,simgpu,repeat" {
		t.Errorf("models %s", got)
	}
	s, _ := cfg.Model("simple")
	if s.Kind != KindTensor || len(s.Inputs) != 2 || s.Inputs[0].Datatype != "INT32" || s.Inputs[0].Dims[0] != 16 ||
		s.Batching.MaxBatchSize != 32 || s.Queue.MaxDeliver != 3 || s.Version != "1" {
		t.Errorf("simple %+v", s)
	}
	g, _ := cfg.Model("simgpu")
	if g.Batching.MaxQueueDelay.D() != 2*time.Millisecond || !g.Batching.Ragged {
		t.Errorf("simgpu batching %+v", g.Batching)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load("../../docs/config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, ok := cfg.Model("tiny-gpt")
	if !ok || g.Kind != KindGenerate || g.Queue.DefaultTimeout.D() != time.Minute || len(g.Batching.PreferredBatchSizes) != 3 {
		t.Errorf("tiny-gpt %+v", g)
	}
	if !cfg.Auth.Enabled || len(cfg.Auth.APIKeys) != 1 || cfg.Auth.JWT.Audience != "inferq" {
		t.Errorf("auth %+v", cfg.Auth)
	}
	if cfg.Redis.URL == "" || cfg.Log.Format != "json" || len(cfg.Worker.Models) != 2 {
		t.Errorf("config %+v", cfg)
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg := Default()
	env := map[string]string{
		"INFERQ_NATS_URL": "nats://n:1", "INFERQ_REDIS_URL": "redis://r:2/0", "INFERQ_RESULTS_RETENTION": "1h",
		"INFERQ_NATS_REPLICAS": "3", "INFERQ_WORKER_MODELS": "a, b",
	}
	if err := cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.URL != "nats://n:1" || cfg.Redis.URL != "redis://r:2/0" || cfg.Results.Retention.D() != time.Hour ||
		cfg.NATS.Replicas != 3 || strings.Join(cfg.Worker.Models, "|") != "a|b" {
		t.Errorf("config %+v", cfg)
	}
	bad := map[string]string{"INFERQ_RESULTS_RETENTION": "soon"}
	if err := cfg.ApplyEnv(func(k string) (string, bool) { v, ok := bad[k]; return v, ok }); err == nil {
		t.Error("bad duration accepted")
	}
}

func TestInvalidConfigs(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown field", "natz: {}", "field natz not found"},
		{"bad model name", "models: [{name: Bad, runner: {builtin: simple}}]", `model "Bad": name must match`},
		{"no runner", "models: [{name: m, inputs: [{name: x, datatype: FP32, dims: [1]}]}]", "runner needs builtin or command"},
		{"bad datatype", "models: [{name: m, runner: {command: [x]}, inputs: [{name: x, datatype: FLOAT, dims: [1]}]}]", `unknown datatype "FLOAT"`},
		{"zero dim", "models: [{name: m, runner: {command: [x]}, inputs: [{name: x, datatype: FP32, dims: [0]}]}]", "must be -1 or positive"},
		{"preferred too big", "models: [{name: m, runner: {builtin: simple}, batching: {max_batch_size: 4, preferred_batch_sizes: [8]}}]", "preferred_batch_sizes: 8"},
		{"bad duration", "models: [{name: m, runner: {builtin: simple}, batching: {max_queue_delay: fast}}]", "fast"},
		{"duplicate", "models: [{name: m, runner: {builtin: simple}}, {name: m, runner: {builtin: simple}}]", "defined twice"},
		{"unknown builtin", "models: [{name: m, runner: {builtin: nope}}]", `unknown builtin test model "nope"`},
		{"worker model", "worker: {models: [x]}\nmodels: [{name: m, runner: {builtin: simple}}]", `"x" is not a configured model`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestBackoffFor(t *testing.T) {
	q := Queue{Backoff: []Duration{D(time.Second), D(5 * time.Second)}}
	for n, want := range map[uint64]time.Duration{0: time.Second, 1: time.Second, 2: 5 * time.Second, 9: 5 * time.Second} {
		if got := q.BackoffFor(n); got != want {
			t.Errorf("BackoffFor(%d) = %v, want %v", n, got, want)
		}
	}
}
