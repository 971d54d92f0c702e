package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/jobid"
	"github.com/inferq/inferq/internal/openai"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/internal/webhook"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// The batch runner: every ingress pulls the batch work stream through one
// durable consumer, so one runner owns a batch at a time, and keeps the
// message in progress while it works; a runner that dies (kill -9) stops
// doing so, and after ingress.openai.batch_lease another one (or the same
// process restarted) takes the batch up where its record and its finished
// lines say it was. Each line becomes a job at the lowest priority whose id
// derives from the batch and line (jobid.Derive), and a resumed run looks a
// line's job up before queueing it, so no line runs twice. A finished line
// is stored in the batch lines stream under its job id (Nats-Msg-Id), and
// the output and error files are written from there.

// Headers of a finished line in the batch lines stream.
const (
	headerLine   = "Inferq-Line"   // the request's index among the input's requests
	headerFailed = "Inferq-Failed" // "1": the line goes to the error file
)

// runnerSlots is how many batches one ingress runs at once.
const runnerSlots = 4

// runBatches provisions the Batch API's storage and runs batches until ctx
// ends.
func (i *Ingress) runBatches(ctx context.Context) error {
	lease := i.opt.Config.Ingress.OpenAI.BatchLease.D()
	if lease <= 0 {
		lease = 15 * time.Second
	}
	if err := provision.BatchAPI(ctx, i.opt.JS, i.opt.Topology, lease); err != nil {
		return err
	}
	cons, err := i.opt.JS.Consumer(ctx, i.opt.Topology.BatchWorkStream(), jetstream.BatchRunnerConsumer)
	if err != nil {
		return fmt.Errorf("batch runner consumer: %w", err)
	}
	go func() {
		slots := make(chan struct{}, runnerSlots)
		var wg sync.WaitGroup
		defer wg.Wait()
		for ctx.Err() == nil {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			batch, err := cons.Fetch(1, natsjs.FetchMaxWait(2*time.Second))
			if err != nil {
				<-slots
				if ctx.Err() == nil {
					i.opt.Log.Warn("batch runner: fetch failed", "err", err)
					time.Sleep(time.Second)
				}
				continue
			}
			got := false
			for msg := range batch.Messages() {
				got = true
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-slots }()
					i.runBatch(ctx, msg, lease)
				}()
			}
			if !got {
				<-slots
			}
		}
	}()
	return nil
}

// runBatch runs the batch of one work message, keeping the message in
// progress meanwhile. It acks the message when the batch has ended, and
// leaves it for redelivery when ctx ends first.
func (i *Ingress) runBatch(ctx context.Context, msg natsjs.Msg, lease time.Duration) {
	key := string(msg.Data())
	log := i.opt.Log.With("batch_key", key)
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		t := time.NewTicker(lease / 3)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	r := &batchRun{i: i, key: key, log: log}
	err := r.run(hctx)
	switch {
	case ctx.Err() != nil:
		log.Info("batch runner stopping: the batch resumes later")
		_ = msg.Nak() // another runner may take it at once
	case err != nil:
		log.Error("batch run failed; it is retried", "err", err)
		_ = msg.NakWithDelay(5 * time.Second)
	default:
		_ = msg.Ack()
	}
}

// batchRun is one run of one batch.
type batchRun struct {
	i     *Ingress
	key   string
	log   *slog.Logger
	rec   *batchRecord
	reqs  []*openai.Request
	lines []*openai.InputLine
	base  string // the batch id's jobid part, for jobid.Derive
	// id and tenant are the batch's, fixed for the run (rec changes).
	id, tenant string

	mu        sync.Mutex
	completed int
	failed    int
	queued    int            // high-water mark of lines queued this run
	inflight  map[int]string // line -> job id of queued, unfinished lines
	// stopReason is the status (cancelled, expired) that stopped the
	// batch early, once it did.
	stopReason string
}

