package agent

// Process supervises a model's runner subprocess: it starts one on demand,
// checks its health, restarts it with backoff after a crash or a hang, and
// hands it one batch at a time (subprocess.go spawns and reaps it,
// framing.go carries the frames).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/schemas/inferqpb"
	"github.com/inferq/inferq/worker/deepspeed_nats/python"
)

// ErrProcessClosed is returned by Run after Close.
var ErrProcessClosed = errors.New("runner process closed")

// ErrRunnerUnavailable wraps a failure to start the runner or load its
// model: it says nothing about the batch that was waiting for it.
var ErrRunnerUnavailable = errors.New("runner unavailable")

// ErrModelLoad wraps the runner's own answer that the model cannot load (a
// missing file, inputs that do not match the config, a factory that
// raised), as opposed to a runner that crashed or hung while loading.
var ErrModelLoad = errors.New("model did not load")

// loadFailure is why the last start of the runner failed.
type loadFailure struct {
	err error
	// retryAt is set when the runner refused the model (ErrModelLoad):
	// batches before then fail at once, without a new runner.
	retryAt time.Time
}

// ProcessOptions tune a Process. Zero values take the defaults.
type ProcessOptions struct {
	// Command runs the runner; default the model's runner.command. A
	// leading "python3" or "python" is replaced by Python.
	Command []string
	// Python is the interpreter; default FindPython().
	Python string
	// PythonPath is put first on PYTHONPATH; default the embedded
	// inferq_runner package, extracted under python.DefaultDir().
	PythonPath string
	// Env is added to the worker's environment.
	Env []string
	// LoadTimeout bounds start-up: Load sent until Ready (default 10m:
	// big models load slowly).
	LoadTimeout time.Duration
	// HealthInterval is how often a ready runner is pinged (default 5s);
	// a runner silent for HealthTimeout (default 30s) is hung and killed.
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	// CancelGrace is how long Run waits for the runner to wind a batch
	// down once ctx ends, before killing it (default 10s).
	CancelGrace time.Duration
	// StopGrace is how long Close waits after closing stdin, and again
	// after SIGTERM, before it kills the runner (default 5s).
	StopGrace time.Duration
	// RestartBackoff is the delay before the first restart after a crash;
	// it doubles per consecutive failure up to MaxRestartBackoff
	// (defaults 500ms and 30s).
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// Log receives the runner's stderr and lifecycle events; default
	// slog.Default().
	Log *slog.Logger
}

func (o *ProcessOptions) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.LoadTimeout, 10*time.Minute)
	def(&o.HealthInterval, 5*time.Second)
	def(&o.HealthTimeout, 30*time.Second)
	def(&o.CancelGrace, 10*time.Second)
	def(&o.StopGrace, 5*time.Second)
	def(&o.RestartBackoff, 500*time.Millisecond)
	def(&o.MaxRestartBackoff, 30*time.Second)
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

// Process is a Runner that drives a model runner subprocess (the Python
// runner) over length-prefixed RunnerFrame protobufs on its stdin/stdout.
// It runs one batch at a time, restarts a runner that crashed or hung (with
// backoff) at the next Run, and pings it between and during batches.
type Process struct {
	model *config.Model
	opt   ProcessOptions
	log   *slog.Logger
	argv  []string
	env   []string
	load  *inferqpb.Load

	life     context.Context // ended by Close
	shutdown context.CancelFunc
	wg       sync.WaitGroup // the warm-up goroutine

	mu       sync.Mutex // held by Run, start-up and Close
	cur      *proc
	failures int // consecutive crashes or failed starts

	ready      atomic.Pointer[inferqpb.Ready] // the current runner's Ready; nil while none is loaded
	loadFailed atomic.Pointer[loadFailure]    // why the last start failed; nil once a runner loads

	runMu     sync.Mutex // the batch in the runner, for Cancel while Run holds mu
	running   *proc
	batchID   string
	closeOnce sync.Once

	// cont: continuous batching (continuous.go): batches run side by side
	// in one runner, their frames routed by batch and job id (under runMu).
	cont     bool
	routes   map[string]*route
	jobBatch map[string]string
	routed   map[*proc]bool
}

