package ingress

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReadsAsJSON: the Content-Type rule of every JSON route, including the
// forms a table over routes does not reach (case, parameters, malformed).
func TestReadsAsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"":                                  true,
		"application/json":                  true,
		"application/json; charset=utf-8":   true,
		"Application/JSON":                  true,
		"application/x-www-form-urlencoded": true,
		"application/x-www-form-urlencoded; charset=UTF-8": true,
		"text/plain":                 false,
		"application/xml":            false,
		"application/jsonx":          false,
		"multipart/form-data; b=x":   false,
		"application/json; charset=": false, // malformed parameter
		";":                          false,
	} {
		r := httptest.NewRequest("POST", "/v1/models/simple/jobs", strings.NewReader("{}"))
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		if got := readsAsJSON(r); got != want {
			t.Errorf("Content-Type %q: read as JSON %v, want %v", ct, got, want)
		}
	}
	empty := httptest.NewRequest("POST", "/v1/jobs/x/replay", nil)
	empty.Header.Set("Content-Type", "text/plain")
	if !readsAsJSON(empty) {
		t.Error("a request with no body was refused for its Content-Type")
	}
}