func (r *batchRun) run(ctx context.Context) error {
	rec, _, err := r.i.getBatch(ctx, r.key)
	if errors.Is(err, errBatchNotFound) {
		return nil // taken back after a failed publish
	}
	if err != nil {
		return err
	}
	r.rec = rec
	r.id, r.tenant = rec.Batch.ID, rec.Tenant
	r.base = strings.TrimPrefix(rec.Batch.ID, batchIDPrefix)
	if openai.BatchTerminal(rec.Batch.Status) {
		// A run that died between ending the batch and queueing its
		// webhook left the webhook pending and unattempted.
		return r.i.notifyBatch(ctx, rec)
	}
	if rec.Batch.Status == openai.BatchCancelling && rec.Runs == 0 {
		return r.finish(ctx, openai.BatchCancelled)
	}
	if errs, err := r.load(ctx); err != nil {
		return err
	} else if len(errs) > 0 {
		now := r.i.now().Unix()
		rec, err := r.i.updateBatch(ctx, r.key, func(b *batchRecord) bool {
			b.Batch.Status, b.Batch.FailedAt = openai.BatchFailed, &now
			b.Batch.Errors = &openai.BatchErrors{Object: "list", Data: errs}
			markWebhook(b)
			return true
		})
		if err != nil {
			return err
		}
		r.log.Info("batch failed validation", "errors", len(errs))
		return r.i.notifyBatch(ctx, rec)
	}
	if rec.Batch.Status == openai.BatchFinalizing {
		return r.finalize(ctx)
	}
	now := r.i.now().Unix()
	rec, err = r.i.updateBatch(ctx, r.key, func(b *batchRecord) bool {
		if b.Batch.Status == openai.BatchValidating {
			b.Batch.Status, b.Batch.InProgressAt = openai.BatchInProgress, &now
		}
		b.Batch.RequestCounts.Total = len(r.reqs)
		b.Runs++
		return true
	})
	if err != nil {
		return err
	}
	r.rec = rec
	return r.process(ctx)
}

// maxBatchErrors bounds the errors a failed validation lists.
const maxBatchErrors = 100

// load reads and checks the input file. Validation errors come back as
// the batch's errors; err is for a store that failed.
func (r *batchRun) load(ctx context.Context) ([]openai.BatchError, error) {
	data, err := r.i.readFile(ctx, r.rec.Batch.InputFileID)
	if errors.Is(err, natsjs.ErrObjectNotFound) {
		return []openai.BatchError{{Code: "file_not_found", Message: "input file " + r.rec.Batch.InputFileID + " was deleted"}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read input file: %w", err)
	}
	var errs []openai.BatchError
	seen := map[string]int{}
	openai.SplitLines(data, func(n int, line []byte) bool {
		in, req, be := openai.ParseLine(n, line, r.rec.Batch.Endpoint, r.i.opt.Config)
		if be == nil {
			if first, dup := seen[in.CustomID]; dup {
				param := "custom_id"
				be = &openai.BatchError{Code: "duplicate_custom_id", Param: &param, Line: &n,
					Message: fmt.Sprintf("line %d: custom_id %q is also on line %d; each must be unique", n, in.CustomID, first)}
			} else {
				seen[in.CustomID] = n
			}
		}
		if be != nil {
			errs = append(errs, *be)
			return len(errs) < maxBatchErrors
		}
		r.lines, r.reqs = append(r.lines, in), append(r.reqs, req)
		return true
	})
	if len(errs) == 0 && len(r.reqs) == 0 {
		errs = append(errs, openai.BatchError{Code: "empty_file", Message: "the input file has no request lines"})
	}
	return errs, nil
}

// finished reads the batch's finished lines: line index -> stored message.
func (r *batchRun) finished(ctx context.Context) (map[int]*natsjs.RawStreamMsg, error) {
	t := r.i.opt.Topology
	stream, err := r.i.opt.JS.Stream(ctx, t.BatchLinesStream())
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", t.BatchLinesStream(), err)
	}
	out := map[int]*natsjs.RawStreamMsg{}
	subj := t.BatchLinesSubject(r.rec.Batch.ID)
	info, err := stream.Info(ctx, natsjs.WithSubjectFilter(subj))
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", t.BatchLinesStream(), err)
	}
	if info.State.Subjects[subj] == 0 {
		return out, nil
	}
	cons, err := stream.OrderedConsumer(ctx, natsjs.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return nil, fmt.Errorf("read finished lines: %w", err)
	}
	want := info.State.Subjects[subj]
	for n := uint64(0); n < want; {
		batch, err := cons.Fetch(500, natsjs.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read finished lines: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			n++
			k, err := strconv.Atoi(m.Headers().Get(headerLine))
			if err != nil {
				continue
			}
			md, _ := m.Metadata()
			if _, dup := out[k]; !dup {
				out[k] = &natsjs.RawStreamMsg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data(), Sequence: md.Sequence.Stream}
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, natsjs.ErrNoMessages) {
			return nil, fmt.Errorf("read finished lines: %w", err)
		}
		if got == 0 {
			break
		}
	}
	return out, nil
}

