// Package storetest is the conformance suite every results.Store backend
// passes, so that the Redis and JetStream KV backends cannot drift apart.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/results"
)

// Factory returns a fresh, empty store whose records expire after retention.
// It must be safe to call from parallel tests and should close the store
// with t.Cleanup (the suite may close it earlier; Close must be idempotent).
type Factory func(t *testing.T, retention time.Duration) results.Store

// Run runs the suite against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"CreateGetRoundTrip", testRoundTrip},
		{"CreateTwice", testCreateTwice},
		{"CreateInvalid", testCreateInvalid},
		{"GetMissing", testGetMissing},
		{"OddIDs", testOddIDs},
		{"ApplyMissing", testApplyMissing},
		{"FirstEventCreates", testFirstEventCreates},
		{"ApplyInvalid", testApplyInvalid},
		{"ForwardOnly", testForwardOnly},
		{"ReplayClearsAttempt", testReplay},
		{"SucceededWithoutRunning", testSucceededWithoutRunning},
		{"MatchesAdvance", testMatchesAdvance},
		{"ConcurrentSameJob", testConcurrentSameJob},
		{"ConcurrentManyJobs", testConcurrentManyJobs},
		{"WaitAlreadyDone", testWaitAlreadyDone},
		{"WaitWokenByApply", testWaitWoken},
		{"WaitTimeout", testWaitTimeout},
		{"WaitMissing", testWaitMissing},
		{"WaitFallback", testWaitFallback},
		{"WaitManyWaiters", testWaitMany},
		{"CloseReleasesWaiters", testCloseReleasesWaiters},
		{"Retention", testRetention},
		{"Ping", testPing},
		{"Reserve", testReserve},
		{"WebhookLifecycle", testWebhookLifecycle},
		{"WebhookFirstEventCreates", testWebhookFirstEventCreates},
		{"WebhookInvalid", testWebhookInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore)
		})
	}
}

const longRetention = time.Hour

var idSeq atomic.Uint64

