package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jetstreamTarget is the bare JetStream peer: the least a JetStream user
// would build to run jobs, with none of inferq's record keeping.
//
//	client: PublishMsg("loadtest.work.<model>", the POST body, Nats-Msg-Id: id), waits for the PubAck
//	worker: -peer-workers goroutines, each pulling one message at a time from
//	        one durable consumer of a WorkQueue stream (file storage, as
//	        inferq dev's); runs peerRun, publishes the answer on core NATS
//	        "loadtest.results.<id>", then acks
//	client: one subscription to "loadtest.results.>" serves every waiting job.
//
// The result is not stored anywhere: a client that is not listening loses
// it. That makes this peer a floor for "queue + compute" rather than a
// like-for-like broker; inferq and asynq both store every result. The embedded
// nats-server runs in this process but client and workers reach it over
// loopback TCP, as separate processes would.
type jetstreamTarget struct {
	srv     *server.Server
	dir     string
	nc, wnc *nats.Conn // client side, worker side
	js      jetstream.JetStream
	sub     *nats.Subscription
	iters   []jetstream.MessagesContext
	workers sync.WaitGroup
	waiters *waiters
	ids     *jobIDs
	gpu     *simGPU
	// durable, when set before start, makes each worker store its answer
	// in a KV bucket (file storage) before it replies and acks: the
	// jetstream-kv-http peer, whose results survive a restart as inferq's do.
	durable bool
	kv      jetstream.KeyValue
}

const (
	jsStream   = "LOADTEST_WORK"
	jsConsumer = "loadtest-workers"
	jsWork     = "loadtest.work."
	jsResults  = "loadtest.results."
)

func startJetStream(ctx context.Context, o options) (target, error) {
	t := &jetstreamTarget{waiters: newWaiters(), ids: newJobIDs("jetstream")}
	if err := t.start(ctx, o, t.waiters.deliver); err != nil {
		return nil, err
	}
	return t, nil
}

// start runs the server, the stream, the workers and the client side, whose
// one subscription hands each answer to results; on failure it cleans up.
func (t *jetstreamTarget) start(ctx context.Context, o options, results func(id string, answer []byte)) error {
	var err error
	t.gpu = newSimGPU(o)
	if t.dir, err = os.MkdirTemp("", "loadtest-nats-"); err != nil {
		return fmt.Errorf("jetstream peer: %w", err)
	}
	fail := func(err error) error {
		return errors.Join(fmt.Errorf("jetstream peer: %w", err), t.Close())
	}
	if t.srv, err = startNATSServer(t.dir); err != nil {
		return fail(err)
	}
	if t.nc, err = nats.Connect(t.srv.ClientURL(), nats.Name("loadtest client")); err != nil {
		return fail(err)
	}
	if t.wnc, err = nats.Connect(t.srv.ClientURL(), nats.Name("loadtest worker")); err != nil {
		return fail(err)
	}
	if t.js, err = jetstream.New(t.nc); err != nil {
		return fail(err)
	}
	wjs, err := jetstream.New(t.wnc)
	if err != nil {
		return fail(err)
	}
	if _, err := t.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: jsStream, Subjects: []string{jsWork + ">"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
		return fail(fmt.Errorf("create stream: %w", err))
	}
	if t.durable {
		if t.kv, err = wjs.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "LOADTEST_RESULTS",
			Storage: jetstream.FileStorage, TTL: asynqRetention}); err != nil {
			return fail(fmt.Errorf("create results bucket: %w", err))
		}
	}
	cons, err := wjs.CreateOrUpdateConsumer(ctx, jsStream, jetstream.ConsumerConfig{Durable: jsConsumer,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: 3, MaxAckPending: 100000})
	if err != nil {
		return fail(fmt.Errorf("create consumer: %w", err))
	}
	if t.sub, err = t.nc.Subscribe(jsResults+">", func(m *nats.Msg) {
		results(strings.TrimPrefix(m.Subject, jsResults), m.Data)
	}); err != nil {
		return fail(fmt.Errorf("subscribe results: %w", err))
	}
	if err := t.nc.Flush(); err != nil { // the subscription is live before any job is sent
		return fail(err)
	}
	for range o.peerWorkers {
		it, err := cons.Messages(jetstream.PullMaxMessages(1))
		if err != nil {
			return fail(fmt.Errorf("pull: %w", err))
		}
		t.iters = append(t.iters, it)
		t.workers.Go(func() { t.work(it) })
	}
	return nil
}

func (t *jetstreamTarget) Name() string { return "jetstream" }

