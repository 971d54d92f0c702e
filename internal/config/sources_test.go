package config

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestRunnerModelShorthand: runner.model stands for the Python runner's
// command with --model SOURCE; a command given as well is kept.
func TestRunnerModelShorthand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	yaml := `models:
  - name: ts
    runner: {model: "torchscript:/models/add.pt", device: auto, deepspeed: true}
    inputs: [{name: x, datatype: FP32, dims: [4]}]
  - name: own
    kind: generate
    runner: {model: "python:echo:build", python_path: [./models], command: [/opt/py/bin/python3, -m, inferq_runner]}
    inputs: [{name: text_input, datatype: BYTES, dims: [1]}]
  - name: dir
    kind: generate
    runner: {model: /models/llama}
    inputs: [{name: text_input, datatype: BYTES, dims: [1]}]
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := cfg.Model("ts")
	if want := []string{"python3", "-m", "inferq_runner", "--model", "torchscript:/models/add.pt"}; !slices.Equal(ts.Runner.Command, want) ||
		ts.Kind != KindTensor || !ts.Runner.DeepSpeed {
		t.Errorf("ts runner %+v kind %s", ts.Runner, ts.Kind)
	}
	own, _ := cfg.Model("own")
	if len(own.Runner.Command) != 3 || own.Runner.Command[0] != "/opt/py/bin/python3" || !slices.Equal(own.Runner.PythonPath, []string{"./models"}) {
		t.Errorf("own runner %+v", own.Runner)
	}
	if d, _ := cfg.Model("dir"); d.Runner.Command[4] != "/models/llama" {
		t.Errorf("dir runner %+v", d.Runner)
	}
}

// TestModelsDocConfigsLoad: every complete config in docs/models.md (a yaml
// block that starts with models:) loads as written.
func TestModelsDocConfigsLoad(t *testing.T) {
	b, err := os.ReadFile("../../docs/models.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(models:.*?)```").FindAllStringSubmatch(string(b), -1)
	if len(blocks) < 4 {
		t.Fatalf("docs/models.md has %d complete configs, want one per source (4)", len(blocks))
	}
	seen := map[string]bool{}
	for i, blk := range blocks {
		path := filepath.Join(t.TempDir(), "models.yaml")
		if err := os.WriteFile(path, []byte(blk[1]), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path)
		if err != nil {
			t.Errorf("docs/models.md config %d: %v\n%s", i+1, err, blk[1])
			continue
		}
		for _, m := range cfg.Models {
			if scheme, _, ok := strings.Cut(m.Runner.Model, ":"); ok {
				seen[scheme] = true
			}
		}
	}
	for _, s := range SourceSchemes {
		if !seen[s] {
			t.Errorf("docs/models.md has no config with a %s: source", s)
		}
	}
}