// NewProcess prepares the runner of model m: it resolves the interpreter
// and extracts the runner package, but starts nothing (see Start and Warm).
func NewProcess(m *config.Model, opt ProcessOptions) (*Process, error) {
	opt.defaults()
	argv := slices.Clone(opt.Command)
	if len(argv) == 0 {
		argv = slices.Clone(m.Runner.Command)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("model %q: runner.command is empty", m.Name)
	}
	if argv[0] == "python3" || argv[0] == "python" {
		py := opt.Python
		if py == "" {
			var err error
			if py, err = FindPython(); err != nil {
				return nil, fmt.Errorf("model %q: %w", m.Name, err)
			}
		}
		argv[0] = py
	}
	pp := opt.PythonPath
	if pp == "" {
		var err error
		if pp, err = python.Extract(python.DefaultDir()); err != nil {
			return nil, fmt.Errorf("model %q: %w", m.Name, err)
		}
	}
	if old := os.Getenv("PYTHONPATH"); old != "" {
		pp += string(os.PathListSeparator) + old
	}
	env := append(os.Environ(), "PYTHONPATH="+pp, "PYTHONUNBUFFERED=1")
	env = append(env, opt.Env...)

	// The runner checks the model against the config's inputs and outputs
	// when it loads it.
	opts, err := json.Marshal(map[string]any{
		"name": m.Name, "kind": m.Kind, "max_batch_size": m.Batching.MaxBatchSize, "params": m.Runner.Params,
		"inputs": m.Inputs, "outputs": m.Outputs, "python_path": m.Runner.PythonPath, "deepspeed": m.Runner.DeepSpeed,
		"continuous": m.ContinuousBatching(), "max_num_seqs": m.Batching.MaxNumSeqs, "max_step_tokens": m.Batching.MaxStepTokens,
		"join_every_steps": m.Batching.JoinEverySteps, "join_at_once_below": m.Batching.JoinAtOnceBelow,
	})
	if err != nil {
		return nil, fmt.Errorf("model %q: runner params: %w", m.Name, err)
	}
	life, shutdown := context.WithCancel(context.Background())
	return &Process{
		model: m, opt: opt, argv: argv, env: env,
		log:  opt.Log.With("model", m.Name),
		load: &inferqpb.Load{Model: m.Name, Source: sourceOf(m, argv), Device: m.Runner.Device, OptionsJson: opts},
		life: life, shutdown: shutdown, cont: m.ContinuousBatching(),
	}, nil
}

// sourceOf is the model source for Load: runner.model, else
// runner.params.source, else the command's --model argument; empty lets the
// runner use its own flag.
func sourceOf(m *config.Model, argv []string) string {
	if m.Runner.Model != "" {
		return m.Runner.Model
	}
	if s, ok := m.Runner.Params["source"].(string); ok && s != "" {
		return s
	}
	for i, a := range argv {
		if a == "--model" && i+1 < len(argv) {
			return argv[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--model="); ok {
			return v
		}
	}
	return ""
}

// bind ends ctx when the Process closes.
func (p *Process) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(p.life, func() { cancel(ErrProcessClosed) })
	return ctx, func() { stop(); cancel(nil) }
}

// Start starts the runner and waits until it has loaded the model, unless
// it is already running.
func (p *Process) Start(ctx context.Context) error {
	ctx, cancel := p.bind(ctx)
	defer cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.life.Err() != nil {
		return ErrProcessClosed
	}
	_, err := p.ensure(ctx)
	return err
}

// Warm starts the runner in the background so the model loads before the
// first batch; a failure is logged and retried by the first Run.
func (p *Process) Warm() {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.Start(context.Background()); err != nil && p.life.Err() == nil {
			p.log.Warn("runner warm-up failed; retrying at the first batch", "err", err)
		}
	}()
}

// Cancel asks the runner to stop one job of the batch it is running; the
// job's result then carries error code "cancelled". It implements Canceller
// and is safe to call at any time, concurrently with Run; a job that is not
// running is ignored.
func (p *Process) Cancel(jobID string) {
	if p.cont {
		p.cancelShared(jobID)
		return
	}
	p.runMu.Lock()
	pr, batch := p.running, p.batchID
	p.runMu.Unlock()
	if pr == nil {
		return
	}
	_ = pr.send(&inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Cancel{Cancel: &inferqpb.Cancel{BatchId: batch, JobId: jobID}}}, p.opt.HealthTimeout)
}

