package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
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
	if got := strings.Join(g.AcceptedParams(), ","); got != "max_tokens,temperature,top_p,top_k,seed,stop,priority,timeout_ms,stream,callback_url" {
		t.Errorf("tiny-gpt accepts %s", got)
	}
	if mt, _ := g.Param("max_tokens"); *mt.Max != 4096 || string(mt.DefaultJSON()) != "16" {
		t.Errorf("tiny-gpt max_tokens %+v", mt)
	}
	if g.Batching.JoinEverySteps != DefaultJoinEverySteps || DefaultJoinEverySteps != 8 {
		t.Errorf("tiny-gpt join_every_steps %d, want the default 8", g.Batching.JoinEverySteps)
	}
	if g.Batching.JoinAtOnceBelow != g.Batching.MaxNumSeqs/2 {
		t.Errorf("tiny-gpt join_at_once_below %d, want half of max_num_seqs %d", g.Batching.JoinAtOnceBelow, g.Batching.MaxNumSeqs)
	}
	if got := cfg.Unserved(); len(got) != 1 || got[0] != "tiny-gpt" {
		t.Errorf("unserved %v, want [tiny-gpt]", got)
	}
}

// TestReferenceNamesEveryKey: the annotated reference stays complete as keys
// are added to Config.
func TestReferenceNamesEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../docs/config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	seen := map[reflect.Type]bool{}
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			if !regexp.MustCompile(`\b` + name + `:`).MatchString(text) {
				t.Errorf("docs/config.example.yaml does not mention %s%s", path, name)
			}
			walk(path+name+".", f.Type)
		}
	}
	walk("", reflect.TypeFor[Config]())
}

// TestInferqYAMLStartsAsWritten: docs/inferq.yaml needs no Redis, no key
// file and no Python, and every model it configures has a worker.
func TestInferqYAMLStartsAsWritten(t *testing.T) {
	cfg, err := Load("../../docs/inferq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range cfg.Models {
		names = append(names, m.Name)
		if m.Runner.Builtin == "" {
			t.Errorf("model %s needs a runner process", m.Name)
		}
	}
	if got := strings.Join(names, ","); got != "identity,simple,simgpu,repeat" {
		t.Errorf("models %s", got)
	}
	if cfg.Redis.URL != "" || cfg.Auth.Enabled || cfg.Auth.JWT.JWKSFile != "" || len(cfg.Unserved()) != 0 {
		t.Errorf("config needs more than a fresh machine: redis %q, auth %v, unserved %v", cfg.Redis.URL, cfg.Auth.Enabled, cfg.Unserved())
	}
	if cfg.Batcher.AdminListen != "" || cfg.ResultSvc.AdminListen != "" || cfg.Worker.AdminListen != "" {
		t.Error("admin ports in the file would clash when `inferq dev` runs every service in one process")
	}
}

