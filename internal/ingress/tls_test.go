package ingress_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/auth"
	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/stack/stacktest"
	"github.com/inferq/inferq/internal/testutil"
)

// startIngress runs the ingress alone with the test models and edit's
// changes to the configuration, and returns its base URL.
func startIngress(t *testing.T, edit func(*config.Config)) string {
	t.Helper()
	n := testutil.StartNATS(t)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL = n.URL
	edit(&cfg)
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	return stacktest.Start(t, &cfg, n.Conn, stack.Components{Ingress: true})
}

// TestHTTPS: with ingress.tls set the API answers over HTTPS (HTTP/1.1 and
// HTTP/2) to a client that trusts the CA; a client that does not is
// refused, and plain HTTP gets no API answer.
func TestHTTPS(t *testing.T) {
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, "ingress")
	base := startIngress(t, func(c *config.Config) {
		c.Ingress.TLS = config.ServerTLS{CertFile: leaf.CertFile, KeyFile: leaf.KeyFile}
	})
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base URL %s, want https://", base)
	}
	for _, h2 := range []bool{false, true} {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: h2}}
		resp, err := c.Get(base + "/v1/models")
		if err != nil {
			t.Fatalf("h2=%v: %v", h2, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"repeat"`) {
			t.Errorf("h2=%v: %d %s", h2, resp.StatusCode, b)
		}
		if want := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != want {
			t.Errorf("h2=%v: served over HTTP/%d", h2, resp.ProtoMajor)
		}
	}
	other := testutil.NewCA(t)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: other.Pool}}}
	if resp, err := c.Get(base + "/v1/models"); err == nil {
		resp.Body.Close()
		t.Error("a client trusting another CA got an answer")
	}
	plain := "http://" + strings.TrimPrefix(base, "https://")
	if resp, err := http.Get(plain + "/v1/models"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP answered 200: %s", b)
		}
	}
}

// TestSpoofedForwardedForThrottled: the failed-authentication throttle
// keys on the connection's address, so a client cannot dodge it with a
// fresh X-Forwarded-For per guess; only a trusted proxy's header counts.
func TestSpoofedForwardedForThrottled(t *testing.T) {
	const good = "good-key"
	setup := func(trusted []string) func(*config.Config) {
		return func(c *config.Config) {
			c.Auth.APIKeys = []auth.APIKey{{Name: "acme", SHA256: auth.HashKey(good), Tenant: "acme", Scopes: []string{"read"}}}
			c.Auth.FailedAuth = auth.FailedAuthConfig{MaxFailures: 3, Window: auth.Duration(time.Minute)}
			c.Ingress.TrustedProxies = trusted
		}
	}
	get := func(base, key, xff string) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// No trusted proxies: the header is ignored.
	base := startIngress(t, setup(nil))
	for i, xff := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		if code := get(base, "wrong", xff); code != http.StatusUnauthorized {
			t.Fatalf("bad key %d: %d", i+1, code)
		}
	}
	if code := get(base, "wrong", "203.0.113.4"); code != http.StatusTooManyRequests {
		t.Errorf("fourth guess with a fresh X-Forwarded-For: %d, want 429", code)
	}

	// Behind a trusted proxy (the test's loopback), its header names the
	// client: one client's failures do not lock out another.
	base = startIngress(t, setup([]string{"127.0.0.1/32", "::1"}))
	for range 3 {
		if code := get(base, "wrong", "198.51.100.7, 203.0.113.9"); code != http.StatusUnauthorized {
			t.Fatalf("bad key: %d", code)
		}
	}
	if code := get(base, good, "203.0.113.9"); code != http.StatusTooManyRequests {
		t.Errorf("the failing client, through the proxy: %d, want 429", code)
	}
	if code := get(base, good, "203.0.113.10"); code != http.StatusOK {
		t.Errorf("another client through the same proxy: %d, want 200", code)
	}
}
