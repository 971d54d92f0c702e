package ingress

import "testing"

// TestSumGeneration: a generate model's stats add up its workers' sequences,
// slots and token rates and average their latencies; tensor models' and
// unreadable heartbeats add nothing.
func TestSumGeneration(t *testing.T) {
	if g := sumGeneration([][]byte{[]byte(`{"model":"simple"}`), []byte(`not json`)}); g != nil {
		t.Fatalf("tensor heartbeats gave %+v", g)
	}
	g := sumGeneration([][]byte{
		[]byte(`{"generation":{"continuous":true,"running_seqs":3,"free_slots":5,"tokens_per_second":100,"ttft_ms":20,"inter_token_ms":4}}`),
		[]byte(`{"generation":{"continuous":true,"running_seqs":1,"free_slots":7,"tokens_per_second":50,"ttft_ms":40,"inter_token_ms":0}}`),
	})
	want := GenerationStats{Continuous: true, RunningSeqs: 4, FreeSlots: 12, TokensPerSecond: 150, TTFTMillis: 30, InterTokenMs: 4}
	if g == nil || *g != want {
		t.Fatalf("got %+v, want %+v", g, want)
	}
}