func TestUnserved(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Unserved(); got != nil {
		t.Errorf("no worker.models: unserved %v", got)
	}
	cfg.Worker.Models = []string{"simple", "repeat"}
	if got := strings.Join(cfg.Unserved(), ","); got != "identity,simgpu" {
		t.Errorf("unserved %s", got)
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
		{"no runner", "models: [{name: m, inputs: [{name: x, datatype: FP32, dims: [1]}]}]", "runner needs builtin, model or command"},
		{"bad datatype", "models: [{name: m, runner: {command: [x]}, inputs: [{name: x, datatype: FLOAT, dims: [1]}]}]", `unknown datatype "FLOAT"`},
		{"zero dim", "models: [{name: m, runner: {command: [x]}, inputs: [{name: x, datatype: FP32, dims: [0]}]}]", "must be -1 or positive"},
		{"preferred too big", "models: [{name: m, runner: {builtin: simple}, batching: {max_batch_size: 4, preferred_batch_sizes: [8]}}]", "preferred_batch_sizes: 8"},
		{"bad duration", "models: [{name: m, runner: {builtin: simple}, batching: {max_queue_delay: fast}}]", "fast"},
		{"duplicate", "models: [{name: m, runner: {builtin: simple}}, {name: m, runner: {builtin: simple}}]", "defined twice"},
		{"unknown builtin", "models: [{name: m, runner: {builtin: nope}}]", `unknown builtin test model "nope"`},
		{"worker model", "worker: {models: [x]}\nmodels: [{name: m, runner: {builtin: simple}}]", `"x" is not a configured model`},
		{"param type", "models: [{name: m, runner: {builtin: simple}, parameters: [{name: n, type: integer}]}]", `model "m": parameter "n": type "integer" must be int`},
		{"param name", "models: [{name: m, runner: {builtin: simple}, parameters: [{name: N-1, type: int}]}]", `parameter "N-1": name must match`},
		{"param range on bool", "models: [{name: m, runner: {builtin: simple}, parameters: [{name: b, type: bool, max: 1}]}]", `min and max apply to int and float only`},
		{"param min above max", "models: [{name: m, runner: {builtin: simple}, parameters: [{name: n, type: int, min: 5, max: 1}]}]", `min 5 is above max 1`},
		{"param default range", "models: [{name: m, runner: {builtin: simple}, parameters: [{name: n, type: int, max: 9, default: 10}]}]", `parameter "n": default: 10 is above the maximum 9`},
		{"param default type", "models: [{name: m, runner: {builtin: simple}, parameters: [{name: n, type: int, default: x}]}]", `parameter "n": default: want an integer, got "x"`},
		{"param twice", "models: [{name: m, runner: {builtin: simple}, parameters: [{name: n, type: int}, {name: n, type: float}]}]", `parameter "n": declared twice`},
		{"broker param", "models: [{name: m, runner: {builtin: simple}, parameters: [{name: priority, type: int}]}]", `parameter "priority" is the broker's own`},
		{"max_tokens above limit", "models: [{name: m, runner: {builtin: repeat}, max_tokens_limit: 100, parameters: [{name: max_tokens, type: int, max: 200}]}]", `max 200 is above max_tokens_limit 100`},
		{"limit on tensor model", "models: [{name: m, runner: {builtin: simple}, max_tokens_limit: 100}]", `max_tokens_limit applies to generate models only`},
		{"zero seqs", "models: [{name: m, runner: {builtin: repeat}, batching: {max_num_seqs: -1}}]", `max_num_seqs and batching.max_step_tokens must be positive`},
		{"join every -1 steps", "models: [{name: m, runner: {builtin: repeat}, batching: {join_every_steps: -1}}]", `batching.join_every_steps must be at least 1, got -1`},
		{"join at once below 0 seqs", "models: [{name: m, runner: {builtin: repeat}, batching: {join_at_once_below: -1}}]", `batching.join_at_once_below must be in 1..max_num_seqs (32), got -1`},
		{"join at once above max_num_seqs", "models: [{name: m, runner: {builtin: repeat}, batching: {max_num_seqs: 4, join_at_once_below: 5}}]", `must be in 1..max_num_seqs (4), got 5`},
		{"negative limit", "models: [{name: m, runner: {builtin: repeat}, max_tokens_limit: -1}]", `max_tokens_limit -1 must be positive`},
		{"chat template syntax", "models: [{name: m, runner: {builtin: repeat}, chat_template: '{{range .Messages}'}]", `model "m": chat_template: template: m:1:`},
		{"chat template on tensor model", "models: [{name: m, runner: {builtin: simple}, chat_template: 'x'}]", `chat_template applies to generate models only`},
		{"unknown source", "models: [{name: m, runner: {model: 'onnx:m.onnx'}, inputs: [{name: x, dims: [1]}]}]", `unknown source "onnx:": want one of builtin, torchscript, python, hf`},
		{"python source", "models: [{name: m, runner: {model: 'python:mod'}, inputs: [{name: x, dims: [1]}]}]", `want python:MODULE:FACTORY`},
		{"torchscript generate", "models: [{name: m, kind: generate, runner: {model: 'torchscript:m.pt'}, inputs: [{name: x, dims: [1]}]}]", `a TorchScript model is kind tensor`},
		{"builtin and model", "models: [{name: m, runner: {builtin: simple, model: 'hf:/m'}}]", `runner takes builtin or model, not both`},
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

// TestGenerateModelsTakeMaxTokens: every generate model takes max_tokens,
// bounded by max_tokens_limit, and the test models declare what they read.
func TestGenerateModelsTakeMaxTokens(t *testing.T) {
	cfg := Default()
	if err := Parse([]byte(`models:
  - {name: r, runner: {builtin: repeat}}
  - {name: small, runner: {builtin: repeat}, max_tokens_limit: 8}
  - {name: own, runner: {builtin: repeat}, parameters: [{name: max_tokens, type: int, min: 0, default: 3}, {name: mode, type: string, default: fast}]}
  - {name: s, runner: {builtin: simple}}
`), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	type want struct {
		accepted, max, def string
	}
	for name, w := range map[string]want{
		"r":     {"max_tokens,interval_ms,priority,timeout_ms,stream,callback_url", "4096", "16"},
		"small": {"max_tokens,interval_ms,priority,timeout_ms,stream,callback_url", "8", "8"},
		"own":   {"max_tokens,mode,interval_ms,priority,timeout_ms,stream,callback_url", "4096", "3"},
	} {
		m, _ := cfg.Model(name)
		mt, _ := m.Param("max_tokens")
		if got := strings.Join(m.AcceptedParams(), ","); got != w.accepted || num(*mt.Max) != w.max || string(mt.DefaultJSON()) != w.def {
			t.Errorf("%s: accepts %s, max_tokens max %s default %s; want %+v", name, got, num(*mt.Max), mt.DefaultJSON(), w)
		}
	}
	if iv, _ := cfg.Models[0].Param("interval_ms"); *iv.Max != 10000 || iv.DefaultJSON() != nil {
		t.Errorf("interval_ms %+v", iv)
	}
	s, _ := cfg.Model("s")
	if got := strings.Join(s.AcceptedParams(), ","); got != "priority,timeout_ms,stream,callback_url" {
		t.Errorf("simple accepts %s", got)
	}
	// Finishing twice (tests edit a loaded config) adds nothing.
	if err := cfg.Finish(); err != nil || len(cfg.Models[0].Parameters) != 2 {
		t.Errorf("second Finish: %v, %d parameters", err, len(cfg.Models[0].Parameters))
	}
}

func TestParameterCheck(t *testing.T) {
	lo, hi := 1.0, 10.0
	cases := []struct {
		p    Parameter
		v    string
		want string // "" accepts
	}{
		{Parameter{Type: ParamInt, Min: &lo, Max: &hi}, `3`, ""},
		{Parameter{Type: ParamInt, Min: &lo, Max: &hi}, `-3`, "-3 is below the minimum 1"},
		{Parameter{Type: ParamInt, Min: &lo, Max: &hi}, `100000000`, "100000000 is above the maximum 10"},
		{Parameter{Type: ParamInt}, `"8"`, `want an integer, got "8"`},
		{Parameter{Type: ParamInt}, `1.5`, "want an integer, got 1.5"},
		{Parameter{Type: ParamInt}, `1e3`, "want an integer, got 1e3"},
		{Parameter{Type: ParamInt}, `null`, "want an integer, got null"},
		{Parameter{Type: ParamInt}, `99999999999999999999`, "99999999999999999999 is out of range"},
		{Parameter{Type: ParamFloat, Min: &lo}, `1.5`, ""},
		{Parameter{Type: ParamFloat, Min: &lo}, `0.5`, "0.5 is below the minimum 1"},
		{Parameter{Type: ParamFloat}, `1e999`, "1e999 is out of range"},
		{Parameter{Type: ParamFloat}, `true`, "want a number, got true"},
		{Parameter{Type: ParamBool}, `false`, ""},
		{Parameter{Type: ParamBool}, `1`, "want true or false, got 1"},
		{Parameter{Type: ParamString}, `"x"`, ""},
		{Parameter{Type: ParamString}, `["x"]`, `want a string, got ["x"]`},
		{Parameter{Type: ParamStrings}, `["a","b"]`, ""},
		{Parameter{Type: ParamStrings}, `"a"`, ""},
		{Parameter{Type: ParamStrings}, `["a",1]`, "want a string or a list of strings"},
		{Parameter{Type: ParamInt}, `"` + strings.Repeat("x", 100) + `"`, `xxxx...`}, // a huge value is cut short
	}
	for _, c := range cases {
		err := c.p.Check(json.RawMessage(c.v))
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s %s: error %v, want %q", c.p.Type, c.v, err, c.want)
		}
	}
}

// TestNATSSync: nats.sync defaults to always, takes a positive duration
// (from the file or INFERQ_NATS_SYNC) and rejects anything else.
func TestNATSSync(t *testing.T) {
	cfg := Default()
	if always, _, err := cfg.NATS.SyncPolicy(); err != nil || !always {
		t.Errorf("default nats.sync %q: always %v, %v", cfg.NATS.Sync, always, err)
	}
	if err := Parse([]byte("nats:\n  sync: 1s\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if always, d, err := cfg.NATS.SyncPolicy(); err != nil || always || d != time.Second {
		t.Errorf("nats.sync 1s: always %v interval %v, %v", always, d, err)
	}
	env := func(k string) (string, bool) {
		return map[string]string{"INFERQ_NATS_SYNC": "ALWAYS"}[k], k == "INFERQ_NATS_SYNC"
	}
	if err := cfg.ApplyEnv(env); err != nil {
		t.Fatal(err)
	}
	if always, _, err := cfg.NATS.SyncPolicy(); err != nil || !always {
		t.Errorf("INFERQ_NATS_SYNC=ALWAYS: always %v, %v", always, err)
	}
	for _, bad := range []string{"sometimes", "0s", "-1s", "5"} {
		c := Default()
		c.NATS.Sync = bad
		if err := c.Finish(); err == nil || !strings.Contains(err.Error(), "nats.sync") {
			t.Errorf("nats.sync %q: err %v, want a nats.sync error", bad, err)
		}
	}
}

// TestRedisSettings: redis.url (one node) and redis.addrs (Cluster seeds,
// or Sentinels with master_name) exclude each other; master_name needs the
// Sentinels' addrs; INFERQ_REDIS_ADDRS is a comma-separated list.
func TestRedisSettings(t *testing.T) {
	for _, tc := range []struct {
		yaml, err string
		enabled   bool
	}{
		{"redis:\n  url: redis://r:6379/0\n", "", true},
		{"redis:\n  addrs: [a:1, b:2, c:3]\n", "", true},
		{"redis:\n  addrs: [s1:26379, s2:26379]\n  master_name: inferq\n  password: p\n", "", true},
		{"redis:\n  url: redis://r:6379/0\n  addrs: [a:1]\n", "not both", true},
		{"redis:\n  master_name: inferq\n", "needs addrs", false},
		{"", "", false},
	} {
		cfg := Default()
		if err := Parse([]byte(tc.yaml), &cfg); err != nil {
			t.Fatal(err)
		}
		err := cfg.Finish()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: err %v, want %q", tc.yaml, err, tc.err)
		}
		if cfg.Redis.Enabled() != tc.enabled {
			t.Errorf("%q: Enabled %v", tc.yaml, cfg.Redis.Enabled())
		}
	}
	cfg := Default()
	env := map[string]string{"INFERQ_REDIS_ADDRS": "a:1, b:2", "INFERQ_REDIS_MASTER": "m"}
	if err := cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Redis.Addrs, ",") != "a:1,b:2" || cfg.Redis.MasterName != "m" {
		t.Errorf("from the environment: %+v", cfg.Redis)
	}
}
