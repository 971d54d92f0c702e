package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/config"
)

// consoleKeys are the API keys of the console tests: an admin and a
// read-only user of tenant acme, and a submit-only key.
var consoleKeys = map[string]string{"ops": "ops-console-key-1", "reader": "reader-console-key-2", "sub": "submit-console-key-3"}

// startConsoleStack runs the whole stack with auth on and a flaky model
// that fails while the returned file exists.
func startConsoleStack(t *testing.T) (*Stack, string) {
	t.Helper()
	flag := filepath.Join(t.TempDir(), "fail")
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, false, func(c *config.Config) {
		c.Auth.APIKeys = []auth.APIKey{
			{Name: "ops", SHA256: auth.HashKey(consoleKeys["ops"]), Tenant: "acme", Scopes: []string{"admin"}},
			{Name: "reader", SHA256: auth.HashKey(consoleKeys["reader"]), Tenant: "acme", Scopes: []string{"read"}},
			{Name: "sub", SHA256: auth.HashKey(consoleKeys["sub"]), Tenant: "acme", Scopes: []string{"submit"}},
		}
		c.Models = append(c.Models, config.Model{Name: "flaky",
			Runner: config.Runner{Builtin: "flaky", Params: map[string]any{"fail_while_exists": flag}},
			Queue:  config.Queue{MaxDeliver: 2, Backoff: []config.Duration{config.D(50 * time.Millisecond)}}})
		c.Ingress.Console.TraceURL = "http://tracing.example/trace/{trace_id}"
	})
	return s, flag
}

// submitAs submits body to model with key and returns the job id.
func submitAs(t *testing.T, base, key, model, body string) string {
	t.Helper()
	code, _, out := bearerCaller(t, base)("POST", "/v1/models/"+model+"/jobs", key, body)
	var a accepted
	if code != http.StatusAccepted || json.Unmarshal([]byte(out), &a) != nil || a.ID == "" {
		t.Fatalf("submit %s: %d %s", model, code, out)
	}
	return a.ID
}

// waitAs long-polls job id with key until it is terminal (or 20 s pass).
func waitAs(t *testing.T, base, key, id string) jobRecord {
	t.Helper()
	var rec jobRecord
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		code, _, out := bearerCaller(t, base)("GET", "/v1/jobs/"+id+"?wait=5s", key, "")
		if code != http.StatusOK || json.Unmarshal([]byte(out), &rec) != nil {
			t.Fatalf("get %s: %d %s", id, code, out)
		}
		switch rec.Status {
		case "succeeded", "failed", "cancelled", "expired":
			return rec
		}
	}
	t.Fatalf("job %s not terminal after 20s: %+v", id, rec)
	return rec
}

// browser is a headless Chromium driven by chromedp.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
}

// newBrowser starts Debian's chromium (scripts/deps.sh installs it); it
// fails the test when there is none.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("no chromium on PATH: the console's browser tests need it (apt-get install chromium, or scripts/deps.sh)")
	}
	shots := os.Getenv("INFERQ_CONSOLE_SCREENSHOTS")
	if shots == "" {
		var err error
		if shots, err = os.MkdirTemp("", "inferq-console-shots-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("console screenshots in %s", shots)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800), chromedp.Flag("disable-dev-shm-usage", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// Closed before the stack stops (cleanups run last first), so no open
	// event stream holds the ingress's drain.
	t.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return &browser{t: t, ctx: ctx, base: base, shots: shots}
}

// run runs steps with a deadline, failing the test on error.
func (b *browser) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(what, err)
	}
}

// fail ends the test with where the browser is and what it shows.
func (b *browser) fail(what string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	b.t.Fatalf("%s: %v (at %s: %.400s)", what, err, loc, body)
}

