package client_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/client"
)

// TestRegistryCalls runs the registry calls against a live stack with
// `registry: true` and auth on: a credential without the admin scope gets
// ErrForbidden on every write and changes nothing; the admin registers a
// model and a version, sets a split, and retires them.
func TestRegistryCalls(t *testing.T) {
	const adminKey, userKey = "registry-admin-key-1", "registry-user-key-2"
	url := startStack(t, false, stack.All, func(c *config.Config) {
		c.Registry = true
		c.Auth.APIKeys = []auth.APIKey{
			{Name: "ops", SHA256: auth.HashKey(adminKey), Tenant: "ops", Scopes: []string{"admin", "submit", "read"}},
			{Name: "user", SHA256: auth.HashKey(userKey), Tenant: "user", Scopes: []string{"submit", "read"}},
		}
	})
	admin := newClient(t, url, client.WithToken(adminKey))
	user := newClient(t, url, client.WithToken(userKey))
	ctx := ctxFor(t, 90*time.Second)
	echo := map[string]any{"name": "echo", "runner": map[string]any{"builtin": "identity"}}

	// Without the admin scope: 403 on every write, and nothing changed.
	forbidden := map[string]error{}
	_, forbidden["PutModel"] = user.PutModel(ctx, "echo", echo)
	_, forbidden["PutVersion"] = user.PutVersion(ctx, "repeat", "2", map[string]any{"name": "repeat", "runner": map[string]any{"builtin": "repeat"}})
	forbidden["SetRouting"] = user.SetRouting(ctx, "repeat", client.Routing{DefaultVersion: "1"})
	_, forbidden["DeleteModel"] = user.DeleteModel(ctx, "repeat")
	_, forbidden["DeleteVersion"] = user.DeleteVersion(ctx, "repeat", "1")
	for call, err := range forbidden {
		if !errors.Is(err, client.ErrForbidden) {
			t.Errorf("%s without admin: %v, want ErrForbidden", call, err)
		}
	}
	time.Sleep(500 * time.Millisecond) // what a write would have done shows by now
	if _, err := user.Model(ctx, "echo"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("echo after a refused PUT: %v, want ErrNotFound", err)
	}
	gen := client.Generate{Text: "ab", Parameters: map[string]any{"max_tokens": 2}}
	if sub, err := user.Submit(ctx, "repeat", gen); err != nil {
		t.Fatalf("repeat after refused deletes: %v", err)
	} else if job, err := user.Wait(ctx, sub.ID); err != nil || job.Status != client.Succeeded || job.Version != "1" {
		t.Fatalf("repeat after refused deletes: %+v, %v", job, err)
	}

	// Refused before sending.
	if _, err := admin.PutModel(ctx, "echo", "not an object"); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("a config that is not an object: %v, want ErrInvalid", err)
	}
	if err := admin.SetRouting(ctx, "echo", client.Routing{}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("empty routing: %v, want ErrInvalid", err)
	}
	// Refused by the broker: a bad field, a split to a missing version.
	if _, err := admin.PutModel(ctx, "echo", map[string]any{"name": "echo", "runner": map[string]any{"builtin": "identity"}, "batching": map[string]any{"max_batch": 3}}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("an unknown field: %v, want ErrInvalid", err)
	}

	r, err := admin.PutModel(ctx, "echo", echo)
	if err != nil || r.Name != "echo" || r.Version != "1" {
		t.Fatalf("PutModel: %+v, %v", r, err)
	}
	r, err = admin.PutVersion(ctx, "echo", "2", json.RawMessage(`{"name":"echo","runner":{"builtin":"identity"},"batching":{"max_batch_size":4}}`))
	if err != nil || r.Version != "2" {
		t.Fatalf("PutVersion: %+v, %v", r, err)
	}
	if err := admin.SetRouting(ctx, "echo", client.Routing{Split: map[string]int{"1": 50, "9": 50}}); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("a split to a missing version: %v, want ErrInvalid", err)
	}
	if err := admin.SetRouting(ctx, "echo", client.Routing{Split: map[string]int{"1": 50, "2": 50}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DeleteVersion(ctx, "echo", "1"); !errors.Is(err, client.ErrConflict) {
		t.Errorf("retiring the default version: %v, want ErrConflict", err)
	}
	if err := admin.SetRouting(ctx, "echo", client.Routing{DefaultVersion: "2", ClearSplit: true}); err != nil {
		t.Fatal(err)
	}
	input := client.RawJSON(`{"inputs":[{"name":"INPUT0","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}`)
	testutil.Eventually(t, 20*time.Second, func() bool {
		sub, err := admin.Submit(ctx, "echo", input)
		if err != nil {
			return false
		}
		job, err := admin.Wait(ctx, sub.ID)
		return err == nil && job.Status == client.Succeeded && job.Version == "2"
	}, "echo version 2 (the new default) never served a job")

	r, err = admin.DeleteVersion(ctx, "echo", "1")
	if err != nil || r.Status != "draining" || r.Version != "1" {
		t.Fatalf("DeleteVersion: %+v, %v", r, err)
	}
	if r, err = admin.DeleteModel(ctx, "echo"); err != nil || r.Status != "draining" {
		t.Fatalf("DeleteModel: %+v, %v", r, err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, err := admin.Submit(ctx, "echo", input)
		return errors.Is(err, client.ErrNotFound)
	}, "a deleted model still takes jobs")
}
