package natsauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/auth/authtest"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/natsauth"
	"github.com/inferq/inferq/internal/natsembed"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/stack/stacktest"
)

const (
	svcUser, svcPass = "svc", "svc-password"
	acmeKey          = "iqk_acme_key"
	globexKey        = "iqk_globex_key"
	submitOnlyKey    = "iqk_submit_only"
	adminKey         = "iqk_admin"
)

// fixture is an embedded nats-server refusing anonymous clients, with the
// auth callout answering for tenants.
type fixture struct {
	srv     *natsembed.Server
	url     string
	svc     *nats.Conn
	callout *natsauth.Callout
	cfg     config.Config
}

func authConfig() auth.Config {
	return auth.Config{Enabled: true,
		APIKeys: []auth.APIKey{
			{Name: "acme", SHA256: auth.HashKey(acmeKey), Tenant: "acme", Scopes: []string{"submit", "read"}},
			{Name: "globex", SHA256: auth.HashKey(globexKey), Tenant: "globex", Scopes: []string{"submit", "read"}},
			{Name: "submitter", SHA256: auth.HashKey(submitOnlyKey), Tenant: "acme", Scopes: []string{"submit"}},
			{Name: "admin", SHA256: auth.HashKey(adminKey), Tenant: "acme", Scopes: []string{"admin"}},
		},
		JWT: auth.JWTConfig{HS256Secret: authtest.Secret, Issuer: authtest.Issuer, Audience: authtest.Audience},
	}
}

