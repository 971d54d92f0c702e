package svccheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/inferq/inferq/internal/natsauth"
)

// Markers around the generated authorization block in a nats.conf.
const (
	authBegin = "# BEGIN natsauth.ConfAuthorization"
	authEnd   = "# END natsauth.ConfAuthorization"
)

// CheckAuthBlock fails t unless conf (named name) carries, between the
// markers, exactly natsauth.ConfAuthorization(prefix, indent): the
// deployments' users and permissions are the table's.
func CheckAuthBlock(t *testing.T, name, conf, prefix, indent string) {
	t.Helper()
	want, err := natsauth.ConfAuthorization(prefix, indent)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(conf, "\n")
	begin := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), authBegin) })
	end := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), authEnd) })
	if begin < 0 || end < begin {
		t.Fatalf("%s: no %q ... %q block", name, authBegin, authEnd)
	}
	if got := strings.Join(lines[begin+1:end], ""); got != want {
		t.Errorf("%s: the authorization block differs from natsauth.ConfAuthorization(%q); replace it with:\n%s", name, prefix, want)
	}
}

// RunNATSConf loads the nats.conf at path as nats-server does (its $VARs
// from the environment), checks its users against the permission table,
// and runs it alone on a free loopback port (no routes, no monitoring,
// storage in a temporary directory) until the test ends.
func RunNATSConf(t *testing.T, path, prefix string) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	checkUsers(t, path, opts, prefix)
	opts.Host, opts.Port, opts.HTTPPort, opts.HTTPHost = "127.0.0.1", -1, 0, ""
	opts.Cluster, opts.Routes, opts.RoutesStr = server.ClusterOpts{}, nil, ""
	opts.StoreDir, opts.PidFile = t.TempDir(), filepath.Join(t.TempDir(), "nats.pid")
	opts.JetStreamMaxStore, opts.JetStreamMaxMemory = 1<<30, 64<<20
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatalf("%s: nats-server not ready", path)
	}
	return s
}

// checkUsers: one user per service role, with the table's permissions,
// and every one of them exempt from the auth callout.
func checkUsers(t *testing.T, path string, opts *server.Options, prefix string) {
	t.Helper()
	if opts.AuthCallout == nil || opts.AuthCallout.Issuer != os.Getenv(natsauth.IssuerVar) ||
		!slices.Equal(sorted(opts.AuthCallout.AuthUsers), sorted(natsauth.Roles)) {
		t.Errorf("%s: auth_callout %+v, want issuer $%s and auth_users %v", path, opts.AuthCallout, natsauth.IssuerVar, natsauth.Roles)
	}
	if opts.NoAuthUser != "" {
		t.Errorf("%s: no_auth_user %q lets anonymous clients in", path, opts.NoAuthUser)
	}
	if len(opts.Users) != len(natsauth.Roles) {
		t.Errorf("%s: %d users, want one per role %v", path, len(opts.Users), natsauth.Roles)
	}
	for _, u := range opts.Users {
		want, err := natsauth.ServicePermissions(u.Username, prefix)
		if err != nil {
			t.Errorf("%s: user %q: %v", path, u.Username, err)
			continue
		}
		p := u.Permissions
		if u.Password == "" || u.Password != os.Getenv(natsauth.PasswordVar(u.Username)) {
			t.Errorf("%s: user %s: password is not $%s", path, u.Username, natsauth.PasswordVar(u.Username))
		}
		if p == nil || p.Publish == nil || p.Subscribe == nil ||
			!slices.Equal(sorted(p.Publish.Allow), sorted(want.PubAllow)) || !slices.Equal(sorted(p.Publish.Deny), sorted(want.PubDeny)) ||
			!slices.Equal(sorted(p.Subscribe.Allow), sorted(want.SubAllow)) || len(p.Subscribe.Deny) > 0 || (p.Response != nil) != want.Responses {
			t.Errorf("%s: user %s: permissions differ from natsauth.ServicePermissions", path, u.Username)
		}
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// ConnectAs fails t unless user connects to s with password.
func ConnectAs(t *testing.T, s *server.Server, user, password string) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, password), nats.MaxReconnects(0))
	if err != nil {
		t.Errorf("user %s: %v", user, err)
		return
	}
	nc.Close()
}

// RefusesAnonymous fails t if a client without credentials, or with a
// wrong password, gets in (no callout answers here, so it must time out or
// be refused).
func RefusesAnonymous(t *testing.T, s *server.Server) {
	t.Helper()
	for name, opt := range map[string]nats.Option{"anonymous": func(*nats.Options) error { return nil },
		"wrong password": nats.UserInfo(natsauth.RoleIngress, "wrong")} {
		nc, err := nats.Connect(s.ClientURL(), opt, nats.MaxReconnects(0), nats.Timeout(3*time.Second))
		if err == nil {
			nc.Close()
			t.Errorf("%s client accepted", name)
		}
	}
}