var _ Canceller = (*Process)(nil)

func (p *Process) setRunning(pr *proc, batchID string) {
	p.runMu.Lock()
	p.running, p.batchID = pr, batchID
	p.runMu.Unlock()
}

// Run sends the batch to the runner, forwards its tokens to emit in order
// and returns its result. When ctx ends it cancels every job and still waits
// up to CancelGrace for the runner to finish, so the runner stays in step.
// An error means the batch failed: a runner that crashed or hung is killed
// and the next Run restarts it.
func (p *Process) Run(ctx context.Context, b *inferqpb.Batch, emit func(*inferqpb.TokenChunk) error) (*inferqpb.BatchResult, error) {
	if p.cont {
		return p.RunJobs(ctx, b, emit, nil)
	}
	ctx, cancel := p.bind(ctx)
	defer cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.life.Err() != nil {
		return nil, ErrProcessClosed
	}
	pr, err := p.ensure(ctx)
	if err != nil {
		return nil, err
	}
	if !pr.drain(p.log) {
		p.crashed(pr, "exited between batches")
		if pr, err = p.ensure(ctx); err != nil {
			return nil, err
		}
	}
	p.setRunning(pr, b.Id)
	defer p.setRunning(nil, "")
	jobs := make(map[string]bool, len(b.Jobs))
	for _, j := range b.Jobs {
		jobs[j.Id] = true
	}
	if err := pr.send(&inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Batch{Batch: b}}, p.opt.HealthTimeout); err != nil {
		p.crashed(pr, "batch not accepted")
		return nil, fmt.Errorf("runner %s: send batch: %w", p.model.Name, err)
	}
	var (
		cause error // why the batch is being cancelled
		done  = ctx.Done()
		grace <-chan time.Time
	)
	stopAll := func(why error) {
		cause, done = why, nil
		for _, j := range b.Jobs {
			_ = pr.send(&inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Cancel{Cancel: &inferqpb.Cancel{BatchId: b.Id, JobId: j.Id}}}, p.opt.HealthTimeout)
		}
		grace = time.After(p.opt.CancelGrace)
	}
	for {
		select {
		case f, ok := <-pr.frames:
			if !ok {
				why := p.crashed(pr, "exited mid-batch")
				if cause != nil {
					return nil, cause
				}
				return nil, fmt.Errorf("runner %s %s", p.model.Name, why)
			}
			switch x := f.Frame.(type) {
			case *inferqpb.RunnerFrame_Token:
				if !jobs[x.Token.JobId] {
					p.log.Warn("runner sent a token for a job not in the batch", "job", x.Token.JobId, "batch", b.Id)
					continue
				}
				if cause == nil {
					if err := emit(x.Token); err != nil {
						stopAll(fmt.Errorf("emit token: %w", err))
					}
				}
			case *inferqpb.RunnerFrame_Result:
				if x.Result.BatchId != b.Id {
					p.log.Warn("runner sent a result for another batch", "got", x.Result.BatchId, "batch", b.Id)
					continue
				}
				p.failures = 0
				if cause != nil {
					return nil, cause
				}
				return x.Result, nil
			case *inferqpb.RunnerFrame_Error:
				if id := x.Error.BatchId; id != "" && id != b.Id {
					p.log.Warn("runner sent an error for another batch", "got", id, "batch", b.Id)
					continue
				}
				p.failures = 0 // the runner is alive and in step; the batch is what failed
				if cause != nil {
					return nil, cause
				}
				return nil, batchError(p.model.Name, b.Id, x.Error.GetError())
			default:
				p.log.Warn("unexpected frame from runner", "frame", fmt.Sprintf("%T", f.Frame))
			}
		case <-done:
			stopAll(context.Cause(ctx))
		case <-grace:
			p.log.Warn("runner did not wind down a cancelled batch in time; killing it", "batch", b.Id, "grace", p.opt.CancelGrace)
			p.crashed(pr, "killed after cancel grace")
			return nil, cause
		}
	}
}

