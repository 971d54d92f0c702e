package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/pkg/jetstream"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// replayJob handles POST /v1/jobs/{id}/replay (admin): the original job is
// read back from INFERQ_JOBS and published again under the same id as a
// new attempt, with a new Nats-Msg-Id (<id>:r<attempt>) so that the dedupe
// window does not swallow it.
func (i *Ingress) replayJob(c echo.Context) error {
	rec, err := i.lookup(c)
	if err != nil {
		return err
	}
	attempt, err := i.replay(c.Request().Context(), rec)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]any{"id": rec.ID, "attempt": attempt, "status": results.Queued})
}

// replay re-enqueues one ended job and returns its new attempt number.
func (i *Ingress) replay(ctx context.Context, rec *results.Record) (uint32, error) {
	if !rec.Status.Terminal() {
		return 0, apiError(http.StatusConflict, "conflict", "job "+strconv.Quote(rec.ID)+" is "+string(rec.Status)+"; only ended jobs can be replayed")
	}
	if rec.JobsSeq == 0 {
		return 0, apiError(http.StatusConflict, "not_replayable", "job "+strconv.Quote(rec.ID)+" never reached a batcher, so it has no stored copy to replay")
	}
	stream, err := i.opt.JS.Stream(ctx, i.opt.Topology.JobsStream())
	if err != nil {
		return 0, i.unavailable(rec.Model, "stream", err)
	}
	raw, err := stream.GetMsg(ctx, rec.JobsSeq)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return 0, apiError(http.StatusConflict, "not_replayable", "job "+strconv.Quote(rec.ID)+" is older than the jobs stream's retention ("+i.opt.Topology.JobsMaxAge.String()+") and cannot be replayed")
	}
	if err != nil {
		return 0, i.unavailable(rec.Model, "stream", err)
	}
	job := &inferqpb.Job{}
	if err := proto.Unmarshal(raw.Data, job); err != nil || job.Id != rec.ID {
		return 0, apiError(http.StatusConflict, "not_replayable", "the stored copy of job "+strconv.Quote(rec.ID)+" does not match it")
	}
	attempt := rec.Attempts + 1
	now := i.now()
	if job.DeadlineUnixNano > 0 { // the same timeout, counted from now
		job.DeadlineUnixNano = now.Add(time.Duration(job.DeadlineUnixNano - job.CreatedUnixNano)).UnixNano()
	}
	job.Attempt = attempt
	if _, err := lifecycle.ReplayEvent(job, now).Publish(ctx, i.opt.JS, i.opt.Topology); err != nil {
		return 0, i.unavailable(job.Model, "publish", err)
	}
	if _, err := jetstream.Publish(ctx, i.opt.JS, raw.Subject, job, lifecycle.ReplayMsgID(job.Id, attempt)); err != nil {
		return 0, i.unavailable(job.Model, "publish", err)
	}
	i.opt.Log.Info("job replayed", "job", job.Id, "model", job.Model, "attempt", attempt)
	i.awaitApplied(ctx, job.Id, func(r *results.Record) bool { return r.Attempts >= attempt })
	return attempt, nil
}

// replayRequest selects the jobs of POST /v1/models/{model}/replay.
type replayRequest struct {
	Status string    `json:"status"` // only "failed" (the default): failed jobs are the dead letters
	Since  time.Time `json:"since"`
	Limit  int       `json:"limit"` // default 100, at most 10000
}

// replayModel handles POST /v1/models/{model}/replay (admin): failed jobs
// are found through their dead-letter records since a time, up to a limit.
func (i *Ingress) replayModel(c echo.Context) error {
	m, err := i.model(c)
	if err != nil {
		return err
	}
	req := replayRequest{Status: string(results.Failed), Limit: 100}
	if c.Request().ContentLength != 0 { // the body is optional: no body selects the defaults
		dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			return invalid("request body: %v", err)
		}
	}
	if req.Status != string(results.Failed) {
		return invalid("status: only \"failed\" jobs can be replayed by model, got %q", req.Status)
	}
	if req.Limit <= 0 || req.Limit > 10000 {
		return invalid("limit: want 1..10000, got %d", req.Limit)
	}
	ctx := c.Request().Context()
	cfg := natsjs.OrderedConsumerConfig{FilterSubjects: []string{i.opt.Topology.DeadSubject(m.Name)}}
	if !req.Since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = natsjs.DeliverByStartTimePolicy, &req.Since
	}
	cons, err := i.opt.JS.OrderedConsumer(ctx, i.opt.Topology.DeadStream(), cfg)
	if err != nil {
		return i.unavailable(m.Name, "stream", err)
	}
	seen := map[string]bool{}
	count := 0
	for count < req.Limit {
		msgs, err := cons.FetchNoWait(256)
		if err != nil {
			return i.unavailable(m.Name, "stream", err)
		}
		got := 0
		for msg := range msgs.Messages() {
			got++
			dl, err := lifecycle.DecodeDeadLetter(msg.Data())
			if err != nil || seen[dl.Job] || count >= req.Limit {
				continue
			}
			seen[dl.Job] = true
			rec, err := i.opt.Store.Get(ctx, dl.Job)
			if err != nil || rec.Tenant != tenantOf(c) || rec.Status != results.Failed {
				continue // gone, someone else's, or already replayed
			}
			if _, err := i.replay(ctx, rec); err == nil {
				count++
			}
		}
		if got == 0 {
			break
		}
	}
	return c.JSON(http.StatusOK, map[string]int{"count": count})
}

// awaitApplied waits (briefly) until resultsvc has applied a change this
// request published, so that a client reading the job next sees it.
func (i *Ingress) awaitApplied(ctx context.Context, id string, done func(*results.Record) bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, _ = i.opt.Store.Wait(ctx, id, done, i.orQueued(id))
}
