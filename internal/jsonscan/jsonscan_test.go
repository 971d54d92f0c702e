package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzSkip: Skip takes a document exactly when encoding/json finds it valid.
func FuzzSkip(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,-0.5e+3,"x\u00e9\n",true,false,null,{}],"b":{"c":[]}}`, ` 7 `, `"\ud800"`, "\"\xff\"",
		`[1,]`, `{"a" 1}`, `01`, `1.`, `-`, `1e`, `"\x"`, `"` + "\x01" + `"`, `[[[]]`, `{"a":1}}`, `tru`, ``,
		strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth),
		strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		s := Scanner{B: []byte(doc)}
		got := s.Skip(0) && s.End()
		if want := json.Valid([]byte(doc)); got != want {
			t.Fatalf("Skip took %q: %v; json.Valid: %v", doc, got, want)
		}
	})
}
