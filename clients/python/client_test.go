package pyclient_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/cli"
	"github.com/inferq/inferq/internal/testutil"
)

// python is the interpreter of the tests: INFERQ_PYTHON, else Debian's.
func python() string {
	if p := os.Getenv("INFERQ_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// startDev runs `inferq dev` in process with the Python tests' config
// (tests/inferq.yaml) and returns its HTTP API URL; it stops with the test.
func startDev(t *testing.T, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &testutil.Buffer{}, &testutil.Buffer{}
	exit := make(chan int, 1)
	data := t.TempDir() // made before the stop below, so removed after dev stopped
	args := append([]string{"--config", "tests/inferq.yaml", "--http", "127.0.0.1:0", "--nats-port", "0",
		"--data", data}, extra...)
	go func() { exit <- cli.Dev(ctx, args, stdout, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-exit:
			if code != 0 {
				t.Errorf("inferq dev exited %d; stderr:\n%s", code, stderr)
			}
		case <-time.After(20 * time.Second):
			t.Error("inferq dev did not stop within 20s")
		}
	})
	addr := regexp.MustCompile(`HTTP API  (http://\S+)`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := addr.FindStringSubmatch(stdout.String()); m != nil {
			return m[1]
		}
		select {
		case code := <-exit:
			t.Fatalf("inferq dev exited %d before serving; stderr:\n%s", code, stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("inferq dev not serving after 30s; stdout:\n%s\nstderr:\n%s", stdout, stderr)
		}
	}
}

// runUnittest runs `python3 -m unittest discover` on dir against url and fails with Python's output.
func runUnittest(t *testing.T, url, dir string) {
	t.Helper()
	py := python()
	if out, err := exec.Command(py, "-c", "import numpy").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import numpy (%v: %s); install it: sudo apt-get install -y python3-numpy "+
			"(or run make deps)", py, err, out)
	}
	pkg, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-m", "unittest", "discover", "-s", dir, "-t", ".", "-v")
	cmd.Env = append(os.Environ(), "INFERQ_TEST_URL="+url, "INFERQ_URL="+url, "PYTHONPATH="+pkg,
		"PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python tests in clients/python/%s failed (%v):\n%s", dir, err, out)
	}
	t.Logf("python tests in clients/python/%s:\n%s", dir, out)
}

// TestPythonClient runs the Python client's tests (every verb, the typed
// errors, a stream that resumes after cut connections with no token lost or
// repeated, QueueFull, and numpy arrays of every datatype through identity
// bit for bit) and the examples/python programs against a real inferq dev,
// with each results store.
func TestPythonClient(t *testing.T) {
	t.Run("kv", func(t *testing.T) {
		runUnittest(t, startDev(t), "tests")
	})
	t.Run("redis", func(t *testing.T) {
		runUnittest(t, startDev(t, "--redis", testutil.StartRedis(t).URL), "tests")
	})
}
