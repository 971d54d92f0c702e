package ingress

import "testing"

// TestRequestHash: the hash ignores key order and whitespace and nothing
// else: model, version, values and numbers as written all count.
func TestRequestHash(t *testing.T) {
	base := `{"text_input":"a","parameters":{"max_tokens":1,"priority":1}}`
	h := func(model, version, body string) string {
		t.Helper()
		s, err := requestHash(model, version, []byte(body))
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
	if _, err := requestHash("m", "1", []byte(`{"a":`)); err == nil {
		t.Error("a truncated body hashed")
	}
}
