package version

import "testing"

// String resolves once per process; this test sets Version before anything in
// the package's test binary asks, as -ldflags -X would.
func TestLinkTimeVersionWins(t *testing.T) {
	Version = "v9.9.9"
	if got := String(); got != "v9.9.9" {
		t.Fatalf("String() = %q, want the link-time v9.9.9", got)
	}
	if GoVersion() == "" {
		t.Fatal("GoVersion() is empty")
	}
}
