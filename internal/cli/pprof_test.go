package cli

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/inferq/inferq/internal/testutil"
)

// TestServePprofLoopbackOnly: the profiler shows internals, so it refuses
// any address but loopback, and serves the index where it is allowed.
func TestServePprofLoopbackOnly(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, addr := range []string{"0.0.0.0:0", ":0", "10.1.2.3:6060", "example.com:6060", "nonsense"} {
		if stop, err := servePprof(addr, log); err == nil {
			stop()
			t.Errorf("--pprof %s was accepted", addr)
		}
	}
	stop, err := servePprof("127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
}

// TestServePprofServes: the index answers on the address it listens on.
func TestServePprofServes(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	stop, err := servePprof(addr, log)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine") {
		t.Fatalf("GET /debug/pprof/: %d %.200s", resp.StatusCode, body)
	}
}
