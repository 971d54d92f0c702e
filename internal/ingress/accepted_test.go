package ingress

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzAcceptedJSON: the hand-written 202 answer is byte for byte what
// c.JSON (encoding/json and a newline) wrote before it.
func FuzzAcceptedJSON(f *testing.F) {
	f.Add("01JABCDEF", "simple", "1", "queued", int64(1764547200123456789), "default", "<&>\"\\\n\u2028\xff")
	f.Add("", "", "", "", int64(0), "", "")
	f.Fuzz(func(t *testing.T, id, model, version, status string, nanos int64, tenant, odd string) {
		created := time.Unix(0, nanos).UTC()
		if y := created.Year(); y < 0 || y > 9999 {
			return // MarshalJSON refuses these; a job is never created then
		}
		acc := (&Ingress{}).accepted(id+odd, tenant, model, version+odd, status, created)
		want, err := json.Marshal(acc)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, '\n')
		if got := acc.appendJSON(nil); string(got) != string(want) {
			t.Fatalf("appendJSON:\n got %s\nwant %s", got, want)
		}
	})
}
