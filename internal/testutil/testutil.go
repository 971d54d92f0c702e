// Package testutil starts the real servers inferq's tests run against: an
// embedded nats-server with JetStream and a redis-server process, each on a
// free loopback port and torn down with the test.
package testutil

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/natsembed"
	"github.com/inferq/inferq/internal/redisbin"
)

// NATS is an embedded nats-server and one client connection to it.
type NATS struct {
	Server *natsembed.Server
	URL    string
	Conn   *nats.Conn
	JS     natsjs.JetStream
}

// StartNATS runs an embedded JetStream server on a free loopback port.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	srv, err := natsembed.Run(natsembed.Config{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return &NATS{Server: srv, URL: srv.ClientURL(), Conn: nc, JS: js}
}

// Redis is a redis-server child process on a loopback port.
type Redis struct {
	Addr string // host:port
	URL  string // redis://host:port/0
	t    testing.TB
	bin  string
	dir  string
	aof  bool
	args []string // extra server arguments (cluster, replication)
	cmd  *exec.Cmd
	exit chan struct{}
}

// RedisServerPath finds redis-server or explains how to install it.
func RedisServerPath() (string, error) { return redisbin.Path() }

// StartRedis runs a fresh redis-server (no persistence) for the test. A
// missing redis-server fails the test: it is a dependency, never a skip.
func StartRedis(t testing.TB) *Redis { t.Helper(); return startRedis(t, false) }

// StartRedisAOF is StartRedis with an append-only file synced on every
// write, as production runs it: data survives Stop and Start.
func StartRedisAOF(t testing.TB) *Redis { t.Helper(); return startRedis(t, true) }

func startRedis(t testing.TB, aof bool, args ...string) *Redis {
	t.Helper()
	bin, err := RedisServerPath()
	if err != nil {
		t.Fatal(err)
	}
	r := &Redis{t: t, bin: bin, dir: t.TempDir(), aof: aof, args: args}
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	r.URL = "redis://" + r.Addr + "/0"
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start (re)starts the server on the same address.
func (r *Redis) Start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.Addr)
	aof := "no"
	if r.aof {
		aof = "yes"
	}
	r.cmd = exec.Command(r.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", aof,
		"--appendfsync", "always", "--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log"))
	r.cmd.Args = append(r.cmd.Args, r.args...)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	r.exit = make(chan struct{})
	go func(cmd *exec.Cmd, exit chan struct{}) { _ = cmd.Wait(); close(exit) }(r.cmd, r.exit)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if pingRedis(r.Addr) == nil {
			return
		}
		select {
		case <-r.exit:
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			r.t.Fatalf("redis-server exited at start: %s", log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	r.t.Fatalf("redis-server on %s not ready after 10s", r.Addr)
}

// Pause freezes the server (SIGSTOP: it holds its connections and answers
// nothing, as a hung or swapped-out server does) until Resume.
func (r *Redis) Pause() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGSTOP)
		r.t.Cleanup(r.Resume) // a stopped server must not outlive the test frozen
	}
}

// Resume lets a paused server run again.
func (r *Redis) Resume() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// Stop kills the server (as a crash would) and waits for it to exit.
func (r *Redis) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exit
	r.cmd = nil
}

func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("redis ping: %q", line)
	}
	return nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Context returns a context cancelled when the test ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// Eventually polls cond until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Cluster is a JetStream cluster of embedded servers on loopback.
type Cluster struct {
	Nodes []*natsembed.Server
	URLs  []string // client URLs, one per node
	// RoutePorts are the nodes' cluster (route) ports on 127.0.0.1.
	RoutePorts []int
}

// StartCluster runs n clustered JetStream servers and waits until the
// cluster has a meta leader.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartClusterWith(t, n, ClusterOptions{})
}

// ClusterOptions shape a test cluster.
type ClusterOptions struct {
	// CA, when set, puts TLS on the routes (each node verifies the others'
	// certificates, which CA signs) and on the client ports.
	CA *CA
}

// StartClusterWith runs n clustered JetStream servers as opt says and
// waits until the cluster has a meta leader.
func StartClusterWith(t testing.TB, n int, opt ClusterOptions) *Cluster {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = FreePort(t)
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c := &Cluster{RoutePorts: ports}
	errs := make(chan error, n)
	nodes := make([]*natsembed.Server, n)
	for i := range n {
		go func() {
			cfg := natsembed.Config{Port: -1, StoreDir: t.TempDir(), ServerName: fmt.Sprintf("n%d", i+1),
				Cluster: &natsembed.ClusterConfig{Name: "inferq-test", Port: ports[i], Routes: routes}}
			if opt.CA != nil {
				cfg.TLS = opt.CA.ServerConfig(t, cfg.ServerName, false)
				cfg.Cluster.TLS = opt.CA.ServerConfig(t, cfg.ServerName+"-route", true)
			}
			srv, err := natsembed.Run(cfg)
			nodes[i] = srv
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("start cluster: %v", err)
		}
	}
	for _, s := range nodes {
		t.Cleanup(s.Shutdown)
		c.Nodes = append(c.Nodes, s)
		c.URLs = append(c.URLs, s.ClientURL())
	}
	// Ready when a meta leader knows every node as online with JetStream:
	// before that, placing an R3 stream fails with "no suitable peers".
	Eventually(t, 20*time.Second, func() bool {
		for _, s := range nodes {
			if s.Server.JetStreamIsLeader() {
				return len(s.Server.JetStreamClusterPeers()) == n
			}
		}
		return false
	}, "no JetStream meta leader that sees all %d nodes", n)
	return c
}
