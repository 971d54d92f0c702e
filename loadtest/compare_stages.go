package main

import (
	"context"
	"encoding/binary"
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

// The jetstream-stages-http peer is inferq's design with nothing else: the
// same hops and stored writes per job, in plain nats.go, behind the same
// kind of front door as jetstream-http. A job is stored in a limits stream;
// a batcher groups what has arrived into one batch message in a work-queue
// stream and acks the jobs; a worker runs the batch and stores one events
// message; a results writer stores each answer in a KV bucket by
// compare-and-set (a key's first revision) and then sends a completion
// notice carrying it, which wakes the GET. It has no validation, schema,
// job record, metrics, tracing, priorities, retries or dead letters: what
// it costs is the floor of the stages themselves, so inferq's distance to it
// is what inferq's own code adds.
type stagesBackend struct {
	srv   *server.Server
	dir   string
	conns []*nats.Conn // front, batcher, worker, results: one each, as inferq's components have
	js    jetstream.JetStream
	boxes *mailboxes
	gpu   *simGPU
	iters []jetstream.MessagesContext
	stop  context.CancelFunc
	wg    sync.WaitGroup
	quit  func()
}

const (
	stagesJobs    = "STAGES_JOBS"
	stagesBatches = "STAGES_BATCHES"
	stagesEvents  = "STAGES_EVENTS"
	stagesBucket  = "STAGES_RESULTS"
	stagesMaxRows = 32 // simple's max_batch_size in inferq dev
)

func startJetStreamStagesHTTP(ctx context.Context, o options) (target, error) {
	b := &stagesBackend{boxes: newMailboxes(), gpu: newSimGPU(o)}
	if err := b.start(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("jetstream-stages-http peer: %w", err), b.Close())
	}
	b.quit = b.boxes.expireEvery(asynqRetention)
	return startHTTPPeer("jetstream-stages-http", o, b)
}

func (b *stagesBackend) start(ctx context.Context) error {
	var err error
	if b.dir, err = os.MkdirTemp("", "loadtest-stages-"); err != nil {
		return err
	}
	if b.srv, err = startNATSServer(b.dir); err != nil {
		return err
	}
	js := make([]jetstream.JetStream, 4)
	for i, name := range []string{"front", "batcher", "worker", "results"} {
		nc, err := nats.Connect(b.srv.ClientURL(), nats.Name("loadtest stages "+name))
		if err != nil {
			return err
		}
		b.conns = append(b.conns, nc)
		if js[i], err = jetstream.New(nc); err != nil {
			return err
		}
	}
	b.js = js[0]
	streams := []jetstream.StreamConfig{
		{Name: stagesJobs, Subjects: []string{"stages.jobs.>"}, Retention: jetstream.LimitsPolicy, MaxAge: time.Hour},
		{Name: stagesBatches, Subjects: []string{"stages.batches.>"}, Retention: jetstream.WorkQueuePolicy},
		{Name: stagesEvents, Subjects: []string{"stages.events.>"}, Retention: jetstream.WorkQueuePolicy},
	}
	for _, sc := range streams {
		sc.Storage, sc.Duplicates = jetstream.FileStorage, 2*time.Minute
		if _, err := b.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("create stream %s: %w", sc.Name, err)
		}
	}
	if _, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: stagesBucket,
		Storage: jetstream.FileStorage, TTL: asynqRetention, History: 1}); err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	if _, err := b.conns[0].Subscribe("stages.done.>", func(m *nats.Msg) {
		b.boxes.deliver(strings.TrimPrefix(m.Subject, "stages.done."), m.Data)
	}); err != nil {
		return err
	}
	if err := b.conns[0].Flush(); err != nil {
		return err
	}
	run, stop := context.WithCancel(context.Background())
	b.stop = stop
	stages := []struct {
		js     jetstream.JetStream
		stream string
		handle func(context.Context, jetstream.JetStream, <-chan jetstream.Msg)
	}{{js[1], stagesJobs, b.batcher}, {js[2], stagesBatches, b.worker}, {js[3], stagesEvents, b.results}}
	for _, s := range stages {
		cons, err := s.js.CreateOrUpdateConsumer(ctx, s.stream, jetstream.ConsumerConfig{Durable: "stages",
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 4096})
		if err != nil {
			return fmt.Errorf("create consumer on %s: %w", s.stream, err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(2 * stagesMaxRows))
		if err != nil {
			return err
		}
		b.iters = append(b.iters, it)
		in := make(chan jetstream.Msg, 2*stagesMaxRows)
		b.wg.Go(func() {
			defer close(in)
			for {
				m, err := it.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				if err != nil {
					continue // a missed heartbeat or a reconnect; the iterator carries on
				}
				select {
				case in <- m:
				case <-run.Done():
					return
				}
			}
		})
		b.wg.Go(func() { s.handle(run, s.js, in) })
	}
	return nil
}

