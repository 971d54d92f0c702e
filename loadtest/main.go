// Command loadtest drives a running inferq over HTTP, verifies every answer
// and reports throughput and latency (an HDR histogram, a progress line each
// second, JSON and a plot). With -compare it runs the same workload, in the
// same process on the same machine, through an asynq pipeline and a bare
// JetStream work queue, each reached both directly and through a small HTTP
// front door of its own, so the broker's cost can be read against baselines.
// Any wrong or lost job makes it exit non-zero.
//
//	go run ./loadtest -url http://127.0.0.1:8080 -c 32 -d 20s
//	go run ./loadtest -mode open -rate 500 -d 20s -scenario burst
//	go run ./loadtest -scenario streaming -model repeat -c 8 -d 10s
//	go run ./loadtest -compare -c 32 -d 10s -plot lt.svg -json lt.json
//	go run ./loadtest -peers asynq,asynq-http -c 32 -d 10s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	if name := os.Getenv(servePeerEnv); name != "" {
		os.Exit(servePeerMain(name, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runCLI(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the run's settings, one per flag.
type options struct {
	url         string
	clients     int           // closed loop: peak concurrent clients
	duration    time.Duration // how long to send
	maxJobs     int           // stop after this many jobs; 0 = only the duration bounds the run
	jsonPath    string
	plotPath    string
	mode        string  // closed | open
	rate        float64 // open loop: peak arrivals per second
	scenario    string
	models      []string
	tokens      int           // streaming and generate models: max_tokens per job
	tokenGap    time.Duration // repeat: interval between tokens
	jobTimeout  time.Duration // a job not terminal after this is lost
	preferWait  time.Duration // inferq: send Prefer: wait=N with each submission (0: off)
	maxInFlight int           // open loop: jobs outstanding at once
	seed        uint64

	compare     bool
	peers       []string      // compare: the baselines to run, in comparePeers order
	redisAddr   string        // asynq's Redis; empty starts a redis-server
	asynqCheck  time.Duration // asynq Config.TaskCheckInterval
	peerWorkers int           // handler goroutines of each peer
	peerGPUs    int           // simgpu devices of each peer
	simgpuA     time.Duration // the peers' simgpu cost per call: a + b·rows
	simgpuB     time.Duration

	cpuProfiles string // a folder for one CPU profile of this process per system run ("": none)
	peerProcess bool   // compare: each -http peer in a child process of its own
}

const maxDuration = time.Hour

// scenarios name the load shapes and their default models.
var scenarios = map[string][]string{
	"steady":    {"simple"},
	"burst":     {"simple"},
	"ramp":      {"simple"},
	"mixed":     {"simple", "identity"},
	"streaming": {"repeat"},
}

// usageIntro starts -h: what the tool is and how a first run looks.
const usageIntro = `loadtest is inferq's load generator: it sends jobs to a running inferq over its HTTP API
(loopback only), checks every answer against what the model must return, and reports
throughput and latency as a progress line each second, a summary table, JSON (-json) and
a plot (-plot). With -compare or -peers it runs the same jobs through asynq and a bare
JetStream work queue as baselines. A wrong or lost job makes it exit 1.

example, with 'go run ./cmd/inferq dev' running in another terminal:
  go run ./loadtest -c 32 -d 20s -plot lt.png

usage: loadtest [flags]

flags:
`

// parseFlags reads the command line; an error has already been printed.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageIntro)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080", "inferq ingress base URL (loopback only)")
	fs.IntVar(&o.clients, "c", 32, "concurrent clients (closed loop; the peak when the scenario shapes load)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "how long to send, per system")
	fs.IntVar(&o.maxJobs, "n", 0, "stop after this many jobs per system (0: only the duration bounds it)")
	fs.StringVar(&o.jsonPath, "json", "", "also write the JSON summary to this file")
	fs.StringVar(&o.plotPath, "plot", "", "write throughput and p99 per second to this .svg or .png file")
	fs.StringVar(&o.mode, "mode", "closed", "closed (N clients, each waits for its job) or open (fixed arrival rate)")
	fs.Float64Var(&o.rate, "rate", 200, "open loop: jobs per second (the peak when the scenario shapes load)")
	fs.StringVar(&o.scenario, "scenario", "steady", "steady, burst (1s at peak every 5s, else 20%), ramp (0 to peak), mixed (simple+identity) or streaming (SSE tokens)")
	model := fs.String("model", "", "model(s), comma-separated: simple, identity, simgpu, repeat, tiny-gpt (default: the scenario's)")
	fs.IntVar(&o.tokens, "tokens", 32, "generate models: max_tokens per job")
	fs.DurationVar(&o.tokenGap, "token-interval", 0, "repeat: time between tokens (its interval_ms)")
	fs.DurationVar(&o.jobTimeout, "job-timeout", 60*time.Second, "a job not finished after this counts as lost")
	fs.DurationVar(&o.preferWait, "prefer-wait", 0, "inferq: send the header Prefer: wait=N (whole seconds) with each non-streaming submission, so a job that ends in time is answered by the POST; the -http peers get ?wait=N on their POST for the same (0: POST then long-poll GET)")
	fs.IntVar(&o.maxInFlight, "max-inflight", 4096, "open loop: most jobs outstanding at once; later sends wait, and their wait counts in their latency")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the generated inputs (the same for every system)")
	fs.BoolVar(&o.compare, "compare", false, "also run the workload through asynq and a bare JetStream work queue, each directly and behind an HTTP front door")
	peerList := fs.String("peers", "", "compare: run only these baselines, comma-separated: "+strings.Join(peerNames(), ", ")+" (implies -compare; default all)")
	fs.StringVar(&o.redisAddr, "redis", "", "compare: Redis host:port for asynq (default: start redis-server on a free loopback port)")
	fs.DurationVar(&o.asynqCheck, "asynq-check-interval", time.Millisecond, "compare: asynq's TaskCheckInterval (its default, 1s, makes a lone job wait up to a second)")
	fs.IntVar(&o.peerWorkers, "peer-workers", 32, "compare: handler goroutines of asynq and of the JetStream worker")
	fs.IntVar(&o.peerGPUs, "peer-gpus", 1, "compare: simulated GPUs of each peer's simgpu (inferq dev has one)")
	fs.DurationVar(&o.simgpuA, "simgpu-a", 20*time.Millisecond, "compare: the peers' simgpu cost per call (set it to inferq's simgpu param a)")
	fs.DurationVar(&o.simgpuB, "simgpu-b", time.Millisecond, "compare: the peers' simgpu cost per row (inferq's param b)")
	fs.StringVar(&o.cpuProfiles, "cpuprofile", "", "write a CPU profile of this process for each system's run to <folder>/<system>.pprof: the client alone for inferq and for an -http peer in its own process (whose process writes <system>-pipeline.pprof), the client and the whole pipeline for a peer in this process (go tool pprof -focus tells them apart)")
	fs.BoolVar(&o.peerProcess, "peer-process", true, "compare: run each -http peer in a child process of its own, as inferq runs in its own (false: in this process, sharing the client's Go runtime)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	fail := func(format string, args ...any) (options, error) {
		err := fmt.Errorf(format, args...)
		fmt.Fprintln(stderr, "loadtest:", err)
		return o, err
	}
	if fs.NArg() > 0 {
		return fail("unexpected arguments %q", fs.Args())
	}
	defaults, ok := scenarios[o.scenario]
	if !ok {
		return fail("-scenario %q: want steady, burst, ramp, mixed or streaming", o.scenario)
	}
	o.models = defaults
	if *model != "" {
		o.models = strings.Split(*model, ",")
	}
	for _, m := range o.models {
		if _, ok := modelKinds[m]; !ok {
			return fail("-model %q: the load test knows simple, identity, simgpu, repeat and tiny-gpt", m)
		}
		if o.scenario == "streaming" && modelKinds[m] != kindGenerate {
			return fail("-scenario streaming needs a generate model (repeat or tiny-gpt), not %q", m)
		}
	}
	switch {
	case o.mode != "closed" && o.mode != "open":
		return fail("-mode %q: want closed or open", o.mode)
	case o.clients < 1:
		return fail("-c must be >= 1")
	case o.duration <= 0 || o.duration > maxDuration:
		return fail("-d must be in (0, 1h]")
	case o.maxJobs < 0:
		return fail("-n must be >= 0")
	case o.mode == "open" && (o.rate <= 0 || o.rate > 1e6):
		return fail("-rate must be in (0, 1e6]")
	case o.maxInFlight < 1:
		return fail("-max-inflight must be >= 1")
	case o.jobTimeout <= 0:
		return fail("-job-timeout must be > 0")
	case o.preferWait != 0 && (o.preferWait < time.Second || o.preferWait > maxDuration || o.preferWait%time.Second != 0):
		return fail("-prefer-wait must be 0 or whole seconds in [1s, 1h]")
	case o.tokens < 1 || o.tokens > 100000:
		return fail("-tokens must be in [1, 100000]")
	case o.peerWorkers < 1:
		return fail("-peer-workers must be >= 1")
	case o.peerGPUs < 1:
		return fail("-peer-gpus must be >= 1")
	case o.simgpuA < 0 || o.simgpuB < 0:
		return fail("-simgpu-a and -simgpu-b must be >= 0")
	case o.asynqCheck <= 0:
		return fail("-asynq-check-interval must be > 0")
	}
	if err := loopbackURL(o.url); err != nil {
		return fail("-url: %v", err)
	}
	if *peerList != "" {
		o.compare = true
		want := strings.Split(*peerList, ",")
		for _, name := range want {
			if !slices.Contains(peerNames(), name) {
				return fail("-peers %q: want some of %s", name, strings.Join(peerNames(), ", "))
			}
		}
		for _, p := range comparePeers {
			if slices.Contains(want, p.name) {
				o.peers = append(o.peers, p.name)
			}
		}
	} else if o.compare {
		o.peers = peerNames()
	}
	if o.compare {
		for _, m := range o.models {
			if !frontModels[m] {
				return fail("-compare runs simple, identity and simgpu jobs only (the peers have no %q model)", m)
			}
		}
		if o.scenario == "streaming" {
			return fail("-compare has no streaming peer")
		}
		if o.redisAddr != "" {
			if err := loopbackURL("redis://" + o.redisAddr); err != nil {
				return fail("-redis: %v", err)
			}
		}
	}
	if o.plotPath != "" && !slices.Contains([]string{".svg", ".png"}, strings.ToLower(fileExt(o.plotPath))) {
		return fail("-plot %q: want a .svg or .png file", o.plotPath)
	}
	return o, nil
}

// loopbackURL refuses any host but this machine's: a load test aimed at
// someone else's server by a typo would be an attack.
func loopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch u.Hostname() {
	case "127.0.0.1", "localhost", "::1":
		return nil
	}
	return fmt.Errorf("%q is not a loopback address (127.0.0.1, ::1 or localhost)", raw)
}

func fileExt(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i:]
	}
	return ""
}

