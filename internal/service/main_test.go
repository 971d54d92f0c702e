package service

import (
	"bytes"
	"strings"
	"testing"
)

// TestServiceVersionAndHelp: the one-component binaries (cmd/ingress,
// cmd/batcher, cmd/resultsvc, the worker agent) answer --version and -h
// without connecting to anything.
func TestServiceVersionAndHelp(t *testing.T) {
	for _, name := range []string{"ingress", "batcher", "resultsvc", "worker"} {
		spec := Spec{Name: name}
		var out, errb bytes.Buffer
		if code := Main(spec, []string{"--version"}, &out, &errb); code != 0 ||
			!strings.HasPrefix(out.String(), name+" ") || !strings.Contains(out.String(), " (go") {
			t.Errorf("%s --version: exit %d, %q %q", name, code, out.String(), errb.String())
		}
		out.Reset()
		if code := Main(spec, []string{"-h"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), name+": run inferq's") ||
			!strings.Contains(out.String(), "-config") {
			t.Errorf("%s -h: exit %d, %q", name, code, out.String())
		}
		errb.Reset()
		if code := Main(spec, []string{"-bogus"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "-bogus") {
			t.Errorf("%s -bogus: exit %d, %q", name, code, errb.String())
		}
	}
}
