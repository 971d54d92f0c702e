package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelp: -h succeeds and starts with what the tool is and an example
// command line, before the flags.
func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runCLI(context.Background(), []string{"-h"}, &out, &errb); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	help := errb.String()
	example := strings.Index(help, "go run ./loadtest -c 32 -d 20s")
	flags := strings.Index(help, "\nflags:\n")
	if !strings.HasPrefix(help, "loadtest is inferq's load generator") || example < 0 || flags < example ||
		!strings.Contains(help[flags:], "-plot string") {
		t.Errorf("-h printed:\n%s", help)
	}
	if code := runCLI(context.Background(), []string{"-no-such-flag"}, &out, &errb); code != 2 {
		t.Errorf("-no-such-flag: exit %d, want 2", code)
	}
}
