package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/results"
)

const hookURL = "https://hooks.example.com/inferq?x=1"

func setWebhook(t *testing.T, s results.Store, u results.WebhookUpdate) (*results.Record, bool, error) {
	t.Helper()
	return s.SetWebhook(ctxFor(t), u)
}

// testWebhookLifecycle: the callback URL rides in with the job's events,
// its end makes the webhook pending, delivery attempts move it forward only,
// never touching the job's status or result, and a replay starts afresh.
func testWebhookLifecycle(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	rec := created(t, s)
	res := json.RawMessage(`{"v": 1}`)
	running, _ := apply(t, s, results.Update{ID: rec.ID, Status: results.Running, Attempt: 1, Time: at(1), CallbackURL: hookURL})
	if running.Webhook == nil || *running.Webhook != (results.Webhook{URL: hookURL}) {
		t.Fatalf("running: webhook %+v, want only its URL", running.Webhook)
	}
	if _, _, err := setWebhook(t, s, results.WebhookUpdate{ID: rec.ID, Attempt: 1, Status: results.WebhookDelivered, Attempts: 1}); !errors.Is(err, results.ErrNoWebhook) {
		t.Fatalf("SetWebhook before the job ended: %v, want ErrNoWebhook", err)
	}
	// The terminal event needs not carry the URL again.
	done, _ := apply(t, s, results.Update{ID: rec.ID, Status: results.Succeeded, Attempt: 1, Time: at(2), Result: res})
	if done.Webhook == nil || *done.Webhook != (results.Webhook{URL: hookURL, Status: results.WebhookPending}) {
		t.Fatalf("succeeded: webhook %+v, want pending", done.Webhook)
	}
	want := *done
	steps := []struct {
		u       results.WebhookUpdate
		changed bool
	}{
		{results.WebhookUpdate{Status: results.WebhookPending, Attempts: 1, LastError: "HTTP 500"}, true},
		{results.WebhookUpdate{Status: results.WebhookPending, Attempts: 1, LastError: "again"}, false},
		{results.WebhookUpdate{Status: results.WebhookPending, Attempts: 2, LastError: "timeout"}, true},
		{results.WebhookUpdate{Status: results.WebhookDelivered, Attempts: 3}, true},
		{results.WebhookUpdate{Status: results.WebhookFailed, Attempts: 4, LastError: "late"}, false},
		{results.WebhookUpdate{Status: results.WebhookPending, Attempts: 5}, false},
	}
	for i, st := range steps {
		st.u.ID, st.u.Attempt = rec.ID, 1
		got, changed, err := setWebhook(t, s, st.u)
		if err != nil {
			t.Fatalf("step %d: SetWebhook: %v", i, err)
		}
		wantChanged, _ := results.AdvanceWebhook(&want, st.u)
		if changed != st.changed || wantChanged != st.changed {
			t.Fatalf("step %d: changed=%v, AdvanceWebhook says %v, test says %v", i, changed, wantChanged, st.changed)
		}
		if d := diff(got, &want); d != "" {
			t.Fatalf("step %d: SetWebhook returned %s", i, d)
		}
		if d := diff(get(t, s, rec.ID), &want); d != "" {
			t.Fatalf("step %d: Get returned %s", i, d)
		}
	}
	if w := want.Webhook; w.Status != results.WebhookDelivered || w.Attempts != 3 || w.LastError != "" {
		t.Fatalf("final webhook %+v, want delivered after 3 attempts", w)
	}
	if want.Status != results.Succeeded || string(want.Result) != string(res) {
		t.Fatalf("webhook updates changed the job: %s %s", want.Status, want.Result)
	}
	// A replay is a new attempt: its webhook starts again, and updates for
	// the old attempt are refused.
	replayed, _ := apply(t, s, results.Update{ID: rec.ID, Status: results.Running, Attempt: 2, Time: at(3)})
	if replayed.Webhook == nil || *replayed.Webhook != (results.Webhook{URL: hookURL}) {
		t.Fatalf("replayed: webhook %+v, want only its URL", replayed.Webhook)
	}
	if _, _, err := setWebhook(t, s, results.WebhookUpdate{ID: rec.ID, Attempt: 1, Status: results.WebhookFailed, Attempts: 9}); !errors.Is(err, results.ErrNoWebhook) {
		t.Fatalf("SetWebhook of the replaced attempt: %v, want ErrNoWebhook", err)
	}
	ended, _ := apply(t, s, results.Update{ID: rec.ID, Status: results.Failed, Attempt: 2, Time: at(4), Error: &results.Error{Code: "x", Message: "y"}})
	if ended.Webhook == nil || ended.Webhook.Status != results.WebhookPending || ended.Webhook.Attempts != 0 {
		t.Fatalf("replay ended: webhook %+v, want pending afresh", ended.Webhook)
	}
}

// testWebhookFirstEventCreates: a terminal first event with a URL creates
// a record whose webhook is pending; one without leaves no webhook.
func testWebhookFirstEventCreates(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	created := time.Now().UTC().Truncate(time.Millisecond)
	with := results.Update{ID: newID(), Status: results.Failed, Attempt: 1, Time: at(1), Error: &results.Error{Code: "c", Message: "m"},
		Tenant: "acme", Model: "m", Version: "1", CreatedAt: created, CallbackURL: hookURL}
	rec, _ := apply(t, s, with)
	if rec.Webhook == nil || *rec.Webhook != (results.Webhook{URL: hookURL, Status: results.WebhookPending}) {
		t.Fatalf("webhook %+v, want pending", rec.Webhook)
	}
	without := with
	without.ID, without.CallbackURL = newID(), ""
	rec, _ = apply(t, s, without)
	if rec.Webhook != nil {
		t.Fatalf("webhook %+v for a job without a callback URL", rec.Webhook)
	}
	if _, _, err := setWebhook(t, s, results.WebhookUpdate{ID: rec.ID, Attempt: 1, Status: results.WebhookDelivered, Attempts: 1}); !errors.Is(err, results.ErrNoWebhook) {
		t.Fatalf("SetWebhook without a webhook: %v, want ErrNoWebhook", err)
	}
	if got := get(t, s, rec.ID); got.Webhook != nil || got.Status != results.Failed {
		t.Fatalf("record changed: %+v", got)
	}
}

func testWebhookInvalid(t *testing.T, newStore Factory) {
	s := newStore(t, longRetention)
	if _, _, err := setWebhook(t, s, results.WebhookUpdate{ID: newID(), Attempt: 1, Status: results.WebhookDelivered, Attempts: 1}); !errors.Is(err, results.ErrNotFound) {
		t.Fatalf("SetWebhook of a missing job: %v, want ErrNotFound", err)
	}
	for name, u := range map[string]results.WebhookUpdate{
		"no id":      {Attempt: 1, Status: results.WebhookPending},
		"attempt 0":  {ID: newID(), Status: results.WebhookPending},
		"bad status": {ID: newID(), Attempt: 1, Status: "bogus"},
	} {
		if _, _, err := setWebhook(t, s, u); !errors.Is(err, results.ErrInvalid) {
			t.Errorf("SetWebhook(%s): %v, want ErrInvalid", name, err)
		}
	}
	if _, _, err := setWebhook(t, s, results.WebhookUpdate{ID: "a b", Attempt: 1, Status: results.WebhookPending}); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("SetWebhook(odd id): %v, want ErrNotFound", err)
	}
}
