package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/results"
)

// fakeBackend serves fixed workers and models; the console's pages that
// read only those need nothing more.
type fakeBackend struct {
	workers []Worker
	api     http.Handler // nil: every API call is 404
}

func (f fakeBackend) API() http.Handler {
	if f.api != nil {
		return f.api
	}
	return http.NotFoundHandler()
}
func (fakeBackend) Models(context.Context) []ModelStats { return nil }
func (f fakeBackend) Workers(context.Context) ([]Worker, error) {
	return f.workers, nil
}
func (fakeBackend) DeadLetters(context.Context, string, string, int) ([]DeadLetter, error) {
	return nil, nil
}
func (fakeBackend) RecentJobs(context.Context, string, JobFilter) ([]*results.Record, bool, error) {
	return nil, false, nil
}
func (fakeBackend) TraceID(context.Context, *results.Record) string { return "" }

func get(t *testing.T, c *Console, path string) string {
	t.Helper()
	w := httptest.NewRecorder()
	c.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
	}
	return w.Body.String()
}

// TestWorkersPageShowsGeneration: a continuously batching worker's
// heartbeat figures (running and free sequences, tokens/s, TTFT, ITL) show
// on the Workers page; a worker without them shows none.
func TestWorkersPageShowsGeneration(t *testing.T) {
	now := time.Now()
	c, err := New(Options{Backend: fakeBackend{workers: []Worker{
		{Model: "gen", Worker: "gpu-0", Device: "cuda:0", Ready: true, Capacity: 8, MaxInflight: 1, Time: now,
			Generation: &Generation{Continuous: true, RunningSeqs: 3, FreeSlots: 5, TokensPerSecond: 412.5, TTFTMillis: 38, InterTokenMs: 2.4}},
		{Model: "simple", Worker: "cpu-1", Device: "cpu", Ready: true, Capacity: 32, MaxInflight: 2, Time: now},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	body := get(t, c, Prefix+"/workers")
	for _, want := range []string{"3 running, 5 free", "412.5 tok/s", "TTFT</abbr> 38 ms", "ITL</abbr> 2.4 ms"} {
		if !strings.Contains(body, want) {
			t.Errorf("workers page lacks %q", want)
		}
	}
	row := body[strings.Index(body, `data-worker="cpu-1"`):]
	row = row[:strings.Index(row, "</tr>")]
	if strings.Contains(row, "tok/s") {
		t.Errorf("a worker without generation figures shows some: %s", row)
	}
}

// TestModelFilterFollowsModelNames: with ModelNames set, the jobs page's
// model filter lists the models it returns now, not the ones at start.
func TestModelFilterFollowsModelNames(t *testing.T) {
	names := []string{"simple"}
	c, err := New(Options{Backend: fakeBackend{}, Models: []string{"simple"}, ModelNames: func() []string { return names }})
	if err != nil {
		t.Fatal(err)
	}
	names = []string{"simple", "gen2@2"}
	body := get(t, c, Prefix+"/jobs")
	if !strings.Contains(body, "<option>gen2@2</option>") {
		t.Errorf("the model filter lacks a model added since the console started")
	}
	get(t, c, Prefix+"/jobs?model=gen2@2")
}
