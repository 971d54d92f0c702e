package registry_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/jobid"
	"github.com/inferq/inferq/internal/provision"
	"github.com/inferq/inferq/internal/registry"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/jetstream"
)

// A 5% canary over 10,000 job ids lands within ±1 percentage point, and a
// job id always picks the same version.
func TestPickSplitIsWeightedAndStable(t *testing.T) {
	e := registry.Entry{Default: "2", Split: map[string]int{"2": 95, "3": 5}}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	canary := 0
	const n = 10000
	for k := range n {
		id := jobid.At(now.Add(time.Duration(k) * time.Millisecond))
		v := e.Pick(id)
		if v != e.Pick(id) {
			t.Fatalf("job %s picked two versions", id)
		}
		if v == "3" {
			canary++
		}
	}
	if pct := 100 * float64(canary) / n; pct < 4 || pct > 6 {
		t.Fatalf("canary share %.2f%%, want 5±1%%", pct)
	}
	if v := (&registry.Entry{Default: "7"}).Pick("x"); v != "7" {
		t.Fatalf("no split picked %q, want the default", v)
	}
}

func simple(t *testing.T, body string) config.Model {
	t.Helper()
	m, err := config.ParseModel([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseModelNamesTheBadField(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"unknown field", `{"name":"a","runner":{"builtin":"simple"},"batching":{"max_batch":3}}`, "max_batch"},
		{"bad batch size", `{"name":"a","runner":{"builtin":"simple"},"batching":{"max_batch_size":-1}}`, "max_batch_size"},
		{"no runner", `{"name":"a","inputs":[{"name":"x"}]}`, "runner"},
		{"empty", ``, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.ParseModel([]byte(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// The catalog follows the bucket: bootstrap, a new version, a split, a
// batching change, a retirement and its drain.
func TestCatalogFollowsTheBucket(t *testing.T) {
	n := testutil.StartNATS(t)
	ctx := t.Context()
	topo := jetstream.DefaultTopology()
	topo.MemoryStorage = true
	if err := provision.All(ctx, n.JS, topo, nil); err != nil {
		t.Fatal(err)
	}
	kv, err := n.JS.KeyValue(ctx, topo.ModelsBucket())
	if err != nil {
		t.Fatal(err)
	}
	st := registry.NewStore(kv)
	file := config.TestModels()
	if _, err := st.Bootstrap(ctx, file); err != nil {
		t.Fatal(err)
	}
	// The bucket wins once written: a changed file does not overwrite it.
	changed := append([]config.Model(nil), file...)
	changed[1].Batching.MaxBatchSize = 3
	if w, err := st.Bootstrap(ctx, changed); err != nil || len(w) != 0 {
		t.Fatalf("second bootstrap wrote %v, %v", w, err)
	}
	log := slog.New(slog.DiscardHandler)
	cat, err := registry.Watch(ctx, kv, log)
	if err != nil {
		t.Fatal(err)
	}
	m, err := cat.Snapshot().Resolve("simple", "", "job1")
	if err != nil || m.Name != "simple" || m.Batching.MaxBatchSize != 32 {
		t.Fatalf("simple resolved to %+v, %v", m, err)
	}
	wait := func(what string, cond func(*registry.Snapshot) bool) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, func() bool { return cond(cat.Snapshot()) }, "catalog never saw %s", what)
	}

	v2 := simple(t, `{"name":"simple","runner":{"builtin":"simple"},"batching":{"max_batch_size":4}}`)
	if err := st.PutVersion(ctx, "simple", "2", v2); err != nil {
		t.Fatal(err)
	}
	wait("version 2", func(s *registry.Snapshot) bool { _, ok := s.Lookup("simple@2"); return ok })
	if m, _ := cat.Snapshot().Resolve("simple", "2", ""); m.Name != "simple@2" || m.Batching.MaxBatchSize != 4 {
		t.Fatalf("version 2 resolved to %+v", m)
	}
	if err := st.SetRouting(ctx, "simple", "1", map[string]int{"1": 50, "9": 50}, true); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("split to a missing version: %v, want ErrInvalid", err)
	}
	if err := st.SetRouting(ctx, "simple", "2", nil, false); err != nil {
		t.Fatal(err)
	}
	wait("default 2", func(s *registry.Snapshot) bool { e, _ := s.Entry("simple"); return e.Default == "2" })

	// A batching change is a new config for the same served name.
	v2.Batching.MaxBatchSize = 6
	if err := st.PutVersion(ctx, "simple", "2", v2); err != nil {
		t.Fatal(err)
	}
	wait("max_batch_size 6", func(s *registry.Snapshot) bool {
		m, ok := s.Lookup("simple@2")
		return ok && m.Batching.MaxBatchSize == 6
	})

	if err := st.Retire(ctx, "simple", "2"); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("retiring the default: %v, want ErrConflict", err)
	}
	if err := st.Retire(ctx, "simple", "1"); err != nil {
		t.Fatal(err)
	}
	wait("version 1 retired", func(s *registry.Snapshot) bool { return len(s.Retired()) == 1 })
	if _, err := cat.Snapshot().Resolve("simple", "1", ""); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a retired version took a job: %v", err)
	}
	if _, ok := cat.Snapshot().Lookup("simple"); !ok {
		t.Fatal("a retired version stopped being served before it drained")
	}
	// Nothing is queued: past the grace period the drain removes it.
	for _, m := range cat.Snapshot().Served() {
		if err := registry.Provision(ctx, n.JS, topo, &m); err != nil {
			t.Fatal(err)
		}
	}
	registry.Drain(ctx, n.JS, topo, st, cat.Snapshot(), time.Now().Add(registry.DrainGrace), log)
	wait("version 1 removed", func(s *registry.Snapshot) bool { _, ok := s.Lookup("simple"); return !ok && len(s.Retired()) == 0 })
	if _, err := n.JS.Consumer(ctx, topo.BatchesStream(), jetstream.WorkerConsumer("simple")); err == nil {
		t.Fatal("the drained version's worker consumer is still there")
	}
	if m, err := cat.Snapshot().Resolve("simple", "", "x"); err != nil || m.Name != "simple@2" {
		t.Fatalf("after the drain simple resolved to %v, %v", m, err)
	}
}
