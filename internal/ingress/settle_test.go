package ingress

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
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

// TestJobOverMaxPayloadIs413: a job whose message is still larger than the
// server's max payload once its large tensors are kept apart (here: the
// threshold above the payload, as many small tensors would be) can never
// be stored, so it gets 413 too_large naming the limit, without
// Retry-After (a 503 sent obeying clients into retrying forever), and
// nothing is stored, not even a blob.
func TestJobOverMaxPayloadIs413(t *testing.T) {
	n := testutil.StartNATS(t)
	i, url := startIngress(t, n, func(c *config.Config) { c.Blobs.ThresholdBytes = 4 << 20 })
	limit := n.Conn.MaxPayload()
	values := make([]string, limit/4+1024) // FP32: 4 bytes each in the stored job
	for k := range values {
		values[k] = "1"
	}
	body := `{"inputs":[{"name":"INPUT0","shape":[1,` + strconv.Itoa(len(values)) + `],"datatype":"FP32","data":[` +
		strings.Join(values, ",") + `]}]}`
	resp, err := http.Post(url+"/v1/models/identity/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	e := answer.Error
	if resp.StatusCode != http.StatusRequestEntityTooLarge || e.Code != "too_large" || resp.Header.Get("Retry-After") != "" ||
		!strings.Contains(e.Message, strconv.FormatInt(limit, 10)) {
		t.Fatalf("job over max payload: %d %+v (Retry-After %q); want 413 too_large naming %d", resp.StatusCode, e,
			resp.Header.Get("Retry-After"), limit)
	}
	s, err := n.JS.Stream(testutil.Context(t), i.opt.Topology.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(testutil.Context(t)); err != nil || info.State.Msgs != 0 {
		t.Fatalf("jobs stream holds %d messages after a refused job (%v)", info.State.Msgs, err)
	}
}
