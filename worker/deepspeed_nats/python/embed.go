// Package python carries the model runner (the inferq_runner Python package)
// inside the Go worker binary, so a worker needs only a python3 with torch.
package python

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
)

//go:embed inferq_runner/*.py
var files embed.FS

// Package is the name of the embedded Python package.
const Package = "inferq_runner"

// FS returns the embedded package files, rooted above inferq_runner/.
func FS() fs.FS { return files }

// Version is a digest of the embedded files: it changes with any edit.
func Version() string {
	h := sha256.New()
	names := fileNames()
	for _, n := range names {
		data, _ := files.ReadFile(n)
		fmt.Fprintf(h, "%s %d\n", n, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func fileNames() []string {
	ents, _ := files.ReadDir(Package)
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, path.Join(Package, e.Name()))
	}
	sort.Strings(names)
	return names
}

// Extract writes the runner package under dir, in a directory named after
// its Version, and returns that directory: put it on PYTHONPATH to run
// `python3 -m inferq_runner`. An existing extraction of the same version is
// reused; a new one is written to a temporary directory and renamed into
// place, so concurrent workers never see a half-written package.
func Extract(dir string) (string, error) {
	root := filepath.Join(dir, "runner-"+Version())
	if _, err := os.Stat(filepath.Join(root, Package, "__main__.py")); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("extract runner: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".runner-tmp-")
	if err != nil {
		return "", fmt.Errorf("extract runner: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	if err := os.Mkdir(filepath.Join(tmp, Package), 0o755); err != nil {
		return "", fmt.Errorf("extract runner: %w", err)
	}
	for _, n := range fileNames() {
		data, err := files.ReadFile(n)
		if err != nil {
			return "", fmt.Errorf("extract runner: %w", err)
		}
		if err := os.WriteFile(filepath.Join(tmp, filepath.FromSlash(n)), data, 0o644); err != nil {
			return "", fmt.Errorf("extract runner: %w", err)
		}
	}
	if err := os.Rename(tmp, root); err != nil {
		// Another worker won the race: use its copy.
		if _, serr := os.Stat(filepath.Join(root, Package, "__main__.py")); serr == nil {
			return root, nil
		}
		return "", fmt.Errorf("extract runner: %w", err)
	}
	return root, nil
}

// DefaultDir is where workers extract the runner: the user's cache
// directory, or the temporary directory when there is none.
func DefaultDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "inferq")
	}
	return filepath.Join(os.TempDir(), "inferq-cache")
}
