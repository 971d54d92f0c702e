package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runMain(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestVersion: --version and the version command print one line naming the
// build and the toolchain, and succeed.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "-version", "version"} {
		code, out, errs := runMain(arg)
		if code != ExitOK || errs != "" {
			t.Fatalf("inferq %s: exit %d, stderr %q", arg, code, errs)
		}
		if !strings.HasPrefix(out, "inferq ") || !strings.Contains(out, " (go") || strings.Count(out, "\n") != 1 {
			t.Errorf("inferq %s printed %q, want one line 'inferq <version> (<go version>)'", arg, out)
		}
	}
}

// TestSubcommandHelp: every subcommand's -h and --help succeed and print the
// one-line description first, then usage and flags, on stdout; an unknown
// flag is still a usage error.
func TestSubcommandHelp(t *testing.T) {
	for _, cmd := range []string{"dev", "submit", "get", "watch", "replay", "models", "models apply", "models rm", "stats"} {
		for _, h := range []string{"-h", "--help"} {
			code, out, errs := runMain(append(strings.Fields(cmd), h)...)
			if code != ExitOK {
				t.Errorf("inferq %s %s: exit %d (stderr %q)", cmd, h, code, errs)
				continue
			}
			first, _, _ := strings.Cut(out, "\n")
			if !strings.HasPrefix(first, "inferq "+cmd+": ") || len(first) < len("inferq "+cmd+": ")+10 {
				t.Errorf("inferq %s %s: first line %q is not a description", cmd, h, first)
			}
			if !strings.Contains(out, "\nusage: inferq "+cmd) || !strings.Contains(out, "\nflags:\n") || !strings.Contains(out, "  -url") && cmd != "dev" {
				t.Errorf("inferq %s %s: no usage or flags in\n%s", cmd, h, out)
			}
		}
		code, _, errs := runMain(append(strings.Fields(cmd), "--no-such-flag")...)
		if code != ExitUsage || !strings.Contains(errs, "flag provided but not defined: -no-such-flag") {
			t.Errorf("inferq %s --no-such-flag: exit %d, stderr %q; want 2 and the error", cmd, code, errs)
		}
	}
	if code, out, _ := runMain("help", "watch"); code != ExitOK || !strings.HasPrefix(out, "inferq watch: ") {
		t.Errorf("inferq help watch: %d %q", code, out)
	}
	if code, out, _ := runMain("help", "models", "rm"); code != ExitOK || !strings.HasPrefix(out, "inferq models rm: ") {
		t.Errorf("inferq help models rm: %d %q", code, out)
	}
	if code, out, _ := runMain("-h"); code != ExitOK || !strings.Contains(out, "usage: inferq <command>") {
		t.Errorf("inferq -h: %d %q", code, out)
	}
	if code, _, errs := runMain(); code != ExitUsage || !strings.Contains(errs, "usage: inferq <command>") {
		t.Errorf("inferq: %d %q", code, errs)
	}
	if code, _, errs := runMain("frobnicate"); code != ExitUsage || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("inferq frobnicate: %d %q", code, errs)
	}
	if code, _, errs := runMain("models", "-o", "yaml"); code != ExitUsage || !strings.Contains(errs, "want table or json") {
		t.Errorf("inferq models -o yaml: %d %q", code, errs)
	}
}