// batcher sends what has arrived, up to stagesMaxRows jobs of one model, as
// one batch, as soon as the previous batch is stored: no waiting window.
func (b *stagesBackend) batcher(ctx context.Context, js jetstream.JetStream, in <-chan jetstream.Msg) {
	for m := range in {
		byModel := map[string][]jetstream.Msg{}
		add := func(m jetstream.Msg) {
			model := strings.TrimPrefix(m.Subject(), "stages.jobs.")
			byModel[model] = append(byModel[model], m)
		}
		add(m)
	more:
		for n := 1; n < stagesMaxRows; n++ {
			select {
			case m, ok := <-in:
				if !ok {
					break more
				}
				add(m)
			default:
				break more
			}
		}
		for model, jobs := range byModel {
			var data []byte
			for _, j := range jobs {
				data = appendEntry(data, j.Headers().Get(jetstream.MsgIDHeader), j.Data())
			}
			if _, err := js.Publish(ctx, "stages.batches."+model, data); err != nil {
				for _, j := range jobs {
					_ = j.Nak()
				}
				continue
			}
			for _, j := range jobs {
				_ = j.Ack()
			}
		}
	}
}

// worker runs each job of a batch and stores their answers as one events
// message before it acks the batch.
func (b *stagesBackend) worker(ctx context.Context, js jetstream.JetStream, in <-chan jetstream.Msg) {
	for m := range in {
		model := strings.TrimPrefix(m.Subject(), "stages.batches.")
		var events []byte
		err := b.compute(ctx, model, m.Data())
		err = errors.Join(err, eachEntry(m.Data(), func(id string, body []byte) error {
			answer, err := peerAnswer(model, body)
			if err != nil {
				answer = mustJSON(map[string]string{"error": err.Error()})
			}
			events = appendEntry(events, id, answer)
			return nil
		}))
		if err == nil {
			_, err = js.Publish(ctx, "stages.events."+model, events)
		}
		if err != nil {
			_ = m.Nak()
			continue
		}
		_ = m.Ack()
	}
}

// compute is the batch's call of simgpu, one call of as many rows as the
// batch has jobs, as inferq's simgpu worker makes; other models cost nothing.
func (b *stagesBackend) compute(ctx context.Context, model string, batch []byte) error {
	if model != "simgpu" {
		return nil
	}
	rows := 0
	if err := eachEntry(batch, func(string, []byte) error { rows++; return nil }); err != nil {
		return err
	}
	return b.gpu.call(ctx, rows)
}

// results stores each answer of an events message under its job's key, only
// if the key is new (the compare-and-set a record's first write is), all at
// once; then it sends each stored answer's notice and acks the message.
func (b *stagesBackend) results(ctx context.Context, js jetstream.JetStream, in <-chan jetstream.Msg) {
	nc := js.Conn()
	type write struct {
		id     string
		answer []byte
		ack    jetstream.PubAckFuture
	}
	for m := range in {
		var writes []write
		err := eachEntry(m.Data(), func(id string, answer []byte) error {
			f, err := js.PublishMsgAsync(&nats.Msg{Subject: "$KV." + stagesBucket + "." + id, Data: answer,
				Header: nats.Header{jetstream.ExpectedLastSubjSeqHeader: []string{"0"}}})
			writes = append(writes, write{id, answer, f})
			return err
		})
		for _, w := range writes {
			if w.ack == nil {
				continue
			}
			select {
			case <-w.ack.Ok():
				_ = nc.Publish("stages.done."+w.id, w.answer)
			case e := <-w.ack.Err():
				if !errors.Is(e, jetstream.ErrKeyExists) { // a redelivered message's answer is already stored
					err = e
				}
			case <-ctx.Done():
				return
			}
		}
		if err != nil {
			_ = m.Nak()
			continue
		}
		_ = m.Ack()
	}
}

// appendEntry appends id and data, each length-prefixed, to a batch or
// events message.
func appendEntry(b []byte, id string, data []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

// eachEntry calls f for each entry appendEntry wrote, stopping at f's first
// error.
func eachEntry(b []byte, f func(id string, data []byte) error) error {
	next := func() ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, errors.New("stages: a truncated entry")
		}
		v := b[k : k+int(n)]
		b = b[k+int(n):]
		return v, nil
	}
	for len(b) > 0 {
		id, err := next()
		if err != nil {
			return err
		}
		data, err := next()
		if err != nil {
			return err
		}
		if err := f(string(id), data); err != nil {
			return err
		}
	}
	return nil
}

func (b *stagesBackend) enqueue(ctx context.Context, id, model string, body []byte) error {
	return b.boxes.send(id, func() error {
		_, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: "stages.jobs." + model, Data: body}, jetstream.WithMsgID(id))
		return err
	})
}

func (b *stagesBackend) await(ctx context.Context, id string) ([]byte, error) {
	return b.boxes.take(ctx, id)
}

func (b *stagesBackend) Close() error {
	if b.quit != nil {
		b.quit()
	}
	for _, it := range b.iters {
		it.Stop()
	}
	if b.stop != nil {
		b.stop()
	}
	b.wg.Wait()
	for _, nc := range b.conns {
		nc.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	return os.RemoveAll(b.dir)
}
