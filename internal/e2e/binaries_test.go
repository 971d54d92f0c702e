package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testutil"
)

// TestMain removes the binaries built for the tests. A copy of the test
// binary started as a cluster node (testutil.StartProcessCluster) runs
// only that node.
func TestMain(m *testing.M) {
	testutil.RunNodeIfChild()
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var binDir string // set once the binaries are built

// buildOnce compiles every command once per test run, on first use.
var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "inferq-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/...", "./worker/deepspeed_nats")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return dir, nil
})

func binary(t *testing.T, name string) string {
	t.Helper()
	dir, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// proc is a started binary whose output is kept for failure messages.
type proc struct {
	cmd  *exec.Cmd
	out  *testutil.Buffer
	done chan error
}

func start(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: &testutil.Buffer{}, done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

// stop sends sig and expects a clean exit (status 0) within 15s.
func (p *proc) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("%s exited with %v after %v; output:\n%s", p.cmd.Path, err, sig, p.out)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not stop within 15s of %v; output:\n%s", p.cmd.Path, sig, p.out)
	}
}

// waitHTTP polls url until it answers 200.
func waitHTTP(t *testing.T, p *proc, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			t.Fatalf("%s exited early (%v); output:\n%s", p.cmd.Path, err, p.out)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not healthy at %s after 20s; output:\n%s", p.cmd.Path, url, p.out)
}

// TestServiceBinariesStartAndStop runs each service binary against a real
// NATS server (and Redis), checks it is ready, then stops it with SIGTERM.
func TestServiceBinariesStartAndStop(t *testing.T) {
	n := testutil.StartNATS(t)
	r := testutil.StartRedis(t)
	for _, name := range []string{"ingress", "batcher", "resultsvc", "deepspeed_nats"} {
		t.Run(name, func(t *testing.T) {
			addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
			flag := "--admin"
			if name == "ingress" {
				flag = "--listen"
			}
			p := start(t, binary(t, name), []string{"INFERQ_NATS_URL=" + n.URL, "INFERQ_REDIS_URL=" + r.URL}, flag, addr)
			waitHTTP(t, p, "http://"+addr+"/readyz")
			p.stop(t, syscall.SIGTERM)
		})
	}
}

// TestInferqDev runs `inferq dev` as a user would, follows the README's curl
// session over real HTTP, and stops it with Ctrl-C.
func TestInferqDev(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	natsPort := testutil.FreePort(t)
	p := start(t, binary(t, "inferq"), nil, "dev", "--http", addr, "--nats-port", fmt.Sprint(natsPort), "--data", t.TempDir())
	waitHTTP(t, p, "http://"+addr+"/readyz")
	// The banner is printed as the services start, alongside the first /readyz.
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(p.out.String(), "Ctrl-C stops it") }, "no start-up banner in:\n%s", p.out)
	for _, want := range []string{"http://" + addr, fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "curl", "simple"} {
		if !strings.Contains(p.out.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, p.out)
		}
	}
	s := &Stack{URL: "http://" + addr}
	a := []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	b := []int32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	if err := checkSimple(s.wait(t, s.submit(t, "simple", simpleBody(a, b)).ID), a, b); err != nil {
		t.Fatal(err)
	}
	p.stop(t, syscall.SIGINT)
	if !strings.Contains(p.out.String(), "inferq dev: stopped") {
		t.Errorf("no clean stop message:\n%s", p.out)
	}
}

// TestServicesApartWithShippedConfig runs each service binary as README.md's
// "Running the services apart" does, all with --config docs/inferq.yaml, and
// runs a job of every model it configures through them.
func TestServicesApartWithShippedConfig(t *testing.T) {
	n := testutil.StartNATS(t)
	r := testutil.StartRedis(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg := []string{"--config", "../../docs/inferq.yaml", "--nats", n.URL}
	ingress := start(t, binary(t, "ingress"), nil, append(cfg, "--redis", r.URL, "--listen", listen)...)
	for _, svc := range []struct {
		name  string
		extra []string
	}{{"batcher", nil}, {"resultsvc", []string{"--redis", r.URL}}, {"deepspeed_nats", nil}} {
		admin := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
		p := start(t, binary(t, svc.name), nil, append(append(cfg, svc.extra...), "--admin", admin)...)
		waitHTTP(t, p, "http://"+admin+"/readyz")
		if strings.Contains(p.out.String(), "leaves out a configured model") {
			t.Errorf("%s: docs/inferq.yaml leaves a model without a worker:\n%s", svc.name, p.out)
		}
	}
	waitHTTP(t, ingress, "http://"+listen+"/readyz")
	s := &Stack{URL: "http://" + listen}
	a := []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	if err := checkSimple(s.wait(t, s.submit(t, "simple", simpleBody(a, a)).ID), a, a); err != nil {
		t.Fatal(err)
	}
	for model, body := range map[string]string{
		"identity": `{"inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`,
		"simgpu":   `{"inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"INT32","data":[7,8]}]}`,
		"repeat":   `{"text_input":"hello","parameters":{"max_tokens":8}}`,
	} {
		if rec := s.wait(t, s.submit(t, model, body).ID); rec.Status != "succeeded" {
			t.Errorf("%s: %+v", model, rec)
		}
	}
}
