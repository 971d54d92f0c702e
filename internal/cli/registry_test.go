package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/stack/stacktest"
	"github.com/inferq/inferq/internal/testutil"
)

// readModels takes one model config, a list, or a config file's models:
// list, and refuses the whole file for one bad entry.
func TestReadModelsForms(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"one", "name: a\nrunner: {builtin: identity}\n", "a"},
		{"list", "- name: a\n  runner: {builtin: identity}\n- name: b\n  version: \"2\"\n  runner: {builtin: repeat}\n", "a,b"},
		{"config file", "nats: {url: 'nats://x'}\nmodels:\n  - name: a\n    runner: {builtin: identity}\n    default_version: \"1\"\n", "a"},
	} {
		docs, err := readModels("f.yaml", []byte(tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var names []string
		for _, d := range docs {
			names = append(names, d.name)
		}
		if got := strings.Join(names, ","); got != tc.want {
			t.Errorf("%s: models %q, want %q", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct{ name, file, want string }{
		{"empty", "", "no model config"},
		{"unknown field", "- name: a\n  runner: {builtin: identity}\n- name: b\n  runner: {builtin: identity}\n  batching: {max_batch: 3}\n", "models[1]"},
		{"no name", "runner: {builtin: identity}\n", "name"},
		{"models not a list", "models: {name: a}\n", "want a list"},
		{"scalar", "hello\n", "want a model config"},
		{"not yaml", "a: [\n", "f.yaml"},
	} {
		if _, err := readModels("f.yaml", []byte(tc.file)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.name, err, tc.want)
		}
	}
}

// `inferq models apply` and `inferq models rm` against a live stack with
// the registry on.
func TestModelsApplyAndRm(t *testing.T) {
	n := testutil.StartNATS(t)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL, cfg.Registry = n.URL, true
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	url := stacktest.Start(t, &cfg, n.Conn, stack.All)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// One bad entry: nothing is registered.
	bad := write("bad.yaml", "models:\n  - name: echo\n    runner: {builtin: identity}\n  - name: rep2\n    runner: {builtin: repeat}\n    batching: {max_batch: 3}\n")
	if code, _, errs := runMain("models", "apply", "-url", url, "-f", bad); code != ExitUsage || !strings.Contains(errs, "models[1]") || !strings.Contains(errs, "max_batch") {
		t.Fatalf("apply of a bad file: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := runMain("models", "-url", url, "echo"); code != ExitFailed || !strings.Contains(errs, "404") {
		t.Fatalf("echo after a refused file: exit %d, stderr %q", code, errs)
	}

	good := write("models.yaml", `models:
  - name: echo
    runner: {builtin: identity}
  - name: rep2
    version: "2"
    runner: {builtin: repeat}
    batching: {max_batch_size: 4, max_queue_delay: 2ms}
`)
	code, out, errs := runMain("models", "apply", "-url", url, "-f", good)
	if code != ExitOK || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"name":"echo","version":"1"`) || !strings.Contains(out, `"name":"rep2","version":"2"`) {
		t.Fatalf("apply: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// The new model serves: a job runs on rep2's version 2.
	testutil.Eventually(t, 20*time.Second, func() bool {
		code, out, _ := runMain("submit", "-url", url, "-text", "xy", "-params", `{"max_tokens":3}`, "-wait", "10s", "rep2")
		return code == ExitOK && strings.Contains(out, `"version":"2"`) && strings.Contains(out, "xyx")
	}, "rep2 never ran a job")

	// rm: a version, a whole model, and wrong arguments.
	if code, out, errs := runMain("models", "rm", "-url", url, "echo@1"); code != ExitOK || !strings.Contains(out, `"status":"draining"`) {
		t.Fatalf("rm echo@1: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, out, errs := runMain("models", "rm", "-url", url, "rep2"); code != ExitOK || !strings.Contains(out, `"status":"draining"`) {
		t.Fatalf("rm rep2: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := runMain("models", "rm", "-url", url, "nosuch"); code != ExitFailed || !strings.Contains(errs, "404") {
		t.Errorf("rm nosuch: exit %d, stderr %q", code, errs)
	}
	for _, args := range [][]string{{"echo@"}, {"@1"}, {}, {"a", "b"}} {
		if code, _, _ := runMain(append([]string{"models", "rm", "-url", url}, args...)...); code != ExitUsage {
			t.Errorf("rm %q: exit %d, want %d", args, code, ExitUsage)
		}
	}
	if code, _, _ := runMain("models", "apply", "-url", url); code != ExitUsage {
		t.Errorf("apply without -f: exit %d, want %d", code, ExitUsage)
	}
}
