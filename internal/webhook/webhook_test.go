package webhook

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSignatureSpecVector: the test vector of the Standard Webhooks
// reference libraries.
func TestSignatureSpecVector(t *testing.T) {
	key, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := Signature("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`), key)
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %q, want %q", got, want)
	}
	two := Signature("id", time.Unix(1, 0), []byte("{}"), key, key)
	if parts := strings.Fields(two); len(parts) != 2 || parts[0] != parts[1] {
		t.Fatalf("two secrets: %q", two)
	}
}

func TestParseSecret(t *testing.T) {
	for _, s := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_c2hvcnQ=", "whsec_" + strings.Repeat("QUFB", 30)} {
		if _, err := ParseSecret(s); !errors.Is(err, ErrBadSecret) {
			t.Errorf("ParseSecret(%q): %v, want ErrBadSecret", s, err)
		}
	}
}

func TestPolicyCheckURL(t *testing.T) {
	strict, _ := NewPolicy(false, nil)
	loose, _ := NewPolicy(true, nil)
	listed, err := NewPolicy(false, []string{"127.0.0.0/8", "10.9.9.9", "hooks.internal"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		p      *Policy
		url    string
		refuse bool
	}{
		{"public", strict, "https://93.184.216.34/h", false},
		{"loopback", strict, "http://127.0.0.1:8080/h", true},
		{"localhost", strict, "http://localhost/h", true},
		{"loopback v6", strict, "http://[::1]/", true},
		{"mapped loopback", strict, "http://[::ffff:127.0.0.1]/", true},
		{"private", strict, "http://10.0.0.1/", true},
		{"private 192", strict, "http://192.168.1.1/", true},
		{"link-local metadata", strict, "http://169.254.169.254/", true},
		{"unspecified", strict, "http://0.0.0.0/", true},
		{"cgnat", strict, "http://100.64.1.1/", true},
		{"ula", strict, "http://[fd00::1]/", true},
		{"nat64 of private", strict, "http://[64:ff9b::a00:1]/", true},
		{"multicast", strict, "http://224.0.0.1/", true},
		{"scheme", strict, "ftp://93.184.216.34/", true},
		{"relative", strict, "/x", true},
		{"no host", strict, "http:///x", true},
		{"credentials", strict, "http://u:p@93.184.216.34/", true},
		{"port 0", strict, "http://93.184.216.34:0/", true},
		{"too long", strict, "https://93.184.216.34/" + strings.Repeat("a", MaxURLLength), true},
		{"allow_private", loose, "http://127.0.0.1/", false},
		{"listed cidr", listed, "http://127.0.0.2/", false},
		{"listed ip", listed, "http://10.9.9.9/", false},
		{"unlisted private", listed, "http://10.9.9.8/", true},
		{"listed host", listed, "http://hooks.internal/", false},
	}
	for _, tc := range tests {
		err := tc.p.CheckURL(t.Context(), tc.url)
		if tc.refuse != (err != nil) || err != nil && !errors.Is(err, ErrRefused) {
			t.Errorf("%s: CheckURL(%q) = %v, refuse %v", tc.name, tc.url, err, tc.refuse)
		}
	}
	if _, err := NewPolicy(false, []string{"*.example.com"}); err == nil {
		t.Error("NewPolicy took a wildcard")
	}
}

// TestClientChecksAtDial: the delivery client refuses to connect to an
// internal address even when the URL was never checked (a name that
// resolved to a public address at submission and to loopback later), and
// connects where the policy allows it.
func TestClientChecksAtDial(t *testing.T) {
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	t.Cleanup(srv.Close)
	strict, _ := NewPolicy(false, nil)
	_, err := strict.Client(time.Second).Post(srv.URL, "application/json", strings.NewReader("{}"))
	if !errors.Is(err, ErrRefused) || hits != 0 {
		t.Fatalf("strict client: err %v, hits %d; want refused at dial", err, hits)
	}
	listed, _ := NewPolicy(false, []string{"127.0.0.1"})
	resp, err := listed.Client(time.Second).Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil || hits != 1 {
		t.Fatalf("allowed client: err %v, hits %d", err, hits)
	}
	_ = resp.Body.Close()
	// No redirects: a 3xx is the answer, not a hop to wherever it points.
	redir := httptest.NewServer(http.RedirectHandler("http://10.0.0.1/", http.StatusFound))
	t.Cleanup(redir.Close)
	resp, err = listed.Client(time.Second).Post(redir.URL, "application/json", strings.NewReader("{}"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("redirect: %v %v", resp, err)
	}
	_ = resp.Body.Close()
}
