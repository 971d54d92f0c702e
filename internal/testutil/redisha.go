package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisCluster is a Redis Cluster of masters without replicas, each a
// redis-server child process on loopback.
type RedisCluster struct {
	Nodes []*Redis
	Addrs []string // the masters' host:port, the client's seed addresses
}

// StartRedisCluster runs n (at least 3) redis-server processes with
// cluster mode on, joins them with `redis-cli --cluster create` so the
// 16384 slots are spread over them, and waits until every node reports
// cluster_state:ok.
func StartRedisCluster(t testing.TB, n int) *RedisCluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("a Redis Cluster needs at least 3 masters, got %d", n)
	}
	cli, err := redisCLIPath()
	if err != nil {
		t.Fatal(err)
	}
	c := &RedisCluster{}
	for range n {
		// The cluster bus gets its own free port: port+10000, Redis's
		// default, can be past 65535 for an ephemeral port.
		r := startRedis(t, false, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--cluster-port", strconv.Itoa(FreePort(t)))
		c.Nodes = append(c.Nodes, r)
		c.Addrs = append(c.Addrs, r.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	Eventually(t, 20*time.Second, func() bool {
		for _, a := range c.Addrs {
			info, err := redisCommand(a, "CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false
			}
		}
		return true
	}, "redis cluster %v not ok", c.Addrs)
	return c
}

// RedisSentinel is a Redis master with one replica, watched by three
// Sentinels that promote the replica when the master fails.
type RedisSentinel struct {
	Master, Replica *Redis
	Sentinels       []string // the Sentinels' host:port
	MasterName      string
}

// StartRedisSentinel runs a master (append-only file on), a replica of it
// and three `redis-server --sentinel` processes with a quorum of 2 that
// deem the master down after 1s without an answer. It returns once the
// replica is in sync and every Sentinel knows both the replica and the
// other Sentinels, so a failover can start at once.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	rs := &RedisSentinel{MasterName: "inferq-test"}
	rs.Master = startRedis(t, true)
	host, port, _ := net.SplitHostPort(rs.Master.Addr)
	rs.Replica = startRedis(t, true, "--replicaof", host, port)
	Eventually(t, 20*time.Second, func() bool {
		info, err := redisCommand(rs.Replica.Addr, "INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up")
	}, "replica %s not in sync with %s", rs.Replica.Addr, rs.Master.Addr)
	for range 3 {
		rs.Sentinels = append(rs.Sentinels, startSentinel(t, rs.MasterName, rs.Master.Addr))
	}
	Eventually(t, 30*time.Second, func() bool {
		for _, a := range rs.Sentinels {
			m, err := redisCommand(a, "SENTINEL", "MASTER", rs.MasterName)
			if err != nil || !strings.Contains(m, "\nnum-slaves\n1\n") || !strings.Contains(m, "\nnum-other-sentinels\n2\n") {
				return false
			}
		}
		return true
	}, "sentinels %v do not all know the replica and each other", rs.Sentinels)
	return rs
}

// CurrentMaster asks a Sentinel which address is the master now.
func (rs *RedisSentinel) CurrentMaster() (string, error) {
	var lastErr error
	for _, a := range rs.Sentinels {
		out, err := redisCommand(a, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", rs.MasterName)
		if err != nil {
			lastErr = err
			continue
		}
		f := strings.Fields(out)
		if len(f) == 2 {
			return net.JoinHostPort(f[0], f[1]), nil
		}
		lastErr = fmt.Errorf("sentinel %s: %q", a, out)
	}
	return "", lastErr
}

// startSentinel runs one Sentinel (redis-server --sentinel, with a config
// file it may rewrite) and returns its address once it answers.
func startSentinel(t testing.TB, name, master string) string {
	t.Helper()
	bin, err := RedisServerPath()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	_, port, _ := net.SplitHostPort(addr)
	mhost, mport, _ := net.SplitHostPort(master)
	conf := fmt.Sprintf(`port %s
bind 127.0.0.1
dir %s
logfile %s
sentinel monitor %s %s %s 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 1
`, port, dir, filepath.Join(dir, "sentinel.log"), name, mhost, mport, name, name, name)
	file := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, file, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis sentinel: %v", err)
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exit) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exit })
	Eventually(t, 10*time.Second, func() bool { return pingRedis(addr) == nil }, "sentinel %s not answering", addr)
	return addr
}

// redisCLIPath finds redis-cli (it comes with redis-server).
func redisCLIPath() (string, error) {
	if p, err := exec.LookPath("redis-cli"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("redis-cli not found: install it (Debian: apt-get install -y redis-tools) or run `make deps`")
}

// redisCommand sends one command in RESP and returns the reply flattened
// to text: a bulk or simple string as is, an array as its elements one a
// line. Enough for the INFO and SENTINEL answers the helpers read.
func redisCommand(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	var out strings.Builder
	if err := readReply(bufio.NewReader(c), &out); err != nil {
		return "", err
	}
	return out.String(), nil
}

func readReply(r *bufio.Reader, out *strings.Builder) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return fmt.Errorf("redis: empty reply line")
	}
	switch line[0] {
	case '+', ':':
		out.WriteString(line[1:] + "\n")
	case '-':
		return fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		out.Write(buf[:n])
		out.WriteString("\n")
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return err
		}
		for range n {
			if err := readReply(r, out); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("redis: unexpected reply %q", line)
	}
	return nil
}