func newAuthenticator(t *testing.T, cfg auth.Config) *auth.Authenticator {
	t.Helper()
	a, err := auth.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func start(t *testing.T, ttl time.Duration, failures *auth.FailureLimiter) *fixture {
	t.Helper()
	issuer, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth = authConfig()
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	c, err := natsauth.NewCallout(natsauth.CalloutConfig{Auth: newAuthenticator(t, cfg.Auth), Issuer: issuer,
		Prefix: cfg.NATS.Prefix, SessionTTL: ttl, Failures: failures})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Run(natsembed.Config{Port: -1, StoreDir: t.TempDir(),
		Users: []natsembed.User{{Name: svcUser, Password: svcPass}}, CalloutIssuer: c.Issuer()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	svc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(svcUser, svcPass))
	if err != nil {
		t.Fatalf("service user: %v", err)
	}
	t.Cleanup(svc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Serve(ctx, svc) }()
	t.Cleanup(func() { cancel(); <-done })
	// Serve subscribes asynchronously; wait until a tenant gets through.
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc, err := nats.Connect(srv.ClientURL(), nats.Token(acmeKey))
		if err == nil {
			nc.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("callout not answering: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &fixture{srv: srv, url: srv.ClientURL(), svc: svc, callout: c, cfg: cfg}
}

// tenantConn connects with cred as the token and collects the async errors
// (permission violations) the server sends.
func (f *fixture) tenantConn(t *testing.T, cred string, extra ...nats.Option) (*nats.Conn, chan error) {
	t.Helper()
	errs := make(chan error, 64)
	opts := append([]nats.Option{nats.Token(cred), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		errs <- err
	})}, extra...)
	nc, err := nats.Connect(f.url, opts...)
	if err != nil {
		t.Fatalf("tenant connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// wantViolation waits for the server's permissions violation naming subject.
func wantViolation(t *testing.T, errs chan error, what, subject string) {
	t.Helper()
	timeout := time.After(3 * time.Second)
	for {
		select {
		case err := <-errs:
			if strings.Contains(err.Error(), "Permissions Violation for "+what) && strings.Contains(err.Error(), subject) {
				return
			}
		case <-timeout:
			t.Fatalf("no permissions violation for %s to %q", what, subject)
		}
	}
}

func TestAnonymousAndBadCredentialsRefused(t *testing.T) {
	f := start(t, time.Minute, nil)
	for name, opts := range map[string][]nats.Option{
		"anonymous":        nil,
		"unknown key":      {nats.Token("iqk_not_a_key")},
		"key as password":  {nats.UserInfo("acme", acmeKey)},
		"no read scope":    {nats.Token(submitOnlyKey)},
		"expired jwt":      {nats.Token(jwtFor(t, "acme", time.Now().Add(-time.Minute)))},
		"wrong jwt secret": {nats.Token(authtest.Sign(t, jwt.SigningMethodHS256, "", []byte("another-secret-another-secret-32b"), authtest.Claims()))},
	} {
		nc, err := nats.Connect(f.url, append(opts, nats.MaxReconnects(0))...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
			continue
		}
		if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: %v, want an authorization violation", name, err)
		}
	}
}

func jwtFor(t *testing.T, tenant string, exp time.Time) string {
	c := authtest.Claims()
	c["tenant"] = tenant
	c["exp"] = exp.Unix()
	return authtest.Sign(t, jwt.SigningMethodHS256, "", []byte(authtest.Secret), c)
}

// TestTenantReadsOnlyItsOwnTokens runs the whole broker on a server that
// refuses anonymous clients: a tenant connected with its API key streams its
// own job's tokens and is refused every other tenant's subject, $JS.API, and
// any publish, so the probe's forged-record attack fails.
func TestTenantReadsOnlyItsOwnTokens(t *testing.T) {
	f := start(t, time.Minute, nil)
	base := stacktest.Start(t, &f.cfg, f.svc, stack.All)

	acme, acmeErrs := f.tenantConn(t, acmeKey)
	own, err := acme.SubscribeSync("inferq.tokens.acme.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := acme.Flush(); err != nil {
		t.Fatal(err)
	}
	// Another tenant's tokens, the JetStream API and the results bucket.
	for _, subj := range []string{"inferq.tokens.globex.>", "inferq.tokens.>", "$JS.API.>", "$KV.inferq_results.>", "inferq.jobs.>", ">"} {
		if _, err := acme.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, acmeErrs, "Subscription", subj)
	}

	// A job of globex's; its tokens never reach acme.
	globexJob := submit(t, base, globexKey, 5)
	acmeJob := submit(t, base, acmeKey, 5)
	var text strings.Builder
	for seq := 1; seq <= 5; seq++ {
		msg, err := own.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("acme token %d: %v", seq, err)
		}
		if want := "inferq.tokens.acme." + acmeJob; msg.Subject != want {
			t.Fatalf("acme got a message on %s, want %s", msg.Subject, want)
		}
		var tok struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(msg.Data, &tok); err != nil {
			t.Fatal(err)
		}
		text.WriteString(tok.Text)
	}
	if text.String() != "abcab" {
		t.Errorf("acme's tokens %q, want abcab", text.String())
	}

	// The probe's attacks: publish a job, forge globex's record, call the
	// JetStream API. Each is a permissions violation and changes nothing.
	before := getJob(t, base, globexKey, globexJob)
	forged := []byte(`{"id":"` + globexJob + `","status":"succeeded","tenant":"acme"}`)
	for _, subj := range []string{"inferq.jobs.repeat.p1", "$KV.inferq_results." + globexJob,
		"$JS.API.STREAM.MSG.GET.INFERQ_JOBS", "$JS.API.STREAM.INFO.INFERQ_JOBS"} {
		if err := acme.Publish(subj, forged); err != nil {
			t.Fatal(err)
		}
		wantViolation(t, acmeErrs, "Publish", subj)
	}
	js, err := natsjs.New(acme)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := js.KeyValue(ctx, "inferq_results"); err == nil {
		t.Error("tenant opened the results bucket")
	}
	after := getJob(t, base, globexKey, globexJob)
	if !bytes.Equal(before, after) {
		t.Errorf("globex's record changed:\n%s\n%s", before, after)
	}
	if code := status(t, base, globexKey, acmeJob); code != http.StatusNotFound {
		t.Errorf("globex reading acme's job: %d, want 404", code)
	}
	if m, err := own.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("acme received %s", m.Subject)
	}

	// The same holds with a JWT for the tenant instead of an API key.
	jc, jErrs := f.tenantConn(t, jwtFor(t, "globex", time.Now().Add(time.Hour)))
	if _, err := jc.SubscribeSync("inferq.tokens.acme.>"); err != nil {
		t.Fatal(err)
	}
	wantViolation(t, jErrs, "Subscription", "inferq.tokens.acme.>")
	gs, err := jc.SubscribeSync("inferq.tokens.globex.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := jc.Flush(); err != nil {
		t.Fatal(err)
	}
	id := submit(t, base, globexKey, 3)
	if msg, err := gs.NextMsg(10 * time.Second); err != nil || msg.Subject != "inferq.tokens.globex."+id {
		t.Fatalf("globex over JWT: %v %v", msg, err)
	}
}

// TestSessionEnds: a revoked key's connection is closed within the session
// TTL and cannot come back; a JWT's session ends at its exp.
func TestSessionEnds(t *testing.T) {
	f := start(t, 2*time.Second, nil)

	disconnected := make(chan error, 4)
	keyConn, _ := f.tenantConn(t, acmeKey, nats.MaxReconnects(3), nats.ReconnectWait(100*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { disconnected <- err }))
	// Revoke: the callout now checks against a configuration without the key.
	cfg := authConfig()
	cfg.APIKeys = cfg.APIKeys[1:]
	if err := f.callout.SetAuth(newAuthenticator(t, cfg)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-disconnected:
		t.Logf("disconnected: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("revoked key's NATS session still open after 5s (session TTL 2s)")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !keyConn.IsClosed() {
		if keyConn.IsConnected() {
			t.Fatal("revoked key reconnected")
		}
		if time.Now().After(deadline) {
			t.Fatal("revoked key's connection not closed after its reconnects failed")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A JWT that expires in 2 s, under a TTL that would allow an hour.
	g := start(t, time.Hour, nil)
	jwtDown := make(chan error, 4)
	g.tenantConn(t, jwtFor(t, "acme", time.Now().Add(2*time.Second)), nats.MaxReconnects(0),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { jwtDown <- err }))
	select {
	case <-jwtDown:
	case <-time.After(5 * time.Second):
		t.Fatal("NATS session outlived its JWT")
	}
}

// TestFailedAuthThrottled: an address that keeps failing is refused even
// with a good key until the window passes.
func TestFailedAuthThrottled(t *testing.T) {
	f := start(t, time.Minute, auth.NewFailureLimiter(auth.FailedAuthConfig{MaxFailures: 3, Window: auth.Duration(time.Minute)}))
	for range 3 {
		if nc, err := nats.Connect(f.url, nats.Token("iqk_wrong"), nats.MaxReconnects(0)); err == nil {
			nc.Close()
			t.Fatal("wrong key connected")
		}
	}
	if nc, err := nats.Connect(f.url, nats.Token(acmeKey), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a throttled address connected")
	}
}

func submit(t *testing.T, base, key string, tokens int) string {
	t.Helper()
	body := fmt.Sprintf(`{"text_input":"abc","parameters":{"max_tokens":%d}}`, tokens)
	req, _ := http.NewRequest("POST", base+"/v1/models/repeat/jobs", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("submit: %d %v", resp.StatusCode, err)
	}
	return a.ID
}

func get(t *testing.T, base, key, id string) (int, []byte) {
	t.Helper()
	return call(t, "GET", base+"/v1/jobs/"+id+"?wait=5s", key, "")
}

// call makes one API request with key and returns the status and body
// (what arrived within 5 s for a stream).
func call(t *testing.T, method, url, key, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func getJob(t *testing.T, base, key, id string) []byte {
	t.Helper()
	code, b := get(t, base, key, id)
	if code != http.StatusOK {
		t.Fatalf("get %s: %d %s", id, code, b)
	}
	return b
}

func status(t *testing.T, base, key, id string) int { code, _ := get(t, base, key, id); return code }
