package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/inferq/inferq/internal/jobid"
	"github.com/inferq/inferq/internal/results"
)

// modelRow is one model's line on the overview.
type modelRow struct {
	ModelStats
	figures
	Devices              string
	Queued, Rate         string
	P50, P99, Oldest     string
	QueuedChart, RChart  any
	P99Chart, BatchChart any
}

// overviewData is what the overview shows now.
func (c *Console) overviewData(ec echo.Context) map[string]any {
	ctx := ec.Request().Context()
	devices := map[string][]string{}
	workers, werr := c.opt.Backend.Workers(ctx)
	for _, w := range workers {
		d := w.Device
		if d == "" {
			d = "loading"
		}
		if !slices.Contains(devices[w.Model], d) {
			devices[w.Model] = append(devices[w.Model], d)
		}
	}
	var rows []modelRow
	for _, m := range c.opt.Backend.Models(ctx) {
		f := c.sampler.figures(m.Name)
		r := modelRow{ModelStats: m, figures: f, Devices: strings.Join(devices[m.Name], ", "),
			Rate: num(f.Rate, "/s"), P50: num(f.P50, "s"), P99: num(f.P99, "s"), Oldest: num(f.Oldest, "s"),
			QueuedChart: sparkline(m.Name+" jobs queued", f.QueuedSeries, ""),
			RChart:      sparkline(m.Name+" jobs submitted per second", f.RateSeries, "/s"),
			P99Chart:    sparkline(m.Name+" p99 latency", f.P99Series, "s"),
			BatchChart:  bars(m.RecentBatchSizes, m.MaxBatch)}
		r.Queued = "—"
		if m.Known {
			r.Queued = strconv.FormatUint(m.Queued, 10)
		}
		rows = append(rows, r)
	}
	data := map[string]any{"Models": rows, "Updated": time.Now().UTC().Format("15:04:05")}
	if werr != nil {
		data["WorkersError"] = werr.Error()
	}
	return data
}

// overview handles GET /ui: every model's queue, rate, latency and workers.
func (c *Console) overview(ec echo.Context) error {
	return c.render(ec, http.StatusOK, "overview", c.overviewData(ec))
}

// overviewStream handles GET /ui/overview/stream: the overview's table,
// rendered again every 2 s, as Server-Sent Events the page swaps in.
func (c *Console) overviewStream(ec echo.Context) error {
	w := ec.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	tmpl := c.pages["overview"]
	for n := 0; ; n++ {
		var b bytes.Buffer
		if err := tmpl.ExecuteTemplate(&b, "models", c.overviewData(ec)); err != nil {
			return fmt.Errorf("console: render overview: %w", err)
		}
		ctl := http.NewResponseController(w.Writer)
		_ = ctl.SetWriteDeadline(time.Now().Add(time.Minute))
		fmt.Fprintf(w, "id: %d\nevent: models\n", n)
		for _, line := range strings.Split(b.String(), "\n") {
			fmt.Fprintf(w, "data: %s\n", line)
		}
		if _, err := fmt.Fprint(w, "\n"); err != nil {
			return nil
		}
		w.Flush()
		select {
		case <-ec.Request().Context().Done():
			return nil
		case <-c.stopping:
			return nil // the browser reconnects, to this ingress's successor
		case <-t.C:
		}
	}
}

// jobsPageSize is the recent-jobs list's page size.
const jobsPageSize = 25

// windows are the recent-jobs list's time windows.
var windows = []struct{ Value, Label string }{
	{"15m", "last 15 minutes"}, {"1h", "last hour"}, {"6h", "last 6 hours"}, {"24h", "last 24 hours"}, {"", "any time"},
}

var statuses = []results.Status{results.Queued, results.Running, results.Succeeded, results.Failed, results.Cancelled, results.Expired}

// jobs handles GET /ui/jobs: the lookup form (?id= opens a job) and the
// list of recent jobs by model, status and time window.
func (c *Console) jobs(ec echo.Context) error {
	if id := strings.TrimSpace(ec.QueryParam("id")); id != "" {
		if !jobid.Valid(id) {
			return echo.NewHTTPError(http.StatusBadRequest, "job id "+strconv.Quote(id)+" is not a job id")
		}
		return ec.Redirect(http.StatusSeeOther, Prefix+"/jobs/"+id)
	}
	q := ec.QueryParams()
	f := JobFilter{Model: q.Get("model"), Status: results.Status(q.Get("status")), Limit: jobsPageSize}
	if f.Model != "" && !slices.Contains(c.models(), f.Model) {
		return echo.NewHTTPError(http.StatusBadRequest, "no model "+strconv.Quote(f.Model))
	}
	if f.Status != "" && !slices.Contains(statuses, f.Status) {
		return echo.NewHTTPError(http.StatusBadRequest, "no status "+strconv.Quote(string(f.Status)))
	}
	window := q.Get("window")
	if !q.Has("window") {
		window = "1h"
	}
	if window != "" {
		d, err := time.ParseDuration(window)
		if err != nil || d <= 0 {
			return echo.NewHTTPError(http.StatusBadRequest, "window: want a duration like 1h, got "+strconv.Quote(window))
		}
		f.Since = time.Now().Add(-d)
	}
	page := 1
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 10000 {
			return echo.NewHTTPError(http.StatusBadRequest, "page: want 1..10000, got "+strconv.Quote(p))
		}
		page = n
	}
	f.Offset = (page - 1) * jobsPageSize
	list, more, err := c.opt.Backend.RecentJobs(ec.Request().Context(), sessionOf(ec).p.Tenant, f)
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "jobs unavailable: "+err.Error())
	}
	link := func(p int) string {
		v := url.Values{"model": {f.Model}, "status": {string(f.Status)}, "window": {window}, "page": {strconv.Itoa(p)}}
		return Prefix + "/jobs?" + v.Encode()
	}
	data := map[string]any{"Jobs": list, "Models": c.models(), "Statuses": statuses, "Windows": windows,
		"Model": f.Model, "Status": string(f.Status), "Window": window, "PageNo": page}
	if page > 1 {
		data["Prev"] = link(page - 1)
	}
	if more {
		data["Next"] = link(page + 1)
	}
	return c.render(ec, http.StatusOK, "jobs", data)
}

