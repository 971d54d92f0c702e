package ingress

import "testing"

// TestRequestHash: the hash ignores key order and whitespace and nothing
// else: model, version, values and numbers as written all count.
func TestRequestHash(t *testing.T) {
	base := `{"text_input":"a","parameters":{"max_tokens":1,"priority":1}}`
	h := func(model, version, body string) string {
		t.Helper()
		s, err := requestHash(model, version, []byte(body), nil)
		if err != nil {
			t.Fatalf("hash of %s: %v", body, err)
		}
		return s
	}
	want := h("repeat", "1", base)
	for _, same := range []string{
		"{ \"parameters\": {\"priority\": 1, \"max_tokens\": 1},\n  \"text_input\": \"a\" }\n",
		`{"text_input":"\u0061","parameters":{"max_tokens":1,"priority":1}}`,
	} {
		if got := h("repeat", "1", same); got != want {
			t.Errorf("%s hashes differently from %s", same, base)
		}
	}
	for name, got := range map[string]string{
		"other model":   h("identity", "1", base),
		"other version": h("repeat", "2", base),
		"other text":    h("repeat", "1", `{"text_input":"b","parameters":{"max_tokens":1,"priority":1}}`),
		"other number":  h("repeat", "1", `{"text_input":"a","parameters":{"max_tokens":1.0,"priority":1}}`),
		"one more key":  h("repeat", "1", `{"text_input":"a","parameters":{"max_tokens":1,"priority":1,"x":null}}`),
	} {
		if got == want {
			t.Errorf("%s: same hash as the base request", name)
		}
	}
	// A binary request's tensor bytes count, and a JSON request's hash is
	// what it was before the binary form existed.
	bin := func(tail string) string {
		s, err := requestHash("identity", "1", []byte(base), []byte(tail))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if bin("") != h("identity", "1", base) || bin("\x01\x02") == bin("\x01\x03") || bin("\x01") == h("identity", "1", base) {
		t.Error("binary tensor bytes do not count in the hash, or change a JSON request's")
	}
	if _, err := requestHash("m", "1", []byte(`{"a":`), nil); err == nil {
		t.Error("a truncated body hashed")
	}
}
