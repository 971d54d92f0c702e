package ingress

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/obs"
	"github.com/inferq/inferq/internal/testutil"
)

// TestAmbiguousPublishSettled: when the link to NATS freezes while a job is
// published, the publish times out without saying whether the job was
// stored. The ingress settles it (publishing again under the same id, then
// looking it up) instead of answering 503, so the client gets 202 and the
// job is stored exactly once.
func TestAmbiguousPublishSettled(t *testing.T) {
	n := testutil.StartNATS(t)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL = n.URL
	topo, store := provisioned(t, n, &cfg)
	f := testutil.StartFreezer(t, n.URL)
	nc, err := nats.Connect(f.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc, natsjs.WithDefaultTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	i := New(Options{Config: &cfg, Topology: topo, JS: js, Store: store,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: obs.NewRegistry()})
	srv := httptest.NewServer(i.Handler())
	defer srv.Close()
	body := `{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},` +
		`{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}`
	submit := func() (int, string) {
		resp, err := http.Post(srv.URL+"/v1/models/simple/jobs", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var acc struct{ ID string }
		_ = json.NewDecoder(resp.Body).Decode(&acc)
		return resp.StatusCode, acc.ID
	}
	if code, _ := submit(); code != http.StatusAccepted { // reads the queue figures once
		t.Fatalf("first submit: %d", code)
	}
	f.Freeze(true)
	time.AfterFunc(time.Second, func() { f.Freeze(false) }) // well past the 300ms publish timeout
	code, id := submit()
	if code != http.StatusAccepted || id == "" {
		t.Fatalf("submit across a frozen link: %d, want 202 once the outcome is settled", code)
	}
	s, err := n.JS.Stream(testutil.Context(t), topo.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(testutil.Context(t), natsjs.WithSubjectFilter(topo.JobLookupSubject(id)))
	if err != nil {
		t.Fatal(err)
	}
	stored := uint64(0)
	for _, c := range info.State.Subjects {
		stored += c
	}
	if stored != 1 {
		t.Fatalf("job %s stored %d times, want once", id, stored)
	}
}