// readJob reads the job of the path through the API (GET /v1/jobs/{id}),
// so a session sees exactly the jobs its credential may read.
func (c *Console) readJob(ec echo.Context) (*results.Record, error) {
	id := ec.Param("id")
	if !jobid.Valid(id) {
		return nil, echo.NewHTTPError(http.StatusNotFound, "job "+strconv.Quote(id)+" not found")
	}
	a := c.call(ec, http.MethodGet, "/v1/jobs/"+id, nil)
	if a.status != http.StatusOK {
		return nil, a.err()
	}
	rec := &results.Record{}
	if err := json.Unmarshal(a.body, rec); err != nil {
		return nil, fmt.Errorf("job %s: %w", id, err)
	}
	return rec, nil
}

// notices are the messages an action's redirect may ask a page to show.
var notices = map[string]string{
	"cancelled": "Cancel requested: the job stops as soon as its worker hears of it.",
	"replayed":  "Replayed: the job is queued again as a new attempt.",
}

// job handles GET /ui/jobs/{id}: the record, timings, tokens (live), the
// trace link and the Cancel and Replay buttons.
func (c *Console) job(ec echo.Context) error {
	rec, err := c.readJob(ec)
	if err != nil {
		return err
	}
	return c.jobPage(ec, http.StatusOK, rec, notices[ec.QueryParam("notice")], "")
}

func (c *Console) jobPage(ec echo.Context, status int, rec *results.Record, notice, errMsg string) error {
	data := map[string]any{"Job": rec, "Terminal": rec.Status.Terminal(), "Notice": notice, "Error": errMsg}
	if len(rec.Result) > 0 {
		var pretty bytes.Buffer
		if json.Indent(&pretty, rec.Result, "", "  ") == nil {
			data["Result"] = pretty.String()
		}
	}
	if tid := c.opt.Backend.TraceID(ec.Request().Context(), rec); tid != "" {
		data["TraceID"] = tid
		if c.opt.TraceURL != "" {
			data["TraceLink"] = strings.ReplaceAll(c.opt.TraceURL, "{trace_id}", tid)
		}
	}
	return c.render(ec, status, "job", data)
}

// jobEvents handles GET /ui/jobs/{id}/events: the API's event stream of
// the job (GET /v1/jobs/{id}/events), served in process as the session,
// because a browser's EventSource cannot send an Authorization header.
func (c *Console) jobEvents(ec echo.Context) error {
	id := ec.Param("id")
	if !jobid.Valid(id) {
		return echo.NewHTTPError(http.StatusNotFound, "job "+strconv.Quote(id)+" not found")
	}
	r := c.apiRequest(ec, http.MethodGet, "/v1/jobs/"+id+"/events", nil)
	if v := ec.Request().Header.Get("Last-Event-ID"); v != "" {
		r.Header.Set("Last-Event-ID", v)
	}
	c.opt.Backend.API().ServeHTTP(ec.Response(), r)
	return nil
}

// act runs a job action through the API and shows the job page again:
// after a redirect on success, with the API's refusal otherwise.
func (c *Console) act(ec echo.Context, method, suffix, notice string) error {
	id := ec.Param("id")
	if !jobid.Valid(id) {
		return echo.NewHTTPError(http.StatusNotFound, "job "+strconv.Quote(id)+" not found")
	}
	var body []byte
	if method == http.MethodPost {
		body = []byte("{}")
	}
	a := c.call(ec, method, "/v1/jobs/"+id+suffix, body)
	if a.status/100 == 2 {
		return ec.Redirect(http.StatusSeeOther, Prefix+"/jobs/"+id+"?notice="+notice)
	}
	refusal := a.err()
	rec, err := c.readJob(ec)
	if err != nil {
		return refusal
	}
	return c.jobPage(ec, a.status, rec, "", refusal.(*echo.HTTPError).Message.(string))
}

