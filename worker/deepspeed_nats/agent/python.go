package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// pythonCandidates are tried in order when $INFERQ_PYTHON is not set. The
// python3 first on PATH is often a pyenv or venv without torch, so the
// system interpreters (where Debian's python3-torch lives) follow it.
var pythonCandidates = []string{"python3", "/usr/bin/python3", "/usr/local/bin/python3"}

// pythonCheckTimeout bounds one `import torch` probe; a cold import of torch
// can take several seconds.
const pythonCheckTimeout = 60 * time.Second

var pythonCache struct {
	sync.Mutex
	done bool
	path string
	err  error
}

// FindPython returns the interpreter that runs the model runner:
// $INFERQ_PYTHON when set, otherwise the first of python3 on PATH,
// /usr/bin/python3 and /usr/local/bin/python3 that can import torch. The
// probe runs once per process; its answer is cached.
func FindPython() (string, error) {
	if p := os.Getenv("INFERQ_PYTHON"); p != "" {
		return p, nil
	}
	pythonCache.Lock()
	defer pythonCache.Unlock()
	if !pythonCache.done {
		pythonCache.path, pythonCache.err = probePython(pythonCandidates)
		pythonCache.done = true
	}
	return pythonCache.path, pythonCache.err
}

func probePython(candidates []string) (string, error) {
	var tried []string
	seen := map[string]bool{}
	for _, c := range candidates {
		p, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		if err := importsTorch(p); err != nil {
			tried = append(tried, fmt.Sprintf("%s (%v)", p, err))
			continue
		}
		return p, nil
	}
	if len(tried) == 0 {
		tried = append(tried, "no python3 found")
	}
	return "", fmt.Errorf("no python3 that can import torch: tried %s; install Debian's python3-torch "+
		"(apt-get install python3-torch python3-protobuf) or set INFERQ_PYTHON to an interpreter with torch and protobuf",
		strings.Join(tried, ", "))
}

func importsTorch(python string) error {
	ctx, cancel := context.WithTimeout(context.Background(), pythonCheckTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", "import torch").CombinedOutput()
	if ctx.Err() != nil {
		return errors.New("import torch timed out")
	}
	if err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return errors.New(lines[len(lines)-1])
	}
	return nil
}
