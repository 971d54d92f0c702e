package cli

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"testing"
)

// TestClientCommandsUsePkgClient: the client commands talk HTTP through
// the public pkg/client, not code of their own (issue 22): no file of the
// package but the pprof server and dev imports net/http.
func TestClientCommandsUsePkgClient(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"pprof.go": true} // serves pprof for dev; no client
	usesClient := false
	for _, f := range files {
		if filepath.Ext(f) != ".go" || len(f) > 8 && f[len(f)-8:] == "_test.go" {
			continue
		}
		ast, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range ast.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if p == "net/http" && !allowed[f] {
				t.Errorf("%s imports net/http: HTTP calls belong in pkg/client", f)
			}
			if p == "github.com/inferq/inferq/pkg/client" {
				usesClient = true
			}
		}
	}
	if !usesClient {
		t.Error("no file of internal/cli imports pkg/client")
	}
}
