package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// An -http peer runs, by default, in a child process of its own: the load
// test starts itself again with servePeerEnv naming the peer, reads the URL
// of the peer's front door from the child's first line of output and drives
// it over HTTP. inferq is measured that way (a separate `inferq dev`), so
// every system pays the same process boundary: the client's requests cross
// it and the system's CPU is its own. In this process (-peer-process=false)
// a peer shares the client's Go runtime, which spares it the wake-ups of
// another process and favours it over inferq.

// servePeerEnv names the peer a child process serves; its arguments are the
// peer's flags.
const servePeerEnv = "LOADTEST_SERVE_PEER"

// servePeerMain is a child's main: it starts the peer named by servePeerEnv,
// prints its front door's URL on stdout, and serves until stdin closes (its
// parent is done or gone) or a signal comes.
func servePeerMain(name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	i := slices.IndexFunc(comparePeers, func(p peer) bool { return p.name == name && p.http })
	if i < 0 {
		fmt.Fprintf(stderr, "loadtest: %s=%q: not an -http peer\n", servePeerEnv, name)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.cpuProfiles != "" {
		stopProfile, err := startCPUProfile(o.cpuProfiles, name+"-pipeline")
		if err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
			return 1
		}
		defer func() { _ = stopProfile() }()
	}
	t, err := comparePeers[i].start(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return 1
	}
	defer func() {
		if err := t.Close(); err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
		}
	}()
	fmt.Fprintln(stdout, t.(*httpPeer).front.url)
	eof := make(chan struct{})
	go func() { // ends with the process: stdin closes when the parent goes
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()
	select {
	case <-eof:
	case <-ctx.Done():
	}
	return 0
}

// peerProcess is a child process serving one -http peer.
type peerProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan error // the child's exit
}

// startPeerProcess starts the child serving p and returns a target that
// drives its front door, as inferq's is driven.
func startPeerProcess(ctx context.Context, p peer, o options) (target, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("%s peer process: %w", p.name, err)
	}
	cmd := exec.Command(exe, peerArgs(o)...)
	cmd.Env = append(os.Environ(), servePeerEnv+"="+p.name)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s peer process: %w", p.name, err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("%s peer process: %w", p.name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s peer process: %w", p.name, err)
	}
	child := &peerProcess{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	url := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		url <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, stdout)
		child.done <- cmd.Wait()
	}()
	select {
	case u := <-url:
		if strings.HasPrefix(u, "http://") {
			return &httpPeer{name: p.name, api: newAPIClient(u, o), wait: o.preferWait, child: child}, nil
		}
		err = fmt.Errorf("%s peer process: no URL on its first line (%q)", p.name, u)
	case <-time.After(time.Minute):
		err = fmt.Errorf("%s peer process: no URL after a minute", p.name)
	case <-ctx.Done():
		err = ctx.Err()
	}
	return nil, errors.Join(err, child.stop())
}

// peerArgs are the flags a peer's child needs: those that shape the peer.
func peerArgs(o options) []string {
	args := []string{
		"-peer-workers", strconv.Itoa(o.peerWorkers),
		"-peer-gpus", strconv.Itoa(o.peerGPUs),
		"-simgpu-a", o.simgpuA.String(),
		"-simgpu-b", o.simgpuB.String(),
		"-asynq-check-interval", o.asynqCheck.String(),
	}
	if o.redisAddr != "" {
		args = append(args, "-redis", o.redisAddr)
	}
	if o.cpuProfiles != "" {
		args = append(args, "-cpuprofile", o.cpuProfiles)
	}
	return args
}

// stop closes the child's stdin, which ends it, and waits for it; a child
// still running after 30 s is killed.
func (c *peerProcess) stop() error {
	_ = c.stdin.Close()
	select {
	case err := <-c.done:
		return err
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		return fmt.Errorf("peer process %d: killed, still running 30 s after its stdin closed: %v", c.cmd.Process.Pid, <-c.done)
	}
}
