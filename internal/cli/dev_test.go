package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/inferq/inferq/internal/testutil"
)

// TestDevStartsWithShippedConfig: `inferq dev --config docs/inferq.yaml`
// starts on a machine with nothing else installed, and each of its models
// runs a job to success.
func TestDevStartsWithShippedConfig(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &testutil.Buffer{}, &testutil.Buffer{}
	exit := make(chan int, 1)
	// The data directory is made here, before the cleanup below: cleanups
	// run last-in first-out, so dev stops before its directory is removed.
	// (Made inside the goroutine it was removed under a running server.)
	data := t.TempDir()
	go func() {
		exit <- Dev(ctx, []string{"--config", "../../docs/inferq.yaml", "--http", "127.0.0.1:0", "--nats-port", "0",
			"--data", data}, stdout, stderr)
	}()
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
	addr := regexp.MustCompile(`HTTP API  (http://\S+)`)
	var base string
	for deadline := time.Now().Add(30 * time.Second); base == ""; {
		if m := addr.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
			break
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
	if strings.Contains(stderr.String(), "leaves out a configured model") {
		t.Errorf("docs/inferq.yaml leaves a model without a worker:\n%s", stderr)
	}

	sixteen := `[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]`
	jobs := map[string]string{
		"identity": `{"inputs":[{"name":"INPUT0","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}`,
		"simple": `{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":` + sixteen + `},` +
			`{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":` + sixteen + `}]}`,
		"simgpu": `{"inputs":[{"name":"INPUT0","shape":[1,2],"datatype":"INT32","data":[7,8]}]}`,
		"repeat": `{"text_input":"hello","parameters":{"max_tokens":8}}`,
	}
	for model, body := range jobs {
		resp, err := http.Post(base+"/v1/models/"+model+"/jobs", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var acc struct{ ID string }
		err = json.NewDecoder(resp.Body).Decode(&acc)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%s: status %d, %v", model, resp.StatusCode, err)
		}
		var rec struct{ Status string }
		for deadline := time.Now().Add(30 * time.Second); rec.Status != "succeeded"; {
			if time.Now().After(deadline) || rec.Status == "failed" || rec.Status == "expired" {
				t.Fatalf("%s: job %s is %q", model, acc.ID, rec.Status)
			}
			resp, err := http.Get(base + "/v1/jobs/" + acc.ID + "?wait=10s")
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&rec)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("%s: %v", model, err)
			}
		}
	}
}
