package obs

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/version"
)

// TestJSONLogDurations: durations in JSON logs read as Go writes them
// ("5ms"), also inside groups and in attributes added with With, not as
// integers of nanoseconds.
func TestJSONLogDurations(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.With("timeout", 30*time.Second).Info("flushed", "took", 5*time.Millisecond, "n", 3,
		slog.Group("batch", "wait", 1500*time.Microsecond))
	var rec struct {
		Timeout, Took string
		N             int
		Batch         struct{ Wait string }
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if rec.Took != "5ms" || rec.Timeout != "30s" || rec.Batch.Wait != "1.5ms" || rec.N != 3 {
		t.Errorf("log line %s: want took 5ms, timeout 30s, batch.wait 1.5ms, n 3", buf.String())
	}
	buf.Reset()
	if log, err = NewLogger(&buf, "info", "text"); err != nil {
		t.Fatal(err)
	}
	log.Info("flushed", "took", 5*time.Millisecond)
	if !strings.Contains(buf.String(), "took=5ms") {
		t.Errorf("text log line %q lacks took=5ms", buf.String())
	}
}

// TestBuildInfoMetric: a service's /metrics says which build runs, with
// the same version string as --version.
func TestBuildInfoMetric(t *testing.T) {
	reg := NewRegistry()
	NewMetrics(reg)
	srv := httptest.NewServer(AdminMux(reg, nil))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `inferq_build_info{goversion="` + version.GoVersion() + `",version="` + version.String() + `"} 1`
	if !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
