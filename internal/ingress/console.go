package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/console"
	"github.com/inferq/inferq/internal/lifecycle"
	"github.com/inferq/inferq/internal/results"
)

// consoleBackend is the ingress as the web console (/ui) reads it.
type consoleBackend struct{ i *Ingress }

var _ console.Backend = consoleBackend{}

func (b consoleBackend) API() http.Handler { return b.i.echo }

func (b consoleBackend) Models(ctx context.Context) []console.ModelStats {
	served := b.i.servedModels()
	out := make([]console.ModelStats, 0, len(served))
	for k := range served {
		m := &served[k]
		ms := console.ModelStats{Name: m.Name, Kind: m.Kind, Test: m.Runner.Builtin != "", MaxBatch: m.Batching.MaxBatchSize,
			RecentBatchSizes: b.i.recent.get(m.Name)}
		if s, err := b.i.stats(ctx, m.Name); err == nil {
			ms.Known, ms.Queued, ms.Pending, ms.InFlight, ms.Workers = true, s.Queued, s.BatchesPending, s.InFlight, s.LiveWorkers
		}
		out = append(out, ms)
	}
	return out
}

// consoleScanLimit bounds what one console page reads: dead letters of the
// stream, or job records of the recent list.
const consoleScanLimit = 5000

func (b consoleBackend) Workers(ctx context.Context) ([]console.Worker, error) {
	kv, err := b.i.opt.JS.KeyValue(ctx, b.i.opt.Topology.WorkersBucket())
	if err != nil {
		return nil, fmt.Errorf("workers bucket: %w", err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("workers bucket: %w", err)
	}
	defer func() { _ = keys.Stop() }()
	var out []console.Worker
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue // expired between the listing and the read
		}
		var w console.Worker
		if json.Unmarshal(e.Value(), &w) != nil {
			continue
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b console.Worker) int {
		return strings.Compare(a.Model+"\x00"+a.Worker, b.Model+"\x00"+b.Worker)
	})
	return out, nil
}

func (b consoleBackend) DeadLetters(ctx context.Context, tenant, model string, limit int) ([]console.DeadLetter, error) {
	t := b.i.opt.Topology
	filter := t.DeadSubject("*")
	if model != "" {
		filter = t.DeadSubject(model)
	}
	cons, err := b.i.opt.JS.OrderedConsumer(ctx, t.DeadStream(), natsjs.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	// The stream is read oldest first; the newest record of a job wins.
	byJob := map[string]int{}
	var all []console.DeadLetter
	for read := 0; read < consoleScanLimit; {
		msgs, err := cons.FetchNoWait(256)
		if err != nil {
			return nil, fmt.Errorf("dead letters: %w", err)
		}
		got := 0
		for msg := range msgs.Messages() {
			got++
			dl, err := lifecycle.DecodeDeadLetter(msg.Data())
			if err != nil || dl.Tenant != tenant {
				continue
			}
			if k, ok := byJob[dl.Job]; ok {
				all[k].DeadLetter = dl
				continue
			}
			byJob[dl.Job] = len(all)
			all = append(all, console.DeadLetter{DeadLetter: dl})
		}
		read += got
		if got == 0 {
			break
		}
	}
	slices.Reverse(all)
	if len(all) > limit {
		all = all[:limit]
	}
	for k := range all {
		if rec, err := b.i.opt.Store.Get(ctx, all[k].Job); err == nil {
			all[k].Record = rec
		}
	}
	return all, nil
}

func (b consoleBackend) RecentJobs(ctx context.Context, tenant string, f console.JobFilter) ([]*results.Record, bool, error) {
	cands := b.i.accepts.list(func(r *results.Record) bool {
		return r.Tenant == tenant && (f.Model == "" || r.Model == f.Model) && !r.CreatedAt.Before(f.Since)
	})
	slices.SortFunc(cands, func(a, b *results.Record) int { return b.CreatedAt.Compare(a.CreatedAt) })
	var out []*results.Record
	skipped := 0
	for n, r := range cands {
		if n >= consoleScanLimit {
			break
		}
		if f.Status != "" || len(out) < f.Limit+1 && skipped >= f.Offset {
			cur, err := b.i.opt.Store.Get(ctx, r.ID)
			switch {
			case err == nil:
				r = cur
			case !errors.Is(err, results.ErrNotFound):
				return nil, false, fmt.Errorf("job %s: %w", r.ID, err)
			}
		}
		if f.Status != "" && r.Status != f.Status {
			continue
		}
		if skipped < f.Offset {
			skipped++
			continue
		}
		out = append(out, r)
		if len(out) > f.Limit {
			return out[:f.Limit], true, nil
		}
	}
	return out, false, nil
}

func (b consoleBackend) TraceID(ctx context.Context, rec *results.Record) string {
	stream, err := b.i.jobsStream(ctx)
	if err != nil {
		return ""
	}
	msg, err := stream.GetLastMsgForSubject(ctx, b.i.opt.Topology.JobLookupSubject(rec.ID))
	if err != nil {
		return ""
	}
	// traceparent: version-traceid-spanid-flags (W3C Trace Context).
	parts := strings.Split(msg.Header.Get("traceparent"), "-")
	if len(parts) != 4 || len(parts[1]) != 32 || strings.Trim(parts[1], "0") == "" {
		return ""
	}
	return parts[1]
}

// list returns copies of the remembered records for which keep holds.
func (a *acceptedJobs) list(keep func(*results.Record) bool) []*results.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*results.Record
	for _, gen := range []map[string]*results.Record{a.cur, a.prev} {
		for _, r := range gen {
			if keep(r) {
				cp := *r
				out = append(out, &cp)
			}
		}
	}
	return out
}

// consoleModels are the names of the models the ingress serves now (the
// registry's, when it is on), for the console's filters and charts.
func (i *Ingress) consoleModels() []string {
	listed := i.listedModels()
	names := make([]string, 0, len(listed))
	for _, lm := range listed {
		for _, v := range lm.live { // each version's served name: what jobs and metrics carry
			if !slices.Contains(names, v.Name) {
				names = append(names, v.Name)
			}
		}
	}
	return names
}

// mountConsole serves the web console at /ui ahead of the API's routes and
// middleware: the console authenticates its own session cookie, and calls
// the API in process, through all of that middleware, for every action.
func (i *Ingress) mountConsole() {
	names := make([]string, 0, len(i.opt.Config.Models))
	for _, m := range i.opt.Config.Models {
		names = append(names, m.Name)
	}
	log := slog.New(slog.DiscardHandler)
	if i.opt.Log != nil {
		log = i.opt.Log.With("component", "console")
	}
	cfg := i.opt.Config.Ingress
	ui, err := console.New(console.Options{Backend: consoleBackend{i}, Auth: i.opt.Auth, Gatherer: i.opt.Registry,
		Models: names, ModelNames: i.consoleModels, TraceURL: cfg.Console.TraceURL, Secure: cfg.TLS.Enabled(), Log: log})
	if err != nil {
		panic(err) // the templates are embedded: a build that cannot parse them is broken
	}
	i.ui = ui
	i.echo.Pre(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !console.Owns(c.Request().URL.Path) {
				return next(c)
			}
			ui.ServeHTTP(c.Response(), c.Request())
			return nil
		}
	})
}