// newID returns an id unique within the test binary, in the jobid alphabet.
func newID() string { return fmt.Sprintf("j%dx%d", time.Now().UnixNano(), idSeq.Add(1)) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// created makes a queued attempt-1 record and stores it.
func created(t *testing.T, s results.Store) *results.Record {
	t.Helper()
	rec := &results.Record{
		ID: newID(), Tenant: "acme", Model: "resnet", Version: "3",
		Status: results.Queued, CreatedAt: time.Now().UTC(), Attempts: 1,
	}
	if err := s.Create(ctxFor(t), rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return rec
}

func apply(t *testing.T, s results.Store, u results.Update) (*results.Record, bool) {
	t.Helper()
	rec, changed, err := s.Apply(ctxFor(t), u)
	if err != nil {
		t.Fatalf("Apply(%s attempt %d): %v", u.Status, u.Attempt, err)
	}
	return rec, changed
}

func get(t *testing.T, s results.Store, id string) *results.Record {
	t.Helper()
	rec, err := s.Get(ctxFor(t), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return rec
}

// diff describes how got differs from want, or returns "".
func diff(got, want *results.Record) string {
	if got == nil || want == nil {
		if got == want {
			return ""
		}
		return fmt.Sprintf("got %v, want %v", got, want)
	}
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s: got %v, want %v", field, g, w)) }
	if got.ID != want.ID || got.Tenant != want.Tenant || got.Model != want.Model || got.Version != want.Version {
		add("identity", []string{got.ID, got.Tenant, got.Model, got.Version}, []string{want.ID, want.Tenant, want.Model, want.Version})
	}
	if got.Status != want.Status {
		add("status", got.Status, want.Status)
	}
	if got.Attempts != want.Attempts {
		add("attempts", got.Attempts, want.Attempts)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) || got.CreatedAt.Location() != time.UTC {
		add("created_at", got.CreatedAt, want.CreatedAt)
	}
	if !timeEq(got.StartedAt, want.StartedAt) {
		add("started_at", got.StartedAt, want.StartedAt)
	}
	if !timeEq(got.FinishedAt, want.FinishedAt) {
		add("finished_at", got.FinishedAt, want.FinishedAt)
	}
	if (got.Error == nil) != (want.Error == nil) || got.Error != nil && *got.Error != *want.Error {
		add("error", got.Error, want.Error)
	}
	if !bytes.Equal(got.Result, want.Result) {
		add("result", string(got.Result), string(want.Result))
	}
	if (got.Webhook == nil) != (want.Webhook == nil) || got.Webhook != nil && *got.Webhook != *want.Webhook {
		add("webhook", got.Webhook, want.Webhook)
	}
	if len(d) == 0 {
		return ""
	}
	return fmt.Sprint(d)
}

func timeEq(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b) && a.Location() == time.UTC
}

func testRoundTrip(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	ctx := ctxFor(t)
	loc := time.FixedZone("UTC+5:30", 5*3600+1800)
	created := time.Date(2025, 3, 4, 5, 6, 7, 123456789, loc)
	started := created.Add(time.Second + 1)
	finished := started.Add(time.Minute + 7)
	// Whitespace, HTML characters, escapes and non-ASCII: encoders that
	// compact or escape would change these bytes.
	result := json.RawMessage("{\"outputs\": [ {\"name\":\"y\", \"data\":[1, 2.50, 3e2]} ],\n \"html\":\"<b>&amp;</b>\", \"u\":\"\\u00e9 é\"}")
	in := &results.Record{
		ID: newID(), Tenant: "acme", Model: "resnet", Version: "v1.2",
		Status: results.Failed, CreatedAt: created, StartedAt: &started, FinishedAt: &finished,
		Attempts: 3, Error: &results.Error{Code: "oom", Message: "out of memory: \"big\" <input>"},
		Result: result,
	}
	want := *in
	if err := s.Create(ctx, in); err != nil {
		t.Fatalf("Create: %v", err)
	}
	in.Model = "changed-after-create" // the store must not keep the caller's record
	got := get(t, s, want.ID)
	if d := diff(got, &want); d != "" {
		t.Fatalf("round trip: %s", d)
	}
	if got.StartedAt.Nanosecond() != started.Nanosecond() {
		t.Fatalf("lost nanoseconds: %v", got.StartedAt)
	}

	// The minimal record: no optional fields.
	bare := &results.Record{ID: newID(), Status: results.Queued, CreatedAt: time.Unix(0, 1), Attempts: 1}
	if err := s.Create(ctx, bare); err != nil {
		t.Fatalf("Create minimal: %v", err)
	}
	if d := diff(get(t, s, bare.ID), bare); d != "" {
		t.Fatalf("minimal round trip: %s", d)
	}
}

func testCreateTwice(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	rec := created(t, s)
	dup := *rec
	dup.Model = "other"
	if err := s.Create(ctxFor(t), &dup); !errors.Is(err, results.ErrExists) {
		t.Fatalf("second Create: got %v, want ErrExists", err)
	}
	if got := get(t, s, rec.ID); got.Model != rec.Model {
		t.Fatalf("second Create overwrote the record: model %q", got.Model)
	}
}

func testCreateInvalid(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	ctx := ctxFor(t)
	for name, rec := range map[string]*results.Record{
		"nil":        nil,
		"no id":      {Status: results.Queued, Attempts: 1},
		"odd id":     {ID: "a b", Status: results.Queued, Attempts: 1},
		"bad status": {ID: newID(), Status: "bogus", Attempts: 1},
		"bad result": {ID: newID(), Status: results.Succeeded, Attempts: 1, Result: json.RawMessage(`{"a":`)},
	} {
		if err := s.Create(ctx, rec); !errors.Is(err, results.ErrInvalid) {
			t.Errorf("Create(%s): got %v, want ErrInvalid", name, err)
		}
	}
}

func testGetMissing(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	if _, err := s.Get(ctxFor(t), newID()); !errors.Is(err, results.ErrNotFound) {
		t.Fatalf("Get missing: got %v, want ErrNotFound", err)
	}
}

// testOddIDs: ids come from URLs; anything a backend cannot hold is simply
// not found, never a panic or a backend error.
func testOddIDs(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	ctx := ctxFor(t)
	for _, id := range []string{"a b", "../x", "x.", ".x", "a..b", "a*", "a>", "job:1", "é", "a\x00b", string(make([]byte, 300))} {
		if _, err := s.Get(ctx, id); !errors.Is(err, results.ErrNotFound) {
			t.Errorf("Get(%q): got %v, want ErrNotFound", id, err)
		}
		if _, _, err := s.Apply(ctx, results.Update{ID: id, Status: results.Running, Attempt: 1}); !errors.Is(err, results.ErrNotFound) {
			t.Errorf("Apply(%q): got %v, want ErrNotFound", id, err)
		}
		if _, err := s.Wait(ctx, id, func(*results.Record) bool { return true }, nil); !errors.Is(err, results.ErrNotFound) {
			t.Errorf("Wait(%q): got %v, want ErrNotFound", id, err)
		}
	}
}

func testApplyMissing(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	_, changed, err := s.Apply(ctxFor(t), results.Update{ID: newID(), Status: results.Running, Attempt: 1, Time: time.Now()})
	if !errors.Is(err, results.ErrNotFound) || changed {
		t.Fatalf("Apply missing: got changed=%v err=%v, want ErrNotFound", changed, err)
	}
}

func testApplyInvalid(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	rec := created(t, s)
	for name, u := range map[string]results.Update{
		"no id":      {Status: results.Running, Attempt: 1},
		"bad status": {ID: rec.ID, Status: "bogus", Attempt: 1},
		"attempt 0":  {ID: rec.ID, Status: results.Running, Attempt: 0},
		"bad result": {ID: rec.ID, Status: results.Succeeded, Attempt: 1, Result: json.RawMessage("{nope}")},
	} {
		if _, _, err := s.Apply(ctxFor(t), u); !errors.Is(err, results.ErrInvalid) {
			t.Errorf("Apply(%s): got %v, want ErrInvalid", name, err)
		}
	}
	if got := get(t, s, rec.ID); got.Status != results.Queued {
		t.Fatalf("invalid updates changed the record: %s", got.Status)
	}
}

// step is one update and what the store must make of it.
type step struct {
	u       results.Update
	changed bool
	check   func(t *testing.T, r *results.Record)
}

// runSteps applies each step, checks the outcome against Advance on a local
// copy and against the step's own expectations, and that Get agrees.
func runSteps(t *testing.T, s results.Store, rec *results.Record, steps []step) {
	t.Helper()
	model := *rec
	model.CreatedAt = model.CreatedAt.UTC()
	for i, st := range steps {
		st.u.ID = rec.ID
		got, changed := apply(t, s, st.u)
		wantChanged := results.Advance(&model, st.u)
		if changed != st.changed || wantChanged != st.changed {
			t.Fatalf("step %d (%s attempt %d): changed=%v, Advance says %v, test says %v",
				i, st.u.Status, st.u.Attempt, changed, wantChanged, st.changed)
		}
		if d := diff(got, &model); d != "" {
			t.Fatalf("step %d (%s attempt %d): Apply returned %s", i, st.u.Status, st.u.Attempt, d)
		}
		if d := diff(get(t, s, rec.ID), &model); d != "" {
			t.Fatalf("step %d (%s attempt %d): Get returned %s", i, st.u.Status, st.u.Attempt, d)
		}
		if st.check != nil {
			st.check(t, got)
		}
	}
}

func at(sec int) time.Time { return time.Date(2025, 1, 1, 0, 0, sec, 1000, time.UTC) }

func testForwardOnly(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	rec := created(t, s)
	r1 := json.RawMessage(`{"v": 1}`)
	r2 := json.RawMessage(`{"v": 2}`)
	runSteps(t, s, rec, []step{
		{u: results.Update{Status: results.Queued, Attempt: 1, Time: at(1)}, changed: false},
		{u: results.Update{Status: results.Running, Attempt: 1, Time: at(2)}, changed: true, check: func(t *testing.T, r *results.Record) {
			if r.Status != results.Running || r.StartedAt == nil || !r.StartedAt.Equal(at(2)) {
				t.Fatalf("running: %+v", r)
			}
		}},
		{u: results.Update{Status: results.Running, Attempt: 1, Time: at(3)}, changed: false},
		{u: results.Update{Status: results.Succeeded, Attempt: 1, Time: at(4), Result: r1}, changed: true, check: func(t *testing.T, r *results.Record) {
			if r.Status != results.Succeeded || !r.StartedAt.Equal(at(2)) || !r.FinishedAt.Equal(at(4)) || string(r.Result) != string(r1) {
				t.Fatalf("succeeded: %+v", r)
			}
		}},
		{u: results.Update{Status: results.Running, Attempt: 1, Time: at(5)}, changed: false},
		{u: results.Update{Status: results.Failed, Attempt: 1, Time: at(6), Error: &results.Error{Code: "x"}}, changed: false},
		{u: results.Update{Status: results.Succeeded, Attempt: 1, Time: at(7), Result: r2}, changed: false, check: func(t *testing.T, r *results.Record) {
			if string(r.Result) != string(r1) || !r.FinishedAt.Equal(at(4)) {
				t.Fatalf("duplicate succeeded changed the record: %+v", r)
			}
		}},
	})
}

func testReplay(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	rec := created(t, s)
	res := json.RawMessage(`[1,2,3]`)
	runSteps(t, s, rec, []step{
		{u: results.Update{Status: results.Running, Attempt: 1, Time: at(1)}, changed: true},
		{u: results.Update{Status: results.Failed, Attempt: 1, Time: at(2), Error: &results.Error{Code: "worker_lost", Message: "gone"}}, changed: true, check: func(t *testing.T, r *results.Record) {
			if r.Error == nil || r.Error.Code != "worker_lost" || r.FinishedAt == nil || r.Result != nil {
				t.Fatalf("failed: %+v", r)
			}
		}},
		// A replay: attempt 2 starts over, whatever the status.
		{u: results.Update{Status: results.Queued, Attempt: 2, Time: at(3)}, changed: true, check: func(t *testing.T, r *results.Record) {
			if r.Status != results.Queued || r.Attempts != 2 || r.StartedAt != nil || r.FinishedAt != nil || r.Error != nil || r.Result != nil {
				t.Fatalf("replay did not clear the attempt: %+v", r)
			}
		}},
		// Late events of attempt 1 are stale.
		{u: results.Update{Status: results.Running, Attempt: 1, Time: at(4)}, changed: false},
		{u: results.Update{Status: results.Succeeded, Attempt: 1, Time: at(4), Result: res}, changed: false},
		{u: results.Update{Status: results.Running, Attempt: 2, Time: at(5)}, changed: true},
		{u: results.Update{Status: results.Succeeded, Attempt: 2, Time: at(6), Result: res}, changed: true, check: func(t *testing.T, r *results.Record) {
			if r.Status != results.Succeeded || r.Attempts != 2 || string(r.Result) != string(res) || r.Error != nil || !r.StartedAt.Equal(at(5)) {
				t.Fatalf("attempt 2 succeeded: %+v", r)
			}
		}},
		{u: results.Update{Status: results.Failed, Attempt: 2, Time: at(7), Error: &results.Error{Code: "late"}}, changed: false},
	})
}

func testSucceededWithoutRunning(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	rec := created(t, s)
	runSteps(t, s, rec, []step{
		{u: results.Update{Status: results.Succeeded, Attempt: 1, Time: at(9), Result: json.RawMessage(`true`)}, changed: true, check: func(t *testing.T, r *results.Record) {
			if r.StartedAt == nil || !r.StartedAt.Equal(at(9)) || !r.FinishedAt.Equal(at(9)) {
				t.Fatalf("succeeded from queued: %+v", r)
			}
		}},
	})
	other := created(t, s)
	runSteps(t, s, other, []step{
		{u: results.Update{Status: results.Cancelled, Attempt: 1, Time: at(9), Error: &results.Error{Code: "cancelled"}}, changed: true, check: func(t *testing.T, r *results.Record) {
			if r.StartedAt != nil || r.FinishedAt == nil {
				t.Fatalf("cancelled from queued: %+v", r)
			}
		}},
	})
}

// testMatchesAdvance drives random updates through the store and through
// results.Advance and requires the same outcome every time: the backend's
// rule (Lua for Redis) is exactly Advance.
func testMatchesAdvance(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	rng := rand.New(rand.NewPCG(1, 2))
	statuses := []results.Status{results.Queued, results.Running, results.Succeeded, results.Failed, results.Cancelled, results.Expired}
	for j := 0; j < 4; j++ {
		rec := created(t, s)
		model := *rec
		for i := 0; i < 40; i++ {
			u := results.Update{
				ID:      rec.ID,
				Status:  statuses[rng.IntN(len(statuses))],
				Attempt: uint32(1 + rng.IntN(3)),
				Time:    at(i),
			}
			if rng.IntN(2) == 0 {
				u.Result = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
			}
			if rng.IntN(2) == 0 {
				u.Error = &results.Error{Code: fmt.Sprint("e", i), Message: "m"}
			}
			got, changed := apply(t, s, u)
			if want := results.Advance(&model, u); changed != want {
				t.Fatalf("update %d %+v: changed=%v, Advance says %v", i, u, changed, want)
			}
			if d := diff(got, &model); d != "" {
				t.Fatalf("update %d %+v: %s", i, u, d)
			}
		}
	}
}

func testConcurrentSameJob(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	rec := created(t, s)
	statuses := []results.Status{results.Running, results.Succeeded, results.Failed, results.Cancelled}
	const n = 20
	type outcome struct {
		u       results.Update
		changed bool
	}
	out := make([]outcome, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		u := results.Update{ID: rec.ID, Status: statuses[i%len(statuses)], Attempt: 1, Time: at(i)}
		switch u.Status {
		case results.Succeeded:
			u.Result = json.RawMessage(fmt.Sprintf(`{"winner":%d}`, i))
		case results.Failed, results.Cancelled:
			u.Error = &results.Error{Code: fmt.Sprint("c", i)}
		}
		wg.Go(func() {
			<-start
			_, changed, err := s.Apply(ctxFor(t), u)
			if err != nil {
				t.Errorf("Apply: %v", err)
			}
			out[i] = outcome{u, changed}
		})
	}
	close(start)
	wg.Wait()
	var winners []results.Update
	running := 0
	for _, o := range out {
		if o.changed && o.u.Status.Terminal() {
			winners = append(winners, o.u)
		}
		if o.changed && o.u.Status == results.Running {
			running++
		}
	}
	if len(winners) != 1 || running > 1 {
		t.Fatalf("%d terminal updates and %d running updates applied, want 1 and at most 1", len(winners), running)
	}
	w := winners[0]
	got := get(t, s, rec.ID)
	if got.Status != w.Status || !bytes.Equal(got.Result, w.Result) || !got.FinishedAt.Equal(w.Time) ||
		(got.Error == nil) != (w.Error == nil) || got.Error != nil && *got.Error != *w.Error {
		t.Fatalf("record %+v is not the winner's %+v", got, w)
	}
}

func testConcurrentManyJobs(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	const jobs = 200
	ids := make([]string, jobs)
	for i := range ids {
		ids[i] = created(t, s).ID
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		for _, st := range []results.Status{results.Running, results.Succeeded, results.Failed} {
			wg.Go(func() {
				u := results.Update{ID: id, Status: st, Attempt: 1, Time: time.Now()}
				if st == results.Succeeded {
					u.Result = json.RawMessage(`{}`)
				}
				if _, _, err := s.Apply(ctxFor(t), u); err != nil {
					t.Errorf("Apply %s: %v", st, err)
				}
			})
		}
	}
	wg.Wait()
	for _, id := range ids {
		if r := get(t, s, id); !r.Status.Terminal() || r.FinishedAt == nil {
			t.Fatalf("job %s ended %s", id, r.Status)
		}
	}
}

func terminal(r *results.Record) bool { return r.Status.Terminal() }

func testWaitAlreadyDone(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	rec := created(t, s)
	apply(t, s, results.Update{ID: rec.ID, Status: results.Failed, Attempt: 1, Time: at(1), Error: &results.Error{Code: "x"}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	got, err := s.Wait(ctx, rec.ID, terminal, nil)
	if err != nil || got.Status != results.Failed {
		t.Fatalf("Wait: %v, %v", got, err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Wait on a done job took %v", el)
	}
}

func testWaitWoken(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	rec := created(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		rec *results.Record
		err error
		at  time.Time
	}
	done := make(chan res, 1)
	go func() {
		r, err := s.Wait(ctx, rec.ID, terminal, nil)
		done <- res{r, err, time.Now()}
	}()
	// Give the waiter time to block; an intermediate change must not end it.
	time.Sleep(100 * time.Millisecond)
	apply(t, s, results.Update{ID: rec.ID, Status: results.Running, Attempt: 1, Time: at(1)})
	select {
	case r := <-done:
		t.Fatalf("Wait returned on a non-terminal change: %+v, %v", r.rec, r.err)
	case <-time.After(100 * time.Millisecond):
	}
	applied := time.Now()
	apply(t, s, results.Update{ID: rec.ID, Status: results.Succeeded, Attempt: 1, Time: at(2), Result: json.RawMessage(`1`)})
	r := <-done
	if r.err != nil || r.rec.Status != results.Succeeded || string(r.rec.Result) != "1" {
		t.Fatalf("Wait: %+v, %v", r.rec, r.err)
	}
	if lag := r.at.Sub(applied); lag > 500*time.Millisecond {
		t.Fatalf("Wait woke %v after the Apply", lag)
	}
}

func testWaitTimeout(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	rec := created(t, s)
	apply(t, s, results.Update{ID: rec.ID, Status: results.Running, Attempt: 1, Time: at(1)})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	got, err := s.Wait(ctx, rec.ID, terminal, nil)
	if err != nil {
		t.Fatalf("Wait at deadline: %v, want nil error", err)
	}
	if got == nil || got.ID != rec.ID || got.Status != results.Running {
		t.Fatalf("Wait at deadline returned %+v, want the running record", got)
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 2*time.Second {
		t.Fatalf("Wait returned after %v with a 200ms deadline", el)
	}
}

func testWaitMissing(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Wait(ctx, newID(), terminal, nil); !errors.Is(err, results.ErrNotFound) {
		t.Fatalf("Wait missing: got %v, want ErrNotFound", err)
	}
}

func testWaitMany(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	const n = 100
	ids := make([]string, n)
	for i := range ids {
		ids[i] = created(t, s).ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var woken atomic.Int64
	for _, id := range ids {
		wg.Go(func() {
			r, err := s.Wait(ctx, id, terminal, nil)
			if err != nil || !r.Status.Terminal() {
				t.Errorf("Wait(%s): %v, %v", id, r, err)
				return
			}
			woken.Add(1)
		})
	}
	time.Sleep(100 * time.Millisecond)
	for _, id := range ids {
		apply(t, s, results.Update{ID: id, Status: results.Succeeded, Attempt: 1, Time: at(1), Result: json.RawMessage(`{}`)})
	}
	wg.Wait()
	if woken.Load() != n {
		t.Fatalf("%d of %d waiters woken", woken.Load(), n)
	}
}

func testCloseReleasesWaiters(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	rec := created(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := s.Wait(ctx, rec.ID, terminal, nil)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, results.ErrClosed) {
			t.Fatalf("Wait after Close: got %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not release a blocked Wait")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func testRetention(t *testing.T, newStore Factory) {
	const retention = time.Second
	s := newStore(t, retention)
	rec := created(t, s)
	get(t, s, rec.ID)
	createdAt := time.Now()
	deadline := createdAt.Add(retention + 5*time.Second)
	for {
		_, err := s.Get(ctxFor(t), rec.ID)
		if errors.Is(err, results.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("record still there %v after creation with retention %v", time.Since(createdAt), retention)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testPing(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	if err := s.Ping(ctxFor(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// testReserve: the first reservation of a key wins, for concurrent callers
// too, and comes back whole (id and request hash) to every later caller;
// different keys are independent; a reservation without a hash stays
// without one; bad keys and hashes are rejected.
func testReserve(t *testing.T, newStore Factory) {
	s := newStore(t, time.Minute)
	ctx := context.Background()
	const key = "0123456789abcdef"
	hashOf := func(i int) string { return fmt.Sprintf("%064x", i+1) }
	got := make(chan results.Reservation, 10)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.Reserve(ctx, key, results.Reservation{ID: fmt.Sprintf("job%02d", i), Hash: hashOf(i)})
			if err != nil {
				t.Errorf("reserve: %v", err)
			}
			got <- r
		}()
	}
	wg.Wait()
	close(got)
	var first results.Reservation
	for r := range got {
		if first.ID == "" {
			first = r
		}
		if r != first {
			t.Fatalf("reserve returned %+v and %+v for one key", first, r)
		}
	}
	var n int
	if _, err := fmt.Sscanf(first.ID, "job%02d", &n); err != nil || first.Hash != hashOf(n) {
		t.Fatalf("the winner %+v does not carry its own request hash", first)
	}
	if r, err := s.Reserve(ctx, key, results.Reservation{ID: "late", Hash: hashOf(99)}); err != nil || r != first {
		t.Errorf("a later reserve with another hash: %+v, %v; want the first %+v", r, err, first)
	}
	other := results.Reservation{ID: "other", Hash: hashOf(7)}
	if r, err := s.Reserve(ctx, "fedcba", other); err != nil || r != other {
		t.Errorf("second key: %+v, %v", r, err)
	}
	bare := results.Reservation{ID: "bare"}
	for range 2 {
		if r, err := s.Reserve(ctx, "abcdef", bare); err != nil || r != bare {
			t.Errorf("reservation without a hash: %+v, %v", r, err)
		}
	}
	for _, bad := range []string{"", "XYZ", "a.b", strings.Repeat("a", 200)} {
		if _, err := s.Reserve(ctx, bad, results.Reservation{ID: "job"}); !errors.Is(err, results.ErrInvalid) {
			t.Errorf("Reserve(%q): %v, want ErrInvalid", bad, err)
		}
		if bad == "" {
			continue // no hash is allowed
		}
		if _, err := s.Reserve(ctx, "abcdef01", results.Reservation{ID: "job", Hash: bad}); !errors.Is(err, results.ErrInvalid) {
			t.Errorf("Reserve with hash %q: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := s.Reserve(ctx, "abcdef02", results.Reservation{ID: "has space"}); !errors.Is(err, results.ErrInvalid) {
		t.Errorf("Reserve with id %q: %v, want ErrInvalid", "has space", err)
	}
}

// testFirstEventCreates: a job accepted without a record gets one from the
// first event about it, which carries the job's identity; later events and
// duplicates move it as usual.
func testFirstEventCreates(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	id := newID()
	created := at(0)
	first := results.Update{ID: id, Status: results.Succeeded, Attempt: 1, Time: at(2), Result: json.RawMessage(`{"x":1}`),
		JobsSeq: 7, Tenant: "acme", Model: "m", Version: "3", CreatedAt: created}
	rec, changed := apply(t, s, first)
	want := &results.Record{ID: id, Tenant: "acme", Model: "m", Version: "3", Status: results.Succeeded, CreatedAt: created,
		StartedAt: ptr(at(2)), FinishedAt: ptr(at(2)), Attempts: 1, JobsSeq: 7, Result: json.RawMessage(`{"x":1}`)}
	if !changed {
		t.Fatal("the first event did not change the job")
	}
	for _, got := range []*results.Record{rec, get(t, s, id)} {
		if d := diff(got, want); d != "" {
			t.Fatalf("record created by the first event: %s", d)
		}
	}
	if _, changed := apply(t, s, first); changed {
		t.Fatal("the same event applied twice changed the job again")
	}
	// A running event that arrives late must not move it back, and one
	// without identity updates an existing record as before.
	late := first
	late.Status, late.Result = results.Running, nil
	if _, changed := apply(t, s, late); changed {
		t.Fatal("a late running event moved a finished job")
	}
	replay := results.Update{ID: id, Status: results.Queued, Attempt: 2, Time: at(5)}
	if got, changed := apply(t, s, replay); !changed || got.Status != results.Queued || got.Attempts != 2 || got.Tenant != "acme" {
		t.Fatalf("replay of a job created by its first event: %+v, changed %v", got, changed)
	}
}

// testWaitFallback: a waiter on a job with no record sees what its fallback
// says, and then the record its first event creates.
func testWaitFallback(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	id := newID()
	queued := &results.Record{ID: id, Tenant: "acme", Model: "m", Status: results.Queued, CreatedAt: at(0), Attempts: 1}
	orElse := func(context.Context) (*results.Record, error) { return queued, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A deadline: the fallback's record.
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	got, err := s.Wait(short, id, terminal, orElse)
	stop()
	if err != nil || got != queued {
		t.Fatalf("Wait on a job with no record: %+v, %v; want the fallback's record", got, err)
	}
	done := make(chan *results.Record, 1)
	go func() {
		r, err := s.Wait(ctx, id, terminal, orElse)
		if err != nil {
			t.Errorf("Wait: %v", err)
		}
		done <- r
	}()
	time.Sleep(50 * time.Millisecond) // let the waiter block; the test holds either way
	apply(t, s, results.Update{ID: id, Status: results.Failed, Attempt: 1, Time: at(1),
		Error: &results.Error{Code: "x", Message: "y"}, Tenant: "acme", Model: "m", CreatedAt: at(0)})
	select {
	case r := <-done:
		if r == nil || r.Status != results.Failed || r.Error == nil || r.Error.Code != "x" {
			t.Fatalf("Wait woken by the first event: %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("Wait was not woken by the event that created the record")
	}
}

func ptr(t time.Time) *time.Time { return &t }