// waitJS waits until the JavaScript expression cond is true.
func (b *browser) waitJS(what, cond string) {
	b.t.Helper()
	// A poll does not survive a navigation (a job's page reloads itself
	// when the job ends), so it is started again until the deadline.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithDeadline(b.ctx, deadline)
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(time.Until(deadline)),
			chromedp.WithPollingInterval(50*time.Millisecond)))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			b.fail(what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shot saves the page as it is at a desktop (1280×800) and a phone
// (390×844) size.
func (b *browser) shot(name string) {
	b.t.Helper()
	for _, size := range []struct {
		tag  string
		w, h int64
	}{{"desktop", 1280, 800}, {"phone", 390, 844}} {
		b.run("resize for "+name, chromedp.EmulateViewport(size.w, size.h), chromedp.Sleep(50*time.Millisecond))
		ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		cancel()
		if err != nil {
			b.fail("screenshot "+name, err)
		}
		if err := os.WriteFile(filepath.Join(b.shots, name+"-"+size.tag+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	b.run("desktop size", chromedp.EmulateViewport(1280, 800))
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.fail("read "+sel, err)
	}
	return s
}

// TestConsoleInBrowser drives the console in headless Chromium against a
// real stack with auth on: log in, see a job appear and finish, watch a
// job's tokens stream, cancel a running job, replay a dead letter, and
// save screenshots of every page at two sizes.
func TestConsoleInBrowser(t *testing.T) {
	start := time.Now()
	s, flag := startConsoleStack(t)
	b := newBrowser(t, s.URL)
	ops := consoleKeys["ops"]

	// A visitor without a session is sent to the login form.
	b.run("open console", chromedp.Navigate(s.URL+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#credential")))
	b.shot("login")
	b.run("log in", chromedp.SendKeys(chromedp.CSS("#credential"), ops), chromedp.Submit(chromedp.CSS("#credential")),
		chromedp.WaitVisible(chromedp.CSS("#models table")))
	if h1 := b.text("h1"); h1 != "Overview" {
		t.Fatalf("after login: %q", h1)
	}
	for _, m := range []string{"identity", "simple", "simgpu", "repeat", "flaky"} {
		b.waitJS("overview row "+m, fmt.Sprintf(`!!document.querySelector('tr[data-model=%q]')`, m))
	}
	// The overview updates live: a job submitted now shows in the
	// recent batch sizes of its model without a reload.
	submitAs(t, s.URL, ops, "simple", `{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}`)
	b.waitJS("live overview", `(document.querySelector('tr[data-model="simple"] svg.bars rect') || null) !== null`)
	b.shot("overview")

	// A submitted job appears in the list, and its page follows it to
	// the end, its tokens streaming in as they come.
	id := submitAs(t, s.URL, ops, "repeat", `{"text_input":"hello","parameters":{"max_tokens":60,"interval_ms":80}}`)
	b.run("jobs list", chromedp.Navigate(s.URL+"/ui/jobs"), chromedp.WaitVisible(chromedp.CSS(`tr[data-job="`+id+`"]`)))
	b.shot("jobs")
	b.run("open job", chromedp.Click(chromedp.CSS(`tr[data-job="`+id+`"] a`)), chromedp.WaitVisible(chromedp.CSS("#tokens")))
	b.waitJS("tokens stream while it runs", `document.getElementById('tokens').textContent.length >= 3 && document.getElementById('status').textContent === 'running'`)
	b.shot("job-streaming")
	b.waitJS("job ends", `document.getElementById('status').textContent === 'succeeded' && !!document.querySelector('pre.result')`)
	b.waitJS("all tokens", `document.getElementById('tokens').textContent === '`+strings.Repeat("hello", 12)+`'`)
	b.shot("job")

	// Cancel a running job from its page.
	long := submitAs(t, s.URL, ops, "repeat", `{"text_input":"abc","parameters":{"max_tokens":200,"interval_ms":50}}`)
	b.run("open long job", chromedp.Navigate(s.URL+"/ui/jobs/"+long), chromedp.WaitVisible(chromedp.CSS("#tokens")))
	b.waitJS("long job runs", `document.getElementById('tokens').textContent.length >= 2`)
	b.run("cancel", chromedp.Click(chromedp.CSS(`form[action$="/cancel"] button`)))
	b.waitJS("cancelled", `document.getElementById('status').textContent === 'cancelled'`)
	if rec := waitAs(t, s.URL, ops, long); rec.Status != "cancelled" {
		t.Fatalf("cancelled from the console: %+v", rec)
	}

	// A job that failed for good is a dead letter; replay it once the
	// fault is gone, confirming the count first.
	dead := submitAs(t, s.URL, ops, "flaky", `{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP32","data":[7]}]}`)
	if rec := waitAs(t, s.URL, ops, dead); rec.Status != "failed" {
		t.Fatalf("flaky job: %+v", rec)
	}
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	b.run("dead letters", chromedp.Navigate(s.URL+"/ui/dead?model=flaky"), chromedp.WaitVisible(chromedp.CSS(`tr[data-job="`+dead+`"]`)))
	if row := b.text(`tr[data-job="` + dead + `"]`); !strings.Contains(row, "batch_failed") || !strings.Contains(row, "failed") {
		t.Errorf("dead letter row: %q", row)
	}
	b.shot("dead")
	b.run("replay all", chromedp.Click(chromedp.CSS(`a.button[href*="confirm=1"]`)), chromedp.WaitVisible(chromedp.CSS("form.confirm")))
	if q := b.text("#confirm-q"); !strings.Contains(q, "Replay 1 failed job(s) of flaky") {
		t.Errorf("confirmation: %q", q)
	}
	b.shot("dead-confirm")
	b.run("confirm replay", chromedp.Click(chromedp.CSS("form.confirm button")), chromedp.WaitVisible(chromedp.CSS("p.notice")))
	if n := b.text("p.notice"); !strings.Contains(n, "Replayed 1 job") {
		t.Errorf("after replay: %q", n)
	}
	if rec := waitAs(t, s.URL, ops, dead); rec.Status != "succeeded" || rec.Attempts != 2 {
		t.Fatalf("replayed dead letter: %+v", rec)
	}
	b.run("replayed job page", chromedp.Navigate(s.URL+"/ui/jobs/"+dead), chromedp.WaitVisible(chromedp.CSS("#status")))
	b.waitJS("replayed job succeeded", `document.getElementById('status').textContent === 'succeeded'`)

	// A Batch API batch, created through the official SDK, is listed and
	// followed to its end on the Batches pages.
	var lines bytes.Buffer
	for n := range 5 {
		fmt.Fprintf(&lines, `{"custom_id":"line-%d","method":"POST","url":"/v1/completions","body":{"model":"repeat","prompt":"ab","max_tokens":3}}`+"\n", n)
	}
	oc := openai.NewClient(option.WithBaseURL(s.URL+"/openai/v1/"), option.WithAPIKey(consoleKeys["ops"]))
	f, err := oc.Files.New(t.Context(), openai.FileNewParams{File: openai.File(bytes.NewReader(lines.Bytes()), "batch.jsonl", "application/jsonl"),
		Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := oc.Batches.New(t.Context(), openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1Completions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatal(err)
	}
	b.run("batches", chromedp.Navigate(s.URL+"/ui/batches"), chromedp.WaitVisible(chromedp.CSS(`tr[data-batch="`+batch.ID+`"]`)))
	b.shot("batches")
	b.run("open batch", chromedp.Navigate(s.URL+"/ui/batches/"+batch.ID), chromedp.WaitVisible(chromedp.CSS("#batch-status")))
	b.waitJS("batch completed", `document.getElementById('batch-status') && document.getElementById('batch-status').textContent === 'completed'`)
	if c := b.text("#batch-counts"); !strings.Contains(c, "5 completed") {
		t.Errorf("batch counts: %q", c)
	}
	b.shot("batch")

	b.run("workers", chromedp.Navigate(s.URL+"/ui/workers"), chromedp.WaitVisible(chromedp.CSS(`tr[data-worker]`)))
	if w := b.text("table.workers tbody"); !strings.Contains(w, "repeat") || !strings.Contains(w, "cpu") {
		t.Errorf("workers: %q", w)
	}
	b.shot("workers")
	t.Logf("browser test took %s", time.Since(start).Round(time.Millisecond))
}

// consoleClient is a cookie-keeping HTTP client of the console.
type consoleClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newConsoleClient(t *testing.T, base string) *consoleClient {
	jar, _ := cookiejar.New(nil)
	return &consoleClient{t: t, base: base, c: &http.Client{Jar: jar}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches a console page and returns its status, body and the page's
// CSRF token.
func (cc *consoleClient) get(path string) (int, string, string) {
	cc.t.Helper()
	resp, err := cc.c.Get(cc.base + path)
	if err != nil {
		cc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	tok := ""
	if m := csrfRE.FindStringSubmatch(string(b)); m != nil {
		tok = m[1]
	}
	return resp.StatusCode, string(b), tok
}

func (cc *consoleClient) post(path string, form url.Values) (int, string) {
	cc.t.Helper()
	resp, err := cc.c.PostForm(cc.base+path, form)
	if err != nil {
		cc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// login logs in with key and returns the CSRF token.
func (cc *consoleClient) login(key string) (int, string) {
	cc.t.Helper()
	_, _, tok := cc.get("/ui/login")
	code, body := cc.post("/ui/login", url.Values{"csrf": {tok}, "credential": {key}, "next": {"/ui/jobs"}})
	return code, body
}

// TestConsoleSessionsAndScopes: the console's session is the API's
// credential with the API's scopes: a read-scope session sees its
// tenant's jobs but cannot cancel or replay them, and every POST needs the
// session's CSRF token.
func TestConsoleSessionsAndScopes(t *testing.T) {
	s, _ := startConsoleStack(t)
	// One after the other: jobs submitted together share a batch.
	done := submitAs(t, s.URL, consoleKeys["ops"], "repeat", `{"text_input":"x","parameters":{"max_tokens":1}}`)
	waitAs(t, s.URL, consoleKeys["ops"], done)
	long := submitAs(t, s.URL, consoleKeys["ops"], "repeat", `{"text_input":"abc","parameters":{"max_tokens":400,"interval_ms":50}}`)

	anon := newConsoleClient(t, s.URL)
	if code, body, _ := anon.get("/ui/jobs/" + long); code != 200 || !strings.Contains(body, `id="credential"`) {
		t.Errorf("no session: %d, want the login form", code)
	}
	if code, body := anon.login("not-a-key"); code != 401 || strings.Contains(body, "not-a-key") {
		t.Errorf("bad key: %d", code)
	}
	if code, _ := anon.login(consoleKeys["sub"]); code != 403 {
		t.Errorf("submit-only key: %d, want 403 (the console needs read)", code)
	}
	_, _, tok := anon.get("/ui/login")
	if code, _ := anon.post("/ui/login", url.Values{"credential": {consoleKeys["reader"]}}); code != 403 {
		t.Errorf("login without CSRF token: %d, want 403", code)
	}
	if code, _ := anon.post("/ui/login", url.Values{"csrf": {tok + "x"}, "credential": {consoleKeys["reader"]}}); code != 403 {
		t.Errorf("login with a wrong CSRF token: %d, want 403", code)
	}

	reader := newConsoleClient(t, s.URL)
	if code, body := reader.login(consoleKeys["reader"]); code != 200 || !strings.Contains(body, "<h1>Jobs</h1>") {
		t.Fatalf("reader login: %d", code)
	}
	code, body, tok := reader.get("/ui/jobs/" + long)
	if code != 200 || !strings.Contains(body, long) || tok == "" {
		t.Fatalf("reader opens the job: %d", code)
	}
	if code, body := reader.post("/ui/jobs/"+long+"/cancel", url.Values{"csrf": {tok}}); code != 403 || !strings.Contains(body, `role="alert"`) {
		t.Errorf("reader cancels: %d, want 403 with the API's refusal", code)
	}
	if code, _ := reader.post("/ui/jobs/"+done+"/replay", url.Values{"csrf": {tok}}); code != 403 {
		t.Errorf("reader replays: %d, want 403", code)
	}
	if code, _, _ := reader.get("/ui/dead"); code != 403 {
		t.Errorf("reader opens dead letters: %d, want 403", code)
	}
	if code, _ := reader.post("/ui/dead/replay", url.Values{"csrf": {tok}, "job": {done}}); code != 403 {
		t.Errorf("reader replays a dead letter: %d, want 403", code)
	}
	var rec jobRecord
	_, _, out := bearerCaller(t, s.URL)("GET", "/v1/jobs/"+long, consoleKeys["ops"], "")
	if json.Unmarshal([]byte(out), &rec); rec.Status == "cancelled" {
		t.Errorf("a read-scope session cancelled the job: %+v", rec)
	}

	admin := newConsoleClient(t, s.URL)
	admin.login(consoleKeys["ops"])
	_, _, tok = admin.get("/ui/jobs/" + long)
	if code, _ := admin.post("/ui/jobs/"+long+"/cancel", url.Values{}); code != 403 {
		t.Errorf("cancel without CSRF token: %d, want 403", code)
	}
	if code, body := admin.post("/ui/jobs/"+long+"/cancel", url.Values{"csrf": {tok}}); code != 200 || !strings.Contains(body, "Cancel requested") {
		t.Errorf("admin cancels: %d", code)
	}
	if rec := waitAs(t, s.URL, consoleKeys["ops"], long); rec.Status != "cancelled" {
		t.Errorf("after the admin's cancel: %+v", rec)
	}
	// Bad input is a clear 4xx.
	for path, want := range map[string]int{"/ui/jobs?window=soon": 400, "/ui/jobs?model=nope": 400, "/ui/jobs?page=0": 400,
		"/ui/jobs?id=bad": 400, "/ui/jobs/bad": 404, "/ui/dead?model=nope": 400} {
		if code, _, _ := admin.get(path); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
	// Logging out ends the session.
	_, _, tok = admin.get("/ui/jobs")
	admin.post("/ui/logout", url.Values{"csrf": {tok}})
	if _, body, _ := admin.get("/ui/jobs"); !strings.Contains(body, `id="credential"`) {
		t.Errorf("after logout the console still serves the session")
	}
}
