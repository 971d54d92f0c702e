package results

import "testing"

// FuzzDecodeHash feeds arbitrary hash fields to the Redis decoder: it must
// never panic, and whatever it accepts must survive encode/decode unchanged.
func FuzzDecodeHash(f *testing.F) {
	f.Add("queued", "1", "2025-01-02T03:04:05.000000006Z", "", "", "", true, false)
	f.Add("succeeded", "4294967295", "2025-01-02T03:04:05Z", "2025-01-02T03:04:05Z", "2025-01-02T03:04:06Z", `{"a":1}`, false, true)
	f.Add("bogus", "x", "y", "z", "w", "", true, true)
	f.Fuzz(func(t *testing.T, status, attempts, created, started, finished, result string, hasStarted, hasErr bool) {
		h := map[string]string{fStatus: status, fAttempts: attempts, fCreatedAt: created, fResult: result}
		if hasStarted {
			h[fStartedAt] = started
			h[fFinishedAt] = finished
		}
		if hasErr {
			h[fErrCode] = "code"
		}
		rec, err := decodeHash(h)
		if err != nil {
			return
		}
		back := map[string]string{}
		kv := encodeHash(rec)
		for i := 0; i < len(kv); i += 2 {
			switch v := kv[i+1].(type) {
			case string:
				back[kv[i].(string)] = v
			case []byte:
				back[kv[i].(string)] = string(v)
			}
		}
		rec2, err := decodeHash(back)
		if err != nil {
			t.Fatalf("re-encoded hash %v does not decode: %v", back, err)
		}
		if string(rec2.Result) != string(rec.Result) || rec2.Status != rec.Status || rec2.Attempts != rec.Attempts ||
			!rec2.CreatedAt.Equal(rec.CreatedAt) || (rec2.Error == nil) != (rec.Error == nil) {
			t.Fatalf("round trip changed the record: %+v -> %+v", rec, rec2)
		}
	})
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"01jd8x0000000000000000000a": true, "a-b_c=d/e.f": true,
		"": false, "a b": false, "../x": false, "x.": false, "a..b": false, "a*": false, "a>": false, "a:b": false, "é": false,
	} {
		if got := validID(id); got != want {
			t.Errorf("validID(%q) = %v, want %v", id, got, want)
		}
	}
}
