package e2e

import (
	"bytes"
	"context"
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
	if code, _, errs := run("get", "0000000000000000000000000a"); code != cli.ExitFailed || !strings.Contains(errs, "404 not_found") {
		t.Errorf("get unknown: %d %s", code, errs)
	}
	if code, _, _ := run("submit", "simple"); code != cli.ExitUsage {
		t.Errorf("submit without body: %d", code)
	}
	if code, out, _ := run("stats"); code != cli.ExitOK || !strings.Contains(out, "simple") || !strings.Contains(out, "QUEUED") {
		t.Errorf("stats: %d %s", code, out)
	}
	if code, out, _ := run("models", "simple"); code != cli.ExitOK || !strings.Contains(out, `"max_batch_size"`) {
		t.Errorf("models simple: %d %s", code, out)
	}
}