// process queues the lines not finished yet, a window at a time, and
// finalizes the batch when all have finished, or when it was cancelled or
// expired.
func (r *batchRun) process(ctx context.Context) error {
	done, err := r.finished(ctx)
	if err != nil {
		return err
	}
	for _, m := range done {
		if m.Header.Get(headerFailed) == "1" {
			r.failed++
		} else {
			r.completed++
		}
	}
	window := r.i.opt.Config.Ingress.OpenAI.BatchWindow
	if window <= 0 {
		window = 2048
	}
	// A resumed run looks up the lines an earlier run may have queued.
	lookupBelow := 0
	if r.rec.Runs > 1 {
		lookupBelow = r.rec.Queued + window
	}
	r.queued = r.rec.Queued
	r.inflight = map[int]string{}
	qctx, stopQueueing := context.WithCancel(ctx)
	defer stopQueueing()
	ended := make(chan string, 1) // the status that stopped the batch early
	flushDone := make(chan struct{})
	go func() {
		defer close(flushDone)
		r.flushLoop(qctx, ended)
	}()
	slots := make(chan struct{}, window)
	var wg sync.WaitGroup
	var runErr error
	var errOnce sync.Once
	fail := func(err error) {
		errOnce.Do(func() { runErr = err })
		stopQueueing()
	}
	stopped := ""
lines:
	for k := range r.reqs {
		if _, ok := done[k]; ok {
			continue
		}
		select {
		case slots <- struct{}{}:
		case s := <-ended:
			stopped = s
			break lines
		case <-qctx.Done():
			break lines
		}
		id := jobid.Derive(r.base, k)
		exists := false
		if k < lookupBelow {
			_, err := r.i.record(qctx, id)
			switch {
			case err == nil:
				exists = true
			case !errors.Is(err, results.ErrNotFound):
				<-slots
				fail(fmt.Errorf("line %d: look up job %s: %w", k+1, id, err))
				break lines
			}
		}
		if !exists {
			if err := r.queue(qctx, k, id); err != nil {
				<-slots
				if qctx.Err() == nil {
					fail(err)
				}
				break lines
			}
		}
		r.mu.Lock()
		r.inflight[k] = id
		r.queued = max(r.queued, k+1)
		r.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := r.await(ctx, k, id); err != nil && ctx.Err() == nil {
				fail(err)
			}
		}()
	}
	if stopped == "" {
		// Every line is queued: wait for them, or for a cancel.
		all := make(chan struct{})
		go func() { wg.Wait(); close(all) }()
		select {
		case <-all:
		case stopped = <-ended:
		case <-qctx.Done():
		}
	}
	if stopped != "" {
		r.cancelInflight(ctx, stopped)
	}
	wg.Wait()
	stopQueueing()
	<-flushDone
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if runErr != nil {
		return runErr
	}
	if err := r.flush(ctx); err != nil {
		return err
	}
	if stopped != "" {
		return r.finish(ctx, stopped)
	}
	return r.finalize(ctx)
}

