package jsonstr

import (
	"encoding/json"
	"testing"
)

// FuzzAppend: both forms write exactly what encoding/json writes.
func FuzzAppend(f *testing.F) {
	for _, s := range []string{"", "plain", `"q" \ back`, "<a>&b", "\x00\x1f\b\f\n\r\t", "é ✓ 😀", "\u2028\u2029", "bad \xff\xfe utf8", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := Append(nil, s); string(got) != string(want) {
			t.Fatalf("Append(%q) = %s, want %s", s, got, want)
		}
		if got := AppendBytes([]byte("x"), []byte(s)); string(got) != "x"+string(want) {
			t.Fatalf("AppendBytes(%q) = %s, want x%s", s, got, want)
		}
	})
}
