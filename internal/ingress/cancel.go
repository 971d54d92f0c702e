package ingress

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"google.golang.org/protobuf/proto"

	"github.com/inferq/inferq/internal/auth/authecho"
	"github.com/inferq/inferq/internal/jobid"
	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/results"
	"github.com/inferq/inferq/schemas/inferqpb"
)

// cancel handles DELETE /v1/jobs/{id}: 202 if the job was not terminal, 409
// if it was. The cancelled status goes through the events stream like every
// other change (resultsvc stays the only writer), and a notice on the cancel
// subject makes batchers drop the job and workers stop generating it.
func (i *Ingress) cancel(c echo.Context) error {
	rec, err := i.lookup(c)
	if err != nil {
		return err
	}
	if rec.Status.Terminal() {
		return apiError(http.StatusConflict, "conflict", "job "+strconv.Quote(rec.ID)+" already ended: "+string(rec.Status))
	}
	ctx := c.Request().Context()
	if err := i.cancelJob(ctx, rec); err != nil {
		return i.unavailable(rec.Model, "publish", err)
	}
	i.awaitApplied(ctx, rec.ID, func(r *results.Record) bool { return r.Status.Terminal() || r.Attempts > rec.Attempts })
	return c.JSON(http.StatusAccepted, map[string]string{"id": rec.ID, "status": "cancelling"})
}

// cancelJob publishes the cancellation of rec's job (a no-op for a job
// that has ended meanwhile: statuses only move forward) and tells batchers
// and workers to drop it.
func (i *Ingress) cancelJob(ctx context.Context, rec *results.Record) error {
	ref := lifecycle.JobRef{ID: rec.ID, Tenant: rec.Tenant, Model: rec.Model, Version: rec.Version, Attempt: rec.Attempts, CreatedAt: rec.CreatedAt, JobsSeq: rec.JobsSeq}
	if rec.Webhook != nil {
		ref.CallbackURL = rec.Webhook.URL
	}
	ev := lifecycle.CancelRequestEvent(ref, i.now())
	if _, err := ev.Publish(ctx, i.opt.JS, i.opt.Topology); err != nil {
		return fmt.Errorf("publish the cancel of job %s: %w", rec.ID, err)
	}
	notice, _ := proto.Marshal(&inferqpb.Cancel{JobId: rec.ID})
	if err := i.opt.JS.Conn().Publish(i.opt.Topology.CancelSubject(rec.Model), notice); err != nil {
		i.opt.Log.Warn("cancel notice not sent", "job", rec.ID, "model", rec.Model, "err", err)
	}
	i.opt.Log.Info("job cancelled", "job", rec.ID, "model", rec.Model)
	return nil
}

// lookup reads the job named in the path, answering 404 for unknown ids and
// for other tenants' jobs alike.
func (i *Ingress) lookup(c echo.Context) (*results.Record, error) {
	id := c.Param("id")
	notFound := apiError(http.StatusNotFound, "not_found", "job "+strconv.Quote(id)+" not found")
	if !jobid.Valid(id) {
		return nil, notFound
	}
	rec, err := i.record(c.Request().Context(), id)
	switch {
	case errors.Is(err, results.ErrNotFound):
		return nil, notFound
	case err != nil:
		return nil, i.unavailable("", "store", err)
	case rec.Tenant != tenantOf(c):
		return nil, notFound
	}
	return rec, nil
}

// tenantOf is the caller's tenant.
func tenantOf(c echo.Context) string {
	if p := authecho.FromContext(c); p != nil {
		return p.Tenant
	}
	return DefaultTenant
}