// cancelJob handles POST /ui/jobs/{id}/cancel (DELETE /v1/jobs/{id}).
func (c *Console) cancelJob(ec echo.Context) error {
	return c.act(ec, http.MethodDelete, "", "cancelled")
}

// replayJob handles POST /ui/jobs/{id}/replay (POST /v1/jobs/{id}/replay).
func (c *Console) replayJob(ec echo.Context) error {
	return c.act(ec, http.MethodPost, "/replay", "replayed")
}

// deadLimit bounds the dead letters one page lists and one "replay all"
// replays.
const deadLimit = 500

// deadFilter reads the dead-letter page's filter: model and error code.
func (c *Console) deadFilter(ec echo.Context) (model, code string, err error) {
	model, code = ec.FormValue("model"), ec.FormValue("code")
	if model != "" && !slices.Contains(c.models(), model) {
		return "", "", echo.NewHTTPError(http.StatusBadRequest, "no model "+strconv.Quote(model))
	}
	if len(code) > 64 {
		return "", "", echo.NewHTTPError(http.StatusBadRequest, "code: at most 64 characters")
	}
	return model, code, nil
}

// matching are the dead letters of the filter whose job is failed now
// (the ones a replay would run), and all the listed ones.
func (c *Console) matching(ec echo.Context, model, code string) (listed, failed []DeadLetter, err error) {
	all, err := c.opt.Backend.DeadLetters(ec.Request().Context(), sessionOf(ec).p.Tenant, model, deadLimit)
	if err != nil {
		return nil, nil, echo.NewHTTPError(http.StatusServiceUnavailable, "dead letters unavailable: "+err.Error())
	}
	for _, d := range all {
		if code != "" && d.Code() != code {
			continue
		}
		listed = append(listed, d)
		if d.Code() != "" {
			failed = append(failed, d)
		}
	}
	return listed, failed, nil
}

// dead handles GET /ui/dead (admin): dead letters by model and error code;
// with ?confirm=1 it asks to confirm replaying every failed one shown.
func (c *Console) dead(ec echo.Context) error {
	model, code, err := c.deadFilter(ec)
	if err != nil {
		return err
	}
	listed, failed, err := c.matching(ec, model, code)
	if err != nil {
		return err
	}
	codes := map[string]bool{}
	for _, d := range listed {
		if d.Code() != "" {
			codes[d.Code()] = true
		}
	}
	data := map[string]any{"Letters": listed, "Failed": len(failed), "Models": c.models(), "Model": model,
		"Code": code, "Codes": sortedKeys(codes), "Confirm": ec.QueryParam("confirm") == "1", "Limit": deadLimit}
	if n := ec.QueryParam("replayed"); n != "" {
		data["Notice"] = "Replayed " + n + " job(s); they are queued again."
	}
	return c.render(ec, http.StatusOK, "dead", data)
}

// replayDead handles POST /ui/dead/replay (admin): one job (job=ID), or
// every failed job of the filter, each through POST /v1/jobs/{id}/replay.
// "All" needs the count the user confirmed (expect): if more match now the
// user is asked again.
func (c *Console) replayDead(ec echo.Context) error {
	model, code, err := c.deadFilter(ec)
	if err != nil {
		return err
	}
	var ids []string
	if id := ec.FormValue("job"); id != "" {
		if !jobid.Valid(id) {
			return echo.NewHTTPError(http.StatusBadRequest, "job id "+strconv.Quote(id)+" is not a job id")
		}
		ids = []string{id}
	} else {
		expect, err := strconv.Atoi(ec.FormValue("expect"))
		if err != nil || expect < 0 {
			return echo.NewHTTPError(http.StatusBadRequest, "expect: the confirmed count is missing")
		}
		_, failed, err := c.matching(ec, model, code)
		if err != nil {
			return err
		}
		if len(failed) > expect {
			return ec.Redirect(http.StatusSeeOther, deadLink(model, code)+"&confirm=1")
		}
		for _, d := range failed {
			ids = append(ids, d.Job)
		}
	}
	n := 0
	var refusal error
	for _, id := range ids {
		a := c.call(ec, http.MethodPost, "/v1/jobs/"+id+"/replay", []byte("{}"))
		if a.status/100 == 2 {
			n++
		} else if refusal == nil {
			refusal = a.err()
		}
	}
	if n == 0 && refusal != nil {
		return refusal
	}
	c.opt.Log.Info("console replay", "tenant", sessionOf(ec).p.Tenant, "model", model, "code", code, "replayed", n)
	return ec.Redirect(http.StatusSeeOther, deadLink(model, code)+"&replayed="+strconv.Itoa(n))
}

func deadLink(model, code string) string {
	return Prefix + "/dead?" + url.Values{"model": {model}, "code": {code}}.Encode()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// workers handles GET /ui/workers: each live worker's heartbeat.
func (c *Console) workers(ec echo.Context) error {
	ws, err := c.opt.Backend.Workers(ec.Request().Context())
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "workers unavailable: "+err.Error())
	}
	return c.render(ec, http.StatusOK, "workers", map[string]any{"Workers": ws})
}
