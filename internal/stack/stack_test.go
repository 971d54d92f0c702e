package stack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/config"
	"github.com/inferq/inferq/internal/stack"
	"github.com/inferq/inferq/internal/testutil"
)

// jsonLines decodes the JSON log records in b.
func jsonLines(b *testutil.Buffer) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestUnservedModelWarnsAndShowsNoWorkers: a worker list that leaves a
// configured model out is a startup warning naming it, and the API reports
// the model with "workers": 0 while the served one counts its worker.
func TestUnservedModelWarnsAndShowsNoWorkers(t *testing.T) {
	n := testutil.StartNATS(t)
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Worker.Models = []string{"simple", "simgpu", "identity"} // repeat left out
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- stack.Run(ctx, stack.Options{Config: &cfg, Conn: n.Conn, Components: stack.All,
			IngressListener: ln, Log: log, Ready: func() { close(ready) }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stack: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("stack did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("stack not ready after 20s")
	}

	var warned []string
	for _, l := range jsonLines(logs) {
		if msg, _ := l["msg"].(string); l["level"] == "WARN" && strings.HasPrefix(msg, "worker.models leaves out") {
			warned = append(warned, fmt.Sprint(l["model"]))
		}
	}
	if len(warned) != 1 || warned[0] != "repeat" {
		t.Errorf("startup warnings name %v, want [repeat]; logs: %v", warned, jsonLines(logs))
	}

	base := "http://" + ln.Addr().String()
	type info struct {
		Name    string `json:"name"`
		Workers *int   `json:"workers"`
	}
	// The served model's heartbeat shows up within a moment; the unserved
	// one stays at 0, and says so rather than leaving the field out.
	workers := map[string]int{}
	testutil.Eventually(t, 10*time.Second, func() bool {
		var list struct{ Models []info }
		getJSON(t, base+"/v1/models", &list)
		clear(workers)
		for _, m := range list.Models {
			if m.Workers == nil {
				t.Fatalf("model %s: no workers field", m.Name)
			}
			workers[m.Name] = *m.Workers
		}
		return workers["simple"] == 1 && workers["repeat"] == 0
	}, "workers per model %v, want simple 1 and repeat 0", workers)
	var one info
	getJSON(t, base+"/v1/models/repeat", &one)
	if one.Workers == nil || *one.Workers != 0 {
		t.Errorf("GET /v1/models/repeat: workers %v, want 0", one.Workers)
	}
}

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