// runCLI is the whole command; it returns the exit code: 0 when every job of
// every system was verified, 1 when one failed or was lost, 2 for bad flags.
func runCLI(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	out, err := runAll(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return 1
	}
	if err := writeOutputs(out, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return 1
	}
	if bad := out.failures(); len(bad) > 0 {
		fmt.Fprintf(stderr, "loadtest: FAILED: %s\n", strings.Join(bad, "; "))
		return 1
	}
	return 0
}

// runAll runs the workload against inferq and then, with -compare, against
// each chosen peer in turn; a peer is started just before its run and
// stopped after it, so it does not share the CPU with the others' runs.
func runAll(ctx context.Context, o options, log io.Writer) (*Output, error) {
	w := newWorkload(o)
	inferq := newInferqTarget(o)
	defer inferq.Close()
	if err := inferq.ready(ctx); err != nil {
		return nil, err
	}
	run := func(t target) (Summary, error) {
		stop, err := startCPUProfile(o.cpuProfiles, t.Name())
		if err != nil {
			return Summary{}, err
		}
		s := runTarget(ctx, t, w, o, log)
		return s, stop()
	}
	first, err := run(inferq)
	if err != nil {
		return nil, err
	}
	out := &Output{Summary: first}
	if !o.compare {
		return out, nil
	}
	for _, p := range comparePeers {
		if !slices.Contains(o.peers, p.name) {
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		start := p.start
		if p.http && o.peerProcess {
			start = func(ctx context.Context, o options) (target, error) { return startPeerProcess(ctx, p, o) }
		}
		t, err := start(ctx, o)
		if err != nil {
			return nil, err
		}
		s, err := run(t)
		if err != nil {
			_ = t.Close()
			return nil, err
		}
		if err := t.Close(); err != nil {
			return nil, fmt.Errorf("stop %s: %w", t.Name(), err)
		}
		out.Peers = append(out.Peers, s)
	}
	out.Compare = compareRows(out.Summary, out.Peers)
	return out, nil
}

// startCPUProfile profiles this process into dir/<system>.pprof until the
// returned stop is called; with dir "" it does nothing.
func startCPUProfile(dir, system string) (stop func() error, err error) {
	if dir == "" {
		return func() error { return nil }, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, system+".pprof"))
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}
