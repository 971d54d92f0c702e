package python

import (
	"os"
	"path/filepath"
	"testing"
)

func TestExtract(t *testing.T) {
	dir := t.TempDir()
	root, err := Extract(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"__init__.py", "__main__.py", "inferq_pb2.py", "server.py", "tiny.py"} {
		if _, err := os.Stat(filepath.Join(root, Package, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	again, err := Extract(dir)
	if err != nil || again != root {
		t.Fatalf("second extract: %q, %v; want %q", again, err, root)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("extract left %d entries in %s, want 1", len(ents), dir)
	}
	want, _ := os.ReadFile(filepath.Join("inferq_runner", "server.py"))
	got, _ := os.ReadFile(filepath.Join(root, Package, "server.py"))
	if string(got) != string(want) {
		t.Error("extracted server.py differs from the source")
	}
}