// queue queues line k as job id, waiting while the queue is full.
func (r *batchRun) queue(ctx context.Context, k int, id string) error {
	req := r.reqs[k]
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		_, _, err := r.i.acceptJob(ctx, submission{Model: req.Model.Name, Version: req.Model.Version,
			Body: bytes.NewReader(req.JobBody(jetstream.MaxPriority)), Tenant: r.tenant, ID: id,
			Method: http.MethodPost, Route: OpenAIPrefix + "/batches"})
		var rl *retryLater
		var ae *Error
		switch {
		case err == nil:
			return nil
		case errors.As(err, &rl), errors.As(err, &ae) && ae.Status >= 500 || errors.As(err, &ae) && ae.Code == "queue_full":
			// queue full or the broker unavailable: later
		default:
			// The line passed Decode, so the model took it back since
			// (the config changed): the line fails, the batch goes on.
			return r.store(ctx, k, id, true, lineAnswer(id, r.lines[k].CustomID, http.StatusBadRequest,
				(&openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_request", Message: err.Error()}).Body()))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// await waits for line k's job to end and stores the line's answer.
func (r *batchRun) await(ctx context.Context, k int, id string) error {
	for {
		rec, err := r.i.wait(ctx, id, func(rec *results.Record) bool { return rec.Status.Terminal() })
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			r.log.Warn("batch line: job unreadable; waiting again", "job", id, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		if !rec.Status.Terminal() {
			continue
		}
		failed, line := r.answer(ctx, k, rec)
		return r.store(ctx, k, id, failed, line)
	}
}

// answer is the output line of line k, whose job ended as rec.
func (r *batchRun) answer(ctx context.Context, k int, rec *results.Record) (bool, openai.OutputLine) {
	custom := r.lines[k].CustomID
	if rec.Status == results.Cancelled {
		r.mu.Lock()
		reason := r.stopReason
		r.mu.Unlock()
		if reason != "" {
			return true, openai.OutputLine{ID: "batch_req_" + rec.ID, CustomID: custom,
				Error: &openai.LineFailure{Code: "batch_" + reason, Message: "the batch was " + reason + " before this request ended"}}
		}
	}
	if oe := jobFailure(rec); oe != nil {
		if oe.Type == "" {
			oe.Type = openai.TypeFor(oe.Status)
		}
		return true, lineAnswer(rec.ID, custom, oe.Status, oe.Body())
	}
	req := r.reqs[k]
	text := textOutput(rec)
	n := r.i.tokenCount(ctx, rec)
	finish := openai.FinishReason(n, req.MaxTokens)
	created := rec.CreatedAt.Unix()
	var body any
	if req.Chat() {
		body = openai.ChatCompletion{ID: "chatcmpl-" + rec.ID, Object: "chat.completion", Created: created,
			Model: req.ModelID, Usage: openai.NewUsage(n), Choices: []openai.ChatChoice{{
				Message: openai.AnswerMessage{Role: "assistant", Content: text}, FinishReason: finish}}}
	} else {
		body = openai.Completion{ID: "cmpl-" + rec.ID, Object: "text_completion", Created: created,
			Model: req.ModelID, Usage: openai.NewUsage(n), Choices: []openai.CompletionChoice{{Text: text, FinishReason: &finish}}}
	}
	return false, lineAnswer(rec.ID, custom, http.StatusOK, body)
}

func lineAnswer(id, custom string, status int, body any) openai.OutputLine {
	return openai.OutputLine{ID: "batch_req_" + id, CustomID: custom, Response: &openai.LineAnswer{StatusCode: status, RequestID: id, Body: body}}
}

// store keeps line k's answer in the batch lines stream, once (its job id
// is the message id), and counts it.
func (r *batchRun) store(ctx context.Context, k int, id string, failed bool, line openai.OutputLine) error {
	b, err := json.Marshal(line)
	if err != nil {
		return fmt.Errorf("line %d: encode answer: %w", k+1, err)
	}
	m := nats.NewMsg(r.i.opt.Topology.BatchLinesSubject(r.id))
	m.Data = b
	m.Header.Set(headerLine, strconv.Itoa(k))
	if failed {
		m.Header.Set(headerFailed, "1")
	}
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		_, err = r.i.opt.JS.PublishMsg(ctx, m, natsjs.WithMsgID(id))
		if err == nil || ctx.Err() != nil {
			break
		}
		r.log.Warn("batch line not stored; retrying", "line", k+1, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	if err != nil {
		return fmt.Errorf("line %d: store answer: %w", k+1, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.inflight, k)
	if failed {
		r.failed++
	} else {
		r.completed++
	}
	return nil
}

// flushInterval is how often a run writes its counts to the batch record
// (request_counts are live to that) and reads whether it was cancelled.
var flushInterval = 500 * time.Millisecond

// flushLoop writes the counts until ctx ends, and sends on ended the
// status the batch ends with early (cancelled, expired), once.
func (r *batchRun) flushLoop(ctx context.Context, ended chan<- string) {
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	sent := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.flush(ctx); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("batch counts not written", "err", err)
			}
			continue
		}
		if sent {
			continue
		}
		status := ""
		switch {
		case r.rec.Batch.Status == openai.BatchCancelling:
			status = openai.BatchCancelled
		case r.rec.Batch.ExpiresAt != nil && r.i.now().Unix() >= *r.rec.Batch.ExpiresAt:
			status = openai.BatchExpired
		}
		if status != "" {
			sent = true
			ended <- status
		}
	}
}

// flush writes the counts and the queued mark, and reads the status back.
func (r *batchRun) flush(ctx context.Context) error {
	r.mu.Lock()
	counts := openai.RequestCounts{Total: len(r.reqs), Completed: r.completed, Failed: r.failed}
	queued := r.queued
	r.mu.Unlock()
	rec, err := r.i.updateBatch(ctx, r.key, func(b *batchRecord) bool {
		if b.Batch.RequestCounts == counts && b.Queued >= queued {
			return false
		}
		b.Batch.RequestCounts, b.Queued = counts, max(b.Queued, queued)
		return true
	})
	if err != nil {
		return err
	}
	r.rec = rec
	return nil
}

// cancelInflight cancels the jobs of the lines still running when the
// batch was cancelled or expired.
func (r *batchRun) cancelInflight(ctx context.Context, status string) {
	r.mu.Lock()
	r.stopReason = status
	ids := make([]string, 0, len(r.inflight))
	for _, id := range r.inflight {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	r.log.Info("batch stopping: cancelling its jobs in flight", "status", status, "jobs", len(ids))
	for _, id := range ids {
		rec, err := r.i.record(ctx, id)
		if err != nil || rec.Status.Terminal() {
			continue
		}
		if err := r.i.cancelJob(ctx, rec); err != nil {
			r.log.Warn("batch job not cancelled", "job", id, "err", err)
		}
	}
}

// finalize writes the output and error files and completes the batch.
func (r *batchRun) finalize(ctx context.Context) error {
	now := r.i.now().Unix()
	if _, err := r.i.updateBatch(ctx, r.key, func(b *batchRecord) bool {
		if b.Batch.Status == openai.BatchFinalizing {
			return false
		}
		b.Batch.Status, b.Batch.FinalizingAt = openai.BatchFinalizing, &now
		return true
	}); err != nil {
		return err
	}
	return r.finish(ctx, openai.BatchCompleted)
}

// finish writes the files of what finished and ends the batch in status.
func (r *batchRun) finish(ctx context.Context, status string) error {
	done, err := r.finished(ctx)
	if err != nil {
		return err
	}
	var out, errs bytes.Buffer
	counts := openai.RequestCounts{Total: len(r.reqs)}
	for k := range len(r.reqs) {
		m, ok := done[k]
		if !ok {
			continue
		}
		if m.Header.Get(headerFailed) == "1" {
			errs.Write(m.Data)
			errs.WriteByte('\n')
			counts.Failed++
		} else {
			out.Write(m.Data)
			out.WriteByte('\n')
			counts.Completed++
		}
	}
	var outID, errID *string
	for _, f := range []struct {
		buf  *bytes.Buffer
		name string
		id   **string
	}{{&out, "output", &outID}, {&errs, "errors", &errID}} {
		if f.buf.Len() == 0 {
			continue
		}
		// The file id derives from the batch: a finish run again writes
		// the same file again.
		id := "file-" + r.base + "-" + f.name
		if _, err := r.i.putFile(ctx, r.rec.Tenant, id, openai.PurposeBatchOutput, r.rec.Batch.ID+"_"+f.name+".jsonl", f.buf); err != nil {
			return fmt.Errorf("write %s file: %w", f.name, err)
		}
		*f.id = &id
	}
	now := r.i.now().Unix()
	rec, err := r.i.updateBatch(ctx, r.key, func(b *batchRecord) bool {
		b.Batch.Status, b.Batch.OutputFileID, b.Batch.ErrorFileID, b.Batch.RequestCounts = status, outID, errID, counts
		switch status {
		case openai.BatchCompleted:
			b.Batch.CompletedAt = &now
		case openai.BatchCancelled:
			b.Batch.CancelledAt = &now
		case openai.BatchExpired:
			b.Batch.ExpiredAt = &now
		}
		markWebhook(b)
		return true
	})
	if err != nil {
		return err
	}
	if err := r.i.notifyBatch(ctx, rec); err != nil {
		return err
	}
	// The lines are in the files now.
	if stream, err := r.i.opt.JS.Stream(ctx, r.i.opt.Topology.BatchLinesStream()); err == nil {
		_ = stream.Purge(ctx, natsjs.WithPurgeSubject(r.i.opt.Topology.BatchLinesSubject(r.rec.Batch.ID)))
	}
	r.log.Info("batch ended", "batch", rec.Batch.ID, "status", status, "completed", counts.Completed, "failed", counts.Failed)
	return nil
}

// batchWebhookModel is the model token of the webhook subject batches'
// completion webhooks wait on: a batch is no one model's.
const batchWebhookModel = "_batches"

// markWebhook makes b's completion webhook pending as b ends, in the same
// write, so a run that dies before queueing it queues it when resumed.
func markWebhook(b *batchRecord) {
	if w := b.Batch.Webhook; w != nil && w.Status == "" {
		w.Status = string(results.WebhookPending)
	}
}

// notifyBatch queues the completion webhook of rec, which has ended: type
// batch.<status>, the batch object (without its webhook state) as data,
// webhook-id the batch id. Nothing when it has no webhook or a delivery
// was attempted already; queueing it twice is one delivery (message id).
func (i *Ingress) notifyBatch(ctx context.Context, rec *batchRecord) error {
	w := rec.Batch.Webhook
	if w == nil || w.Status != string(results.WebhookPending) || w.Attempts > 0 {
		return nil
	}
	data := rec.Batch
	data.Webhook = nil
	payload, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("batch %s: webhook payload: %w", rec.Batch.ID, err)
	}
	at := i.now()
	for _, t := range []*int64{data.CompletedAt, data.FailedAt, data.CancelledAt, data.ExpiredAt} {
		if t != nil {
			at = time.Unix(*t, 0)
		}
	}
	d := &inferqpb.WebhookDelivery{Id: rec.Batch.ID, Tenant: rec.Tenant, Url: w.URL, Type: openai.BatchEventType(rec.Batch.Status),
		Payload: payload, TimeUnixNano: at.UnixNano()}
	if err := webhook.Enqueue(ctx, i.opt.JS, i.opt.Topology, batchWebhookModel, d); err != nil {
		return err
	}
	i.opt.Log.Info("batch webhook queued", "batch", rec.Batch.ID, "type", d.Type, "url_host", webhookHost(w.URL))
	return nil
}

// webhookHost is a callback URL's host, for logs: its path and query may
// carry a tenant's tokens.
func webhookHost(raw string) string {
	if u, err := webhook.CheckSyntax(raw); err == nil {
		return u.Host
	}
	return ""
}
