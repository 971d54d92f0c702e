package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/inferq/inferq/internal/testutil"
)

// startDev runs `inferq dev` with args until the test ends and returns its
// NATS URL (from the banner) and the banner's NATS line.
func startDev(t *testing.T, args ...string) (url, line, httpURL string) {
	t.Helper()
	banner := devBanner(t, args...)
	m := regexp.MustCompile(`NATS      (((?:nats|tls)://\S+).*)`).FindStringSubmatch(banner)
	return m[2], m[1], regexp.MustCompile(`HTTP API  (\S+)`).FindStringSubmatch(banner)[1]
}

// devBanner runs `inferq dev` with args until the test ends and returns
// what it printed once serving (its banner).
func devBanner(t *testing.T, args ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &testutil.Buffer{}, &testutil.Buffer{}
	exit := make(chan int, 1)
	args = append(args, "--http", "127.0.0.1:0", "--nats-port", strconv.Itoa(port), "--data", t.TempDir())
	go func() { exit <- Dev(ctx, args, stdout, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-exit:
			if code != 0 {
				t.Errorf("inferq dev exited %d; stderr:\n%s", code, stderr)
			}
		case <-time.After(20 * time.Second):
			t.Error("inferq dev did not stop within 20s")
		}
	})
	re := regexp.MustCompile(`NATS      (?:nats|tls)://\S+`)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if out := stdout.String(); re.MatchString(out) && strings.Contains(out, "Ctrl-C stops it.") {
			return out
		}
		select {
		case code := <-exit:
			t.Fatalf("inferq dev exited %d before serving; stderr:\n%s", code, stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("inferq dev not serving after 30s; stdout:\n%s\nstderr:\n%s", stdout, stderr)
		}
	}
}

// TestDevNATSOpenOnlyOnLoopback: without auth, dev's NATS is open as
// before, but on loopback only, and the banner says it is unauthenticated.
func TestDevNATSOpenOnlyOnLoopback(t *testing.T) {
	url, line, _ := startDev(t)
	if !strings.Contains(line, "UNAUTHENTICATED") || !strings.Contains(line, "loopback only") {
		t.Errorf("banner's NATS line %q does not say it is unauthenticated", line)
	}
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Errorf("NATS on %s, want loopback", url)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("anonymous connect without auth: %v", err)
	}
	nc.Close()
}

// TestDevNATSWithAuth: with auth configured, dev's NATS refuses anonymous
// clients and admits a tenant with its API key, for its own tokens only.
func TestDevNATSWithAuth(t *testing.T) {
	base, err := os.ReadFile("../../docs/inferq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The commented example's key, "change-me", for tenant default.
	cfg := strings.Replace(string(base), "# auth:\n#   api_keys:\n#     - ", "auth:\n  api_keys:\n    - ", 1)
	if cfg == string(base) {
		t.Fatal("docs/inferq.yaml no longer has the commented auth example")
	}
	path := filepath.Join(t.TempDir(), "inferq.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	url, line, api := startDev(t, "--config", path)
	if strings.Contains(line, "UNAUTHENTICATED") {
		t.Errorf("banner's NATS line %q with auth on", line)
	}
	if nc, err := nats.Connect(url, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("anonymous NATS connection accepted with auth configured")
	}
	errs := make(chan error, 8)
	nc, err := nats.Connect(url, nats.Token("change-me"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("tenant with its key: %v", err)
	}
	defer nc.Close()
	if _, err := nc.SubscribeSync("inferq.tokens.default.>"); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("inferq.jobs.repeat.p1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "Permissions Violation for Publish") {
			t.Fatalf("unexpected error %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a tenant published to a jobs subject")
	}

	// `inferq watch` signs in with the tenant's key and, refused JetStream,
	// follows the job's live token subject to the final token.
	var out, errb bytes.Buffer
	if code := Client(context.Background(), "submit", []string{"-url", api, "-token", "change-me", "-text", "ab",
		"-params", `{"max_tokens":25,"interval_ms":200}`, "repeat"}, &out, &errb); code != ExitOK {
		t.Fatalf("submit: exit %d: %s", code, errb.String())
	}
	var acc struct{ ID string }
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &acc); err != nil || acc.ID == "" {
		t.Fatalf("submit printed %q: %v", out.String(), err)
	}
	out.Reset()
	errb.Reset()
	if code := Client(context.Background(), "watch", []string{"-nats", url, "-token", "change-me", "-timeout", "30s", acc.ID},
		&out, &errb); code != ExitOK {
		t.Fatalf("watch: exit %d; stderr %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "live tokens only") || !strings.HasSuffix(strings.TrimSpace(out.String()), "a") {
		t.Fatalf("watch printed %q, stderr %q: want the live tokens to the last (25th: 'a')", out.String(), errb.String())
	}
}

// TestDevNATSTLS: with --nats-tls-cert and --nats-tls-key, dev's NATS
// admits TLS clients only, and the banner's URL says so (tls://).
func TestDevNATSTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, "nats")
	url, line, _ := startDev(t, "--nats-tls-cert", leaf.CertFile, "--nats-tls-key", leaf.KeyFile)
	if !strings.HasPrefix(url, "tls://127.0.0.1:") {
		t.Errorf("banner's NATS line %q: want a tls:// URL on loopback", line)
	}
	if nc, err := nats.Connect(url, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("plain-text client accepted")
	}
	nc, err := nats.Connect(url, nats.RootCAs(ca.CertFile))
	if err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	nc.Close()
}

// TestDevBannerSync: the banner says which JetStream sync policy is in
// force: always by default (a single node), the interval nats.sync names
// otherwise.
func TestDevBannerSync(t *testing.T) {
	re := regexp.MustCompile(`\n  sync      (.*)\n`)
	if m := re.FindStringSubmatch(devBanner(t)); m == nil || !strings.HasPrefix(m[1], "always") {
		t.Errorf("default banner's sync line %q: want always", m)
	}
	t.Setenv("INFERQ_NATS_SYNC", "30s")
	if m := re.FindStringSubmatch(devBanner(t)); m == nil || !strings.HasPrefix(m[1], "every 30s") {
		t.Errorf("banner's sync line with nats.sync 30s: %q", m)
	}
}
