package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/inferq/inferq/internal/redisbin"
)

// asynqTarget is the asynq peer, the design an asynq user would write for
// "run a job, hand its result back":
//
//	client: EnqueueContext(task{type: model, payload: the POST body}, TaskID(id), Retention(1m))
//	server: handler runs peerRun, stores it with the task's ResultWriter,
//	        then PUBLISHes the task id on a Redis channel
//	client: one SUBSCRIBE serves every waiting job; on its id the client
//	        reads the result back with Inspector.GetTaskInfo and verifies it.
//
// Polling GetTaskInfo instead would add the poll interval to every job (or
// hammer Redis); the notification is what inferq's long-poll does too. The
// client side and the worker side have their own Redis connections, as two
// processes would. TaskCheckInterval (-asynq-check-interval, 1ms by default)
// is how long asynq's processor sleeps when it finds its queue empty; its
// default of 1s would make a lone job wait up to a second.
type asynqTarget struct {
	redis     *redisServer // nil when -redis names one
	rdb       *redis.Client
	workerRDB *redis.Client
	client    *asynq.Client
	inspector *asynq.Inspector
	srv       *asynq.Server
	sub       *redis.PubSub
	waiters   *waiters
	ids       *jobIDs
	dispatch  sync.WaitGroup
	gpu       *simGPU
}

const (
	asynqQueue     = "inferq-loadtest"
	asynqDone      = "inferq-loadtest:done" // channel of finished task ids
	asynqRetention = time.Minute            // completed tasks (and results) stay readable this long
)

