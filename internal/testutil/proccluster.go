package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/natsembed"
)

// nodeEnv names the environment variable that turns a re-executed test
// binary into one node of a process cluster (see RunNodeIfChild).
const nodeEnv = "INFERQ_TEST_NATS_NODE"

// nodeSpec is what a child process needs to run its node.
type nodeSpec struct {
	Name       string
	ClientPort int
	RoutePort  int
	Routes     []string
	StoreDir   string
}

// RunNodeIfChild runs a JetStream cluster node and exits when this process
// was started by StartProcessCluster; otherwise it returns at once. A test
// package that uses StartProcessCluster calls it first thing in TestMain.
func RunNodeIfChild() {
	spec := os.Getenv(nodeEnv)
	if spec == "" {
		return
	}
	var s nodeSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, "node spec:", err)
		os.Exit(2)
	}
	srv, err := natsembed.Run(natsembed.Config{Port: s.ClientPort, StoreDir: s.StoreDir, ServerName: s.Name,
		Cluster: &natsembed.ClusterConfig{Name: "inferq-proc", Port: s.RoutePort, Routes: s.Routes}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.Shutdown()
	os.Exit(0)
}

// ProcCluster is a JetStream cluster whose nodes are separate processes, so
// a test can freeze one whole node (SIGSTOP): its clients, its routes and
// the stream and consumer leaders it holds, as a hung machine would.
type ProcCluster struct {
	URLs  []string
	procs []*exec.Cmd
}

// StartProcessCluster runs n nodes as children of the test binary (which
// must call RunNodeIfChild in TestMain) and waits until the cluster can
// place a stream on all n of them.
func StartProcessCluster(t testing.TB, n int) *ProcCluster {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	clients, routes := make([]int, n), make([]int, n)
	var routeURLs []string
	for i := range n {
		clients[i], routes[i] = FreePort(t), FreePort(t)
		routeURLs = append(routeURLs, fmt.Sprintf("nats-route://127.0.0.1:%d", routes[i]))
	}
	c := &ProcCluster{}
	for i := range n {
		spec, _ := json.Marshal(nodeSpec{Name: fmt.Sprintf("p%d", i+1), ClientPort: clients[i], RoutePort: routes[i],
			Routes: routeURLs, StoreDir: t.TempDir()})
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), nodeEnv+"="+string(spec))
		out := &Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start node %d: %v", i+1, err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("node p%d output:\n%s", i+1, out.String())
			}
		})
		c.procs = append(c.procs, cmd)
		c.URLs = append(c.URLs, fmt.Sprintf("nats://127.0.0.1:%d", clients[i]))
	}
	// Ready when an R<n> stream can be placed: a meta leader that sees
	// every node with JetStream.
	Eventually(t, 30*time.Second, func() bool {
		nc, err := nats.Connect(strings.Join(c.URLs, ","), nats.Timeout(time.Second))
		if err != nil {
			return false
		}
		defer nc.Close()
		js, err := natsjs.New(nc)
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "READY_PROBE", Replicas: n,
			Subjects: []string{"ready.probe"}, Storage: natsjs.MemoryStorage}); err != nil {
			return false
		}
		_ = js.DeleteStream(ctx, "READY_PROBE")
		return true
	}, "process cluster of %d nodes never became ready", n)
	return c
}

// Freeze stops (true) or resumes (false) node i's process, as SIGSTOP and
// SIGCONT do to a hung and a recovered machine.
func (c *ProcCluster) Freeze(t testing.TB, i int, on bool) {
	t.Helper()
	sig := syscall.SIGCONT
	if on {
		sig = syscall.SIGSTOP
	}
	if err := c.procs[i].Process.Signal(sig); err != nil {
		t.Fatalf("signal node %d: %v", i+1, err)
	}
}
