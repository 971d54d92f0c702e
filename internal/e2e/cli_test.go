package e2e

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/inferq/inferq/internal/cli"
)

// TestCLI runs the client commands against a live stack, as a shell user
// would, and checks their output and exit codes.
func TestCLI(t *testing.T) {
	s := startStack(t, false, nil)
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := cli.Client(context.Background(), args[0], append([]string{"-url", s.URL}, args[1:]...), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, _ := run("submit", "-text", "hey", "-params", `{"max_tokens":4}`, "-wait", "20s", "repeat")
	if code != cli.ExitOK || !strings.Contains(out, `"status":"succeeded"`) || !strings.Contains(out, "heyh") {
		t.Fatalf("submit -wait: %d %s", code, out)
	}
	code, out, _ = run("submit", "-text", "abc", "-params", `{"max_tokens":5}`, "repeat")
	acc := strings.TrimSpace(out)
	if code != cli.ExitOK || !strings.Contains(acc, `"status":"queued"`) {
		t.Fatalf("submit: %d %s", code, out)
	}
	id := acc[strings.Index(acc, `"id":"`)+6:][:26]
	if code, out, _ = run("get", "-wait", "20s", id); code != cli.ExitOK || !strings.Contains(out, id) {
		t.Fatalf("get: %d %s", code, out)
	}
	var wout, werr bytes.Buffer
	code = cli.Client(context.Background(), "watch", []string{"-nats", s.NATS.URL, "-timeout", "10s", id}, &wout, &werr)
	if code != cli.ExitOK || wout.String() != "abcab\n" {
		t.Errorf("watch: %d %q %s", code, wout.String(), werr.String())
	}
	wout.Reset()
	if code = cli.Client(context.Background(), "watch", []string{"-nats", s.NATS.URL, "-from", "3", id}, &wout, &werr); code != cli.ExitOK || wout.String() != "ab\n" {
		t.Errorf("watch -from 3: %d %q", code, wout.String())
	}
	code, out, _ = run("submit", "-text", "z", "-params", `{"max_tokens":100,"interval_ms":100}`, "repeat")
	slow := out[strings.Index(out, `"id":"`)+6:][:26]
	if code, out, errs := run("get", "-wait", "1s", slow); code != cli.ExitTimeout || !strings.Contains(out, slow) || !strings.Contains(errs, "still") {
		t.Errorf("get -wait past the job: %d %s %s; want exit 3 with the record", code, out, errs)
	}
	if code, _, errs := run("get", "0000000000000000000000000a"); code != cli.ExitFailed || !strings.Contains(errs, "404 not_found") {
		t.Errorf("get unknown: %d %s", code, errs)
	}
	if code, _, _ := run("submit", "simple"); code != cli.ExitUsage {
		t.Errorf("submit without body: %d", code)
	}
	if code, out, _ := run("stats"); code != cli.ExitOK || !strings.Contains(out, "simple") || !strings.Contains(out, "QUEUED") {
		t.Errorf("stats: %d %s", code, out)
	}
	if code, out, _ := run("models", "-o", "json", "simple"); code != cli.ExitOK || !strings.Contains(out, `"max_batch_size"`) {
		t.Errorf("models -o json simple: %d %s", code, out)
	}
	if code, out, _ := run("stats", "-o", "json"); code != cli.ExitOK || !strings.Contains(out, `"desired_replicas"`) || strings.Contains(out, `"batching"`) {
		t.Errorf("stats -o json: %d %s", code, out)
	}
}

// TestCLIModelsTable: `inferq models` prints a table like `inferq stats`,
// one row per configured model with its config and live figures.
func TestCLIModelsTable(t *testing.T) {
	s := startStack(t, false, nil)
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), []string{"models", "-url", s.URL}, &out, &errb)
	if code != cli.ExitOK {
		t.Fatalf("models: exit %d, %s", code, errb.String())
	}
	t.Logf("inferq models:\n%s", out.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	header := strings.Join(strings.Fields(lines[0]), " ")
	if header != "MODEL VERSION KIND MAX BATCH MAX DELAY QUEUED IN FLIGHT WORKERS DESIRED REPLICAS" {
		t.Errorf("header %q", lines[0])
	}
	if len(lines)-1 != len(s.Cfg.Models) {
		t.Fatalf("%d rows for %d models", len(lines)-1, len(s.Cfg.Models))
	}
	for k, m := range s.Cfg.Models {
		f := strings.Fields(lines[k+1])
		if f[0] != m.Name || f[1] != m.Version || f[2] != m.Kind {
			t.Errorf("row %q, want model %s version %s kind %s first", lines[k+1], m.Name, m.Version, m.Kind)
		}
		// test models carry "(test)" after their kind
		if f[len(f)-6] != strconv.Itoa(m.Batching.MaxBatchSize) || f[len(f)-5] != m.Batching.MaxQueueDelay.String() {
			t.Errorf("row %q: want max batch %d, max delay %s", lines[k+1], m.Batching.MaxBatchSize, m.Batching.MaxQueueDelay)
		}
		if last := f[len(f)-4:]; last[0] != "0" || last[1] != "0" || last[3] != "0" {
			t.Errorf("row %q: want nothing queued, in flight or desired on an idle stack", lines[k+1])
		}
	}
	out.Reset()
	if code := cli.Main(context.Background(), []string{"models", "-url", s.URL, "nosuch"}, &out, &errb); code != cli.ExitFailed || !strings.Contains(errb.String(), "404") {
		t.Errorf("models nosuch: exit %d, %s", code, errb.String())
	}
}