func startAsynq(ctx context.Context, o options) (target, error) {
	t, err := newAsynq(ctx, o, nil)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// newAsynq starts the pipeline: Redis, the worker server and the client
// side's connections and completion subscription, which also hands each
// notice to accepted when it is not nil.
func newAsynq(ctx context.Context, o options, accepted *mailboxes) (*asynqTarget, error) {
	t := &asynqTarget{waiters: newWaiters(), ids: newJobIDs("asynq"), gpu: newSimGPU(o)}
	addr := o.redisAddr
	if addr == "" {
		rs, err := startRedisServer(ctx)
		if err != nil {
			return nil, fmt.Errorf("asynq peer: %w", err)
		}
		t.redis, addr = rs, rs.addr
	}
	t.rdb = redis.NewClient(&redis.Options{Addr: addr, PoolSize: 128, PoolTimeout: o.jobTimeout})
	t.workerRDB = redis.NewClient(&redis.Options{Addr: addr, PoolSize: o.peerWorkers + 16})
	if err := t.rdb.Ping(ctx).Err(); err != nil {
		t.Close()
		return nil, fmt.Errorf("asynq peer: redis %s: %w", addr, err)
	}
	t.sub = t.rdb.Subscribe(ctx, asynqDone)
	if _, err := t.sub.Receive(ctx); err != nil { // the subscription is live before any job is sent
		t.Close()
		return nil, fmt.Errorf("asynq peer: subscribe %s: %w", asynqDone, err)
	}
	notices := t.sub.Channel(redis.WithChannelSize(4096))
	t.dispatch.Go(func() {
		for m := range notices { // ends when sub is closed
			t.waiters.deliver(m.Payload, nil)
			if accepted != nil {
				accepted.deliver(m.Payload, nil)
			}
		}
	})
	t.client = asynq.NewClientFromRedisClient(t.rdb)
	t.inspector = asynq.NewInspectorFromRedisClient(t.rdb)
	t.srv = asynq.NewServerFromRedisClient(t.workerRDB, asynq.Config{
		Concurrency:       o.peerWorkers,
		TaskCheckInterval: o.asynqCheck,
		Queues:            map[string]int{asynqQueue: 1},
		LogLevel:          asynq.WarnLevel,
		ShutdownTimeout:   5 * time.Second,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("simple", t.handle)
	mux.HandleFunc("identity", t.handle)
	mux.HandleFunc("simgpu", t.handle)
	if err := t.srv.Start(mux); err != nil {
		t.srv = nil
		t.Close()
		return nil, fmt.Errorf("asynq peer: start server: %w", err)
	}
	return t, nil
}

func (t *asynqTarget) Name() string { return "asynq" }

// handle is the worker. A request it cannot answer gets an error body as its
// result, so the client reports it as a wrong result at once instead of as a
// lost job after retries.
func (t *asynqTarget) handle(ctx context.Context, task *asynq.Task) error {
	answer, err := peerRun(ctx, t.gpu, task.Type(), task.Payload())
	if err != nil {
		answer = mustJSON(map[string]string{"error": err.Error()})
	}
	w := task.ResultWriter()
	if _, err := w.Write(answer); err != nil {
		return fmt.Errorf("write result of %s: %w", w.TaskID(), err)
	}
	if err := t.workerRDB.Publish(ctx, asynqDone, w.TaskID()).Err(); err != nil {
		return fmt.Errorf("notify %s: %w", w.TaskID(), err)
	}
	return nil
}

func (t *asynqTarget) Do(ctx context.Context, j job, start time.Time) outcome {
	id := t.ids.next()
	done := t.waiters.add(id)
	defer t.waiters.remove(id)
	sent := time.Now()
	err := t.enqueue(ctx, id, j.model, j.body)
	submit := time.Since(sent)
	if err != nil {
		return outcome{kind: errSubmitTransport, detail: "enqueue " + id + ": " + err.Error()}
	}
	select {
	case <-done:
	case <-ctx.Done():
		return outcome{kind: errGetTransport, detail: "task " + id + ": no completion notice"}
	}
	info, err := t.inspector.GetTaskInfo(asynqQueue, id)
	if err != nil {
		return outcome{kind: errGetTransport, detail: "task " + id + ": " + err.Error()}
	}
	return checkPeerAnswer(j, id, info.Result, time.Now(), submit)
}

// enqueue sends one job as a task under id.
func (t *asynqTarget) enqueue(ctx context.Context, id, model string, body []byte) error {
	_, err := t.client.EnqueueContext(ctx, asynq.NewTask(model, body),
		asynq.TaskID(id), asynq.Queue(asynqQueue), asynq.Retention(asynqRetention), asynq.MaxRetry(3))
	return err
}

// await is the general long-poll, for a task whatever enqueued it. The GET
// comes after the task may already have finished, so it listens for the
// task's notice first and then looks, and looks again on the notice: a
// task finishing in between still wakes it, and nothing polls. Two GETs of
// one id at once would share one waiter slot; the later one may then wait
// out its ?wait.
func (t *asynqTarget) await(ctx context.Context, id string) ([]byte, error) {
	notice := t.waiters.add(id)
	defer t.waiters.remove(id)
	for {
		info, err := t.inspector.GetTaskInfo(asynqQueue, id)
		switch {
		case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
			return nil, fmt.Errorf("task %s: %w", id, errUnknownJob)
		case err != nil:
			return nil, fmt.Errorf("task %s: %w", id, err)
		case len(info.Result) > 0: // written before the notice, maybe while the task is still active
			return info.Result, nil
		case info.State == asynq.TaskStateArchived:
			return nil, fmt.Errorf("task %s failed after its retries: %s", id, info.LastErr)
		}
		select {
		case <-notice:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// asynqFront is the asynq pipeline as the HTTP front door drives it; the
// front door plays the asynq client's part, enqueueing and reading results
// back. It keeps a box for each task it enqueued, filled by the task's
// notice, so the GET of such a task reads the result once, after the
// notice, as the direct peer does; await's look-then-wait is left for
// tasks it does not know (enqueued elsewhere, or long ago).
type asynqFront struct {
	t        *asynqTarget
	accepted *mailboxes
	stop     func()
}

// startAsynqHTTP runs the asynq pipeline behind the HTTP front door.
func startAsynqHTTP(ctx context.Context, o options) (target, error) {
	accepted := newMailboxes()
	t, err := newAsynq(ctx, o, accepted)
	if err != nil {
		return nil, err
	}
	b := &asynqFront{t: t, accepted: accepted, stop: accepted.expireEvery(asynqRetention)}
	return startHTTPPeer("asynq-http", o, b)
}

// enqueue opens the task's box before sending it, so its notice cannot
// come first.
func (b *asynqFront) enqueue(ctx context.Context, id, model string, body []byte) error {
	return b.accepted.send(id, func() error { return b.t.enqueue(ctx, id, model, body) })
}

func (b *asynqFront) await(ctx context.Context, id string) ([]byte, error) {
	_, err := b.accepted.take(ctx, id)
	switch {
	case errors.Is(err, errUnknownJob):
		return b.t.await(ctx, id)
	case err != nil:
		return nil, err // the wait ended first; the box stays for the next GET
	}
	if info, err := b.t.inspector.GetTaskInfo(asynqQueue, id); err == nil && len(info.Result) > 0 {
		return info.Result, nil
	}
	return b.t.await(ctx, id) // the read failed: look again, and wait if need be
}

// Close stops the boxes' expiry, then the pipeline.
func (b *asynqFront) Close() error {
	b.stop()
	return b.t.Close()
}

// Close stops the worker (waiting for its handlers), the notice dispatcher,
// the connections and the redis-server this peer started.
func (t *asynqTarget) Close() error {
	if t.srv != nil {
		t.srv.Shutdown()
	}
	if t.sub != nil {
		_ = t.sub.Close()
	}
	t.dispatch.Wait()
	var errs []error
	if t.rdb != nil {
		errs = append(errs, t.rdb.Close())
	}
	if t.workerRDB != nil {
		errs = append(errs, t.workerRDB.Close())
	}
	if t.redis != nil {
		errs = append(errs, t.redis.stop())
	}
	return errors.Join(errs...)
}

// redisServer is a redis-server child process on a free loopback port, for
// the asynq peer only, without persistence (as inferq's tests run it).
type redisServer struct {
	addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// redisServerPath finds redis-server or says how to get it.
func redisServerPath() (string, error) {
	p, err := redisbin.Path()
	if err != nil {
		return "", fmt.Errorf("%w, or pass -redis host:port", err)
	}
	return p, nil
}

func startRedisServer(ctx context.Context) (*redisServer, error) {
	bin, err := redisServerPath()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "loadtest-redis-")
	if err != nil {
		return nil, fmt.Errorf("redis-server dir: %w", err)
	}
	r := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, exited: make(chan struct{})}
	logFile := filepath.Join(dir, "redis.log")
	r.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", logFile)
	if err := r.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go func() { _ = r.cmd.Wait(); close(r.exited) }() // ends when the process does; stop waits for it
	rdb := redis.NewClient(&redis.Options{Addr: r.addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(ctx).Err() != nil {
		select {
		case <-r.exited:
			log, _ := os.ReadFile(logFile)
			os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server on %s exited at start: %s", r.addr, log)
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), r.stop())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("redis-server on %s not ready after 10s", r.addr), r.stop())
		}
	}
	return r, nil
}

func (r *redisServer) stop() error {
	_ = r.cmd.Process.Kill()
	<-r.exited
	return os.RemoveAll(r.dir)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
