package natsauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/natsauth"
	"github.com/inferq/inferq/internal/natsembed"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/stack/stacktest"
	"github.com/inferq/inferq/internal/testutil"
)

// serverPerms turns the table's form into nats-server's.
func serverPerms(p natsauth.Perms) *server.Permissions {
	sp := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.PubAllow, Deny: p.PubDeny},
		Subscribe: &server.SubjectPermission{Allow: p.SubAllow},
	}
	if p.Responses {
		sp.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	}
	return sp
}

// violations collects a connection's permission errors.
type violations struct {
	mu   sync.Mutex
	errs []string
	ch   chan error
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	v.errs = append(v.errs, err.Error())
	v.mu.Unlock()
	select {
	case v.ch <- err:
	default:
	}
}

func (v *violations) list() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.errs...)
}

// TestServicesWithinTheirPermissions runs each component as its own NATS
// user with the table's permissions, with either results store: jobs go
// through end to end (tokens, SSE, replay, cancel, /v2 generate_stream, a
// poison batch dead-lettered) with no permission error, and no service can
// step outside its row.
func TestServicesWithinTheirPermissions(t *testing.T) {
	t.Run("kv", func(t *testing.T) { servicesWithinTheirPermissions(t, "") })
	t.Run("redis", func(t *testing.T) { servicesWithinTheirPermissions(t, testutil.StartRedis(t).URL) })
}

