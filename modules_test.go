package inferq_test

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The tools and checks beside the broker have modules of their own, so that
// building or vetting the broker does not resolve their dependencies (a cold
// `go build ./cmd/inferq` fetched all of them when they shared go.mod).
var nestedModules = []string{"loadtest", "deploy", "docs"}

// heavyDeps are the dependencies of the nested modules that the broker does
// not run; none may come back into the root go.mod.
var heavyDeps = []string{
	"github.com/hibiken/asynq",
	"gonum.org/",
	"github.com/HdrHistogram/",
	"github.com/prometheus/prometheus",
	"k8s.io/",
	"sigs.k8s.io/",
	"github.com/compose-spec/",
	"github.com/pb33f/",
}

// requires returns the module paths that the go.mod at path requires, and its
// replace lines.
func requires(t *testing.T, path string) (mods, replaces []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	defer f.Close()
	block := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "//")
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
		case block != "" && fields[0] == ")":
			block = ""
		case len(fields) == 2 && fields[1] == "(":
			block = fields[0]
		case block == "require":
			mods = append(mods, fields[0])
		case block == "replace":
			replaces = append(replaces, strings.Join(fields, " "))
		case fields[0] == "require" && len(fields) > 1:
			mods = append(mods, fields[1])
		case fields[0] == "replace":
			replaces = append(replaces, strings.Join(fields[1:], " "))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return mods, replaces
}

func TestRootModuleHasOnlyBrokerDeps(t *testing.T) {
	mods, _ := requires(t, "go.mod")
	for _, m := range mods {
		for _, h := range heavyDeps {
			if strings.HasPrefix(m, h) {
				t.Errorf("go.mod requires %s: it belongs in the module of loadtest/, deploy/ or docs/ "+
					"that imports it (run `make tidy`)", m)
			}
		}
	}
}

// TestNestedModulesBuildFromCheckout: each nested module is in go.work and
// builds against the broker in this checkout, not a published version.
func TestNestedModulesBuildFromCheckout(t *testing.T) {
	work, err := os.ReadFile("go.work")
	if err != nil {
		t.Fatalf("read go.work: %v", err)
	}
	var uses []string
	for _, line := range strings.Split(string(work), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "use"))
		if len(f) == 1 && (f[0] == "." || strings.HasPrefix(f[0], "./")) {
			uses = append(uses, f[0])
		}
	}
	for _, dir := range append([]string{"."}, nestedModules...) {
		want := dir
		if dir != "." {
			want = "./" + dir
		}
		if !slices.Contains(uses, want) {
			t.Errorf("go.work does not use %s (uses %v)", want, uses)
		}
	}
	for _, dir := range nestedModules {
		mods, replaces := requires(t, filepath.Join(dir, "go.mod"))
		if !slices.Contains(mods, "github.com/inferq/inferq") {
			t.Errorf("%s/go.mod does not require github.com/inferq/inferq", dir)
		}
		if !slices.Contains(replaces, "github.com/inferq/inferq => ../") {
			t.Errorf("%s/go.mod lacks `replace github.com/inferq/inferq => ../` (has %q)", dir, replaces)
		}
	}
}