// Close stops the runner: it closes its stdin (the runner exits), then
// sends SIGTERM, then SIGKILL, StopGrace apart. It waits for every
// goroutine of the Process.
func (p *Process) Close() error {
	p.closeOnce.Do(func() {
		p.shutdown()
		p.wg.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cur != nil {
			p.stop(p.cur)
			p.setCur(nil)
		}
	})
	return nil
}

// setCur records the current runner; called with mu held.
func (p *Process) setCur(pr *proc) {
	p.cur = pr
	if pr == nil {
		p.ready.Store(nil)
	} else {
		p.ready.Store(pr.ready)
	}
}

// Describe reports the loaded runner's device and capacity (from its Ready
// frame); Ready is false while no runner is loaded, with Error saying why
// the last load failed. It implements Describer and never blocks, even
// while Run holds the runner.
func (p *Process) Describe() RunnerInfo {
	r := p.ready.Load()
	if r == nil {
		if f := p.loadFailed.Load(); f != nil {
			return RunnerInfo{Error: f.err.Error()}
		}
		return RunnerInfo{}
	}
	return RunnerInfo{Ready: true, Device: r.GetDevice(), Capacity: int(r.GetCapacity())}
}

// MaxConcurrentBatches is 1: the runner executes one batch at a time;
// with continuous batching it is max_num_seqs, as every batch holds a
// sequence at least.
func (p *Process) MaxConcurrentBatches() int {
	if p.cont {
		return p.model.Batching.MaxNumSeqs
	}
	return 1
}

var (
	_ Describer   = (*Process)(nil)
	_ Concurrency = (*Process)(nil)
	_ JobStreamer = (*Process)(nil)
)

// ensure returns a ready runner, starting one (after a backoff when the
// last one failed). Called with mu held.
func (p *Process) ensure(ctx context.Context) (*proc, error) {
	if pr := p.cur; pr != nil {
		select {
		case <-pr.exited:
			p.crashed(pr, "exited between batches")
		default:
			return pr, nil
		}
	}
	// A model the runner refused to load fails its batches at once until
	// the backoff has passed: they go back to the queue (another worker may
	// serve them; max_deliver ends them) instead of each waiting for a
	// load that fails again.
	f := p.loadFailed.Load()
	if f != nil && time.Now().Before(f.retryAt) {
		return nil, fmt.Errorf("runner %s: %w: %w", p.model.Name, ErrRunnerUnavailable, f.err)
	}
	if p.failures > 0 && (f == nil || f.retryAt.IsZero()) {
		d := p.backoff()
		p.log.Info("restarting runner", "after", d, "failures", p.failures)
		if !sleep(ctx, d) {
			return nil, fmt.Errorf("runner %s: %w", p.model.Name, context.Cause(ctx))
		}
	}
	pr, err := p.start(ctx)
	if err != nil {
		p.failures++
		if ctx.Err() != nil {
			return nil, fmt.Errorf("runner %s: %w", p.model.Name, err)
		}
		lf := &loadFailure{err: err}
		if errors.Is(err, ErrModelLoad) {
			d := p.backoff()
			lf.retryAt = time.Now().Add(d)
			p.log.Error("model did not load; retrying the load later", "err", err, "after", d)
		}
		p.loadFailed.Store(lf)
		return nil, fmt.Errorf("runner %s: %w: %w", p.model.Name, ErrRunnerUnavailable, err)
	}
	p.loadFailed.Store(nil)
	p.setCur(pr)
	return pr, nil
}

// backoff is the delay before the next start after p.failures failures.
func (p *Process) backoff() time.Duration {
	return min(p.opt.RestartBackoff<<min(max(p.failures-1, 0), 16), p.opt.MaxRestartBackoff)
}

// crashed kills pr, waits for it and forgets it; it returns a description
// of how it ended.
func (p *Process) crashed(pr *proc, what string) string {
	pr.kill()
	<-pr.exited
	pr.shut()
	why := fmt.Sprintf("%s (%v)", what, pr.waitErr)
	if pr.hung.Load() {
		why = fmt.Sprintf("%s (hung: no health answer within %s)", what, p.opt.HealthTimeout)
	}
	if tail := pr.stderrTail(); tail != "" {
		why += "; stderr: " + tail
	}
	p.log.Error("runner failed", "pid", pr.pid, "reason", why)
	p.failures++
	if p.cur == pr {
		p.setCur(nil)
	}
	return why
}

