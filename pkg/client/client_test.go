package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/stack/stacktest"
	"github.com/inferq/inferq/internal/testutil"
	"github.com/inferq/inferq/pkg/client"
)

// startStack runs the chosen components of inferq in process against a real
// embedded NATS server (and a real redis-server when withRedis), as
// `inferq dev` does, and returns the API's base URL.
func startStack(t *testing.T, withRedis bool, comps stack.Components, edit func(*config.Config)) string {
	t.Helper()
	n := testutil.StartNATS(t)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL = n.URL
	if withRedis {
		cfg.Redis.URL = testutil.StartRedis(t).URL
	}
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	return stacktest.Start(t, &cfg, n.Conn, comps)
}

func newClient(t *testing.T, url string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestVerbs runs every verb of the client against a live stack.
func TestVerbs(t *testing.T) {
	url := startStack(t, false, stack.All, nil)
	c := newClient(t, url, client.WithUserAgent("verbs-test"))
	ctx := ctxFor(t, 60*time.Second)

	// Submit, then Wait for the record.
	gen := client.Generate{Text: "abc", Parameters: map[string]any{"max_tokens": 5}}
	sub, err := c.Submit(ctx, "repeat", gen, client.WithIdempotencyKey("verbs-1"), client.WithPriority(0),
		client.WithJobTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if sub.Status != client.Queued || len(sub.ID) != 26 || sub.Links.Self != "/v1/jobs/"+sub.ID || sub.Job != nil {
		t.Fatalf("submitted: %+v", sub)
	}
	job, err := c.Wait(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if job.Status != client.Succeeded || job.Result == nil || job.Result.Text() != "abcab" || job.Attempts != 1 {
		t.Fatalf("waited: %+v (text %q)", job, job.Result.Text())
	}
	// The same key and request: the same job, nothing queued.
	again, err := c.Submit(ctx, "repeat", gen, client.WithIdempotencyKey("verbs-1"), client.WithPriority(0),
		client.WithJobTimeout(time.Minute))
	if err != nil || again.ID != sub.ID {
		t.Fatalf("idempotent resubmission: %+v, %v; want job %s", again, err, sub.ID)
	}
	// The same key, another request.
	_, err = c.Submit(ctx, "repeat", client.Generate{Text: "other"}, client.WithIdempotencyKey("verbs-1"))
	if !errors.Is(err, client.ErrIdempotencyKeyReused) {
		t.Errorf("reused key: %v, want ErrIdempotencyKeyReused", err)
	}

	// Get.
	got, err := c.Get(ctx, sub.ID)
	if err != nil || got.Status != client.Succeeded || got.ID != sub.ID || got.Model != "repeat" || got.FinishedAt == nil {
		t.Fatalf("get: %+v, %v", got, err)
	}
	if _, err := c.Get(ctx, "0000000000000000000000000a"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("get unknown: %v, want ErrNotFound", err)
	}
	// The registry is off: its writes are a conflict, and change nothing.
	if _, err := c.DeleteModel(ctx, "repeat"); !errors.Is(err, client.ErrConflict) {
		t.Errorf("DeleteModel with the registry off: %v, want ErrConflict", err)
	}

	// Prefer: wait answers the ended job in one round trip.
	sub2, err := c.Submit(ctx, "repeat", client.Generate{Text: "xy", Parameters: map[string]any{"max_tokens": 3}},
		client.WithPreferWait(20*time.Second), client.WithDeadline(time.Now().Add(time.Minute)))
	if err != nil || sub2.Job == nil || sub2.Job.Status != client.Succeeded || sub2.Job.Result.Text() != "xyx" {
		t.Fatalf("prefer wait: %+v, %v", sub2, err)
	}

	// Stream of an ended job: its tokens, then the result.
	st, err := c.Stream(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	var last *client.Event
	for {
		ev, err := st.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.Token != nil {
			text.WriteString(ev.Token.Text)
		}
		last = ev
	}
	if text.String() != "abcab" || last == nil || last.Type != "result" || last.Job.Result.Text() != "abcab" {
		t.Errorf("stream: text %q, last event %+v", text.String(), last)
	}
	if _, err := c.Stream(ctx, sub.ID, client.StreamFrom("x")); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("stream from a bad id: %v, want ErrInvalid", err)
	}

	// Tensors, with a version and named outputs.
	in := int32Tensor("INPUT0", 1, 2, 3)
	sub3, err := c.Submit(ctx, "identity", client.Infer{ID: "req-7", Inputs: in, Outputs: []string{"OUTPUT0"}},
		client.WithVersion("1"), client.WithPreferWait(20*time.Second), client.WithJobTimeout(time.Minute))
	if err != nil || sub3.Job == nil || sub3.Job.Result.ID != "req-7" {
		t.Fatalf("identity: %+v, %v", sub3, err)
	}
	if out := sub3.Job.Result.Output("OUTPUT0"); out == nil || !bytes.Equal(out.Data, in[0].Data) {
		t.Errorf("identity output %+v, want the input's bytes", out)
	}
	if _, err := c.Submit(ctx, "identity", client.Infer{Inputs: in}, client.WithVersion("9")); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("unknown version: %v, want ErrNotFound", err)
	}
	_, err = c.Submit(ctx, "simple", client.RawJSON(`{"inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"INT32","data":[1,2]}]}`))
	var ae *client.APIError
	if !errors.Is(err, client.ErrInvalid) || !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Code != "invalid" || ae.Message == "" {
		t.Errorf("bad input: %v, want a 400 invalid APIError", err)
	}

	// Cancel a slow job, then replay it.
	slow, err := c.Submit(ctx, "repeat", client.Generate{Text: "z", Parameters: map[string]any{"max_tokens": 50, "interval_ms": 200}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(ctx, slow.ID); err != nil {
		t.Fatal(err)
	}
	ended, err := c.Wait(ctx, slow.ID)
	if err != nil || ended.Status != client.Cancelled || ended.Error == nil {
		t.Fatalf("cancelled job: %+v, %v", ended, err)
	}
	if err := c.Cancel(ctx, slow.ID); !errors.Is(err, client.ErrConflict) {
		t.Errorf("cancel of an ended job: %v, want ErrConflict", err)
	}
	rp, err := c.ReplayJob(ctx, sub.ID)
	if err != nil || rp.ID != sub.ID || rp.Attempt != 2 || rp.Status != client.Queued {
		t.Fatalf("replay: %+v, %v", rp, err)
	}
	if j, err := c.Wait(ctx, sub.ID); err != nil || j.Status != client.Succeeded || j.Attempts != 2 {
		t.Errorf("replayed job: %+v, %v", j, err)
	}
	if n, err := c.ReplayModel(ctx, "repeat", client.ReplayFilter{Since: time.Now().Add(-time.Hour), Limit: 10}); err != nil || n != 0 {
		t.Errorf("replay model with no failed jobs: %d, %v", n, err)
	}
	if _, err := c.ReplayModel(ctx, "nope", client.ReplayFilter{}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("replay of an unknown model: %v", err)
	}

	// Models and one model's figures.
	ms, err := c.Models(ctx)
	if err != nil || len(ms) != 4 {
		t.Fatalf("models: %d, %v", len(ms), err)
	}
	m, err := c.Model(ctx, "repeat")
	if err != nil || m.Name != "repeat" || m.Kind != "generate" || !m.Test || m.Stats == nil || m.Batching.MaxBatchSize < 1 ||
		!bytes.Contains(m.Raw, []byte(`"desired_replicas"`)) {
		t.Fatalf("model: %+v, %v", m, err)
	}
	if _, err := c.Model(ctx, "nope"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("unknown model: %v", err)
	}
}

// TestWaitEndsWithContext: Wait on a job that outlives ctx returns the last
// record it read with ctx's error, soon after ctx ends.
func TestWaitEndsWithContext(t *testing.T) {
	url := startStack(t, false, stack.All, nil)
	c := newClient(t, url)
	sub, err := c.Submit(t.Context(), "repeat", client.Generate{Text: "z", Parameters: map[string]any{"max_tokens": 100, "interval_ms": 100}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	job, err := c.Wait(ctx, sub.ID)
	if !errors.Is(err, context.DeadlineExceeded) || job == nil || job.Status.Terminal() {
		t.Fatalf("wait past ctx: %+v, %v; want the running record and DeadlineExceeded", job, err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("wait took %v after a 1.5s context", d)
	}
	_ = c.Cancel(t.Context(), sub.ID)
}

// TestErrorsMatchCodes: a refused request matches the sentinel of its code.
func TestErrorsMatchCodes(t *testing.T) {
	// Refusals need only the ingress. (A whole stack stopped within a
	// second of starting can report its batcher's "context canceled".)
	url := startStack(t, false, stack.Components{Ingress: true, ResultSvc: true}, nil)
	c := newClient(t, url)
	ctx := ctxFor(t, 30*time.Second)
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"unknown model", func() error { _, err := c.Submit(ctx, "nope", client.Generate{Text: "a"}); return err }, client.ErrNotFound},
		{"text to a tensor model", func() error { _, err := c.Submit(ctx, "simple", client.Generate{Text: "a"}); return err }, client.ErrInvalid},
		{"unknown parameter", func() error {
			_, err := c.Submit(ctx, "repeat", client.Generate{Text: "a", Parameters: map[string]any{"bogus": 1}})
			return err
		}, client.ErrInvalid},
		{"bad priority, refused here", func() error {
			_, err := c.Submit(ctx, "repeat", client.Generate{Text: "a"}, client.WithPriority(7))
			return err
		}, client.ErrInvalid},
		{"deadline passed, refused here", func() error {
			_, err := c.Submit(ctx, "repeat", client.Generate{Text: "a"}, client.WithDeadline(time.Now().Add(-time.Second)))
			return err
		}, client.ErrInvalid},
		{"raw body not an object", func() error { _, err := c.Submit(ctx, "repeat", client.RawJSON(`[1]`)); return err }, client.ErrInvalid},
		{"replay of a job never run", func() error { _, err := c.ReplayJob(ctx, "0000000000000000000000000a"); return err }, client.ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestQueueFull: a model's full queue answers an error matching
// ErrQueueFull with the broker's Retry-After, and a retry policy waits that
// Retry-After between its attempts before giving up.
func TestQueueFull(t *testing.T) {
	// No batcher: jobs stay queued.
	url := startStack(t, false, stack.Components{Ingress: true, ResultSvc: true}, func(c *config.Config) {
		m, _ := c.Model("repeat")
		m.Queue.MaxQueued = 2
	})
	ctx := ctxFor(t, 30*time.Second)
	c := newClient(t, url)
	for k := range 2 {
		if _, err := c.Submit(ctx, "repeat", client.Generate{Text: "a"}); err != nil {
			t.Fatalf("job %d: %v", k, err)
		}
	}
	var err error
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, err = c.Submit(ctx, "repeat", client.Generate{Text: "a"})
		return err != nil
	}, "a third job was accepted with max_queued 2")
	var ae *client.APIError
	if !errors.Is(err, client.ErrQueueFull) || !errors.Is(err, client.ErrQueueFull) || !errors.As(err, &ae) ||
		ae.StatusCode != http.StatusServiceUnavailable || ae.RetryAfter != time.Second || !ae.Temporary() {
		t.Fatalf("full queue: %v (%+v), want ErrQueueFull with Retry-After 1s", err, ae)
	}
	if errors.Is(err, client.ErrUnavailable) {
		t.Errorf("queue_full also matches ErrUnavailable")
	}

	var tries atomic.Int32
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		tries.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	rc := newClient(t, url, client.WithHTTPClient(hc), client.WithRetry(client.RetryPolicy{Attempts: 3}))
	t0 := time.Now()
	_, err = rc.Submit(ctx, "repeat", client.Generate{Text: "a"})
	took := time.Since(t0)
	if !errors.Is(err, client.ErrQueueFull) || tries.Load() != 3 || took < 2*time.Second {
		t.Errorf("with 3 attempts: %v after %d tries in %v; want ErrQueueFull after 3 tries 1s apart", err, tries.Load(), took)
	}
	// A Retry-After over the policy's cap is not waited out.
	tries.Store(0)
	capped := newClient(t, url, client.WithHTTPClient(hc), client.WithRetry(client.RetryPolicy{Attempts: 3, MaxRetryAfter: 500 * time.Millisecond}))
	if _, err := capped.Submit(ctx, "repeat", client.Generate{Text: "a"}); !errors.Is(err, client.ErrQueueFull) || tries.Load() != 1 {
		t.Errorf("Retry-After over the cap: %v after %d tries; want one try", err, tries.Load())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestNew refuses base URLs it cannot use and options that make no sense.
func TestNew(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://host", "http://", "http://h\x00"} {
		if _, err := client.New(u); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	if _, err := client.New("http://h", client.WithHTTPClient(nil)); err == nil {
		t.Error("a nil http.Client accepted")
	}
	if _, err := client.New("http://h", client.WithToken("a\nb")); err == nil {
		t.Error("a token with a line break accepted")
	}
	if _, err := client.New("http://h/prefix/", client.WithAPIKey("k"), client.WithRetry(client.RetryPolicy{Attempts: 2})); err != nil {
		t.Error(err)
	}
}

// TestExampleProgram builds examples/goclient and runs it against a live
// stack, as docs/clients.md tells a user to.
func TestExampleProgram(t *testing.T) {
	url := startStack(t, false, stack.All, nil)
	bin := filepath.Join(t.TempDir(), "goclient")
	build := exec.Command("go", "build", "-o", bin, "../../examples/goclient")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build examples/goclient: %v\n%s", err, out)
	}
	ctx := ctxFor(t, 60*time.Second)
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "INFERQ_URL="+url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("examples/goclient: %v\n%s", err, out)
	}
	want := "hello hello \njob "
	if !strings.HasPrefix(string(out), want) || !strings.Contains(string(out), " succeeded\n") ||
		!strings.Contains(string(out), "identity FP32 [1 3] [1.5,-2,3.25]\n") {
		t.Errorf("examples/goclient printed:\n%s", out)
	}
}

// TestDependencies: pkg/client links the standard library and pkg/tensor
// only, so that importing it pulls in nothing else.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/inferq/inferq/pkg/client").Output()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"github.com/inferq/inferq/pkg/client": true, "github.com/inferq/inferq/pkg/tensor": true,
		"github.com/inferq/inferq/internal/jsonstr": true} // pkg/tensor's
	for _, dep := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(dep, "/")
		if !strings.Contains(first, ".") || strings.HasPrefix(dep, "vendor/") || allowed[dep] {
			continue // the standard library
		}
		t.Errorf("pkg/client links %s", dep)
	}
}

// TestDocsExample runs the Go program of docs/clients.md as written against
// a live stack, so that the documented example keeps compiling and working.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/clients.md")
	if err != nil {
		t.Fatal(err)
	}
	_, goSection, ok := strings.Cut(string(doc), "\n## Go\n")
	_, code, ok2 := strings.Cut(goSection, "```go\n")
	code, _, ok3 := strings.Cut(code, "\n```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/clients.md: no ```go block in its ## Go section")
	}
	// Inside the module, so that the program builds against this checkout.
	dir, err := os.MkdirTemp("../../examples", "docs-example-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(code+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "example")
	if out, err := exec.Command("go", "build", "-o", bin, "./"+dir).CombinedOutput(); err != nil {
		t.Fatalf("the example of docs/clients.md does not build: %v\n%s", err, out)
	}
	url := startStack(t, false, stack.All, nil)
	cmd := exec.CommandContext(ctxFor(t, 60*time.Second), bin)
	cmd.Env = append(os.Environ(), "INFERQ_URL="+url)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "hi hi \n") || !strings.HasSuffix(string(out), " succeeded: \"hi hi \"\n") {
		t.Errorf("the example of docs/clients.md: %v\n%s", err, out)
	}
}