// work is one worker: pull, answer, reply, ack, until its iterator stops.
func (t *jetstreamTarget) work(it jetstream.MessagesContext) {
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return
		}
		if err != nil {
			continue // a missed heartbeat or a reconnect; the iterator carries on
		}
		id := msg.Headers().Get(jetstream.MsgIDHeader)
		answer, err := peerRun(context.Background(), t.gpu, strings.TrimPrefix(msg.Subject(), jsWork), msg.Data())
		if err != nil {
			answer = mustJSON(map[string]string{"error": err.Error()})
		}
		if t.kv != nil {
			if _, err := t.kv.Put(context.Background(), id, answer); err != nil {
				_ = msg.Nak()
				continue
			}
		}
		if err := t.wnc.Publish(jsResults+id, answer); err != nil {
			_ = msg.Nak() // let another try reply
			continue
		}
		_ = msg.Ack()
	}
}

func (t *jetstreamTarget) Do(ctx context.Context, j job, start time.Time) outcome {
	id := t.ids.next()
	done := t.waiters.add(id)
	defer t.waiters.remove(id)
	sent := time.Now()
	err := t.publish(ctx, id, j.model, j.body)
	submit := time.Since(sent)
	if err != nil {
		return outcome{kind: errSubmitTransport, detail: "publish " + id + ": " + err.Error()}
	}
	select {
	case answer := <-done:
		return checkPeerAnswer(j, id, answer, time.Now(), submit)
	case <-ctx.Done():
		return outcome{kind: errGetTransport, detail: "job " + id + ": no answer"}
	}
}

// publish sends one job and waits for the stream's acknowledgement.
func (t *jetstreamTarget) publish(ctx context.Context, id, model string, body []byte) error {
	_, err := t.js.PublishMsg(ctx, &nats.Msg{Subject: jsWork + model, Data: body}, jetstream.WithMsgID(id))
	return err
}

// Close stops the workers and waits for them, then the connections, the
// server and its files.
func (t *jetstreamTarget) Close() error {
	for _, it := range t.iters {
		it.Stop()
	}
	t.workers.Wait()
	if t.sub != nil {
		_ = t.sub.Unsubscribe()
	}
	for _, nc := range []*nats.Conn{t.nc, t.wnc} {
		if nc != nil {
			nc.Close()
		}
	}
	if t.srv != nil {
		t.srv.Shutdown()
		t.srv.WaitForShutdown()
	}
	return os.RemoveAll(t.dir)
}

// startNATSServer runs a JetStream-enabled nats-server in this process on a
// free loopback port, storing its files in dir.
func startNATSServer(dir string) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{ServerName: "loadtest", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	go s.Start() // Shutdown stops it
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats-server: not ready after 10s")
	}
	return s, nil
}

// jetstreamFront is the bare JetStream peer as the HTTP front door drives
// it. A work queue stores no answer and the GET comes after the POST, so
// the front door keeps each answer in memory from the worker's reply until
// the GET takes it, which a team serving JetStream over HTTP without a
// results store would have to do too.
type jetstreamFront struct {
	js    *jetstreamTarget
	boxes *mailboxes
	stop  func()
}

// startJetStreamHTTP runs the JetStream peer behind the HTTP front door.
func startJetStreamHTTP(ctx context.Context, o options) (target, error) {
	b := &jetstreamFront{js: &jetstreamTarget{ids: newJobIDs("jetstream-http")}, boxes: newMailboxes()}
	if err := b.js.start(ctx, o, b.boxes.deliver); err != nil {
		return nil, err
	}
	b.stop = b.boxes.expireEvery(asynqRetention) // as long as asynq keeps a result
	return startHTTPPeer("jetstream-http", o, b)
}

// startJetStreamKVHTTP is jetstream-http whose workers also store each
// answer in a KV bucket before replying: two stream writes per job (the job,
// the result), the least a pipeline that keeps results durably pays. The
// front door still answers the GET from the reply it kept in memory, so the
// peer pays for the write and not for a read.
func startJetStreamKVHTTP(ctx context.Context, o options) (target, error) {
	b := &jetstreamFront{js: &jetstreamTarget{ids: newJobIDs("jetstream-kv-http"), durable: true}, boxes: newMailboxes()}
	if err := b.js.start(ctx, o, b.boxes.deliver); err != nil {
		return nil, err
	}
	b.stop = b.boxes.expireEvery(asynqRetention)
	return startHTTPPeer("jetstream-kv-http", o, b)
}

// enqueue opens the job's mailbox before publishing, so an answer that
// beats the client's GET waits there.
func (b *jetstreamFront) enqueue(ctx context.Context, id, model string, body []byte) error {
	return b.boxes.send(id, func() error { return b.js.publish(ctx, id, model, body) })
}

func (b *jetstreamFront) await(ctx context.Context, id string) ([]byte, error) {
	return b.boxes.take(ctx, id)
}

// Close stops the boxes' expiry, then the pipeline.
func (b *jetstreamFront) Close() error {
	b.stop()
	return b.js.Close()
}