func servicesWithinTheirPermissions(t *testing.T, redisURL string) {
	issuer, _ := nkeys.CreateAccount()
	issuerPub, _ := issuer.PublicKey()
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth = authConfig()
	cfg.Redis.URL = redisURL
	// A model whose batches always fail: its job is dead-lettered by the
	// worker after max_deliver tries.
	flag := filepath.Join(t.TempDir(), "fail")
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Models = append(cfg.Models, config.Model{Name: "flaky",
		Runner: config.Runner{Builtin: "flaky", Params: map[string]any{"fail_while_exists": flag}},
		Queue:  config.Queue{MaxDeliver: 2, Backoff: []config.Duration{config.D(50 * time.Millisecond)}}})
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	var users []natsembed.User
	for _, role := range natsauth.Roles {
		p, err := natsauth.ServicePermissions(role, cfg.NATS.Prefix)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, natsembed.User{Name: role, Password: role + "-pw", Permissions: serverPerms(p)})
	}
	srv, err := natsembed.Run(natsembed.Config{Port: -1, StoreDir: t.TempDir(), Users: users, CalloutIssuer: issuerPub})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	conns, viol := map[string]*nats.Conn{}, map[string]*violations{}
	for _, role := range natsauth.Roles {
		v := &violations{ch: make(chan error, 16)}
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(role, role+"-pw"), nats.ErrorHandler(v.handler))
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		t.Cleanup(nc.Close)
		conns[role], viol[role] = nc, v
	}
	if nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("anonymous connection accepted")
	}

	// The callout runs on the ingress's connection, as cmd/ingress runs it.
	c, err := natsauth.NewCallout(natsauth.CalloutConfig{Auth: newAuthenticator(t, cfg.Auth), Issuer: issuer, Prefix: "inferq"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = c.Serve(ctx, conns[natsauth.RoleIngress]) }()

	stacktest.Start(t, &cfg, conns[natsauth.RoleResultSvc], stack.Components{ResultSvc: true})
	stacktest.Start(t, &cfg, conns[natsauth.RoleBatcher], stack.Components{Batcher: true})
	stacktest.Start(t, &cfg, conns[natsauth.RoleWorker], stack.Components{Worker: true})
	base := stacktest.Start(t, &cfg, conns[natsauth.RoleIngress], stack.Components{Ingress: true})

	// A tenant streams tokens through the callout on the ingress's user.
	var tenant *nats.Conn
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if tenant, err = nats.Connect(srv.ClientURL(), nats.Token(acmeKey)); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("tenant: %v", err)
		}
	}
	defer tenant.Close()
	sub, err := tenant.SubscribeSync("inferq.tokens.acme.>")
	if err != nil {
		t.Fatal(err)
	}
	_ = tenant.Flush()
	id := submit(t, base, acmeKey, 4)
	for i := range 4 {
		if _, err := sub.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("token %d: %v", i+1, err)
		}
	}
	code, body := get(t, base, acmeKey, id)
	if code != 200 || !strings.Contains(string(body), `"succeeded"`) {
		t.Fatalf("job %s: %d %s", id, code, body)
	}
	// The rest of the API, so that each service's other paths run too.
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v1/models", ""}, {"GET", "/v1/models/repeat", ""}, {"GET", "/v1/jobs/" + id + "/events", ""},
		{"POST", "/v1/jobs/" + id + "/replay", "{}"},
	} {
		if code, b := call(t, r.method, base+r.path, adminKey, r.body); code >= 300 {
			t.Errorf("%s %s: %d %s", r.method, r.path, code, b)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, b := get(t, base, acmeKey, id)
		if strings.Contains(string(b), `"succeeded"`) && strings.Contains(string(b), `"attempts":2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replayed job %s: %s", id, b)
		}
	}
	if code, b := call(t, "POST", base+"/v2/models/repeat/generate_stream", acmeKey,
		`{"text_input":"abc","parameters":{"max_tokens":3}}`); code != 200 || !strings.Contains(string(b), "text_output") {
		t.Errorf("generate_stream: %d %s", code, b)
	}
	// A job larger than NATS's max payload: its input and output travel
	// through the blobs object store (ingress and worker).
	values := strings.TrimSuffix(strings.Repeat("1.5,", 300_000), ",")
	code, b := call(t, "POST", base+"/v1/models/identity/jobs", acmeKey,
		`{"inputs":[{"name":"INPUT0","shape":[1,300000],"datatype":"FP32","data":[`+values+`]}]}`)
	var large struct{ ID string }
	if err := json.Unmarshal(b, &large); err != nil || code != http.StatusAccepted {
		t.Fatalf("submit a job over the max payload: %d %.300s", code, b)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, b := get(t, base, acmeKey, large.ID)
		if strings.Contains(string(b), `"succeeded"`) && identityOutput(b) == values {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job over the max payload %s: %.300s", large.ID, b)
		}
	}
	// The poison job ends failed with a dead letter.
	code, b = call(t, "POST", base+"/v1/models/flaky/jobs", acmeKey, `{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP32","data":[1]}]}`)
	var poison struct{ ID string }
	if err := json.Unmarshal(b, &poison); err != nil || code != http.StatusAccepted {
		t.Fatalf("submit poison job: %d %s", code, b)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, b := get(t, base, acmeKey, poison.ID); strings.Contains(string(b), `"failed"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("poison job %s did not fail", poison.ID)
		}
	}
	js, _ := natsjs.New(conns[natsauth.RoleBatcher])
	testutil.Eventually(t, 10*time.Second, func() bool {
		st, err := js.Stream(t.Context(), "INFERQ_DEAD")
		return err == nil && st.CachedInfo().State.Msgs >= 1
	}, "no dead letter for the poison job")
	cancelID := submit(t, base, acmeKey, 2000)
	if code, b := call(t, "DELETE", base+"/v1/jobs/"+cancelID, acmeKey, ""); code >= 300 {
		t.Errorf("cancel: %d %s", code, b)
	}
	time.Sleep(500 * time.Millisecond)
	for role, v := range viol {
		if errs := v.list(); len(errs) > 0 {
			t.Errorf("%s hit permission errors doing its own work: %v", role, errs)
		}
	}

	// Each service is refused what is not its own.
	forbidden := []struct{ role, op, subject string }{
		{natsauth.RoleWorker, "Publish", "inferq.jobs.repeat.p1"},
		{natsauth.RoleWorker, "Publish", "$KV.inferq_results." + id},
		{natsauth.RoleWorker, "Publish", "$JS.API.STREAM.MSG.GET.INFERQ_JOBS"},
		{natsauth.RoleWorker, "Publish", "$JS.API.STREAM.DELETE.INFERQ_JOBS"},
		{natsauth.RoleBatcher, "Publish", "inferq.tokens.acme." + id},
		{natsauth.RoleBatcher, "Publish", "$KV.inferq_results." + id},
		{natsauth.RoleBatcher, "Subscription", "inferq.tokens.>"},
		{natsauth.RoleResultSvc, "Publish", "inferq.jobs.repeat.p1"},
		{natsauth.RoleResultSvc, "Publish", "$JS.API.STREAM.PURGE.INFERQ_JOBS"},
		{natsauth.RoleIngress, "Publish", "$JS.API.CONSUMER.MSG.NEXT.INFERQ_BATCHES.workers-repeat"},
		{natsauth.RoleIngress, "Publish", "inferq.tokens.acme." + id},
		{natsauth.RoleIngress, "Publish", natsauth.CalloutSubject},
		{natsauth.RoleWorker, "Subscription", natsauth.CalloutSubject},
		{natsauth.RoleWorker, "Subscription", ">"},
	}
	for _, f := range forbidden {
		nc, v := conns[f.role], viol[f.role]
		if f.op == "Publish" {
			err = nc.Publish(f.subject, []byte("forged"))
		} else {
			_, err = nc.SubscribeSync(f.subject)
		}
		if err != nil {
			t.Fatal(err)
		}
		wantViolation(t, v.ch, f.op, f.subject)
	}
}

// identityOutput is the data of the first output in a job record's result,
// as written (the record's times may hold "1.5" too, so the test compares
// the data itself).
func identityOutput(record []byte) string {
	var rec struct {
		Result struct {
			Outputs []struct {
				Data json.RawMessage `json:"data"`
			} `json:"outputs"`
		} `json:"result"`
	}
	if json.Unmarshal(record, &rec) != nil || len(rec.Result.Outputs) == 0 {
		return ""
	}
	return strings.Trim(string(rec.Result.Outputs[0].Data), "[]")
}
