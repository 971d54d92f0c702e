package stack_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inferq/inferq/internal/batcher"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/resultsvc"
	"github.com/inferq/inferq/worker/deepspeed_nats/agent"
)

// recorder is a Registerer that remembers every metric name registered.
type recorder struct {
	prometheus.Registerer
	names []string
}

func (r *recorder) Register(c prometheus.Collector) error {
	descs := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(descs); close(descs) }()
	for d := range descs {
		s := d.String()
		name := s[strings.Index(s, `fqName: "`)+9:]
		r.names = append(r.names, name[:strings.Index(name, `"`)])
	}
	return r.Registerer.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// TestComponentMetricsShareOneRegistry: every component's metrics register
// on one registry, as in inferq dev, without a duplicate; each name is in
// docs/metrics.md and carries its unit; the batcher's queue wait is no
// longer a second metric beside inferq_queue_wait_seconds.
func TestComponentMetricsShareOneRegistry(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := &recorder{Registerer: prometheus.NewRegistry()}
	obs.NewMetrics(reg)
	batcher.NewMetrics(reg)
	resultsvc.NewMetrics(reg)
	agent.NewMetrics(reg)
	for _, name := range reg.names {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("%s is not in docs/metrics.md", name)
		}
		if !strings.HasSuffix(name, "_total") && !strings.HasSuffix(name, "_seconds") && !strings.HasSuffix(name, "_info") &&
			name != "inferq_batch_size" && name != "inferq_batch_fill_ratio" && name != "inferq_results_retained_entries" &&
			name != "inferq_worker_running_sequences" && name != "inferq_worker_free_sequence_slots" { // counts: their unit is in the name
			t.Errorf("%s: name carries no unit", name)
		}
		if name == "inferq_batcher_queue_wait_seconds" {
			t.Errorf("%s duplicates inferq_queue_wait_seconds", name)
		}
	}
	if strings.Contains(string(doc), "inferq_batcher_queue_wait_seconds") {
		t.Error("docs/metrics.md still lists inferq_batcher_queue_wait_seconds")
	}
}

// TestNoPackageLevelCollectors: no package of the module keeps a collector
// in a package-level variable. Such a collector is shared by every
// component built in the process, so two batchers (tests, benchmarks) would
// mix their counts; each component registers its own on the registry it is
// given.
func TestNoPackageLevelCollectors(t *testing.T) {
	root := "../.."
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir // another module of the workspace
				}
			}
			if strings.HasPrefix(d.Name(), ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			ast.Inspect(gd, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if pkg, ok := sel.X.(*ast.Ident); ok && (pkg.Name == "promauto" ||
					pkg.Name == "prometheus" && strings.HasPrefix(sel.Sel.Name, "New") && sel.Sel.Name != "NewDesc") {
					t.Errorf("%s: package-level collector (%s.%s); build it in the component's NewMetrics", fset.Position(sel.Pos()), pkg.Name, sel.Sel.Name)
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
