package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
)

// testSecret is a Standard Webhooks secret: whsec_ and the base64 of 32 bytes.
var testSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// verifyStandardWebhook checks a delivery the way a receiver that knows
// only the Standard Webhooks specification would, written apart from
// internal/webhook: the key is the base64 after whsec_, the signed content
// "id.timestamp.body", any "v1,<base64>" entry may match (compared in
// constant time), and the timestamp must be within tolerance of now.
func verifyStandardWebhook(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return fmt.Errorf("secret: %w", err)
	}
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: %w", ts, err)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook-timestamp %s is %v away from now", ts, d)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no v1 signature matches")
}

// delivery is one request the receiver got.
type delivery struct {
	at      time.Time
	id      string
	body    []byte
	verErr  error
	payload struct {
		Type      string          `json:"type"`
		Timestamp time.Time       `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
}

// receiver is a webhook endpoint: answer decides each request's status
// (n counts from 1); every request is kept and verified.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []delivery
	answer func(n int, r *http.Request) int
	notify chan struct{}
}

func newReceiver(t *testing.T, answer func(n int, r *http.Request) int) *receiver {
	rc := &receiver{answer: answer, notify: make(chan struct{}, 64)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d := delivery{at: time.Now(), id: r.Header.Get("webhook-id"), body: body}
		d.verErr = verifyStandardWebhook(testSecret, r.Header, body, time.Now(), 5*time.Minute)
		if err := json.Unmarshal(body, &d.payload); err != nil && d.verErr == nil {
			d.verErr = err
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			d.verErr = fmt.Errorf("%s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		rc.mu.Lock()
		rc.got = append(rc.got, d)
		n := len(rc.got)
		rc.mu.Unlock()
		w.WriteHeader(rc.answer(n, r))
		rc.notify <- struct{}{}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// waitFor waits until the receiver has had n requests.
func (rc *receiver) waitFor(t *testing.T, n int, within time.Duration) []delivery {
	t.Helper()
	deadline := time.After(within)
	for len(rc.deliveries()) < n {
		select {
		case <-rc.notify:
		case <-deadline:
			t.Fatalf("receiver got %d requests, want %d within %v", len(rc.deliveries()), n, within)
		}
	}
	return rc.deliveries()
}

type webhookState struct {
	URL       string `json:"url"`
	Status    string `json:"status"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
}

// webhookOf polls job id's record until its webhook is settled (delivered
// or failed), and returns it.
func (s *Stack) webhookOf(t *testing.T, id string) webhookState {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rec struct {
			Webhook *webhookState `json:"webhook"`
		}
		if code, err := getJSON(s.URL+"/v1/jobs/"+id, &rec); err != nil || code != http.StatusOK {
			t.Fatalf("get job %s: %d %v", id, code, err)
		}
		if w := rec.Webhook; w != nil && (w.Status == "delivered" || w.Status == "failed") {
			return *w
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: webhook %+v not settled after 30s", id, rec.Webhook)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// webhookConfig turns webhooks on for a test receiver on loopback, which
// must be allowed explicitly.
func webhookConfig(c *config.Config, backoff ...time.Duration) {
	c.Webhooks.Secret = testSecret
	c.Webhooks.Allow = []string{"127.0.0.1"}
	c.Webhooks.Timeout = config.D(5 * time.Second)
	c.Webhooks.Backoff = nil
	for _, b := range backoff {
		c.Webhooks.Backoff = append(c.Webhooks.Backoff, config.D(b))
	}
}

func withCallback(body map[string]any, url string) map[string]any {
	body["parameters"] = map[string]any{"callback_url": url}
	return body
}

// TestWebhookOnePerJob: a succeeded and a failed job each deliver exactly
// one webhook, signed per Standard Webhooks, whose data is the job record;
// the record says delivered after one attempt.
func TestWebhookOnePerJob(t *testing.T) {
	for _, withRedis := range []bool{false, true} {
		t.Run(map[bool]string{false: "kv", true: "redis"}[withRedis], func(t *testing.T) {
			flag := filepath.Join(t.TempDir(), "fail")
			if err := os.WriteFile(flag, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			rc := newReceiver(t, func(int, *http.Request) int { return http.StatusNoContent })
			s := startStack(t, withRedis, func(c *config.Config) {
				webhookConfig(c, 200*time.Millisecond)
				c.Models = append(c.Models, config.Model{Name: "flaky",
					Runner: config.Runner{Builtin: "flaky", Params: map[string]any{"fail_while_exists": flag}},
					Queue:  config.Queue{MaxDeliver: 2, Backoff: []config.Duration{config.D(50 * time.Millisecond)}}})
			})
			ok := s.submit(t, "simple", withCallback(simpleBody(seq(0), seq(1)), rc.srv.URL+"/hooks/ok?token=abc"))
			bad := s.submit(t, "flaky", map[string]any{"inputs": []map[string]any{{"name": "INPUT0", "shape": []int{1, 1}, "datatype": "FP32", "data": []float32{1}}},
				"parameters": map[string]any{"callback_url": rc.srv.URL + "/hooks/bad"}})
			if r := s.wait(t, ok.ID); r.Status != "succeeded" {
				t.Fatalf("job %s: %+v", ok.ID, r)
			}
			if r := s.wait(t, bad.ID); r.Status != "failed" {
				t.Fatalf("job %s: %+v", bad.ID, r)
			}
			for _, id := range []string{ok.ID, bad.ID} {
				if w := s.webhookOf(t, id); w.Status != "delivered" || w.Attempts != 1 || w.LastError != "" || !strings.HasPrefix(w.URL, rc.srv.URL) {
					t.Errorf("job %s: webhook %+v, want delivered after 1 attempt", id, w)
				}
			}
			time.Sleep(500 * time.Millisecond) // a duplicate would come by now
			got := rc.deliveries()
			if len(got) != 2 {
				t.Fatalf("receiver got %d webhooks, want 2", len(got))
			}
			byJob := map[string]delivery{}
			for _, d := range got {
				if d.verErr != nil {
					t.Fatalf("webhook %s does not verify: %v", d.id, d.verErr)
				}
				var data jobRecord
				if err := json.Unmarshal(d.payload.Data, &data); err != nil {
					t.Fatalf("webhook %s data: %v", d.id, err)
				}
				if strings.Contains(string(d.payload.Data), `"webhook"`) {
					t.Errorf("webhook %s: data carries the webhook's own state: %s", d.id, d.payload.Data)
				}
				byJob[data.ID] = d
				if want := data.ID + "_1"; d.id != want || d.payload.Timestamp.IsZero() {
					t.Errorf("webhook-id %q (want %q), timestamp %v", d.id, want, d.payload.Timestamp)
				}
			}
			if d := byJob[ok.ID]; d.payload.Type != "job.succeeded" || !strings.Contains(string(d.payload.Data), `"outputs"`) {
				t.Errorf("succeeded job's webhook: type %q, data %s", d.payload.Type, d.payload.Data)
			}
			if d := byJob[bad.ID]; d.payload.Type != "job.failed" || !strings.Contains(string(d.payload.Data), `"error"`) {
				t.Errorf("failed job's webhook: type %q, data %s", d.payload.Type, d.payload.Data)
			}
		})
	}
}

// TestWebhookRetriesWithBackoff: a receiver that fails twice gets the
// webhook on the third attempt, each wait longer than the last, with the
// same webhook-id; the record says delivered after 3 attempts.
func TestWebhookRetriesWithBackoff(t *testing.T) {
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s := startStack(t, true, func(c *config.Config) { webhookConfig(c, 300*time.Millisecond, 900*time.Millisecond) })
	acc := s.submit(t, "simple", withCallback(simpleBody(seq(0), seq(1)), rc.srv.URL))
	got := rc.waitFor(t, 3, 20*time.Second)
	w := s.webhookOf(t, acc.ID)
	if w.Status != "delivered" || w.Attempts != 3 || w.LastError != "" {
		t.Fatalf("webhook %+v, want delivered after 3 attempts", w)
	}
	for i, d := range got {
		if d.verErr != nil || d.id != got[0].id || string(d.body) != string(got[0].body) {
			t.Fatalf("attempt %d: id %q (first %q), verify %v; the body must not change between attempts", i+1, d.id, got[0].id, d.verErr)
		}
	}
	gap1, gap2 := got[1].at.Sub(got[0].at), got[2].at.Sub(got[1].at)
	if gap1 < 250*time.Millisecond || gap2 < 800*time.Millisecond {
		t.Errorf("waits between attempts %v and %v, want about 300ms then 900ms", gap1, gap2)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(rc.deliveries()); n != 3 {
		t.Errorf("receiver got %d requests, want 3", n)
	}
}

// TestWebhookGivesUp: a receiver that always fails gets max_attempts
// requests, and the record says failed with the last error.
func TestWebhookGivesUp(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request) int { return http.StatusServiceUnavailable })
	s := startStack(t, false, func(c *config.Config) {
		webhookConfig(c, 100*time.Millisecond)
		c.Webhooks.MaxAttempts = 3
	})
	acc := s.submit(t, "simple", withCallback(simpleBody(seq(0), seq(1)), rc.srv.URL))
	w := s.webhookOf(t, acc.ID)
	if w.Status != "failed" || w.Attempts != 3 || !strings.Contains(w.LastError, "503") {
		t.Fatalf("webhook %+v, want failed after 3 attempts with HTTP 503", w)
	}
	time.Sleep(400 * time.Millisecond)
	if n := len(rc.deliveries()); n != 3 {
		t.Errorf("receiver got %d requests, want 3", n)
	}
}

// TestWebhookURLRefused: callback URLs that are not absolute http(s) URLs,
// or that reach loopback, private or link-local addresses, are refused with
// 400 and queue nothing, unless the config allows them; without a signing
// secret every callback URL is refused.
func TestWebhookURLRefused(t *testing.T) {
	s := startStack(t, false, func(c *config.Config) { c.Webhooks.Secret = testSecret })
	for _, url := range []string{
		"http://127.0.0.1:9/x", "http://localhost/x", "http://[::1]/", "http://10.1.2.3/", "http://192.168.0.10/",
		"http://169.254.169.254/latest/meta-data", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/",
		"ftp://example.com/", "/relative", "http://user:pw@93.184.216.34/", "http:///nohost",
	} {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		code, _ := do(t, "POST", s.URL+"/v1/models/simple/jobs", withCallback(simpleBody(seq(0), seq(1)), url), &e)
		if code != http.StatusBadRequest || e.Error.Code != "invalid" || !strings.Contains(e.Error.Message, "callback_url") {
			t.Errorf("callback_url %q: %d %+v, want 400 invalid", url, code, e.Error)
		}
	}
	// The same through the synchronous OIP route.
	if code, _ := do(t, "POST", s.URL+"/v2/models/simple/infer", withCallback(simpleBody(seq(0), seq(1)), "http://10.0.0.1/"), nil); code != http.StatusBadRequest {
		t.Errorf("/v2 infer with a private callback_url: %d, want 400", code)
	}
	info, err := s.NATS.JS.Stream(t.Context(), "INFERQ_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("refused submissions queued %d jobs", n)
	}
	// A public address passes the check (it is not called: the job is
	// only accepted).
	s.submit(t, "simple", withCallback(simpleBody(seq(0), seq(1)), "https://93.184.216.34/hook"))

	noSecret := startStack(t, false, func(c *config.Config) { c.Webhooks.AllowPrivate = true })
	if code, _ := do(t, "POST", noSecret.URL+"/v1/models/simple/jobs", withCallback(simpleBody(seq(0), seq(1)), "https://93.184.216.34/hook"), nil); code != http.StatusBadRequest {
		t.Errorf("callback_url without a signing secret: %d, want 400", code)
	}
	allowed := startStack(t, false, func(c *config.Config) { c.Webhooks.Secret, c.Webhooks.AllowPrivate = testSecret, true })
	allowed.submit(t, "simple", withCallback(simpleBody(seq(0), seq(1)), "http://10.1.2.3/hook"))
}

// TestWebhookTenantDefault: a job that names no callback_url reports to
// its tenant's default.
func TestWebhookTenantDefault(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request) int { return http.StatusOK })
	s := startStack(t, false, func(c *config.Config) {
		webhookConfig(c, 100*time.Millisecond)
		c.Webhooks.Tenants = map[string]config.WebhookTenant{"default": {CallbackURL: rc.srv.URL + "/default"}}
	})
	acc := s.submit(t, "simple", simpleBody(seq(0), seq(1)))
	if w := s.webhookOf(t, acc.ID); w.Status != "delivered" || w.URL != rc.srv.URL+"/default" {
		t.Fatalf("webhook %+v", w)
	}
	if got := rc.waitFor(t, 1, 5*time.Second); got[0].verErr != nil {
		t.Fatal(got[0].verErr)
	}
}

// TestWebhookSurvivesResultsvcRestart: resultsvc stops while a delivery is
// in flight (the receiver holds the request); the webhook stays in
// JetStream and the restarted resultsvc delivers it.
func TestWebhookSurvivesResultsvcRestart(t *testing.T) {
	stopping := make(chan struct{})
	rc := newReceiver(t, func(n int, r *http.Request) int {
		if n == 1 {
			select { // held until resultsvc has gone
			case <-stopping:
			case <-r.Context().Done():
			}
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s := startComponents(t, true, stack.Components{Ingress: true, Batcher: true, Worker: true}, func(c *config.Config) {
		webhookConfig(c, 200*time.Millisecond)
	})
	runResultsvc := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- stack.Run(ctx, stack.Options{Config: s.Cfg, Conn: s.NATS.Conn, Components: stack.Components{ResultSvc: true},
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		}()
		return func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("resultsvc stopped with %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("resultsvc did not stop")
			}
		}
	}
	stop := runResultsvc()
	acc := s.submit(t, "simple", withCallback(simpleBody(seq(0), seq(1)), rc.srv.URL))
	if r := s.wait(t, acc.ID); r.Status != "succeeded" {
		t.Fatalf("job: %+v", r)
	}
	// The first POST is in flight: stop resultsvc under it.
	deadline := time.Now().Add(20 * time.Second)
	for len(rc.deliveries()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no delivery attempt")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	close(stopping)
	t.Cleanup(runResultsvc())
	got := rc.waitFor(t, 2, 20*time.Second)
	w := s.webhookOf(t, acc.ID)
	if w.Status != "delivered" || got[1].verErr != nil || got[1].id != got[0].id {
		t.Fatalf("after the restart: webhook %+v, delivery %+v", w, got[1])
	}
}

// seq is 16 INT32s from start, an input of the simple test model.
func seq(start int32) []int32 {
	out := make([]int32, 16)
	for i := range out {
		out[i] = start + int32(i)
	}
	return out
}