// stop ends pr gracefully: EOF on stdin, then SIGTERM, then SIGKILL.
func (p *Process) stop(pr *proc) {
	_ = pr.stdin.Close()
	if !waitClosed(pr.exited, p.opt.StopGrace) {
		p.log.Warn("runner ignored stdin EOF; sending SIGTERM", "pid", pr.pid)
		pr.terminate()
		if !waitClosed(pr.exited, p.opt.StopGrace) {
			p.log.Warn("runner ignored SIGTERM; killing it", "pid", pr.pid)
			pr.kill()
			<-pr.exited
		}
	}
	pr.shut()
	p.log.Info("runner stopped", "pid", pr.pid, "exit", pr.waitErr)
}

// start spawns a runner and performs the Load/Ready handshake.
func (p *Process) start(ctx context.Context) (*proc, error) {
	pr, err := spawn(p.argv, p.env, p.log)
	if err != nil {
		return nil, err
	}
	p.log.Info("runner starting", "pid", pr.pid, "command", strings.Join(p.argv, " "))
	fail := func(err error) (*proc, error) {
		pr.kill()
		<-pr.exited
		pr.shut()
		if tail := pr.stderrTail(); tail != "" {
			err = fmt.Errorf("%w; stderr: %s", err, tail)
		}
		return nil, err
	}
	if err := pr.send(&inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Load{Load: p.load}}, p.opt.LoadTimeout); err != nil {
		return fail(fmt.Errorf("send load: %w", err))
	}
	timeout := time.NewTimer(p.opt.LoadTimeout)
	defer timeout.Stop()
	for {
		select {
		case f, ok := <-pr.frames:
			if !ok {
				<-pr.exited
				return fail(fmt.Errorf("runner exited while loading (%v)", pr.waitErr))
			}
			switch x := f.Frame.(type) {
			case *inferqpb.RunnerFrame_Ready:
				pr.ready = x.Ready
				pr.seen()
				pr.wg.Add(1)
				go pr.ping(p.opt.HealthInterval, p.opt.HealthTimeout, p.log)
				p.log.Info("runner ready", "pid", pr.pid, "device", x.Ready.Device, "capacity", x.Ready.Capacity)
				return pr, nil
			case *inferqpb.RunnerFrame_Error:
				return fail(fmt.Errorf("%w: %s: %s", ErrModelLoad, x.Error.GetError().GetCode(), x.Error.GetError().GetMessage()))
			default:
				p.log.Warn("unexpected frame from runner while loading", "frame", fmt.Sprintf("%T", f.Frame))
			}
		case <-timeout.C:
			return fail(fmt.Errorf("no Ready within %s", p.opt.LoadTimeout))
		case <-ctx.Done():
			return fail(fmt.Errorf("start: %w", context.Cause(ctx)))
		}
	}
}

// ping sends Health every interval and kills a runner that has sent no
// frame for timeout.
func (pr *proc) ping(interval, timeout time.Duration, log *slog.Logger) {
	defer pr.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-pr.done:
			return
		case <-pr.exited:
			return
		case <-t.C:
		}
		if silent := time.Since(time.Unix(0, pr.last.Load())); silent > timeout {
			log.Error("runner hung; killing it", "pid", pr.pid, "silent", silent.Round(time.Millisecond))
			pr.hung.Store(true)
			pr.kill()
			return
		}
		now := time.Now().UnixNano()
		_ = pr.send(&inferqpb.RunnerFrame{Frame: &inferqpb.RunnerFrame_Health{Health: &inferqpb.Health{TimeUnixNano: now}}}, interval)
	}
}

// batchError is a runner's error frame about batch as the agent's error:
// permanent (the batch's jobs fail) unless the runner says a retry may help.
func batchError(model, batch string, e *inferqpb.Error) error {
	err := fmt.Errorf("runner %s: batch %s: %s: %s", model, batch, e.GetCode(), e.GetMessage())
	if !e.GetRetryable() {
		return &PermanentError{Err: err}
	}
	return err
}
